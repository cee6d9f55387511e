#include "cli/report.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "cli/output.h"

namespace align::cli {
namespace {

using align::v1::MetricSeries;
using align::v1::PipelineStatus;
using align::v1::StageStatus;

constexpr const char* kPalette[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e",
                                    "#9467bd", "#8c564b", "#e377c2", "#17becf"};

std::string Num(double v) {
  if (v == 0) return "0";
  double a = std::fabs(v);
  if (a >= 1e5 || a < 1e-3) return absl::StrFormat("%.2e", v);
  return absl::StrFormat("%.4g", v);
}

std::string StageTypeLabel(align::v1::StageType t) {
  std::string n = align::v1::StageType_Name(t);
  for (char& c : n) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return n;
}

std::string Duration(const google::protobuf::Timestamp& start,
                     const google::protobuf::Timestamp& end) {
  absl::Time s = ToTime(start);
  absl::Time e = ToTime(end);
  if (s == absl::InfinitePast() || e == absl::InfinitePast()) return "";
  return HumanDuration(e - s);
}

std::string ShortHash(const std::string& h) { return h.size() > 12 ? h.substr(0, 12) : h; }

// The final value of a metric in a stage: the last point of the series with the highest step.
bool LastValue(const std::vector<MetricSeries>& metrics, const std::string& stage,
               const std::string& name, double* out) {
  int64_t best = std::numeric_limits<int64_t>::min();
  bool found = false;
  for (const auto& s : metrics) {
    if (s.stage() != stage || s.name() != name) continue;
    for (const auto& p : s.points()) {
      if (p.step() >= best && std::isfinite(p.value())) {
        best = p.step();
        *out = p.value();
        found = true;
      }
    }
  }
  return found;
}

void Flatten(const nlohmann::json& v, const std::string& prefix,
             std::vector<std::pair<std::string, double>>* out) {
  if (v.is_number()) {
    out->emplace_back(prefix, v.get<double>());
  } else if (v.is_boolean()) {
    out->emplace_back(prefix, v.get<bool>() ? 1.0 : 0.0);
  } else if (v.is_object()) {
    for (auto it = v.begin(); it != v.end(); ++it) {
      if (prefix.empty() && (it.key() == "gates" || it.key() == "reproducibility" ||
                             it.key() == "record" || it.key() == "config")) {
        continue;
      }
      Flatten(it.value(), prefix.empty() ? it.key() : absl::StrCat(prefix, ".", it.key()), out);
    }
  }
  // Arrays (per-question details) are left out: the report shows aggregate scores.
}

std::string JsonScalar(const nlohmann::json& v) {
  if (v.is_number()) return Num(v.get<double>());
  if (v.is_string()) return v.get<std::string>();
  if (v.is_boolean()) return v.get<bool>() ? "true" : "false";
  if (v.is_null()) return "";
  return v.dump();
}

GateRow GateFrom(const std::string& name, const nlohmann::json& g) {
  GateRow row;
  row.name = name;
  if (g.is_string()) {
    row.condition = g.get<std::string>();
    return row;
  }
  if (!g.is_object()) return row;
  for (const char* k : {"condition", "threshold", "expr", "op"}) {
    if (g.contains(k)) {
      row.condition = JsonScalar(g[k]);
      break;
    }
  }
  for (const char* k : {"value", "actual", "measured"}) {
    if (g.contains(k)) {
      row.value = JsonScalar(g[k]);
      break;
    }
  }
  for (const char* k : {"passed", "pass", "ok"}) {
    if (g.contains(k) && g[k].is_boolean()) {
      row.passed = g[k].get<bool>();
      break;
    }
  }
  return row;
}

struct Inputs {
  std::vector<std::pair<std::string, std::string>> rows;  // (role, path[ sha256])
};

Inputs StageInputs(const PipelineStatus& p, const std::string& stage) {
  Inputs in;
  for (const auto& s : p.spec().stages()) {
    if (s.name() != stage) continue;
    if (!s.model().empty()) in.rows.emplace_back("model", s.model());
    std::vector<std::pair<std::string, std::string>> models(s.models().begin(), s.models().end());
    std::sort(models.begin(), models.end());
    for (const auto& [k, v] : models) in.rows.emplace_back(absl::StrCat("model ", k), v);
    for (int i = 0; i < s.data_size(); ++i) {
      const auto& d = s.data(i);
      in.rows.emplace_back(absl::StrCat("data[", i, "]"),
                           d.sha256().empty() ? d.path()
                                              : absl::StrCat(d.path(), " sha256 ", d.sha256()));
    }
    if (!s.tokenizer().empty() && s.tokenizer() != s.model()) {
      in.rows.emplace_back("tokenizer", s.tokenizer());
    }
    if (!s.chat_template().empty()) in.rows.emplace_back("chat template", s.chat_template());
  }
  return in;
}

const char kCss[] = R"css(
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2em auto;max-width:1120px;color:#222;padding:0 1em}
h1{margin-bottom:.2em} h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0} th,td{border:1px solid #ddd;padding:.3em .6em;text-align:left;font-size:14px;vertical-align:top}
th{background:#f5f5f5} code,.mono{font-family:ui-monospace,Menlo,monospace;font-size:13px}
.state-succeeded,.state-cached,.pass{color:#1a7f37;font-weight:600} .state-failed,.fail{color:#cf222e;font-weight:600}
.state-running{color:#0969da;font-weight:600} .state-cancelled,.state-skipped{color:#777}
.charts{display:flex;flex-wrap:wrap;gap:12px} .meta{color:#555}
svg text{font-family:system-ui,sans-serif}
)css";

}  // namespace

std::string HtmlEscape(absl::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string RenderSvgLineChart(const std::string& title, const std::vector<ChartSeries>& series,
                               int width, int height) {
  constexpr int kLeft = 56, kRight = 12, kTop = 26, kBottom = 44;
  double xmin = std::numeric_limits<double>::infinity(), xmax = -xmin;
  double ymin = xmin, ymax = -xmin;
  for (const auto& s : series) {
    for (const auto& [x, y] : s.points) {
      if (!std::isfinite(x) || !std::isfinite(y)) continue;
      xmin = std::min(xmin, x);
      xmax = std::max(xmax, x);
      ymin = std::min(ymin, y);
      ymax = std::max(ymax, y);
    }
  }
  std::string svg = absl::StrFormat(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
      "role=\"img\" aria-label=\"%s\">"
      "<rect width=\"%d\" height=\"%d\" fill=\"#fff\" stroke=\"#ddd\"/>"
      "<text x=\"%d\" y=\"17\" font-size=\"13\" font-weight=\"600\">%s</text>",
      width, height, width, height, HtmlEscape(title), width, height, kLeft, HtmlEscape(title));
  if (!std::isfinite(xmin)) {
    absl::StrAppendFormat(&svg,
                          "<text x=\"%d\" y=\"%d\" font-size=\"12\" fill=\"#777\" "
                          "text-anchor=\"middle\">no data</text></svg>",
                          width / 2, height / 2);
    return svg;
  }
  if (xmax == xmin) xmax = xmin + 1;
  if (ymax == ymin) {
    double pad = ymin == 0 ? 1 : std::fabs(ymin) * 0.1;
    ymin -= pad;
    ymax += pad;
  }
  const double pw = width - kLeft - kRight, ph = height - kTop - kBottom;
  auto sx = [&](double x) { return kLeft + (x - xmin) / (xmax - xmin) * pw; };
  auto sy = [&](double y) { return kTop + (1 - (y - ymin) / (ymax - ymin)) * ph; };
  // Axes and ticks.
  absl::StrAppendFormat(&svg,
                        "<line x1=\"%d\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#999\"/>"
                        "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%.1f\" stroke=\"#999\"/>",
                        kLeft, kTop + ph, kLeft + pw, kTop + ph, kLeft, kTop, kLeft, kTop + ph);
  for (int i = 0; i <= 4; ++i) {
    double fy = ymin + (ymax - ymin) * i / 4.0;
    double fx = xmin + (xmax - xmin) * i / 4.0;
    absl::StrAppendFormat(
        &svg,
        "<line x1=\"%d\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#eee\"/>"
        "<text x=\"%d\" y=\"%.1f\" font-size=\"10\" text-anchor=\"end\" fill=\"#555\">%s</text>"
        "<text x=\"%.1f\" y=\"%.1f\" font-size=\"10\" text-anchor=\"middle\" fill=\"#555\">%s</text>",
        kLeft, sy(fy), kLeft + pw, sy(fy), kLeft - 4, sy(fy) + 3, Num(fy), sx(fx), kTop + ph + 13,
        Num(std::round(fx * 100) / 100));
  }
  absl::StrAppendFormat(&svg,
                        "<text x=\"%.1f\" y=\"%.1f\" font-size=\"10\" text-anchor=\"middle\" "
                        "fill=\"#555\">step</text>",
                        kLeft + pw / 2, kTop + ph + 26);
  // Lines and legend.
  int color = 0;
  double legend_x = kLeft;
  for (const auto& s : series) {
    std::vector<std::pair<double, double>> pts;
    for (const auto& [x, y] : s.points) {
      if (std::isfinite(x) && std::isfinite(y)) pts.emplace_back(x, y);
    }
    if (pts.empty()) continue;
    std::sort(pts.begin(), pts.end());
    const char* c = kPalette[color++ % (sizeof(kPalette) / sizeof(kPalette[0]))];
    if (pts.size() == 1) {
      absl::StrAppendFormat(&svg, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>",
                            sx(pts[0].first), sy(pts[0].second), c);
    } else {
      std::string path;
      for (const auto& [x, y] : pts) {
        absl::StrAppendFormat(&path, "%s%.1f,%.1f", path.empty() ? "" : " ", sx(x), sy(y));
      }
      absl::StrAppendFormat(&svg,
                            "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\" "
                            "points=\"%s\"/>",
                            c, path);
    }
    absl::StrAppendFormat(&svg,
                          "<rect x=\"%.1f\" y=\"%d\" width=\"10\" height=\"3\" fill=\"%s\"/>"
                          "<text x=\"%.1f\" y=\"%d\" font-size=\"10\">%s</text>",
                          legend_x, height - 9, c, legend_x + 13, height - 5, HtmlEscape(s.label));
    legend_x += 22 + 6.0 * static_cast<double>(s.label.size());
  }
  svg += "</svg>";
  return svg;
}

std::vector<std::pair<std::string, std::vector<ChartSeries>>> StageCharts(
    const std::string& stage, const std::vector<MetricSeries>& metrics) {
  struct Spec {
    const char* title;
    std::vector<std::string> names;
  };
  const std::vector<Spec> specs = {
      {"loss", {"loss", "eval/loss", "eval_loss"}},
      {"reward margins", {"rewards/margins", "eval/rewards/margins"}},
      {"reward accuracies", {"rewards/accuracies", "eval/rewards/accuracies", "accuracy"}},
      {"learning rate", {"learning_rate"}},
  };
  // Several attempts or ranks each get their own line; a single one is labelled by the metric.
  std::set<std::pair<std::string, int>> sources;
  for (const auto& s : metrics) {
    if (s.stage() != stage) continue;
    for (const auto& p : s.points()) sources.emplace(s.attempt_id(), p.rank());
  }
  std::vector<std::pair<std::string, std::vector<ChartSeries>>> charts;
  for (const Spec& spec : specs) {
    std::vector<ChartSeries> lines;
    for (const std::string& name : spec.names) {
      for (const auto& src : sources) {
        ChartSeries cs;
        cs.label = name;
        if (sources.size() > 1) {
          absl::StrAppend(&cs.label, " (", src.first.empty() ? "" : src.first + " ", "rank ",
                          src.second, ")");
        }
        for (const auto& s : metrics) {
          if (s.stage() != stage || s.name() != name || s.attempt_id() != src.first) continue;
          for (const auto& p : s.points()) {
            if (p.rank() == src.second) {
              cs.points.emplace_back(static_cast<double>(p.step()), p.value());
            }
          }
        }
        if (!cs.points.empty()) lines.push_back(std::move(cs));
      }
    }
    if (!lines.empty()) charts.emplace_back(spec.title, std::move(lines));
  }
  return charts;
}

std::vector<std::pair<std::string, double>> FlattenEvalScores(const nlohmann::json& results) {
  std::vector<std::pair<std::string, double>> out;
  // results.json keeps the scores under "scores", next to the reproducibility "records" (batch
  // size, shots, limits, file sizes), which are settings, not scores.
  if (results.is_object() && results.contains("scores") && results["scores"].is_object()) {
    Flatten(results["scores"], "", &out);
  } else {
    Flatten(results, "", &out);
  }
  return out;
}

std::vector<GateRow> EvalGates(const nlohmann::json& results) {
  std::vector<GateRow> rows;
  if (!results.is_object() || !results.contains("gates")) return rows;
  const nlohmann::json& g = results["gates"];
  if (g.is_object()) {
    for (auto it = g.begin(); it != g.end(); ++it) rows.push_back(GateFrom(it.key(), it.value()));
  } else if (g.is_array()) {
    for (const auto& e : g) {
      std::string name;
      for (const char* k : {"name", "gate", "metric"}) {
        if (e.is_object() && e.contains(k) && e[k].is_string()) {
          name = e[k].get<std::string>();
          break;
        }
      }
      rows.push_back(GateFrom(name, e));
    }
  }
  return rows;
}

std::string RenderHtmlReport(const ReportInput& in) {
  const PipelineStatus& p = in.pipeline;
  std::string h = absl::StrCat(
      "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
      "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
      "<title>align report: ",
      HtmlEscape(p.name()), "</title><style>", kCss, "</style></head><body>\n");
  const std::string state = PipelineStateName(p.state());
  absl::StrAppend(&h, "<h1>", HtmlEscape(p.name()), "</h1>\n<p class=\"meta\">pipeline <code>",
                  HtmlEscape(p.pipeline_id()), "</code> &middot; <span class=\"state-", state,
                  "\">", state, "</span>");
  if (std::string d = Duration(p.created_at(), p.finished_at()); !d.empty()) {
    absl::StrAppend(&h, " &middot; ", d);
  }
  if (!p.reason().empty()) absl::StrAppend(&h, " &middot; ", HtmlEscape(p.reason()));
  absl::StrAppend(&h, "<br>generated ", absl::FormatTime("%Y-%m-%d %H:%M:%S UTC", in.generated_at,
                                                         absl::UTCTimeZone()),
                  " by ", HtmlEscape(in.generator), "</p>\n");

  // Stages overview.
  absl::StrAppend(&h, "<h2>Stages</h2>\n<table><tr><th>stage</th><th>type</th><th>state</th>"
                      "<th>attempts</th><th>duration</th><th>final loss</th><th>notes</th></tr>\n");
  for (const StageStatus& s : p.stages()) {
    const std::string st = StageStateName(s.state());
    double loss = 0;
    std::string loss_text = LastValue(in.metrics, s.name(), "loss", &loss) ? Num(loss) : "";
    std::string notes = s.reason();
    if (!s.cached_from().empty()) notes = absl::StrCat("reused outputs of ", s.cached_from());
    absl::StrAppend(&h, "<tr><td>", HtmlEscape(s.name()), "</td><td>", StageTypeLabel(s.type()),
                    "</td><td class=\"state-", st, "\">", st, "</td><td>", s.attempts_size(),
                    "</td><td>", Duration(s.started_at(), s.finished_at()), "</td><td>",
                    loss_text, "</td><td>", HtmlEscape(notes), "</td></tr>\n");
  }
  absl::StrAppend(&h, "</table>\n");

  // Training curves.
  absl::StrAppend(&h, "<h2>Training curves</h2>\n");
  bool any_chart = false;
  for (const StageStatus& s : p.stages()) {
    auto charts = StageCharts(s.name(), in.metrics);
    if (charts.empty()) continue;
    any_chart = true;
    absl::StrAppend(&h, "<h3>", HtmlEscape(s.name()), " (", StageTypeLabel(s.type()),
                    ")</h3>\n<div class=\"charts\">");
    for (const auto& [title, lines] : charts) {
      absl::StrAppend(&h, RenderSvgLineChart(absl::StrCat(s.name(), ": ", title), lines));
    }
    absl::StrAppend(&h, "</div>\n");
  }
  if (!any_chart) absl::StrAppend(&h, "<p class=\"meta\">No training metrics were recorded.</p>\n");

  // Evaluation.
  if (!in.eval_results.empty()) {
    absl::StrAppend(&h, "<h2>Evaluation</h2>\n");
    for (const auto& [stage, results] : in.eval_results) {
      absl::StrAppend(&h, "<h3>", HtmlEscape(stage), "</h3>\n");
      auto gates = EvalGates(results);
      if (!gates.empty()) {
        absl::StrAppend(&h, "<table><tr><th>gate</th><th>condition</th><th>value</th>"
                            "<th>result</th></tr>\n");
        for (const GateRow& g : gates) {
          absl::StrAppend(&h, "<tr><td>", HtmlEscape(g.name), "</td><td>", HtmlEscape(g.condition),
                          "</td><td>", HtmlEscape(g.value), "</td><td class=\"",
                          g.passed ? "pass\">passed" : "fail\">failed", "</td></tr>\n");
        }
        absl::StrAppend(&h, "</table>\n");
      }
      auto scores = FlattenEvalScores(results);
      if (!scores.empty()) {
        absl::StrAppend(&h, "<table><tr><th>score</th><th>value</th></tr>\n");
        for (const auto& [k, v] : scores) {
          absl::StrAppend(&h, "<tr><td>", HtmlEscape(k), "</td><td class=\"mono\">", Num(v),
                          "</td></tr>\n");
        }
        absl::StrAppend(&h, "</table>\n");
      }
    }
  }

  // Lineage.
  absl::StrAppend(&h, "<h2>Lineage</h2>\n<table><tr><th>stage</th><th>inputs</th>"
                      "<th>outputs (sha256)</th></tr>\n");
  for (const StageStatus& s : p.stages()) {
    Inputs inputs = StageInputs(p, s.name());
    std::string in_html, out_html;
    for (const auto& [role, path] : inputs.rows) {
      absl::StrAppend(&in_html, HtmlEscape(role), ": <code>", HtmlEscape(path), "</code><br>");
    }
    for (const auto& a : s.outputs()) {
      absl::StrAppend(&out_html, HtmlEscape(a.name()), " (", HtmlEscape(a.kind()), ", ",
                      FormatCount(static_cast<double>(a.size_bytes())), "B): <code>",
                      HtmlEscape(a.uri()), "</code><br><span class=\"mono\">sha256 ",
                      HtmlEscape(a.sha256()), "</span><br>");
    }
    if (!s.cached_from().empty()) {
      absl::StrAppend(&out_html, "<em>cached from ", HtmlEscape(s.cached_from()), "</em>");
    }
    absl::StrAppend(&h, "<tr><td>", HtmlEscape(s.name()), "</td><td>", in_html, "</td><td>",
                    out_html, "</td></tr>\n");
  }
  absl::StrAppend(&h, "</table>\n</body></html>\n");
  return h;
}

std::string RenderMarkdownReport(const ReportInput& in) {
  const PipelineStatus& p = in.pipeline;
  std::string m = absl::StrCat("# ", p.name(), "\n\n", "Pipeline `", p.pipeline_id(), "`: **",
                               PipelineStateName(p.state()), "**");
  if (std::string d = Duration(p.created_at(), p.finished_at()); !d.empty()) {
    absl::StrAppend(&m, " in ", d);
  }
  if (!p.reason().empty()) absl::StrAppend(&m, " (", p.reason(), ")");
  absl::StrAppend(&m, ".\n\n| stage | type | state | duration | final loss | final margin |\n"
                      "| --- | --- | --- | --- | --- | --- |\n");
  for (const StageStatus& s : p.stages()) {
    double loss = 0, margin = 0;
    absl::StrAppend(&m, "| ", s.name(), " | ", StageTypeLabel(s.type()), " | ",
                    StageStateName(s.state()), " | ", Duration(s.started_at(), s.finished_at()),
                    " | ", LastValue(in.metrics, s.name(), "loss", &loss) ? Num(loss) : "",
                    " | ",
                    LastValue(in.metrics, s.name(), "rewards/margins", &margin) ? Num(margin) : "",
                    " |\n");
  }
  for (const auto& [stage, results] : in.eval_results) {
    absl::StrAppend(&m, "\n## Evaluation: ", stage, "\n\n");
    auto gates = EvalGates(results);
    for (const GateRow& g : gates) {
      absl::StrAppend(&m, "- gate `", g.name, " ", g.condition, "`: ", g.value, " **",
                      g.passed ? "passed" : "failed", "**\n");
    }
    if (!gates.empty()) m += "\n";
    auto scores = FlattenEvalScores(results);
    if (!scores.empty()) {
      absl::StrAppend(&m, "| score | value |\n| --- | --- |\n");
      for (const auto& [k, v] : scores) absl::StrAppend(&m, "| ", k, " | ", Num(v), " |\n");
    }
  }
  absl::StrAppend(&m, "\n## Artifacts\n\n| stage | output | kind | sha256 | path |\n"
                      "| --- | --- | --- | --- | --- |\n");
  for (const StageStatus& s : p.stages()) {
    for (const auto& a : s.outputs()) {
      absl::StrAppend(&m, "| ", s.name(), " | ", a.name(), " | ", a.kind(), " | `",
                      ShortHash(a.sha256()), "` | ", a.uri(), " |\n");
    }
  }
  return m;
}

}  // namespace align::cli
