#include "cli/report.h"

#include "absl/strings/match.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace align::cli {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

int Count(const std::string& haystack, const std::string& needle) {
  int n = 0;
  for (size_t p = haystack.find(needle); p != std::string::npos; p = haystack.find(needle, p + 1)) ++n;
  return n;
}

void AddSeries(ReportInput* in, const std::string& stage, const std::string& name,
               std::vector<double> values) {
  align::v1::MetricSeries s;
  s.set_name(name);
  s.set_stage(stage);
  s.set_attempt_id("a-1");
  for (size_t i = 0; i < values.size(); ++i) {
    auto* p = s.add_points();
    p->set_step(static_cast<int64_t>(i));
    p->set_value(values[i]);
  }
  in->metrics.push_back(s);
}

ReportInput FixedInput() {
  ReportInput in;
  auto& p = in.pipeline;
  p.set_pipeline_id("p-1");
  p.set_name("zephyr-tiny");
  p.set_state(align::v1::PIPELINE_FAILED);
  p.set_reason("stage eval failed");
  p.mutable_created_at()->set_seconds(1000);
  p.mutable_finished_at()->set_seconds(1125);
  auto* spec_sft = p.mutable_spec()->add_stages();
  spec_sft->set_name("sft");
  spec_sft->set_model("data://models/stories260K");
  auto* d = spec_sft->add_data();
  d->set_path("data://datasets/oasst/en_100_tree.jsonl");
  d->set_sha256("a27639214a5098bf");
  auto* sft = p.add_stages();
  sft->set_name("sft");
  sft->set_type(align::v1::SFT);
  sft->set_state(align::v1::STAGE_SUCCEEDED);
  sft->mutable_started_at()->set_seconds(1000);
  sft->mutable_finished_at()->set_seconds(1060);
  auto* a = sft->add_outputs();
  a->set_name("model");
  a->set_kind("model");
  a->set_uri("file:///a/p-1/sft/model");
  a->set_sha256("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
  a->set_size_bytes(1200000);
  auto* dpo = p.add_stages();
  dpo->set_name("dpo");
  dpo->set_type(align::v1::DPO);
  dpo->set_state(align::v1::STAGE_SUCCEEDED);
  dpo->mutable_started_at()->set_seconds(1060);
  dpo->mutable_finished_at()->set_seconds(1100);
  auto* ev = p.add_stages();
  ev->set_name("eval");
  ev->set_type(align::v1::EVAL);
  ev->set_state(align::v1::STAGE_FAILED);
  ev->set_reason("gate mmlu.acc >= 0.3 failed: 0.25 <b>");
  AddSeries(&in, "sft", "loss", {2.0, 1.5, 1.25});
  AddSeries(&in, "sft", "learning_rate", {1e-3, 5e-4, 0});
  AddSeries(&in, "dpo", "loss", {0.69, 0.6});
  AddSeries(&in, "dpo", "rewards/margins", {0.0, 0.125});
  AddSeries(&in, "dpo", "rewards/accuracies", {0.5, 0.75});
  in.eval_results["eval"] = nlohmann::json::parse(R"({
    "mmlu": {"acc": 0.25, "n": 100},
    "preference_accuracy": {"candidate": 0.6, "baseline": 0.5},
    "gates": {"mmlu.acc": {"condition": ">= 0.3", "value": 0.25, "passed": false}}})");
  in.generated_at = absl::FromUnixSeconds(1200);
  return in;
}

TEST(ReportTest, SvgChartMapsPointsIntoThePlotArea) {
  std::string svg = RenderSvgLineChart("sft: loss", {{"loss", {{0, 1.0}, {10, 0.5}, {20, 0.0}}}});
  EXPECT_THAT(svg, HasSubstr("points=\"56.0,26.0 282.0,111.0 508.0,196.0\""));
  EXPECT_THAT(svg, HasSubstr(">sft: loss</text>"));
  EXPECT_THAT(svg, HasSubstr(">0.75</text>"));
  EXPECT_TRUE(absl::StartsWith(svg, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"520\""));
  EXPECT_TRUE(absl::EndsWith(svg, "</svg>"));
}

TEST(ReportTest, SvgChartWithoutDataSaysSo) {
  std::string svg = RenderSvgLineChart("x", {{"loss", {{0, std::nan("")}}}});
  EXPECT_THAT(svg, HasSubstr(">no data</text>"));
  EXPECT_THAT(svg, Not(HasSubstr("polyline")));
}

TEST(ReportTest, StageChartsPickTheLoggedMetrics) {
  ReportInput in = FixedInput();
  auto sft = StageCharts("sft", in.metrics);
  ASSERT_EQ(sft.size(), 2u);
  EXPECT_EQ(sft[0].first, "loss");
  EXPECT_EQ(sft[1].first, "learning rate");
  auto dpo = StageCharts("dpo", in.metrics);
  ASSERT_EQ(dpo.size(), 3u);
  EXPECT_EQ(dpo[1].first, "reward margins");
  EXPECT_EQ(dpo[1].second[0].points, (std::vector<std::pair<double, double>>{{0, 0}, {1, 0.125}}));
}

TEST(ReportTest, EvalScoresAndGates) {
  ReportInput in = FixedInput();
  auto scores = FlattenEvalScores(in.eval_results["eval"]);
  EXPECT_EQ(scores, (std::vector<std::pair<std::string, double>>{
                        {"mmlu.acc", 0.25},
                        {"mmlu.n", 100},
                        {"preference_accuracy.baseline", 0.5},
                        {"preference_accuracy.candidate", 0.6}}));
  // The engine's results.json: scores under "scores"; the records' numbers are not scores.
  auto engine = FlattenEvalScores(nlohmann::json::parse(R"({
      "engine_version": "0.1.0", "scores": {"mmlu": {"acc": 0.2447, "questions": 1140}},
      "records": {"mmlu": {"batch_size": 4, "limit": 20, "shots": 0}},
      "gates": [{"gate": "mmlu.acc", "condition": ">= 0.2", "value": 0.2447, "passed": true}]})"));
  EXPECT_EQ(engine, (std::vector<std::pair<std::string, double>>{{"mmlu.acc", 0.2447},
                                                                {"mmlu.questions", 1140}}));
  auto gates = EvalGates(in.eval_results["eval"]);
  ASSERT_EQ(gates.size(), 1u);
  EXPECT_EQ(gates[0].name, "mmlu.acc");
  EXPECT_EQ(gates[0].condition, ">= 0.3");
  EXPECT_EQ(gates[0].value, "0.25");
  EXPECT_FALSE(gates[0].passed);
  auto array_gates = EvalGates(nlohmann::json::parse(
      R"({"gates": [{"name": "preference_accuracy.candidate", "threshold": ">= 0.5", "value": 0.6, "passed": true}]})"));
  ASSERT_EQ(array_gates.size(), 1u);
  EXPECT_EQ(array_gates[0].name, "preference_accuracy.candidate");
  EXPECT_TRUE(array_gates[0].passed);
}

TEST(ReportTest, HtmlIsSelfContainedAndComplete) {
  std::string html = RenderHtmlReport(FixedInput());
  EXPECT_EQ(Count(html, "<svg "), 5);  // sft: loss, lr; dpo: loss, margins, accuracies
  EXPECT_THAT(html, Not(HasSubstr("<script")));
  EXPECT_THAT(html, Not(HasSubstr("src=")));
  EXPECT_THAT(html, Not(HasSubstr("<link")));
  EXPECT_THAT(html, HasSubstr("gate mmlu.acc &gt;= 0.3 failed: 0.25 &lt;b&gt;"));
  EXPECT_THAT(html, HasSubstr("<td>mmlu.acc</td><td>&gt;= 0.3</td><td>0.25</td><td class=\"fail\">failed</td>"));
  EXPECT_THAT(html, HasSubstr("sha256 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"));
  EXPECT_THAT(html, HasSubstr("data[0]: <code>data://datasets/oasst/en_100_tree.jsonl sha256 a27639214a5098bf</code>"));
  EXPECT_THAT(html, HasSubstr("generated 1970-01-01 00:20:00 UTC"));
  EXPECT_THAT(html, HasSubstr("<td class=\"state-succeeded\">succeeded</td><td>0</td><td>1m00s</td><td>1.25</td>"));
}

TEST(ReportTest, MarkdownSummary) {
  EXPECT_EQ(RenderMarkdownReport(FixedInput()),
            "# zephyr-tiny\n\n"
            "Pipeline `p-1`: **failed** in 2m05s (stage eval failed).\n\n"
            "| stage | type | state | duration | final loss | final margin |\n"
            "| --- | --- | --- | --- | --- | --- |\n"
            "| sft | sft | succeeded | 1m00s | 1.25 |  |\n"
            "| dpo | dpo | succeeded | 40s | 0.6 | 0.125 |\n"
            "| eval | eval | failed |  |  |  |\n"
            "\n## Evaluation: eval\n\n"
            "- gate `mmlu.acc >= 0.3`: 0.25 **failed**\n\n"
            "| score | value |\n| --- | --- |\n"
            "| mmlu.acc | 0.25 |\n| mmlu.n | 100 |\n"
            "| preference_accuracy.baseline | 0.5 |\n| preference_accuracy.candidate | 0.6 |\n"
            "\n## Artifacts\n\n"
            "| stage | output | kind | sha256 | path |\n| --- | --- | --- | --- | --- |\n"
            "| sft | model | model | `0123456789ab` | file:///a/p-1/sft/model |\n");
}

}  // namespace
}  // namespace align::cli
