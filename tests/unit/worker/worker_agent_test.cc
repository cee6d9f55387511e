// WorkerAgent against an in-test WorkerService on 127.0.0.1:0: registration (with backoff while
// the coordinator refuses), assignments run to a reported exit, cancels from heartbeats, reports
// buffered through an outage and replayed with the same report_id, and shutdown.
#include "worker/worker_agent.h"

#include <grpcpp/grpcpp.h>

#include <set>

#include "align/v1/worker.grpc.pb.h"
#include "common/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/worker/test_util.h"

namespace align::worker {
namespace {

using ::testing::HasSubstr;
using testing::FakeTrainPath;
using testing::PollUntil;
using testing::ProcessGone;

class FakeWorkerService final : public v1::WorkerService::Service {
 public:
  grpc::Status RegisterWorker(grpc::ServerContext* ctx, const v1::RegisterWorkerRequest* req,
                              v1::RegisterWorkerResponse* resp) override {
    absl::MutexLock lock(&mu_);
    if (down_) return grpc::Status(grpc::StatusCode::UNAVAILABLE, "down");
    registrations_.push_back(*req);
    auto it = ctx->client_metadata().find("authorization");
    if (it != ctx->client_metadata().end()) {
      auth_ = std::string(it->second.data(), it->second.size());
    }
    resp->set_heartbeat_interval_ms(20);
    resp->set_lease_timeout_ms(1000);
    return grpc::Status::OK;
  }
  grpc::Status Heartbeat(grpc::ServerContext*, const v1::HeartbeatRequest* req,
                         v1::HeartbeatResponse* resp) override {
    absl::MutexLock lock(&mu_);
    if (down_) return grpc::Status(grpc::StatusCode::UNAVAILABLE, "down");
    ++heartbeats_;
    for (const auto& id : cancel_) resp->add_cancel_attempts(id);
    return grpc::Status::OK;
  }
  grpc::Status PollAssignments(grpc::ServerContext*, const v1::PollAssignmentsRequest* req,
                               v1::PollAssignmentsResponse* resp) override {
    absl::MutexLock lock(&mu_);
    auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !queue_.empty(); };
    mu_.AwaitWithTimeout(absl::Condition(&ready), absl::Milliseconds(100));
    if (down_) return grpc::Status(grpc::StatusCode::UNAVAILABLE, "down");
    for (auto& a : queue_) *resp->add_assignments() = a;
    queue_.clear();
    return grpc::Status::OK;
  }
  grpc::Status ReportAttempt(grpc::ServerContext*, const v1::ReportAttemptRequest* req,
                             v1::ReportAttemptResponse* resp) override {
    absl::MutexLock lock(&mu_);
    if (down_) return grpc::Status(grpc::StatusCode::UNAVAILABLE, "down");
    ++report_calls_;
    if (reject_) {
      ++rejected_;
      resp->set_accepted(false);
      resp->set_cancel(true);
      return grpc::Status::OK;
    }
    resp->set_accepted(true);
    if (!seen_report_ids_.insert(req->report_id()).second) return grpc::Status::OK;  // replay
    reports_.push_back(*req);
    if (req->has_exit()) exits_[req->attempt_id()].push_back(req->exit());
    return grpc::Status::OK;
  }
  grpc::Status Rendezvous(grpc::ServerContext*, const v1::RendezvousRequest*,
                          v1::RendezvousResponse*) override {
    return grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "");
  }

  void Assign(v1::Assignment a) {
    absl::MutexLock lock(&mu_);
    queue_.push_back(std::move(a));
  }
  void RejectReports() {
    absl::MutexLock lock(&mu_);
    reject_ = true;
  }
  int rejected() {
    absl::MutexLock lock(&mu_);
    return rejected_;
  }
  void SetDown(bool down) {
    absl::MutexLock lock(&mu_);
    down_ = down;
  }
  void CancelViaHeartbeat(const std::string& id) {
    absl::MutexLock lock(&mu_);
    cancel_.push_back(id);
  }
  std::vector<v1::AttemptExit> Exits(const std::string& id) {
    absl::MutexLock lock(&mu_);
    return exits_[id];
  }
  std::vector<v1::RegisterWorkerRequest> Registrations() {
    absl::MutexLock lock(&mu_);
    return registrations_;
  }
  std::vector<v1::ReportAttemptRequest> Reports() {
    absl::MutexLock lock(&mu_);
    return reports_;
  }
  int heartbeats() {
    absl::MutexLock lock(&mu_);
    return heartbeats_;
  }
  std::string auth() {
    absl::MutexLock lock(&mu_);
    return auth_;
  }

 private:
  absl::Mutex mu_;
  bool down_ ABSL_GUARDED_BY(mu_) = false;
  bool reject_ ABSL_GUARDED_BY(mu_) = false;
  int rejected_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<v1::RegisterWorkerRequest> registrations_ ABSL_GUARDED_BY(mu_);
  int heartbeats_ ABSL_GUARDED_BY(mu_) = 0;
  int report_calls_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<v1::Assignment> queue_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> cancel_ ABSL_GUARDED_BY(mu_);
  std::set<std::string> seen_report_ids_ ABSL_GUARDED_BY(mu_);
  std::vector<v1::ReportAttemptRequest> reports_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::vector<v1::AttemptExit>> exits_ ABSL_GUARDED_BY(mu_);
  std::string auth_ ABSL_GUARDED_BY(mu_);
};

class WorkerAgentTest : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    builder.RegisterService(&service_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
  }
  void TearDown() override {
    if (agent_) agent_->Shutdown();
    server_->Shutdown(std::chrono::system_clock::now());
  }

  WorkerOptions Options(std::vector<std::string> args) {
    WorkerOptions o;
    o.coordinator_address = absl::StrCat("127.0.0.1:", port_);
    o.token = "s3cret";
    o.worker_id = "gpu-host-7";
    o.labels = {{"zone", "a"}};
    o.cpu_slots = 3;
    o.artifact_root = scratch_.path() + "/artifacts";
    o.work_root = scratch_.path() + "/work";
    o.align_train_path = FakeTrainPath();
    o.align_train_args = std::move(args);
    o.launcher = launcher_;
    v1::GpuInfo gpu;
    gpu.set_index(0);
    gpu.set_uuid("GPU-1234");
    gpu.set_model("NVIDIA H200");
    gpu.set_memory_total_bytes(int64_t{141} << 30);
    o.gpu_probe = std::make_shared<StaticGpuProbe>(std::vector<v1::GpuInfo>{gpu});
    o.supervise_interval = absl::Milliseconds(5);
    o.poll_wait = absl::Milliseconds(100);
    o.rpc_timeout = absl::Seconds(5);
    o.backoff_initial = absl::Milliseconds(5);
    o.backoff_max = absl::Milliseconds(50);
    o.heartbeat_interval = absl::Milliseconds(20);
    o.supervisor.kill_grace = absl::Seconds(5);
    return o;
  }

  static v1::Assignment Assignment(const std::string& id) {
    v1::Assignment a;
    a.set_attempt_id(id);
    a.set_pipeline_id("p-9");
    a.set_stage("dpo");
    a.set_world_size(1);
    a.add_ranks(0);
    return a;
  }

  void ExpectNoProcessLeft() {
    for (pid_t pid : launcher_->pids()) {
      EXPECT_THAT(ListProcessGroup(pid), ::testing::IsEmpty()) << "process group " << pid;
      EXPECT_TRUE(ProcessGone(pid)) << pid;
    }
  }

  testing::ScratchDir scratch_;
  std::shared_ptr<testing::RecordingLauncher> launcher_ =
      std::make_shared<testing::RecordingLauncher>();
  FakeWorkerService service_;
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<WorkerAgent> agent_;
};

TEST_F(WorkerAgentTest, RegistersWithItsInventoryOnceTheCoordinatorAnswers) {
  service_.SetDown(true);
  ASSERT_OK_AND_ASSIGN(agent_, WorkerAgent::Start(Options({})));
  // Refused registrations are retried with backoff; none succeeds while the service is down.
  EXPECT_FALSE(agent_->registered());
  service_.SetDown(false);
  ASSERT_TRUE(PollUntil([&] { return agent_->registered(); }));
  const auto regs = service_.Registrations();
  ASSERT_EQ(regs.size(), 1u);
  const v1::RegisterWorkerRequest& r = regs[0];
  EXPECT_EQ(r.worker_id(), "gpu-host-7");
  EXPECT_EQ(r.incarnation(), agent_->incarnation());
  EXPECT_GT(r.incarnation(), 0);
  EXPECT_EQ(r.inventory().cpu_slots(), 3);
  EXPECT_EQ(r.inventory().labels().at("zone"), "a");
  ASSERT_EQ(r.inventory().gpus_size(), 1);
  EXPECT_EQ(r.inventory().gpus(0).model(), "NVIDIA H200");
  EXPECT_EQ(r.inventory().gpus(0).uuid(), "GPU-1234");
  EXPECT_EQ(r.inventory().artifact_root(), scratch_.path() + "/artifacts");
  EXPECT_EQ(service_.auth(), "Bearer s3cret");
  ASSERT_TRUE(PollUntil([&] { return service_.heartbeats() >= 2; }));
}

TEST_F(WorkerAgentTest, AnAssignmentRunsAndItsExitIsReportedOnce) {
  ASSERT_OK_AND_ASSIGN(agent_, WorkerAgent::Start(Options({"--mode", "succeed"})));
  service_.Assign(Assignment("a-1"));
  ASSERT_TRUE(PollUntil([&] { return !service_.Exits("a-1").empty(); }));
  const auto exits = service_.Exits("a-1");
  ASSERT_EQ(exits.size(), 1u);
  EXPECT_EQ(exits[0].state(), v1::ATTEMPT_SUCCEEDED);
  ASSERT_TRUE(PollUntil([&] { return agent_->ActiveAttempts().empty(); }));
  int artifacts = 0;
  for (const auto& r : service_.Reports()) {
    EXPECT_EQ(r.worker_id(), "gpu-host-7");
    EXPECT_EQ(r.incarnation(), agent_->incarnation());
    artifacts += r.artifacts_size();
  }
  EXPECT_EQ(artifacts, 1);
  ExpectNoProcessLeft();
}

TEST_F(WorkerAgentTest, ACancelFromAHeartbeatStopsTheAttempt) {
  ASSERT_OK_AND_ASSIGN(agent_, WorkerAgent::Start(Options({"--mode", "run"})));
  service_.Assign(Assignment("a-2"));
  ASSERT_TRUE(PollUntil([&] { return !agent_->ActiveAttempts().empty(); }));
  service_.CancelViaHeartbeat("a-2");
  ASSERT_TRUE(PollUntil([&] { return !service_.Exits("a-2").empty(); }));
  const auto exits = service_.Exits("a-2");
  EXPECT_EQ(exits[0].state(), v1::ATTEMPT_CANCELLED);
  EXPECT_EQ(exits[0].failure_class(), v1::CANCELLED_BY_USER);
  ExpectNoProcessLeft();
}

TEST_F(WorkerAgentTest, ReportsAreBufferedThroughAnOutageAndReplayedOnce) {
  const std::string gate = scratch_.path() + "/gate";
  ASSERT_OK_AND_ASSIGN(agent_, WorkerAgent::Start(Options({"--mode", "gate", "--gate", gate})));
  service_.Assign(Assignment("a-3"));
  ASSERT_TRUE(PollUntil([&] { return !agent_->ActiveAttempts().empty(); }));
  service_.SetDown(true);
  // The stage finishes while the coordinator is down: the exit waits in the worker.
  std::ofstream(gate) << "go";
  ASSERT_TRUE(PollUntil([&] { return agent_->supervisor().ExitOf("a-3").has_value(); }));
  ASSERT_TRUE(PollUntil([&] { return agent_->BufferedReports() > 0; }));
  EXPECT_TRUE(service_.Exits("a-3").empty());
  service_.SetDown(false);
  ASSERT_TRUE(PollUntil([&] { return agent_->ActiveAttempts().empty(); }));
  const auto exits = service_.Exits("a-3");
  ASSERT_EQ(exits.size(), 1u);
  EXPECT_EQ(exits[0].state(), v1::ATTEMPT_SUCCEEDED);
  EXPECT_EQ(agent_->BufferedReports(), 0);
  ExpectNoProcessLeft();
}

TEST_F(WorkerAgentTest, AnAttemptWhoseReportsAreRefusedTwiceIsStopped) {
  ASSERT_OK_AND_ASSIGN(agent_, WorkerAgent::Start(Options({"--mode", "run"})));
  ASSERT_TRUE(PollUntil([&] { return agent_->registered(); }));
  service_.RejectReports();
  service_.Assign(Assignment("a-5"));
  // First refusal: the worker registers again (the coordinator may have restarted); second
  // refusal after that: the attempt is given up and its ranks are killed.
  ASSERT_TRUE(PollUntil([&] { return service_.rejected() >= 2; }));
  ASSERT_TRUE(PollUntil([&] { return agent_->ActiveAttempts().empty(); }));
  EXPECT_GE(service_.Registrations().size(), 2u);
  EXPECT_TRUE(service_.Exits("a-5").empty());
  ASSERT_EQ(launcher_->pids().size(), 1u);
  ExpectNoProcessLeft();
}

TEST_F(WorkerAgentTest, ShutdownStopsAttemptsAndReportsThemAsInfrastructureFailures) {
  ASSERT_OK_AND_ASSIGN(agent_, WorkerAgent::Start(Options({"--mode", "run"})));
  service_.Assign(Assignment("a-4"));
  ASSERT_TRUE(PollUntil([&] { return !agent_->ActiveAttempts().empty(); }));
  agent_->Shutdown();
  const auto exits = service_.Exits("a-4");
  ASSERT_EQ(exits.size(), 1u);
  EXPECT_EQ(exits[0].state(), v1::ATTEMPT_FAILED);
  EXPECT_EQ(exits[0].failure_class(), v1::INFRASTRUCTURE);
  EXPECT_EQ(exits[0].reason(), "the worker shut down");
  ExpectNoProcessLeft();
}

}  // namespace
}  // namespace align::worker
