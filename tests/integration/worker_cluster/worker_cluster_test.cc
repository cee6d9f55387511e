// A real coordinator (SQLite, gRPC on port 0) and a real WorkerAgent running fake-align-train:
// for every way an attempt can end, the coordinator records the right state and failure class and
// no process is left; and a coordinator restarted while an attempt runs records it exactly once.
// The fake's behaviour comes from the stage name (see tests/fakes/fake_align_train.cc).
#include <filesystem>
#include <fstream>

#include "common/testing/status_matchers.h"
#include "common/testing/test_data.h"
#include "coordinator/coordinator.h"
#include "coordinator/coordinator_server.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/worker/test_util.h"
#include "worker/worker_agent.h"

namespace align::worker {
namespace {

using ::testing::Contains;
using ::testing::HasSubstr;
using testing::PollUntil;
using testing::ProcessGone;

bool Final(v1::PipelineState s) {
  return s == v1::PIPELINE_SUCCEEDED || s == v1::PIPELINE_FAILED || s == v1::PIPELINE_CANCELLED;
}

class WorkerClusterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    StartCoordinator();
    WorkerOptions o;
    o.coordinator_address = coordinator_->address();
    o.worker_id = "host-a";
    o.cpu_slots = 2;
    o.artifact_root = scratch_.path() + "/artifacts";
    o.work_root = scratch_.path() + "/work";
    o.align_train_path = testing::FakeTrainPath();
    o.align_train_args = {"--pid-file", scratch_.path() + "/child.pid", "--gate",
                          scratch_.path() + "/gate"};
    o.launcher = launcher_;
    o.gpu_probe = std::make_shared<StaticGpuProbe>();
    o.supervise_interval = absl::Milliseconds(10);
    o.poll_wait = absl::Milliseconds(500);
    o.backoff_initial = absl::Milliseconds(10);
    o.backoff_max = absl::Milliseconds(200);
    o.supervisor.kill_grace = absl::Milliseconds(300);
    o.supervisor.hang_min_timeout = absl::Milliseconds(500);
    o.supervisor.hang_step_multiple = 10;
    ASSERT_OK_AND_ASSIGN(worker_, WorkerAgent::Start(o));
  }

  void TearDown() override {
    if (worker_) worker_->Shutdown();
    if (coordinator_) coordinator_->Shutdown();
  }

  void StartCoordinator() {
    coordinator::CoordinatorOptions o;
    o.listen_address = absl::StrCat("127.0.0.1:", port_);
    o.db_path = scratch_.path() + "/coordinator.db";
    o.artifact_root = scratch_.path() + "/artifacts";
    o.data_dir = align::testing::DataDir();
    o.lease_timeout = absl::Seconds(20);
    o.heartbeat_interval = absl::Milliseconds(50);
    o.tick_interval = absl::Milliseconds(20);
    auto server = coordinator::CoordinatorServer::Start(o);
    ASSERT_THAT(server, align::testing::IsOk());
    coordinator_ = std::move(server).value();
    port_ = coordinator_->port();
  }

  // One stage whose name tells fake-align-train what to do; no retries, so one attempt.
  std::string Submit(const std::string& stage_name) {
    v1::SubmitPipelineRequest req;
    v1::PipelineSpec* spec = req.mutable_spec();
    spec->set_api_version("align/v1");
    spec->set_kind("Pipeline");
    spec->mutable_metadata()->set_name(absl::StrCat("worker-", stage_name));
    spec->mutable_defaults()->set_model("data://models/stories260K");
    v1::StageSpec* stage = spec->add_stages();
    stage->set_name(stage_name);
    stage->set_type(v1::SFT);
    stage->add_data()->set_path("data://datasets/oasst/en_100_tree.jsonl");
    stage->mutable_data(0)->set_format(v1::OASST_TREE);
    stage->mutable_retry()->set_max_infra_retries(0);
    stage->mutable_retry()->set_max_user_retries(0);
    req.set_no_cache(true);
    auto resp = coordinator_->coordinator()->SubmitPipeline(req);
    EXPECT_THAT(resp, align::testing::IsOk());
    return resp.ok() ? resp->pipeline_id() : "";
  }

  v1::PipelineStatus Get(const std::string& id) {
    v1::GetPipelineRequest req;
    req.set_pipeline_id(id);
    auto status = coordinator_->coordinator()->GetPipeline(req);
    return status.ok() ? *status : v1::PipelineStatus();
  }

  v1::PipelineStatus WaitFinal(const std::string& id) {
    EXPECT_TRUE(PollUntil([&] { return Final(Get(id).state()); })) << Get(id).DebugString();
    return Get(id);
  }

  void ExpectNoProcessLeft() {
    // The coordinator hears of the exit only after the worker confirmed the groups empty.
    for (pid_t pid : launcher_->pids()) {
      EXPECT_THAT(ListProcessGroup(pid), ::testing::IsEmpty()) << "process group " << pid;
      EXPECT_TRUE(ProcessGone(pid)) << pid;
    }
  }

  testing::ScratchDir scratch_;
  int port_ = 0;
  std::unique_ptr<coordinator::CoordinatorServer> coordinator_;
  std::shared_ptr<testing::RecordingLauncher> launcher_ =
      std::make_shared<testing::RecordingLauncher>();
  std::unique_ptr<WorkerAgent> worker_;
};

TEST_F(WorkerClusterTest, ASucceedingStageRecordsItsModelArtifact) {
  const v1::PipelineStatus p = WaitFinal(Submit("succeed"));
  ASSERT_EQ(p.state(), v1::PIPELINE_SUCCEEDED) << p.DebugString();
  ASSERT_EQ(p.stages_size(), 1);
  ASSERT_EQ(p.stages(0).attempts_size(), 1);
  EXPECT_EQ(p.stages(0).attempts(0).state(), v1::ATTEMPT_SUCCEEDED);
  EXPECT_EQ(p.stages(0).attempts(0).worker_id(), "host-a");
  ASSERT_EQ(p.stages(0).outputs_size(), 1);
  EXPECT_EQ(p.stages(0).outputs(0).name(), "model");
  EXPECT_EQ(p.stages(0).outputs(0).uri(),
            absl::StrCat("file://", scratch_.path(), "/artifacts/", p.pipeline_id(),
                         "/succeed/model"));
  EXPECT_EQ(p.stages(0).outputs(0).sha256(),
            "6b2c1f0e9d6a8e4f5b3c2a1d0e9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f");
  ExpectNoProcessLeft();
}

struct EndCase {
  std::string stage;
  v1::FailureClass failure_class;
  int exit_code;
  int signal;
  std::string reason;
};

class WorkerClusterFailureTest : public WorkerClusterTest,
                                 public ::testing::WithParamInterface<EndCase> {};

TEST_P(WorkerClusterFailureTest, TheAttemptFailsWithTheRightClass) {
  const EndCase& c = GetParam();
  const v1::PipelineStatus p = WaitFinal(Submit(c.stage));
  EXPECT_EQ(p.state(), v1::PIPELINE_FAILED);
  ASSERT_EQ(p.stages_size(), 1);
  ASSERT_EQ(p.stages(0).attempts_size(), 1) << p.DebugString();
  const v1::AttemptStatus& a = p.stages(0).attempts(0);
  EXPECT_EQ(a.state(), v1::ATTEMPT_FAILED);
  EXPECT_EQ(a.failure_class(), c.failure_class) << a.reason();
  EXPECT_EQ(a.exit_code(), c.exit_code);
  EXPECT_EQ(a.signal(), c.signal);
  EXPECT_THAT(a.reason(), HasSubstr(c.reason));
  EXPECT_THAT(a.log_tail(), Contains("step 3/3 loss 0.6667"));
  ExpectNoProcessLeft();
}

INSTANTIATE_TEST_SUITE_P(
    Stages, WorkerClusterFailureTest,
    ::testing::Values(
        EndCase{"exit3", v1::USER_ERROR, 3, 0, "exited with code 3 (bad data or model input)"},
        EndCase{"oom", v1::USER_ERROR, 1, 0, "log rule 'cuda-oom' matched"},
        EndCase{"ecc", v1::INFRASTRUCTURE, 1, 0, "log rule 'ecc' matched"},
        EndCase{"segv", v1::USER_ERROR, 0, 11, "killed by SIGSEGV"},
        EndCase{"hang", v1::INFRASTRUCTURE, 0, 0, "rank 0 hung: no step event"}),
    [](const auto& info) { return info.param.stage; });

TEST_F(WorkerClusterTest, CancellingAStageWhoseRankIgnoresSigtermKillsItsGroup) {
  const std::string id = Submit("ignore_term");
  // Step 3 is emitted after the fake set SIGTERM to ignored.
  ASSERT_TRUE(PollUntil([&] {
    const v1::PipelineStatus p = Get(id);
    return p.stages_size() == 1 && p.stages(0).progress().step() == 3;
  }));
  v1::CancelPipelineRequest cancel;
  cancel.set_pipeline_id(id);
  cancel.set_reason("stop it");
  ASSERT_THAT(coordinator_->coordinator()->CancelPipeline(cancel), align::testing::IsOk());
  const v1::PipelineStatus p = WaitFinal(id);
  EXPECT_EQ(p.state(), v1::PIPELINE_CANCELLED) << p.DebugString();
  ASSERT_EQ(p.stages(0).attempts_size(), 1);
  EXPECT_EQ(p.stages(0).attempts(0).state(), v1::ATTEMPT_CANCELLED);
  ExpectNoProcessLeft();
}

TEST_F(WorkerClusterTest, AChildOutlivingItsRankIsKilledBeforeTheStageIsRecorded) {
  const v1::PipelineStatus p = WaitFinal(Submit("fork_child"));
  EXPECT_EQ(p.state(), v1::PIPELINE_SUCCEEDED) << p.DebugString();
  const pid_t child = std::stoi(testing::ReadFile(scratch_.path() + "/child.pid"));
  EXPECT_TRUE(ProcessGone(child));
  ExpectNoProcessLeft();
}

TEST_F(WorkerClusterTest, ACoordinatorRestartWhileAnAttemptRunsRecordsItOnce) {
  const std::string id = Submit("gate");
  ASSERT_TRUE(PollUntil([&] {
    const v1::PipelineStatus p = Get(id);
    return p.stages_size() == 1 && p.stages(0).attempts_size() == 1 &&
           p.stages(0).attempts(0).state() == v1::ATTEMPT_RUNNING &&
           p.stages(0).progress().step() == 3;
  }));
  const std::string attempt_id = Get(id).stages(0).attempts(0).attempt_id();
  coordinator_->Shutdown();
  coordinator_.reset();
  // The stage finishes during the outage; its exit waits in the worker.
  std::ofstream(scratch_.path() + "/gate") << "go";
  ASSERT_TRUE(PollUntil([&] { return worker_->supervisor().ExitOf(attempt_id).has_value(); }));
  StartCoordinator();  // same port, same database
  const v1::PipelineStatus p = WaitFinal(id);
  EXPECT_EQ(p.state(), v1::PIPELINE_SUCCEEDED) << p.DebugString();
  ASSERT_EQ(p.stages(0).attempts_size(), 1);
  EXPECT_EQ(p.stages(0).attempts(0).attempt_id(), attempt_id);
  EXPECT_EQ(p.stages(0).attempts(0).state(), v1::ATTEMPT_SUCCEEDED);
  EXPECT_EQ(p.stages(0).outputs_size(), 1);
  ASSERT_TRUE(PollUntil([&] { return worker_->ActiveAttempts().empty(); }));
  EXPECT_EQ(launcher_->pids().size(), 1u);
  ExpectNoProcessLeft();
}

}  // namespace
}  // namespace align::worker
