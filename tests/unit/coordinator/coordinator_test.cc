// Handler-level tests of the Coordinator state machine: FakeClock, MemoryStore, no server.
#include "coordinator/coordinator.h"

#include <thread>

#include "common/testing/status_matchers.h"
#include "coordinator/store/memory_store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/coordinator/test_util.h"

namespace align::coordinator {
namespace {

using ::align::testing::IsOk;
using ::align::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using namespace ::align::coordinator::testing;  // NOLINT

class CoordinatorTest : public ::testing::Test {
 protected:
  CoordinatorTest() { Reset(); }
  void Reset() {
    core_.reset();
    CoordinatorConfig config;
    config.artifact_root = "/art";
    config.data_dir = "/data";
    config.lease_timeout = absl::Seconds(30);
    config.heartbeat_interval = absl::Seconds(5);
    config.engine_version = "test-engine";
    core_ = std::make_unique<Coordinator>(store_, clock_, ids_, &metrics_, config);
    ASSERT_OK(core_->Recover());
  }
  v1::PipelineStatus Get(const std::string& id) {
    v1::GetPipelineRequest r;
    r.set_pipeline_id(id);
    auto s = core_->GetPipeline(r);
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? *s : v1::PipelineStatus();
  }
  std::string SubmitOk(const v1::PipelineSpec& spec, const std::string& rid = "") {
    auto r = core_->SubmitPipeline(Submit(spec, rid));
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? r->pipeline_id() : "";
  }

  FakeClock clock_;
  MemoryStore store_;
  SequentialIdGenerator ids_;
  CoordinatorMetrics metrics_;
  std::unique_ptr<Coordinator> core_;
};

TEST_F(CoordinatorTest, SubmitPlansStagesFirstQueuedRestBlocked) {
  const std::string id = SubmitOk(SftDpoSpec());
  EXPECT_EQ(id, "p-1");
  v1::PipelineStatus p = Get(id);
  EXPECT_EQ(p.state(), v1::PIPELINE_QUEUED);
  ASSERT_EQ(p.stages_size(), 2);
  EXPECT_EQ(StageOf(p, "sft").state(), v1::STAGE_QUEUED);
  EXPECT_EQ(StageOf(p, "dpo").state(), v1::STAGE_BLOCKED);
  // Defaults were applied to the stored spec.
  EXPECT_EQ(p.spec().stages(0).resources().ranks(), 1);
  EXPECT_EQ(p.spec().stages(0).retry().max_infra_retries(), 3);
}

TEST_F(CoordinatorTest, InvalidSpecIsInvalidArgumentNamingTheField) {
  v1::PipelineSpec spec = SftDpoSpec();
  spec.mutable_stages(1)->set_model("${stages.nope.outputs.model}");
  EXPECT_THAT(core_->SubmitPipeline(Submit(spec)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("nope")));
}

TEST_F(CoordinatorTest, SameClientRequestIdReturnsSamePipeline) {
  auto first = core_->SubmitPipeline(Submit(SftSpec(), "req-1"));
  ASSERT_OK(first);
  auto second = core_->SubmitPipeline(Submit(SftSpec(), "req-1"));
  ASSERT_OK(second);
  EXPECT_EQ(first->pipeline_id(), second->pipeline_id());
  EXPECT_FALSE(first->already_existed());
  EXPECT_TRUE(second->already_existed());
  auto list = core_->ListPipelines({});
  ASSERT_OK(list);
  EXPECT_EQ(list->pipelines_size(), 1);
}

TEST_F(CoordinatorTest, ConcurrentSubmitsWithSameRequestIdMakeOnePipeline) {
  std::vector<std::string> ids(8);
  std::vector<std::thread> threads;
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&, i] {
      auto r = core_->SubmitPipeline(Submit(SftSpec(), "same"));
      if (r.ok()) ids[i] = r->pipeline_id();
    });
  }
  for (auto& t : threads) t.join();
  for (const std::string& id : ids) EXPECT_EQ(id, ids[0]);
  auto list = core_->ListPipelines({});
  ASSERT_OK(list);
  EXPECT_EQ(list->pipelines_size(), 1);
  ASSERT_OK_AND_ASSIGN(StoreSnapshot snap, store_.Load());
  EXPECT_EQ(snap.pipelines.size(), 1u);
}

TEST_F(CoordinatorTest, UnicodeNameRoundTripsAndLists) {
  const std::string name = "実験-ü-✓";
  const std::string id = SubmitOk(SftSpec(name));
  SubmitOk(SftSpec("plain"));
  EXPECT_EQ(Get(id).name(), name);
  EXPECT_EQ(Get(name).pipeline_id(), id);  // lookup by unique name
  v1::ListPipelinesRequest req;
  req.set_name_prefix("実験");
  ASSERT_OK_AND_ASSIGN(auto list, core_->ListPipelines(req));
  ASSERT_EQ(list.pipelines_size(), 1);
  EXPECT_EQ(list.pipelines(0).name(), name);
  ASSERT_OK_AND_ASSIGN(auto all, core_->ListPipelines({}));
  ASSERT_EQ(all.pipelines_size(), 2);
  EXPECT_EQ(all.pipelines(0).name(), "plain");  // newest first
  EXPECT_EQ(all.pipelines(1).name(), name);
}

TEST_F(CoordinatorTest, ListPagesNewestFirst) {
  for (int i = 0; i < 5; ++i) SubmitOk(SftSpec("p" + std::to_string(i)));
  v1::ListPipelinesRequest req;
  req.set_page_size(2);
  ASSERT_OK_AND_ASSIGN(auto page1, core_->ListPipelines(req));
  ASSERT_EQ(page1.pipelines_size(), 2);
  EXPECT_EQ(page1.pipelines(0).name(), "p4");
  EXPECT_EQ(page1.next_page_token(), "2");
  req.set_page_token(page1.next_page_token());
  ASSERT_OK_AND_ASSIGN(auto page2, core_->ListPipelines(req));
  EXPECT_EQ(page2.pipelines(0).name(), "p2");
  req.set_page_token("garbage");
  EXPECT_THAT(core_->ListPipelines(req), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST_F(CoordinatorTest, WaitingStageSaysWhy) {
  const std::string id = SubmitOk(SftSpec());
  ASSERT_OK(core_->Tick());
  v1::StageStatus s = StageOf(Get(id), "sft");
  EXPECT_EQ(s.state(), v1::STAGE_QUEUED);
  EXPECT_EQ(s.queue_position(), 1);
  EXPECT_EQ(s.waiting_reason(), "no worker is registered and alive yet");
}

TEST_F(CoordinatorTest, FullPipelineRunsAndResolvesReferences) {
  const std::string id = SubmitOk(SftDpoSpec());
  FakeWorker w(*core_, "w1");
  ASSERT_OK(w.Register());
  ASSERT_OK(core_->Tick());
  std::vector<v1::Assignment> got = w.Poll();
  ASSERT_EQ(got.size(), 1u);
  const v1::Assignment& a = got[0];
  EXPECT_EQ(a.stage(), "sft");
  EXPECT_EQ(a.world_size(), 1);
  EXPECT_THAT(a.ranks(), ElementsAre(0));
  EXPECT_EQ(a.job().output_dir(), "/art/" + id + "/sft/");
  EXPECT_EQ(a.job().data_dir(), "/data");
  EXPECT_EQ(a.job().inputs().at("model"), "data://models/stories260K");
  EXPECT_EQ(a.job().inputs().at("data/0"), "data://datasets/oasst/en_100_tree.jsonl");
  EXPECT_EQ(a.job().resume_from(), "");
  EXPECT_EQ(StageOf(Get(id), "sft").state(), v1::STAGE_ASSIGNED);

  ASSERT_OK(w.Heartbeat({a.attempt_id()}));
  EXPECT_EQ(StageOf(Get(id), "sft").state(), v1::STAGE_RUNNING);
  EXPECT_EQ(Get(id).state(), v1::PIPELINE_RUNNING);
  ASSERT_OK_AND_ASSIGN(auto rep, w.Succeed(a.attempt_id(), "model", "/art/" + id + "/sft/model"));
  EXPECT_TRUE(rep.accepted());
  v1::PipelineStatus p = Get(id);
  EXPECT_EQ(StageOf(p, "sft").state(), v1::STAGE_SUCCEEDED);
  EXPECT_EQ(StageOf(p, "dpo").state(), v1::STAGE_QUEUED);

  ASSERT_OK(core_->Tick());
  got = w.Poll();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].stage(), "dpo");
  // The reference became the producing stage's artifact path; the reference model defaults to it.
  EXPECT_EQ(got[0].job().stage().model(), "/art/" + id + "/sft/model");
  EXPECT_EQ(got[0].job().inputs().at("model"), "/art/" + id + "/sft/model");
  EXPECT_EQ(got[0].job().inputs().at("reference_model"), "/art/" + id + "/sft/model");
  ASSERT_OK(w.Succeed(got[0].attempt_id(), "model", "/art/" + id + "/dpo/model", "def"));
  p = Get(id);
  EXPECT_EQ(p.state(), v1::PIPELINE_SUCCEEDED);
  ASSERT_EQ(StageOf(p, "dpo").outputs_size(), 1);
  EXPECT_EQ(StageOf(p, "dpo").outputs(0).uri(), "file:///art/" + id + "/dpo/model");

  // Lineage: artifacts are stored with their producing stage and hash.
  ASSERT_OK_AND_ASSIGN(auto arts, store_.ReadArtifacts(id, ""));
  ASSERT_EQ(arts.size(), 2u);
  EXPECT_EQ(arts[0].stage(), "dpo");
  EXPECT_EQ(arts[0].sha256(), "def");
  EXPECT_EQ(arts[1].stage(), "sft");
  EXPECT_EQ(arts[1].sha256(), "abc");
}

TEST_F(CoordinatorTest, LeaseExpiryFailsInfraAndReplacesElsewhereResumingFromCheckpoint) {
  const std::string id = SubmitOk(SftSpec());
  FakeWorker w1(*core_, "w1");
  ASSERT_OK(w1.Register());
  ASSERT_OK(core_->Tick());
  auto got = w1.Poll();
  ASSERT_EQ(got.size(), 1u);
  const std::string attempt1 = got[0].attempt_id();
  v1::ReportAttemptRequest ckpt;
  ckpt.set_attempt_id(attempt1);
  ckpt.set_report_id("r1");
  ckpt.set_checkpoint("/art/work/checkpoint-4");
  ASSERT_OK(w1.Report(ckpt));

  // w1 is SIGKILLed: no more heartbeats. A second worker comes up.
  FakeWorker w2(*core_, "w2");
  clock_.Advance(absl::Seconds(15));
  ASSERT_OK(w2.Register());
  clock_.Advance(absl::Seconds(15));  // 30 s since w1's last report: the lease expires
  ASSERT_OK(core_->Tick());
  v1::PipelineStatus p = Get(id);
  const v1::StageStatus& s = StageOf(p, "sft");
  ASSERT_EQ(s.attempts_size(), 1);
  EXPECT_EQ(s.attempts(0).state(), v1::ATTEMPT_FAILED);
  EXPECT_EQ(s.attempts(0).failure_class(), v1::INFRASTRUCTURE);
  EXPECT_THAT(s.attempts(0).reason(), HasSubstr("lease expired"));
  EXPECT_EQ(s.state(), v1::STAGE_RETRY_WAIT);
  EXPECT_EQ(s.infra_retries(), 1);

  ASSERT_OK(w2.Heartbeat({}));
  clock_.Advance(absl::Seconds(5));  // backoff_initial_seconds
  ASSERT_OK(w2.Heartbeat({}));
  ASSERT_OK(core_->Tick());
  got = w2.Poll();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_NE(got[0].attempt_id(), attempt1);
  EXPECT_EQ(got[0].job().resume_from(), "/art/work/checkpoint-4");
  EXPECT_EQ(StageOf(Get(id), "sft").attempts(1).resumed_from_checkpoint(), "/art/work/checkpoint-4");
  EXPECT_THAT(metrics_.Serialize(), HasSubstr("align_lease_expirations_total 1"));

  // The dead worker's late report is fenced.
  ASSERT_OK_AND_ASSIGN(auto late, w1.Succeed(attempt1));
  EXPECT_FALSE(late.accepted());
  EXPECT_TRUE(late.cancel());
}

TEST_F(CoordinatorTest, StaleIncarnationIsFencedAndItsAttemptsFail) {
  const std::string id = SubmitOk(SftSpec());
  FakeWorker w(*core_, "w1", 4, 0, /*incarnation=*/111);
  ASSERT_OK(w.Register());
  ASSERT_OK(core_->Tick());
  auto got = w.Poll();
  ASSERT_EQ(got.size(), 1u);
  ASSERT_OK(w.Heartbeat({got[0].attempt_id()}));
  // The worker daemon restarts with a new incarnation.
  w.set_incarnation(222);
  ASSERT_OK(w.Register());
  v1::StageStatus s = StageOf(Get(id), "sft");
  EXPECT_EQ(s.attempts(0).failure_class(), v1::INFRASTRUCTURE);
  EXPECT_THAT(s.attempts(0).reason(), HasSubstr("restarted"));
  // A report from the old life is not accepted.
  w.set_incarnation(111);
  ASSERT_OK_AND_ASSIGN(auto hb, w.Heartbeat({got[0].attempt_id()}));
  EXPECT_TRUE(hb.reregister());
  ASSERT_OK_AND_ASSIGN(auto rep, w.Succeed(got[0].attempt_id()));
  EXPECT_FALSE(rep.accepted());
}

TEST_F(CoordinatorTest, UserErrorWithoutRetriesFailsStageSkipsDependents) {
  const std::string id = SubmitOk(SftDpoSpec());
  FakeWorker w(*core_, "w1");
  ASSERT_OK(w.Register());
  ASSERT_OK(core_->Tick());
  auto got = w.Poll();
  ASSERT_EQ(got.size(), 1u);
  ASSERT_OK(w.Fail(got[0].attempt_id(), v1::USER_ERROR, "data line 7: missing field 'text'"));
  v1::PipelineStatus p = Get(id);
  EXPECT_EQ(StageOf(p, "sft").state(), v1::STAGE_FAILED);
  EXPECT_THAT(StageOf(p, "sft").reason(), HasSubstr("missing field 'text'"));
  EXPECT_EQ(StageOf(p, "sft").attempts(0).exit_code(), 3);
  EXPECT_EQ(StageOf(p, "dpo").state(), v1::STAGE_SKIPPED);
  EXPECT_EQ(p.state(), v1::PIPELINE_FAILED);

  // RetryStage re-queues the failed stage and the one it blocked.
  v1::RetryStageRequest retry;
  retry.set_pipeline_id(id);
  retry.set_stage("sft");
  ASSERT_OK_AND_ASSIGN(auto r, core_->RetryStage(retry));
  EXPECT_EQ(r.status().state(), v1::PIPELINE_RUNNING);
  EXPECT_EQ(StageOf(r.status(), "sft").state(), v1::STAGE_QUEUED);
  EXPECT_EQ(StageOf(r.status(), "dpo").state(), v1::STAGE_BLOCKED);

  // A stage name that is not in the pipeline: the error lists the ones that are.
  retry.set_stage("sfft");
  EXPECT_THAT(core_->RetryStage(retry),
              StatusIs(absl::StatusCode::kNotFound,
                       "pipeline " + id + " has no stage 'sfft'; its stages: sft, dpo"));
}

TEST_F(CoordinatorTest, UserRetriesHaveTheirOwnBudgetWithExponentialBackoff) {
  v1::PipelineSpec spec = SftSpec();
  spec.mutable_stages(0)->mutable_retry()->set_max_user_retries(2);
  spec.mutable_stages(0)->mutable_retry()->set_backoff_initial_seconds(10);
  const std::string id = SubmitOk(spec);
  FakeWorker w(*core_, "w1");
  ASSERT_OK(w.Register());
  for (int i = 0; i < 3; ++i) {
    ASSERT_OK(core_->Tick());
    auto got = w.Poll();
    ASSERT_EQ(got.size(), 1u) << "attempt " << i + 1;
    ASSERT_OK(w.Fail(got[0].attempt_id(), v1::USER_ERROR, "boom"));
    if (i < 2) {
      EXPECT_EQ(StageOf(Get(id), "sft").state(), v1::STAGE_RETRY_WAIT);
      // 10 s, then 20 s: one second short of the backoff nothing is placed.
      clock_.Advance(absl::Seconds(10 * (1 << i) - 1));
      ASSERT_OK(w.Heartbeat({}));
      ASSERT_OK(core_->Tick());
      EXPECT_TRUE(w.Poll().empty());
      clock_.Advance(absl::Seconds(1));
      ASSERT_OK(w.Heartbeat({}));
    }
  }
  v1::StageStatus s = StageOf(Get(id), "sft");
  EXPECT_EQ(s.state(), v1::STAGE_FAILED);
  EXPECT_EQ(s.user_retries(), 2);
  EXPECT_EQ(s.infra_retries(), 0);
  EXPECT_EQ(s.attempts_size(), 3);
}

TEST_F(CoordinatorTest, CancelPropagatesThroughHeartbeatAndIsConfirmed) {
  const std::string id = SubmitOk(SftDpoSpec());
  FakeWorker w(*core_, "w1");
  ASSERT_OK(w.Register());
  ASSERT_OK(core_->Tick());
  auto got = w.Poll();
  ASSERT_EQ(got.size(), 1u);
  ASSERT_OK(w.Heartbeat({got[0].attempt_id()}));
  v1::CancelPipelineRequest cancel;
  cancel.set_pipeline_id(id);
  cancel.set_reason("wrong data");
  ASSERT_OK_AND_ASSIGN(auto c, core_->CancelPipeline(cancel));
  EXPECT_EQ(c.status().state(), v1::PIPELINE_CANCELLING);
  EXPECT_EQ(StageOf(c.status(), "dpo").state(), v1::STAGE_CANCELLED);
  ASSERT_OK_AND_ASSIGN(auto hb, w.Heartbeat({got[0].attempt_id()}));
  EXPECT_THAT(hb.cancel_attempts(), ElementsAre(got[0].attempt_id()));
  v1::ReportAttemptRequest r;
  r.set_attempt_id(got[0].attempt_id());
  r.mutable_exit()->set_state(v1::ATTEMPT_CANCELLED);
  ASSERT_OK(w.Report(r));
  v1::PipelineStatus p = Get(id);
  EXPECT_EQ(p.state(), v1::PIPELINE_CANCELLED);
  EXPECT_EQ(StageOf(p, "sft").state(), v1::STAGE_CANCELLED);
  EXPECT_EQ(StageOf(p, "sft").attempts(0).state(), v1::ATTEMPT_CANCELLED);
}

TEST_F(CoordinatorTest, StageTimeoutFailsTheAttemptAndTheWorkerIsToldToStop) {
  v1::PipelineSpec spec = SftSpec();
  spec.mutable_stages(0)->set_timeout_seconds(60);
  const std::string id = SubmitOk(spec);
  FakeWorker w(*core_, "w1");
  ASSERT_OK(w.Register());
  ASSERT_OK(core_->Tick());
  auto got = w.Poll();
  ASSERT_EQ(got.size(), 1u);
  ASSERT_OK(w.Heartbeat({got[0].attempt_id()}));
  for (int i = 0; i < 12; ++i) {
    clock_.Advance(absl::Seconds(5));
    ASSERT_OK(w.Heartbeat({got[0].attempt_id()}));
    ASSERT_OK(core_->Tick());
  }
  v1::StageStatus s = StageOf(Get(id), "sft");
  EXPECT_EQ(s.state(), v1::STAGE_FAILED);
  EXPECT_EQ(s.attempts(0).failure_class(), v1::USER_ERROR);
  EXPECT_EQ(s.attempts(0).reason(), "timed out after 60 s (stage timeout_seconds)");
  ASSERT_OK_AND_ASSIGN(auto hb, w.Heartbeat({got[0].attempt_id()}));
  EXPECT_THAT(hb.cancel_attempts(), ElementsAre(got[0].attempt_id()));
}

TEST_F(CoordinatorTest, GpuStageOnCpuClusterFailsFastWithReason) {
  v1::PipelineSpec spec = SftSpec();
  spec.mutable_stages(0)->mutable_resources()->set_gpus_per_rank(1);
  const std::string id = SubmitOk(spec);
  FakeWorker w(*core_, "cpu1");
  ASSERT_OK(w.Register());
  ASSERT_OK(core_->Tick());
  v1::PipelineStatus p = Get(id);
  EXPECT_EQ(StageOf(p, "sft").state(), v1::STAGE_FAILED);
  EXPECT_EQ(StageOf(p, "sft").reason(),
            "unschedulable: needs 1 rank x 1 GPU, but no eligible worker has 1 GPU (set "
            "resources.cpu_only_allowed to run on CPU workers)");
  EXPECT_EQ(p.state(), v1::PIPELINE_FAILED);
}

TEST_F(CoordinatorTest, IdenticalStageIsCachedUnlessNoCache) {
  const std::string first = SubmitOk(SftDpoSpec("a"));
  FakeWorker w(*core_, "w1");
  ASSERT_OK(w.Register());
  ASSERT_OK(core_->Tick());
  auto got = w.Poll();
  ASSERT_EQ(got.size(), 1u);
  ASSERT_OK(w.Succeed(got[0].attempt_id(), "model", "/art/" + first + "/sft/model"));

  // Re-running the pipeline with a different DPO does not redo SFT.
  v1::PipelineSpec again = SftDpoSpec("b");
  again.mutable_stages(1)->mutable_dpo()->set_beta(0.2);
  const std::string second = SubmitOk(again);
  v1::PipelineStatus p = Get(second);
  EXPECT_EQ(StageOf(p, "sft").state(), v1::STAGE_CACHED);
  EXPECT_EQ(StageOf(p, "sft").cached_from(), first + "/sft");
  EXPECT_EQ(StageOf(p, "dpo").state(), v1::STAGE_QUEUED);
  ASSERT_OK(core_->Tick());
  got = w.Poll();
  ASSERT_EQ(got.size(), 2u);  // the first pipeline's dpo and the second's
  for (const v1::Assignment& a : got) {
    EXPECT_EQ(a.stage(), "dpo");
    EXPECT_EQ(a.job().inputs().at("model"), "/art/" + first + "/sft/model");
  }

  v1::SubmitPipelineRequest nc = Submit(SftDpoSpec("c"));
  nc.set_no_cache(true);
  ASSERT_OK_AND_ASSIGN(auto r, core_->SubmitPipeline(nc));
  EXPECT_EQ(StageOf(r.status(), "sft").state(), v1::STAGE_QUEUED);
}

TEST_F(CoordinatorTest, DiskFullIsUnavailableAndStateIsKept) {
  const std::string id = SubmitOk(SftSpec());
  store_.SetFailWrites(true);
  EXPECT_THAT(core_->SubmitPipeline(Submit(SftSpec("x"))), StatusIs(absl::StatusCode::kUnavailable));
  v1::CancelPipelineRequest cancel;
  cancel.set_pipeline_id(id);
  EXPECT_THAT(core_->CancelPipeline(cancel), StatusIs(absl::StatusCode::kUnavailable));
  store_.SetFailWrites(false);
  // The failed cancel left nothing behind in memory.
  EXPECT_EQ(Get(id).state(), v1::PIPELINE_QUEUED);
  ASSERT_OK_AND_ASSIGN(auto list, core_->ListPipelines({}));
  EXPECT_EQ(list.pipelines_size(), 1);
}

TEST_F(CoordinatorTest, EventsAreOrderedAndDescribeTransitions) {
  const std::string id = SubmitOk(SftSpec());
  bool finished = false;
  ASSERT_OK_AND_ASSIGN(auto events, core_->ReadEvents(id, 0, 100, &finished));
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].type(), v1::PIPELINE_STATE_CHANGED);
  EXPECT_EQ(events[1].type(), v1::STAGE_STATE_CHANGED);
  EXPECT_EQ(events[1].stage_state(), v1::STAGE_QUEUED);
  EXPECT_LT(events[0].sequence(), events[1].sequence());
  EXPECT_FALSE(finished);
}

TEST_F(CoordinatorTest, LogsAndMetricsAreStoredPerAttempt) {
  const std::string id = SubmitOk(SftSpec());
  FakeWorker w(*core_, "w1");
  ASSERT_OK(w.Register());
  ASSERT_OK(core_->Tick());
  auto got = w.Poll();
  ASSERT_EQ(got.size(), 1u);
  v1::ReportAttemptRequest r;
  r.set_attempt_id(got[0].attempt_id());
  r.set_report_id("logs-1");
  for (int i = 0; i < 3; ++i) {
    v1::LogLine* l = r.add_logs();
    l->set_offset(i);
    l->set_text("line " + std::to_string(i));
  }
  v1::MetricSeries* m = r.add_metrics();
  m->set_name("loss");
  m->add_points()->set_value(2.5);
  m->mutable_points(0)->set_step(1);
  ASSERT_OK(w.Report(r));
  ASSERT_OK(w.Report(r));  // a replay with the same report_id is applied once
  v1::StreamLogsRequest lr;
  lr.set_pipeline_id(id);
  lr.set_rank(-1);
  lr.set_tail(2);
  bool finished = false;
  ASSERT_OK_AND_ASSIGN(auto lines, core_->ReadLogs(lr, &finished));
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0].text(), "line 1");
  EXPECT_EQ(lines[1].stage(), "sft");
  v1::GetMetricsRequest mr;
  mr.set_pipeline_id(id);
  ASSERT_OK_AND_ASSIGN(auto metrics, core_->GetMetrics(mr));
  ASSERT_EQ(metrics.series_size(), 1);
  EXPECT_EQ(metrics.series(0).points_size(), 1);
  EXPECT_EQ(metrics.series(0).points(0).value(), 2.5);
}

TEST_F(CoordinatorTest, FinishedStageKeepsItsFinalProgress) {
  const std::string id = SubmitOk(SftSpec());
  FakeWorker w(*core_, "w1");
  ASSERT_OK(w.Register());
  ASSERT_OK(core_->Tick());
  auto got = w.Poll();
  ASSERT_EQ(got.size(), 1u);
  v1::ReportAttemptRequest r;
  r.set_attempt_id(got[0].attempt_id());
  r.set_report_id("progress-1");
  r.mutable_progress()->set_step(40);
  (*r.mutable_progress()->mutable_metrics())["loss"] = 1.25;
  ASSERT_OK(w.Report(r));
  ASSERT_OK(w.Succeed(got[0].attempt_id()));
  v1::PipelineStatus p = Get(id);
  ASSERT_EQ(p.stages(0).state(), v1::STAGE_SUCCEEDED);
  // The summary's FINAL METRICS column reads this once the attempt is no longer active.
  EXPECT_EQ(p.stages(0).progress().step(), 40);
  EXPECT_EQ(p.stages(0).progress().metrics().at("loss"), 1.25);
}

}  // namespace
}  // namespace align::coordinator
