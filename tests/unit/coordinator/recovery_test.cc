// Restart recovery and crash tests: a Coordinator over a real SQLite file is "killed" (dropped, or
// stopped at a sync point between two steps) and a new one is started on the same file.
#include <unistd.h>

#include <filesystem>

#include "common/testing/status_matchers.h"
#include "coordinator/coordinator.h"
#include "coordinator/store/sqlite_store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/coordinator/test_util.h"

namespace align::coordinator {
namespace {

using ::testing::HasSubstr;
using namespace ::align::coordinator::testing;  // NOLINT

class RecoveryTest : public ::testing::Test {
 protected:
  RecoveryTest() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "align-recovery-XXXXXX").string();
    dir_ = mkdtemp(tmpl.data());
  }
  ~RecoveryTest() override {
    core_.reset();
    store_.reset();
    std::filesystem::remove_all(dir_);
  }
  //! (Re)starts the coordinator on the same database file, as after kill -9.
  void Restart() {
    core_.reset();
    store_.reset();
    auto store = SqliteStore::Open(dir_ + "/align.db");
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
    CoordinatorConfig config;
    config.artifact_root = "/art";
    config.lease_timeout = absl::Seconds(30);
    config.recovery_grace = absl::Seconds(20);
    config.engine_version = "test-engine";
    core_ = std::make_unique<Coordinator>(*store_, clock_, ids_, nullptr, config);
    ASSERT_OK(core_->Recover());
  }
  v1::PipelineStatus Get(const std::string& id) {
    v1::GetPipelineRequest r;
    r.set_pipeline_id(id);
    auto s = core_->GetPipeline(r);
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? *s : v1::PipelineStatus();
  }
  int ActiveAttempts(const v1::StageStatus& s) {
    int n = 0;
    for (const auto& a : s.attempts()) {
      n += a.state() == v1::ATTEMPT_ASSIGNED || a.state() == v1::ATTEMPT_RUNNING;
    }
    return n;
  }

  std::string dir_;
  FakeClock clock_;
  RandomIdGenerator ids_{42};
  std::unique_ptr<SqliteStore> store_;
  std::unique_ptr<Coordinator> core_;
};

TEST_F(RecoveryTest, RunningAttemptIsReattachedAfterRestartAndNeverRunsTwice) {
  Restart();
  ASSERT_OK_AND_ASSIGN(auto sub, core_->SubmitPipeline(Submit(SftSpec())));
  const std::string id = sub.pipeline_id();
  std::string attempt;
  {
    FakeWorker w(*core_, "w1", 4, 0, 77);
    ASSERT_OK(w.Register());
    ASSERT_OK(core_->Tick());
    auto got = w.Poll();
    ASSERT_EQ(got.size(), 1u);
    attempt = got[0].attempt_id();
    ASSERT_OK(w.Heartbeat({attempt}));
  }
  Restart();  // the coordinator dies while the stage runs
  EXPECT_EQ(StageOf(Get(id), "sft").state(), v1::STAGE_RUNNING);
  FakeWorker w1(*core_, "w1", 4, 0, 77);
  FakeWorker w2(*core_, "w2", 4, 0, 88);
  ASSERT_OK(w2.Register());
  // Within the grace period nothing is re-placed, even with a free worker.
  clock_.Advance(absl::Seconds(10));
  ASSERT_OK(core_->Tick());
  EXPECT_TRUE(w2.Poll().empty());
  // The worker comes back and says it still runs the attempt: re-attached.
  ASSERT_OK_AND_ASSIGN(auto reg, w1.Register({attempt}));
  EXPECT_TRUE(reg.cancel_attempts().empty());
  clock_.Advance(absl::Seconds(25));  // past the grace period
  ASSERT_OK(w1.Heartbeat({attempt}));
  ASSERT_OK(w2.Heartbeat({}));
  ASSERT_OK(core_->Tick());
  EXPECT_TRUE(w2.Poll().empty());
  v1::StageStatus s = StageOf(Get(id), "sft");
  EXPECT_EQ(s.attempts_size(), 1);
  EXPECT_EQ(ActiveAttempts(s), 1);
  ASSERT_OK_AND_ASSIGN(auto rep, w1.Succeed(attempt));
  EXPECT_TRUE(rep.accepted());
  EXPECT_EQ(Get(id).state(), v1::PIPELINE_SUCCEEDED);
}

TEST_F(RecoveryTest, AttemptNobodyClaimsFailsInfraAfterGraceAndIsRetried) {
  Restart();
  ASSERT_OK_AND_ASSIGN(auto sub, core_->SubmitPipeline(Submit(SftSpec())));
  const std::string id = sub.pipeline_id();
  {
    FakeWorker w(*core_, "w1", 4, 0, 77);
    ASSERT_OK(w.Register());
    ASSERT_OK(core_->Tick());
    auto got = w.Poll();
    ASSERT_EQ(got.size(), 1u);
    ASSERT_OK(w.Heartbeat({got[0].attempt_id()}));
  }
  Restart();  // and worker w1 died too
  FakeWorker w2(*core_, "w2", 4, 0, 88);
  ASSERT_OK(w2.Register());
  clock_.Advance(absl::Seconds(21));
  ASSERT_OK(w2.Heartbeat({}));
  ASSERT_OK(core_->Tick());
  v1::StageStatus s = StageOf(Get(id), "sft");
  ASSERT_EQ(s.attempts_size(), 1);
  EXPECT_EQ(s.attempts(0).state(), v1::ATTEMPT_FAILED);
  EXPECT_EQ(s.attempts(0).failure_class(), v1::INFRASTRUCTURE);
  EXPECT_EQ(s.state(), v1::STAGE_RETRY_WAIT);
  clock_.Advance(absl::Seconds(5));
  ASSERT_OK(w2.Heartbeat({}));
  ASSERT_OK(core_->Tick());
  auto got = w2.Poll();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(ActiveAttempts(StageOf(Get(id), "sft")), 1);
}

// Crash between committing a placement and any worker hearing of it.
TEST_F(RecoveryTest, CrashAfterPlacementCommitBeforeDelivery) {
  Restart();
  ASSERT_OK_AND_ASSIGN(auto sub, core_->SubmitPipeline(Submit(SftSpec())));
  const std::string id = sub.pipeline_id();
  FakeWorker before(*core_, "w1", 4, 0, 77);
  ASSERT_OK(before.Register());
  Coordinator* dying = core_.get();
  core_->sync_points().SetCallback([dying](absl::string_view name) {
    if (name == kSyncAfterPlacementCommit) dying->SimulateCrashForTesting();
  });
  EXPECT_FALSE(core_->Tick().ok());  // the crash

  Restart();
  // The placement was durable: the stage is ASSIGNED with one attempt and a lease.
  v1::StageStatus s = StageOf(Get(id), "sft");
  EXPECT_EQ(s.state(), v1::STAGE_ASSIGNED);
  ASSERT_EQ(s.attempts_size(), 1);
  const std::string lost = s.attempts(0).attempt_id();
  // The worker re-registers without it (it never heard): failed INFRASTRUCTURE, then retried.
  FakeWorker w1(*core_, "w1", 4, 0, 77);
  ASSERT_OK(w1.Register({}));
  s = StageOf(Get(id), "sft");
  EXPECT_EQ(s.attempts(0).state(), v1::ATTEMPT_FAILED);
  EXPECT_EQ(s.attempts(0).failure_class(), v1::INFRASTRUCTURE);
  EXPECT_THAT(s.attempts(0).reason(), HasSubstr("re-registered without the attempt"));
  clock_.Advance(absl::Seconds(5));
  ASSERT_OK(w1.Heartbeat({}));
  ASSERT_OK(core_->Tick());
  auto got = w1.Poll();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_NE(got[0].attempt_id(), lost);
  EXPECT_EQ(ActiveAttempts(StageOf(Get(id), "sft")), 1);
  // A stray report for the lost attempt is fenced.
  ASSERT_OK_AND_ASSIGN(auto rep, w1.Succeed(lost));
  EXPECT_FALSE(rep.accepted());
}

TEST_F(RecoveryTest, SubmittedPipelinesAndIdempotencySurviveRestart) {
  Restart();
  ASSERT_OK_AND_ASSIGN(auto first, core_->SubmitPipeline(Submit(SftSpec("実験-ü-✓"), "rid-9")));
  Restart();
  ASSERT_OK_AND_ASSIGN(auto again, core_->SubmitPipeline(Submit(SftSpec("実験-ü-✓"), "rid-9")));
  EXPECT_TRUE(again.already_existed());
  EXPECT_EQ(again.pipeline_id(), first.pipeline_id());
  EXPECT_EQ(Get(first.pipeline_id()).name(), "実験-ü-✓");
  // Event sequences keep increasing across restarts.
  bool finished = false;
  ASSERT_OK_AND_ASSIGN(auto events, core_->ReadEvents(first.pipeline_id(), 0, 100, &finished));
  ASSERT_OK(core_->SubmitPipeline(Submit(SftSpec("other"))));
  EXPECT_GT(core_->last_event_sequence(), events.back().sequence());
}

}  // namespace
}  // namespace align::coordinator
