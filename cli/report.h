// `alignctl report`: a self-contained HTML report (inline SVG training curves per stage, eval
// results and gates, the lineage of every artifact with hashes) and a Markdown summary, rendered
// by pure functions from what the coordinator returns, so they are tested on fixed input.
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "align/v1/state.pb.h"

namespace align::cli {

struct ReportInput {
  align::v1::PipelineStatus pipeline;
  std::vector<align::v1::MetricSeries> metrics;          // every stage's series (GetMetrics)
  std::map<std::string, nlohmann::json> eval_results;    // eval stage name -> results JSON
  absl::Time generated_at = absl::UnixEpoch();
  std::string generator = "alignctl";                   // e.g. "alignctl 0.1.0 (abc123)"
};

struct ChartSeries {
  std::string label;
  std::vector<std::pair<double, double>> points;  // (step, value); non-finite values are skipped
};

//! "&<>\"'" escaped for HTML text and attribute values.
std::string HtmlEscape(absl::string_view text);

//! An inline <svg> line chart with axes, 5 ticks per axis and a legend. Empty series are left out;
//! with no points at all the chart says "no data".
std::string RenderSvgLineChart(const std::string& title, const std::vector<ChartSeries>& series,
                               int width = 520, int height = 240);

//! The charts of one stage: loss (and eval/loss), reward margins, reward accuracies, learning
//! rate, each when the stage logged it, one line per attempt and rank.
std::vector<std::pair<std::string, std::vector<ChartSeries>>> StageCharts(
    const std::string& stage, const std::vector<align::v1::MetricSeries>& metrics);

//! Numeric leaves of an eval results document as ("mmlu.acc", 0.25) pairs, in document order;
//! the "gates" member is left out (see EvalGates).
std::vector<std::pair<std::string, double>> FlattenEvalScores(const nlohmann::json& results);

struct GateRow {
  std::string name;       // e.g. "preference_accuracy.candidate"
  std::string condition;  // e.g. ">= 0.5"
  std::string value;      // the measured value, formatted
  bool passed = false;
};
//! The gates of an eval results document: an object {name: {condition|threshold, value, passed}}
//! or an array of such objects with a `name`/`gate` member.
std::vector<GateRow> EvalGates(const nlohmann::json& results);

std::string RenderHtmlReport(const ReportInput& input);
std::string RenderMarkdownReport(const ReportInput& input);

}  // namespace align::cli
