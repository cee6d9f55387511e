// coordinator_bench: durable submits/s and submit latency (p50/p99) with 1, 16 and 64 concurrent
// gRPC clients against a real align-coordinator (SQLite file, synchronous=FULL), and assignment
// latency (stage ready -> worker told) with 200 simulated workers long-polling over gRPC.
// The reference, measured in the same run on the same disk, is the naive durable queue: one
// SQLite INSERT per fsynced transaction from one thread.
//
//   coordinator_bench [--seconds=3] [--workers=200] [--pipelines=600] [--dir=/tmp]
#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <filesystem>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/strings/match.h"
#include "absl/strings/strip.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "align/v1/coordinator.grpc.pb.h"
#include "align/v1/worker.grpc.pb.h"
#include "common/logging.h"
#include "coordinator/coordinator_server.h"

namespace {

using align::coordinator::CoordinatorOptions;
using align::coordinator::CoordinatorServer;
namespace v1 = align::v1;

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t i = std::min(v.size() - 1, static_cast<size_t>(p * (v.size() - 1) + 0.5));
  return v[i];
}

v1::PipelineSpec Spec(const std::string& name) {
  v1::PipelineSpec spec;
  spec.set_api_version("align/v1");
  spec.set_kind("Pipeline");
  spec.mutable_metadata()->set_name(name);
  spec.mutable_defaults()->set_model("data://models/stories260K");
  v1::StageSpec* sft = spec.add_stages();
  sft->set_name("sft");
  sft->set_type(v1::SFT);
  sft->add_data()->set_path("data://datasets/oasst/en_100_tree.jsonl");
  return spec;
}

std::string TempDir(const std::string& base) {
  std::string tmpl = base + "/align-bench-XXXXXX";
  return mkdtemp(tmpl.data());
}

// Reference: one INSERT per durable transaction, one thread.
double ReferenceInsertsPerSecond(const std::string& dir, double seconds) {
  sqlite3* db = nullptr;
  sqlite3_open((dir + "/reference.db").c_str(), &db);
  sqlite3_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; CREATE TABLE q(id INTEGER "
               "PRIMARY KEY, body BLOB)", nullptr, nullptr, nullptr);
  sqlite3_stmt* st = nullptr;
  sqlite3_prepare_v2(db, "INSERT INTO q(body) VALUES(?)", -1, &st, nullptr);
  const std::string body(600, 'x');  // about the size of a small stored pipeline
  const absl::Time end = absl::Now() + absl::Seconds(seconds);
  const absl::Time start = absl::Now();
  int64_t n = 0;
  while (absl::Now() < end) {
    sqlite3_exec(db, "BEGIN", nullptr, nullptr, nullptr);
    sqlite3_bind_blob(st, 1, body.data(), static_cast<int>(body.size()), SQLITE_STATIC);
    sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr);
    ++n;
  }
  const double rate = n / absl::ToDoubleSeconds(absl::Now() - start);
  sqlite3_finalize(st);
  sqlite3_close(db);
  return rate;
}

struct SubmitResult {
  double per_second = 0;
  double p50_ms = 0;
  double p99_ms = 0;
  int64_t errors = 0;
};

SubmitResult RunSubmits(const std::string& address, int clients, double seconds) {
  auto channel_args = grpc::ChannelArguments();
  std::vector<std::vector<double>> latencies(clients);
  std::atomic<int64_t> errors{0};
  std::vector<std::thread> threads;
  const absl::Time start = absl::Now();
  const absl::Time end = start + absl::Seconds(seconds);
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&, c] {
      // A channel per 8 clients, like separate client processes sharing a host.
      grpc::ChannelArguments args;
      args.SetInt("align.bench.channel", c / 8);
      auto channel = grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
      auto stub = v1::CoordinatorService::NewStub(channel);
      int i = 0;
      while (absl::Now() < end) {
        v1::SubmitPipelineRequest req;
        *req.mutable_spec() = Spec(absl::StrCat("bench-", c, "-", i));
        req.set_client_request_id(absl::StrCat(clients, "-", c, "-", i++));
        v1::SubmitPipelineResponse resp;
        grpc::ClientContext ctx;
        const absl::Time t0 = absl::Now();
        grpc::Status s = stub->SubmitPipeline(&ctx, req, &resp);
        latencies[c].push_back(absl::ToDoubleMilliseconds(absl::Now() - t0));
        if (!s.ok()) ++errors;
      }
    });
  }
  for (auto& t : threads) t.join();
  const double elapsed = absl::ToDoubleSeconds(absl::Now() - start);
  std::vector<double> all;
  for (auto& l : latencies) all.insert(all.end(), l.begin(), l.end());
  SubmitResult r;
  r.per_second = (all.size() - errors) / elapsed;
  r.p50_ms = Percentile(all, 0.5);
  r.p99_ms = Percentile(all, 0.99);
  r.errors = errors;
  return r;
}

struct AssignResult {
  double p50_ms = 0;
  double p99_ms = 0;
  int told = 0;
  int submitted = 0;
};

AssignResult RunAssignments(const std::string& address, int workers, int pipelines) {
  auto channel = grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
  auto wstub = v1::WorkerService::NewStub(channel);
  for (int w = 0; w < workers; ++w) {
    v1::RegisterWorkerRequest r;
    r.set_worker_id(absl::StrCat("sim-", w));
    r.set_incarnation(w + 1);
    r.mutable_inventory()->set_cpu_slots(1);
    v1::RegisterWorkerResponse resp;
    grpc::ClientContext ctx;
    wstub->RegisterWorker(&ctx, r, &resp);
  }
  std::mutex mu;
  std::map<std::string, absl::Time> told_at;  // pipeline id -> when its worker got it
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  for (int w = 0; w < workers; ++w) {
    threads.emplace_back([&, w] {
      auto stub = v1::WorkerService::NewStub(channel);
      while (!stop.load()) {
        v1::PollAssignmentsRequest r;
        r.set_worker_id(absl::StrCat("sim-", w));
        r.set_incarnation(w + 1);
        r.set_wait_ms(500);
        v1::PollAssignmentsResponse resp;
        grpc::ClientContext ctx;
        if (!stub->PollAssignments(&ctx, r, &resp).ok()) continue;
        const absl::Time now = absl::Now();
        for (const v1::Assignment& a : resp.assignments()) {
          {
            std::lock_guard<std::mutex> lock(mu);
            told_at[a.pipeline_id()] = now;
          }
          v1::ReportAttemptRequest rep;
          rep.set_worker_id(absl::StrCat("sim-", w));
          rep.set_incarnation(w + 1);
          rep.set_attempt_id(a.attempt_id());
          rep.set_report_id(a.attempt_id());
          rep.add_artifacts()->set_name("model");
          rep.mutable_artifacts(0)->set_uri("file:///bench/" + a.attempt_id());
          rep.mutable_exit()->set_state(v1::ATTEMPT_SUCCEEDED);
          v1::ReportAttemptResponse rr;
          grpc::ClientContext rctx;
          stub->ReportAttempt(&rctx, rep, &rr);
        }
      }
    });
  }
  auto ustub = v1::CoordinatorService::NewStub(channel);
  std::map<std::string, absl::Time> ready_at;
  for (int i = 0; i < pipelines; ++i) {
    v1::SubmitPipelineRequest req;
    *req.mutable_spec() = Spec(absl::StrCat("assign-", i));
    req.set_no_cache(true);
    v1::SubmitPipelineResponse resp;
    grpc::ClientContext ctx;
    const absl::Time t0 = absl::Now();  // the stage is ready once the submit commits: an upper bound
    if (ustub->SubmitPipeline(&ctx, req, &resp).ok()) ready_at[resp.pipeline_id()] = t0;
    absl::SleepFor(absl::Milliseconds(2));  // ~400 stages/s arriving
  }
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  while (absl::Now() < deadline) {
    std::lock_guard<std::mutex> lock(mu);
    if (told_at.size() >= ready_at.size()) break;
  }
  stop = true;
  for (auto& t : threads) t.join();
  std::vector<double> lat;
  for (const auto& [id, t] : ready_at) {
    auto it = told_at.find(id);
    if (it != told_at.end()) lat.push_back(absl::ToDoubleMilliseconds(it->second - t));
  }
  AssignResult r;
  r.p50_ms = Percentile(lat, 0.5);
  r.p99_ms = Percentile(lat, 0.99);
  r.told = static_cast<int>(lat.size());
  r.submitted = static_cast<int>(ready_at.size());
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  double seconds = 3;
  int workers = 200, pipelines = 600;
  std::string base = std::filesystem::temp_directory_path().string();
  for (int i = 1; i < argc; ++i) {
    absl::string_view a = argv[i];
    if (absl::ConsumePrefix(&a, "--seconds=")) (void)absl::SimpleAtod(a, &seconds);
    else if (absl::ConsumePrefix(&a, "--workers=")) (void)absl::SimpleAtoi(a, &workers);
    else if (absl::ConsumePrefix(&a, "--pipelines=")) (void)absl::SimpleAtoi(a, &pipelines);
    else if (absl::ConsumePrefix(&a, "--dir=")) base = std::string(a);
    else {
      std::fprintf(stderr, "usage: coordinator_bench [--seconds=3] [--workers=200] [--pipelines=600] [--dir=/tmp]\n");
      return 2;
    }
  }
  align::SetMinLogLevel(align::LogLevel::kWarning);
  const std::string dir = TempDir(base);
  const double reference = ReferenceInsertsPerSecond(dir, seconds);
  std::printf("reference: naive durable queue (1 INSERT per fsynced SQLite txn, 1 thread): %.0f/s\n",
              reference);

  CoordinatorOptions options;
  options.listen_address = "127.0.0.1:0";
  options.db_path = dir + "/align.db";
  options.artifact_root = dir + "/artifacts";
  auto server = CoordinatorServer::Start(options);
  if (!server.ok()) {
    std::fprintf(stderr, "start: %s\n", server.status().ToString().c_str());
    return 1;
  }
  const std::string address = (*server)->address();
  std::printf("\n%-8s %12s %10s %10s %8s %12s\n", "clients", "submits/s", "p50 ms", "p99 ms",
              "errors", "vs reference");
  for (int clients : {1, 16, 64}) {
    SubmitResult r = RunSubmits(address, clients, seconds);
    std::printf("%-8d %12.0f %10.2f %10.2f %8lld %11.2fx\n", clients, r.per_second, r.p50_ms,
                r.p99_ms, static_cast<long long>(r.errors), r.per_second / reference);
  }
  (*server)->Shutdown();
  server->reset();

  // Assignment latency on a fresh database with 200 workers.
  options.db_path = dir + "/assign.db";
  server = CoordinatorServer::Start(options);
  if (!server.ok()) return 1;
  AssignResult a = RunAssignments((*server)->address(), workers, pipelines);
  std::printf("\nassignment latency (submit -> worker told), %d workers, %d/%d stages: p50 %.2f ms, "
              "p99 %.2f ms (goal p99 < 50 ms)\n",
              workers, a.told, a.submitted, a.p50_ms, a.p99_ms);
  (*server)->Shutdown();
  std::filesystem::remove_all(dir);
  return 0;
}
