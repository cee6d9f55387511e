// The real gRPC server on port 0 with fake workers speaking WorkerService over the wire. Time is a
// FakeClock driven by the test; the server's own ticker applies it. Waiting for the server uses
// polling with a generous deadline (never a fixed sleep).
#include "coordinator/coordinator_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <thread>

#include <grpcpp/grpcpp.h>

#include "absl/strings/match.h"
#include "align/v1/coordinator.grpc.pb.h"
#include "align/v1/worker.grpc.pb.h"
#include "common/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/coordinator/test_util.h"

namespace align::coordinator {
namespace {

using ::testing::HasSubstr;

bool Eventually(const std::function<bool()>& cond, absl::Duration limit = absl::Seconds(20)) {
  const absl::Time deadline = absl::Now() + limit;
  while (absl::Now() < deadline) {
    if (cond()) return true;
    absl::SleepFor(absl::Milliseconds(10));
  }
  return cond();
}

std::string HttpGet(int port, const std::string& path) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return "";
  }
  const std::string req = "GET " + path + " HTTP/1.0\r\nHost: localhost\r\n\r\n";
  (void)write(fd, req.data(), req.size());
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = read(fd, buf, sizeof(buf))) > 0) out.append(buf, n);
  close(fd);
  return out;
}

class ServerTest : public ::testing::Test {
 protected:
  ServerTest() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "align-server-XXXXXX").string();
    dir_ = mkdtemp(tmpl.data());
  }
  ~ServerTest() override {
    if (server_) server_->Shutdown();
    std::filesystem::remove_all(dir_);
  }
  void Start(CoordinatorOptions options = {}) {
    if (server_) server_->Shutdown();
    server_.reset();
    options.clock = &clock_;
    options.tick_interval = absl::Milliseconds(20);
    if (options.db_path == ":memory:") options.db_path = dir_ + "/align.db";
    options.artifact_root = dir_ + "/artifacts";
    auto s = CoordinatorServer::Start(options);
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = std::move(*s);
    channel_ = grpc::CreateChannel(server_->address(), grpc::InsecureChannelCredentials());
    users_ = v1::CoordinatorService::NewStub(channel_);
    workers_ = v1::WorkerService::NewStub(channel_);
  }
  std::unique_ptr<grpc::ClientContext> Ctx(const std::string& token = "") {
    auto ctx = std::make_unique<grpc::ClientContext>();
    ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    if (!token.empty()) ctx->AddMetadata("authorization", "Bearer " + token);
    return ctx;
  }
  v1::PipelineStatus Get(const std::string& id) {
    v1::GetPipelineRequest r;
    r.set_pipeline_id(id);
    v1::PipelineStatus out;
    grpc::Status s = users_->GetPipeline(Ctx(token_).get(), r, &out);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return out;
  }
  v1::RegisterWorkerRequest Inventory(const std::string& id, int64_t incarnation) {
    v1::RegisterWorkerRequest r;
    r.set_worker_id(id);
    r.set_incarnation(incarnation);
    r.mutable_inventory()->set_cpu_slots(2);
    r.mutable_inventory()->set_address("127.0.0.1");
    return r;
  }
  std::string Submit(const v1::PipelineSpec& spec) {
    v1::SubmitPipelineResponse resp;
    grpc::Status s = users_->SubmitPipeline(Ctx(token_).get(), testing::Submit(spec), &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return resp.pipeline_id();
  }
  std::vector<v1::Assignment> LongPoll(const std::string& worker, int64_t incarnation) {
    v1::PollAssignmentsRequest r;
    r.set_worker_id(worker);
    r.set_incarnation(incarnation);
    r.set_wait_ms(10'000);
    v1::PollAssignmentsResponse resp;
    grpc::Status s = workers_->PollAssignments(Ctx(worker_token_).get(), r, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return {resp.assignments().begin(), resp.assignments().end()};
  }

  std::string dir_;
  FakeClock clock_;
  std::unique_ptr<CoordinatorServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::CoordinatorService::Stub> users_;
  std::unique_ptr<v1::WorkerService::Stub> workers_;
  std::string token_;
  std::string worker_token_;
};

TEST_F(ServerTest, PipelineRunsThroughFakeWorkerAndWatchStreamEnds) {
  CoordinatorOptions options;
  options.metrics_listen_address = "127.0.0.1:0";
  Start(options);
  v1::RegisterWorkerResponse reg;
  ASSERT_TRUE(workers_->RegisterWorker(Ctx().get(), Inventory("w1", 5), &reg).ok());
  EXPECT_EQ(reg.lease_timeout_ms(), 30000);

  // The worker long-polls before there is work: the submit wakes it.
  std::vector<v1::Assignment> got;
  std::thread poller([&] { got = LongPoll("w1", 5); });
  const std::string id = Submit(testing::SftSpec("served"));
  poller.join();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].pipeline_id(), id);
  EXPECT_EQ(got[0].job().output_dir(), dir_ + "/artifacts/" + id + "/sft/");

  v1::ReportAttemptRequest report;
  report.set_worker_id("w1");
  report.set_incarnation(5);
  report.set_attempt_id(got[0].attempt_id());
  report.set_report_id("exit-1");
  report.add_artifacts()->set_name("model");
  report.mutable_artifacts(0)->set_uri("file://" + dir_ + "/artifacts/" + id + "/sft/model");
  report.mutable_exit()->set_state(v1::ATTEMPT_SUCCEEDED);
  v1::ReportAttemptResponse rr;
  ASSERT_TRUE(workers_->ReportAttempt(Ctx().get(), report, &rr).ok());
  EXPECT_TRUE(rr.accepted());

  // WatchPipeline streams every event from the start and ends with the pipeline.
  v1::WatchPipelineRequest watch;
  watch.set_pipeline_id(id);
  auto ctx = Ctx();
  auto reader = users_->WatchPipeline(ctx.get(), watch);
  std::vector<v1::Event> events;
  v1::Event e;
  while (reader->Read(&e)) events.push_back(e);
  ASSERT_TRUE(reader->Finish().ok());
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.back().type(), v1::PIPELINE_STATE_CHANGED);
  EXPECT_EQ(events.back().pipeline_state(), v1::PIPELINE_SUCCEEDED);
  for (size_t i = 1; i < events.size(); ++i) EXPECT_LT(events[i - 1].sequence(), events[i].sequence());

  v1::ListWorkersResponse lw;
  ASSERT_TRUE(users_->ListWorkers(Ctx().get(), {}, &lw).ok());
  ASSERT_EQ(lw.workers_size(), 1);
  EXPECT_EQ(lw.workers(0).free_cpu_slots(), 2);

  std::string metrics;
  // Gauges refresh every 500 ms.
  EXPECT_TRUE(Eventually([&] {
    metrics = HttpGet(server_->metrics_port(), "/metrics");
    return absl::StrContains(metrics, "align_pipelines{state=\"PIPELINE_SUCCEEDED\"} 1");
  }));
  EXPECT_THAT(metrics, HasSubstr("align_rpcs_total{code=\"OK\",method=\"SubmitPipeline\"} 1"));
  EXPECT_THAT(metrics, HasSubstr("align_assignment_latency_seconds_count 1"));
}

TEST_F(ServerTest, KilledWorkerLosesLeaseAndStageRunsElsewhere) {
  Start();
  v1::RegisterWorkerResponse reg;
  ASSERT_TRUE(workers_->RegisterWorker(Ctx().get(), Inventory("w1", 1), &reg).ok());
  const std::string id = Submit(testing::SftSpec("killed"));
  auto got = LongPoll("w1", 1);
  ASSERT_EQ(got.size(), 1u);
  // w1 is SIGKILLed (it just stops talking); w2 joins and heartbeats.
  ASSERT_TRUE(workers_->RegisterWorker(Ctx().get(), Inventory("w2", 2), &reg).ok());
  v1::HeartbeatRequest hb;
  hb.set_worker_id("w2");
  hb.set_incarnation(2);
  v1::HeartbeatResponse hr;
  // Fake time moves in 1 s steps while w2 keeps heartbeating, until the stage is re-placed.
  ASSERT_TRUE(Eventually([&] {
    clock_.Advance(absl::Seconds(1));
    EXPECT_TRUE(workers_->Heartbeat(Ctx().get(), hb, &hr).ok());
    const v1::StageStatus s = testing::StageOf(Get(id), "sft");
    return s.attempts_size() == 2;
  }));
  const v1::StageStatus s = testing::StageOf(Get(id), "sft");
  EXPECT_EQ(s.attempts(0).state(), v1::ATTEMPT_FAILED);
  EXPECT_EQ(s.attempts(0).failure_class(), v1::INFRASTRUCTURE);
  EXPECT_EQ(s.attempts(1).worker_id(), "w2");
  got = LongPoll("w2", 2);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].attempt_id(), s.attempts(1).attempt_id());
}

TEST_F(ServerTest, CoordinatorRestartReattachesTheRunningAttempt) {
  Start();
  v1::RegisterWorkerResponse reg;
  ASSERT_TRUE(workers_->RegisterWorker(Ctx().get(), Inventory("w1", 9), &reg).ok());
  const std::string id = Submit(testing::SftSpec("restart"));
  auto got = LongPoll("w1", 9);
  ASSERT_EQ(got.size(), 1u);
  const std::string attempt = got[0].attempt_id();
  Start();  // same database file, new process life, new port
  v1::HeartbeatRequest hb;
  hb.set_worker_id("w1");
  hb.set_incarnation(9);
  hb.add_running()->set_attempt_id(attempt);
  v1::HeartbeatResponse hr;
  ASSERT_TRUE(workers_->Heartbeat(Ctx().get(), hb, &hr).ok());
  EXPECT_TRUE(hr.reregister());  // the new coordinator asks for the running list
  v1::RegisterWorkerRequest again = Inventory("w1", 9);
  again.add_running()->set_attempt_id(attempt);
  ASSERT_TRUE(workers_->RegisterWorker(Ctx().get(), again, &reg).ok());
  EXPECT_EQ(reg.cancel_attempts_size(), 0);
  // Past the recovery grace, heartbeating every 10 s (well inside the 30 s lease).
  for (int i = 0; i < 4; ++i) {
    clock_.Advance(absl::Seconds(10));
    ASSERT_TRUE(workers_->Heartbeat(Ctx().get(), hb, &hr).ok());
    EXPECT_EQ(hr.cancel_attempts_size(), 0);
  }
  const v1::StageStatus s = testing::StageOf(Get(id), "sft");
  ASSERT_EQ(s.attempts_size(), 1);
  EXPECT_EQ(s.attempts(0).state(), v1::ATTEMPT_RUNNING);
}

TEST_F(ServerTest, BearerTokensSeparateUsersAndWorkers) {
  const std::string file = dir_ + "/tokens";
  std::ofstream(file) << "# role token name\nuser user-token-0123456789 alice\n"
                         "worker worker-token-0123456789\n";
  CoordinatorOptions options;
  options.token_file = file;
  Start(options);
  v1::ListPipelinesResponse lp;
  EXPECT_EQ(users_->ListPipelines(Ctx().get(), {}, &lp).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(users_->ListPipelines(Ctx("wrong-token-0123456789").get(), {}, &lp).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(users_->ListPipelines(Ctx("worker-token-0123456789").get(), {}, &lp).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_TRUE(users_->ListPipelines(Ctx("user-token-0123456789").get(), {}, &lp).ok());
  v1::RegisterWorkerResponse reg;
  EXPECT_EQ(workers_->RegisterWorker(Ctx("user-token-0123456789").get(), Inventory("w", 1), &reg).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_TRUE(workers_->RegisterWorker(Ctx("worker-token-0123456789").get(), Inventory("w", 1), &reg).ok());
  // The submitter's name is recorded.
  token_ = "user-token-0123456789";
  const std::string id = Submit(testing::SftSpec());
  EXPECT_EQ(Get(id).submitted_by(), "alice");
}

TEST_F(ServerTest, TlsServesClientsThatTrustTheCertificate) {
  const std::string cert = dir_ + "/cert.pem", key = dir_ + "/key.pem";
  const std::string cmd = "openssl req -x509 -newkey rsa:2048 -nodes -keyout " + key + " -out " +
                          cert + " -days 1 -subj /CN=localhost -addext "
                          "subjectAltName=DNS:localhost,IP:127.0.0.1 >/dev/null 2>&1";
  if (std::system(cmd.c_str()) != 0) GTEST_SKIP() << "no openssl binary to make a test certificate";
  CoordinatorOptions options;
  options.tls_cert_file = cert;
  options.tls_key_file = key;
  Start(options);
  std::ifstream in(cert);
  std::stringstream pem;
  pem << in.rdbuf();
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = pem.str();
  auto secure = v1::CoordinatorService::NewStub(grpc::CreateChannel(
      "localhost:" + std::to_string(server_->port()), grpc::SslCredentials(ssl)));
  v1::ListPipelinesResponse lp;
  EXPECT_TRUE(secure->ListPipelines(Ctx().get(), {}, &lp).ok());
  // A plaintext client cannot talk to it.
  EXPECT_FALSE(users_->ListPipelines(Ctx().get(), {}, &lp).ok());
}

TEST_F(ServerTest, OversizedRequestIsRefused) {
  CoordinatorOptions options;
  options.max_request_bytes = 64 << 10;
  Start(options);
  v1::SubmitPipelineRequest req = testing::Submit(testing::SftSpec());
  req.set_source_yaml(std::string(100 << 10, 'x'));
  v1::SubmitPipelineResponse resp;
  EXPECT_EQ(users_->SubmitPipeline(Ctx().get(), req, &resp).error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
}

TEST_F(ServerTest, InvalidSpecErrorReachesTheClient) {
  Start();
  v1::PipelineSpec spec = testing::SftSpec();
  spec.mutable_metadata()->clear_name();
  v1::SubmitPipelineResponse resp;
  grpc::Status s = users_->SubmitPipeline(Ctx().get(), testing::Submit(spec), &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("metadata.name"));
}

}  // namespace
}  // namespace align::coordinator
