#include "cli/output.h"

#include "common/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace align::cli {
namespace {

using ::align::testing::StatusIs;

TEST(OutputTest, TableAlignsColumnsByCodePoints) {
  std::string t = RenderTable({"ID", "NAME", "STATE"},
                              {{"p-1", "実験-ü-✓", "running"}, {"p-22", "zephyr-tiny", "queued"}});
  EXPECT_EQ(t,
            "ID     NAME          STATE\n"
            "p-1    実験-ü-✓        running\n"
            "p-22   zephyr-tiny   queued\n");
}

TEST(OutputTest, ParsesOutputFormats) {
  EXPECT_EQ(*ParseOutputFormat(""), OutputFormat::kTable);
  EXPECT_EQ(*ParseOutputFormat("json"), OutputFormat::kJson);
  EXPECT_EQ(*ParseOutputFormat("yaml"), OutputFormat::kYaml);
  EXPECT_THAT(ParseOutputFormat("xml"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "unknown output format \"xml\"; expected json, yaml or table"));
}

TEST(OutputTest, StateNamesDropTheEnumPrefix) {
  EXPECT_EQ(PipelineStateName(align::v1::PIPELINE_SUCCEEDED), "succeeded");
  EXPECT_EQ(StageStateName(align::v1::STAGE_RETRY_WAIT), "retry_wait");
  EXPECT_EQ(WorkerStateName(align::v1::WORKER_ALIVE), "alive");
  align::v1::PipelineState s;
  ASSERT_TRUE(ParsePipelineState("running", &s));
  EXPECT_EQ(s, align::v1::PIPELINE_RUNNING);
  EXPECT_FALSE(ParsePipelineState("sleeping", &s));
}

TEST(OutputTest, HumanDurationsAndCounts) {
  EXPECT_EQ(HumanDuration(absl::Seconds(45)), "45s");
  EXPECT_EQ(HumanDuration(absl::Seconds(187)), "3m07s");
  EXPECT_EQ(HumanDuration(absl::Seconds(7500)), "2h05m");
  EXPECT_EQ(HumanDuration(absl::Hours(76)), "3d04h");
  EXPECT_EQ(HumanDuration(absl::Seconds(-3)), "0s");
  EXPECT_EQ(FormatCount(1234.5), "1.2k");
  EXPECT_EQ(FormatCount(2.5e6), "2.5M");
  EXPECT_EQ(FormatMetric(1.23456), "1.235");
  EXPECT_EQ(FormatMetric(5e-7), "5.000e-07");
}

TEST(OutputTest, StageProgressLine) {
  align::v1::StageStatus s;
  s.set_name("sft");
  s.set_state(align::v1::STAGE_RUNNING);
  auto* p = s.mutable_progress();
  p->set_step(100);
  p->set_total_steps(400);
  (*p->mutable_metrics())["loss"] = 1.2345;
  p->set_tokens_per_second(12345);
  p->set_eta_seconds(42);
  EXPECT_EQ(RenderStageProgress(s, 5, 8),
            "sft    running    [##......] 100/400  loss 1.234  12.3k tok/s  ETA 42s");
  s.set_state(align::v1::STAGE_SUCCEEDED);
  EXPECT_EQ(RenderStageProgress(s, 3, 8),
            "sft  succeeded  [########] 400/400  loss 1.234  12.3k tok/s");
  align::v1::StageStatus e;
  e.set_name("eval");
  e.set_state(align::v1::STAGE_RUNNING);
  e.mutable_progress()->set_phase("eval mmlu");
  e.mutable_progress()->set_step(300);
  e.mutable_progress()->set_total_steps(1140);
  e.mutable_progress()->set_eta_seconds(28);
  EXPECT_EQ(RenderStageProgress(e, 4, 8), "eval  running    [##......] 300/1140 eval mmlu  ETA 28s");
  // Done: a full bar, without the last suite's count.
  e.set_state(align::v1::STAGE_SUCCEEDED);
  e.mutable_progress()->set_phase("eval preference_accuracy candidate");
  e.mutable_progress()->set_step(40);
  e.mutable_progress()->set_total_steps(40);
  EXPECT_EQ(RenderStageProgress(e, 4, 8), "eval  succeeded  [########]");
  align::v1::StageStatus q;
  q.set_name("dpo");
  q.set_state(align::v1::STAGE_QUEUED);
  q.set_waiting_reason("no worker has 8 free GPUs");
  EXPECT_EQ(RenderStageProgress(q, 3), "dpo  queued     (no worker has 8 free GPUs)");
}

TEST(OutputTest, MessagesAsJsonAndYaml) {
  align::v1::StageStatus s;
  s.set_name("sft");
  s.set_state(align::v1::STAGE_RUNNING);
  EXPECT_EQ(FormatMessage(s, OutputFormat::kJson),
            "{\n \"name\": \"sft\",\n \"state\": \"STAGE_RUNNING\"\n}\n");
  EXPECT_EQ(FormatMessage(s, OutputFormat::kYaml),
            "name: \"sft\"\nstate: \"STAGE_RUNNING\"\n");
}

}  // namespace
}  // namespace align::cli
