#include "cli/progress.h"

#include <cstdio>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace align::cli {
namespace {

align::v1::PipelineStatus Pipeline() {
  align::v1::PipelineStatus p;
  p.set_pipeline_id("p-1");
  p.set_name("zephyr-tiny");
  p.set_state(align::v1::PIPELINE_RUNNING);
  auto* sft = p.add_stages();
  sft->set_name("sft");
  sft->set_state(align::v1::STAGE_RUNNING);
  sft->mutable_progress()->set_step(1);
  sft->mutable_progress()->set_total_steps(4);
  auto* dpo = p.add_stages();
  dpo->set_name("dpo");
  dpo->set_state(align::v1::STAGE_BLOCKED);
  return p;
}

std::string Contents(std::FILE* f) {
  std::fflush(f);
  std::rewind(f);
  std::string s;
  char buf[512];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), f)) > 0) s.append(buf, n);
  return s;
}

TEST(ProgressTest, ExitCodesFollowTheFinalState) {
  EXPECT_EQ(ExitCodeFor(align::v1::PIPELINE_SUCCEEDED), 0);
  EXPECT_EQ(ExitCodeFor(align::v1::PIPELINE_FAILED), 1);
  EXPECT_EQ(ExitCodeFor(align::v1::PIPELINE_CANCELLED), 130);
}

TEST(ProgressTest, NonTerminalViewPrintsOneLinePerStateChange) {
  std::FILE* f = std::tmpfile();
  ProgressView view(f, /*tty=*/false);
  auto p = Pipeline();
  view.Update(p);
  view.Update(p);  // nothing changed: nothing printed
  align::v1::Event e;
  e.set_type(align::v1::STAGE_STATE_CHANGED);
  e.set_stage("dpo");
  e.set_stage_state(align::v1::STAGE_QUEUED);
  view.Apply(e);
  EXPECT_EQ(Contents(f),
            "sft  running    [######..................] 1/4\n"
            "dpo  blocked\n"
            "dpo  queued\n");
  EXPECT_EQ(view.status().stages(1).state(), align::v1::STAGE_QUEUED);
  std::fclose(f);
}

TEST(ProgressTest, ProgressEventsUpdateTheStage) {
  std::FILE* f = std::tmpfile();
  ProgressView view(f, /*tty=*/true);
  view.Update(Pipeline());
  align::v1::Event e;
  e.set_type(align::v1::STAGE_PROGRESS);
  e.set_stage("sft");
  e.mutable_progress()->set_step(3);
  e.mutable_progress()->set_total_steps(4);
  (*e.mutable_progress()->mutable_metrics())["loss"] = 0.5;
  view.Apply(e);
  EXPECT_EQ(view.status().stages(0).progress().step(), 3);
  EXPECT_THAT(Contents(f), ::testing::HasSubstr("zephyr-tiny (p-1): running\n"));
  std::fclose(f);
}

TEST(ProgressTest, SummaryTable) {
  auto p = Pipeline();
  p.set_state(align::v1::PIPELINE_SUCCEEDED);
  p.mutable_created_at()->set_seconds(100);
  p.mutable_finished_at()->set_seconds(190);
  auto* sft = p.mutable_stages(0);
  sft->set_state(align::v1::STAGE_SUCCEEDED);
  sft->mutable_started_at()->set_seconds(100);
  sft->mutable_finished_at()->set_seconds(160);
  (*sft->mutable_progress()->mutable_metrics())["loss"] = 1.5;
  auto* dpo = p.mutable_stages(1);
  dpo->set_state(align::v1::STAGE_CACHED);
  dpo->set_cached_from("p-0/dpo");
  EXPECT_EQ(PipelineSummary(p),
            "pipeline zephyr-tiny (p-1) succeeded in 1m30s\n"
            "STAGE   STATE       TIME    FINAL METRICS   NOTE\n"
            "sft     succeeded   1m00s   loss 1.5\n"
            "dpo     cached                              cached from p-0/dpo\n");
}

}  // namespace
}  // namespace align::cli
