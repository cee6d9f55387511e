// `alignctl run -f pipeline.yaml`: local mode. An embedded CoordinatorServer (SQLite in
// ./.align/align.db, artifacts under ./.align/artifacts) and an embedded WorkerAgent in this
// process, talking over loopback gRPC exactly as the daemons do. Resumable: the pipeline's client
// request id is derived from the spec, so running the same command again after Ctrl-C finds the
// stored pipeline and continues it (stages resume from their last checkpoint).
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "cli/commands/client_support.h"
#include "cli/commands/commands.h"
#include "cli/coordinator_client.h"
#include "cli/output.h"
#include "cli/progress.h"
#include "common/config/pipeline_config.h"
#include "common/ids.h"
#include "common/logging.h"
#include "coordinator/coordinator_server.h"
#include "worker/engine/data/jsonl.h"
#include "worker/worker_agent.h"

namespace align::cli {
namespace {

namespace fs = std::filesystem;

struct RunOptions {
  std::string file;
  std::vector<std::string> sets;
  std::string state_dir = ".align";
  std::string data_dir;
  std::string align_train;
  int cpu_slots = 0;
  bool no_cache = false;
  bool fresh = false;
  bool verbose = false;
  std::string report;
};

std::string Absolute(const std::string& p) {
  std::error_code ec;
  fs::path a = fs::absolute(p, ec);
  return ec ? p : a.lexically_normal().string();
}

// align-train beside alignctl (the build's bin/ or an install's bin/), else $ALIGN_TRAIN, else PATH.
std::string FindAlignTrain(const std::string& flag) {
  if (!flag.empty()) return Absolute(flag);
  if (const char* env = std::getenv("ALIGN_TRAIN"); env != nullptr && *env != '\0') return env;
  std::error_code ec;
  fs::path self = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    fs::path beside = self.parent_path() / "align-train";
    if (fs::exists(beside, ec)) return beside.string();
  }
  return "align-train";
}

// ALIGN_DATA_DIR, else ../shared/data when it exists (a clone beside the shared data).
std::string FindDataDir(const std::string& flag) {
  if (!flag.empty()) return Absolute(flag);
  if (const char* env = std::getenv("ALIGN_DATA_DIR"); env != nullptr && *env != '\0') {
    return Absolute(env);
  }
  std::error_code ec;
  if (fs::is_directory("../shared/data", ec)) return Absolute("../shared/data");
  return "";
}

// Ctrl-C and SIGTERM are received by one thread (sigwait) so that shutdown runs in order:
// worker first (stops align-train ranks, reports them), then the coordinator (ends the streams
// the progress view waits on). The worker's launcher resets the mask of the ranks it spawns.
class SignalWatcher {
 public:
  explicit SignalWatcher(std::function<void()> on_signal) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &set, &old_);
    thread_ = std::thread([this, set, on_signal = std::move(on_signal)] {
      int sig = 0;
      while (sigwait(&set, &sig) == 0) {
        if (sig == SIGUSR1 && done_.load()) return;
        if (sig == SIGINT || sig == SIGTERM) {
          interrupted_ = true;
          on_signal();
          return;
        }
      }
    });
  }
  ~SignalWatcher() {
    done_ = true;
    if (!interrupted_) pthread_kill(thread_.native_handle(), SIGUSR1);
    thread_.join();
    pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }
  bool interrupted() const { return interrupted_.load(); }

 private:
  sigset_t old_;
  std::atomic<bool> done_{false};
  std::atomic<bool> interrupted_{false};
  std::thread thread_;
};

int RunLocal(const RunOptions& o) {
  auto spec = config::LoadPipelineFile(o.file, o.sets);
  if (!spec.ok()) {
    Fail(spec.status());
    return 1;
  }
  std::ifstream in(o.file);
  std::stringstream source;
  source << in.rdbuf();

  const std::string state_dir = Absolute(o.state_dir);
  std::error_code ec;
  fs::create_directories(state_dir + "/artifacts", ec);
  fs::create_directories(state_dir + "/work", ec);
  fs::create_directories(state_dir + "/reports", ec);
  if (ec) {
    Fail(absl::PermissionDeniedError(
        absl::StrCat("cannot create ", state_dir, ": ", ec.message(), " (use --state-dir)")));
    return 1;
  }
  if (!o.verbose) SetMinLogLevel(LogLevel::kWarning);
  const std::string data_dir = FindDataDir(o.data_dir);

  std::atomic<bool> stop{false};
  std::unique_ptr<coordinator::CoordinatorServer> server;
  std::unique_ptr<worker::WorkerAgent> agent;
  std::mutex mu;  // guards server/agent against the signal thread during start-up
  auto shutdown_all = [&] {
    std::lock_guard<std::mutex> lock(mu);
    stop = true;
    std::fprintf(stderr, "\nalignctl: interrupted; stopping (run the same command again to resume)\n");
    if (agent != nullptr) agent->Shutdown();
    if (server != nullptr) server->Shutdown();
  };
  SignalWatcher signals(shutdown_all);

  {
    std::lock_guard<std::mutex> lock(mu);
    if (stop) return 130;
    coordinator::CoordinatorOptions copts;
    copts.listen_address = "127.0.0.1:0";
    copts.db_path = state_dir + "/align.db";
    copts.artifact_root = state_dir + "/artifacts";
    copts.data_dir = data_dir;
    // One process: a previous run's worker is gone for sure, so recover quickly.
    copts.lease_timeout = absl::Seconds(10);
    copts.recovery_grace = absl::Seconds(2);
    copts.heartbeat_interval = absl::Seconds(1);
    auto started = coordinator::CoordinatorServer::Start(copts);
    if (!started.ok()) {
      Fail(absl::Status(started.status().code(),
                        absl::StrCat("local coordinator (", copts.db_path,
                                     "): ", started.status().message())));
      return 1;
    }
    server = std::move(*started);

    worker::WorkerOptions wopts;
    wopts.coordinator_address = server->address();
    wopts.worker_id = "local";
    wopts.cpu_slots = o.cpu_slots;
    wopts.artifact_root = state_dir + "/artifacts";
    wopts.work_root = state_dir + "/work";
    wopts.align_train_path = FindAlignTrain(o.align_train);
    wopts.data_dir = data_dir;
    wopts.advertise_address = "127.0.0.1";
    wopts.heartbeat_interval = absl::Seconds(1);
    wopts.poll_wait = absl::Seconds(2);
    auto worker_started = worker::WorkerAgent::Start(wopts);
    if (!worker_started.ok()) {
      server->Shutdown();
      Fail(absl::Status(worker_started.status().code(),
                        absl::StrCat("local worker: ", worker_started.status().message())));
      return 1;
    }
    agent = std::move(*worker_started);
  }

  CoordinatorClient client(ClientConfig{server->address(), "local", "", ""});
  align::v1::SubmitPipelineRequest request;
  *request.mutable_spec() = *spec;
  request.set_source_yaml(source.str());
  request.set_no_cache(o.no_cache);
  // The same spec (after --set) resumes the same pipeline; --fresh starts a new one.
  std::string id_seed;
  spec->SerializeToString(&id_seed);
  if (o.fresh) {
    RandomIdGenerator ids;
    request.set_client_request_id(ids.NewId("run", absl::Now()));
  } else {
    request.set_client_request_id(
        absl::StrCat("run-", engine::data::Sha256Hex(id_seed + (o.no_cache ? "|no-cache" : ""))
                                 .substr(0, 24)));
  }
  int code = 1;
  auto response = client.Submit(request);
  if (!response.ok()) {
    if (!stop) Fail(response.status());
  } else {
    std::string id = response->pipeline_id();
    if (response->already_existed()) {
      std::fprintf(stderr, "resuming pipeline %s (%s) from %s\n", response->status().name().c_str(),
                   id.c_str(), state_dir.c_str());
      // A failed or cancelled earlier run continues from its failed stages.
      const auto& st = response->status();
      if (st.state() == align::v1::PIPELINE_FAILED || st.state() == align::v1::PIPELINE_CANCELLED) {
        for (const auto& s : st.stages()) {
          if (s.state() == align::v1::STAGE_FAILED || s.state() == align::v1::STAGE_CANCELLED) {
            auto r = client.Retry(id, s.name());
            if (!r.ok()) LOG(WARNING) << "retry " << s.name() << ": " << r.status();
          }
        }
      }
    } else {
      std::fprintf(stderr, "pipeline %s (%s): state in %s, artifacts in %s/artifacts\n",
                   response->status().name().c_str(), id.c_str(), state_dir.c_str(),
                   state_dir.c_str());
    }
    ProgressView view(stderr, isatty(STDERR_FILENO) != 0);
    auto final_status = WaitForPipeline(client, id, view, &stop);
    if (stop || !final_status.ok()) {
      if (!stop) Fail(final_status.status());
      code = stop ? 130 : 1;
    } else {
      std::fputs(PipelineSummary(*final_status).c_str(), stdout);
      std::string html = o.report.empty()
                             ? absl::StrCat(state_dir, "/reports/", final_status->name(), "-", id,
                                            ".html")
                             : o.report;
      auto paths = WriteReport(client, id, html, "");
      if (paths.ok()) {
        std::printf("report: %s\nsummary: %s\n", paths->first.c_str(), paths->second.c_str());
      } else {
        std::fprintf(stderr, "alignctl: warning: report not written: %s\n",
                     std::string(paths.status().message()).c_str());
      }
      for (const auto& s : final_status->stages()) {
        for (const auto& a : s.outputs()) {
          if (a.kind() == "model") {
            std::printf("model %s: %s\n", s.name().c_str(), a.uri().c_str());
          }
        }
      }
      std::fflush(stdout);
      code = ExitCodeFor(final_status->state());
    }
  }
  {
    std::lock_guard<std::mutex> lock(mu);
    if (!stop) {
      agent->Shutdown();
      server->Shutdown();
    }
  }
  return signals.interrupted() ? 130 : code;
}

}  // namespace

void RegisterLocalCommands(CLI::App& app) {
  auto o = std::make_shared<RunOptions>();
  CLI::App* sub = app.add_subcommand(
      "run", "Run a pipeline locally: an embedded coordinator and worker in this process, state "
             "in ./.align (SQLite + artifacts); run it again after Ctrl-C to resume");
  sub->add_option("-f,--file", o->file, "Pipeline YAML file")->required();
  sub->add_option("--set", o->sets,
                  "Override a field, e.g. --set stages.dpo.config.beta=0.05 (repeatable)");
  sub->add_option("--state-dir", o->state_dir,
                  "Where the database, artifacts, work files and reports go")
      ->capture_default_str();
  sub->add_option("--data-dir", o->data_dir,
                  "Data directory for data:// paths (default: $ALIGN_DATA_DIR, else ../shared/data)");
  sub->add_option("--align-train", o->align_train,
                  "The engine binary (default: align-train beside alignctl, $ALIGN_TRAIN, PATH)");
  sub->add_option("--cpu-slots", o->cpu_slots, "CPU slots for stages (default: online CPUs)");
  sub->add_flag("--no-cache", o->no_cache,
                "Run every stage even if an identical stage already succeeded");
  sub->add_flag("--fresh", o->fresh,
                "Start a new pipeline instead of resuming an earlier run of the same spec");
  sub->add_option("--report", o->report,
                  "HTML report path (default: <state-dir>/reports/<name>-<id>.html)");
  sub->add_flag("-v,--verbose", o->verbose, "Show the embedded coordinator's and worker's logs");
  sub->callback([o] { ExitCode() = RunLocal(*o); });
}

}  // namespace align::cli
