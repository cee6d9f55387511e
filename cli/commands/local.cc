// `alignctl run -f pipeline.yaml`: local mode. An embedded CoordinatorServer (SQLite in
// ./.align/align.db, artifacts under ./.align/artifacts) and an embedded WorkerAgent in this
// process, talking over loopback gRPC exactly as the daemons do. Resumable: the pipeline's client
// request id is derived from the spec, so running the same command again after Ctrl-C finds the
// stored pipeline and continues it: succeeded stages keep their outputs, the others run again
// (from their last checkpoint when they wrote one). Ctrl-C cancels the pipeline, stops the ranks
// and closes the store before exiting with 130.
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "cli/commands/client_support.h"
#include "cli/commands/commands.h"
#include "cli/coordinator_client.h"
#include "cli/output.h"
#include "cli/progress.h"
#include "common/config/pipeline_config.h"
#include "common/ids.h"
#include "common/logging.h"
#include "common/status_macros.h"
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

// Ctrl-C and SIGTERM are handled by one thread so that shutdown runs in order: worker first
// (stops the align-train ranks and reports them), then the coordinator (ends the streams the
// progress view waits on). The handler only writes the signal number to a pipe the thread reads:
// blocking the signals and sigwait()ing is not enough, as a thread started before the mask was set
// (library start-up) would take the signal with its default action (exit at once, leaving the
// ranks running) or, from a non-interactive shell that ignores SIGINT, drop it. A second Ctrl-C
// while stopping exits at once. The worker's launcher resets the dispositions of the ranks it
// spawns, and starts them in their own process group (the terminal's Ctrl-C reaches alignctl only).
int g_signal_pipe[2] = {-1, -1};
std::atomic<int> g_signals{0};

void OnSignal(int sig) {
  if (g_signals.fetch_add(1) >= 1) {
    static const char kMsg[] = "\nalignctl: interrupted again; exiting without waiting\n";
    (void)!write(STDERR_FILENO, kMsg, sizeof(kMsg) - 1);
    _exit(130);
  }
  const char b = static_cast<char>(sig);
  (void)!write(g_signal_pipe[1], &b, 1);
}

class SignalWatcher {
 public:
  explicit SignalWatcher(std::function<void()> on_signal) {
    if (pipe2(g_signal_pipe, O_CLOEXEC) != 0) return;
    g_signals = 0;
    struct sigaction sa {};
    sa.sa_handler = &OnSignal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGINT, &sa, &old_int_);
    sigaction(SIGTERM, &sa, &old_term_);
    // A mask inherited from the caller would keep the signals from ever arriving.
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_UNBLOCK, &set, nullptr);
    installed_ = true;
    thread_ = std::thread([this, on_signal = std::move(on_signal)] {
      char b = 0;
      ssize_t n;
      do {
        n = read(g_signal_pipe[0], &b, 1);
      } while (n < 0 && errno == EINTR);
      if (n == 1 && b != 0) {
        interrupted_ = true;
        on_signal();
      }
    });
  }
  ~SignalWatcher() {
    if (!installed_) return;
    if (!interrupted_) {
      const char b = 0;  // wakes the thread without a signal
      (void)!write(g_signal_pipe[1], &b, 1);
    }
    thread_.join();
    sigaction(SIGINT, &old_int_, nullptr);
    sigaction(SIGTERM, &old_term_, nullptr);
    close(g_signal_pipe[0]);
    close(g_signal_pipe[1]);
    g_signal_pipe[0] = g_signal_pipe[1] = -1;
  }
  bool interrupted() const { return interrupted_.load(); }

 private:
  bool installed_ = false;
  struct sigaction old_int_ {};
  struct sigaction old_term_ {};
  std::atomic<bool> interrupted_{false};
  std::thread thread_;
};

// The command that continues this run: the same file, overrides and state directory.
std::string ResumeCommand(const RunOptions& o) {
  auto quote = [](const std::string& v) {
    if (v.find_first_of(" \t'\"$`\\!*?[]{}()<>|&;~#") == std::string::npos && !v.empty()) return v;
    std::string q = "'";
    for (char c : v) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return q + "'";
  };
  std::string cmd = absl::StrCat("alignctl run -f ", quote(o.file));
  for (const auto& s : o.sets) absl::StrAppend(&cmd, " --set ", quote(s));
  if (o.state_dir != ".align") absl::StrAppend(&cmd, " --state-dir ", quote(o.state_dir));
  if (!o.data_dir.empty()) absl::StrAppend(&cmd, " --data-dir ", quote(o.data_dir));
  if (!o.align_train.empty()) absl::StrAppend(&cmd, " --align-train ", quote(o.align_train));
  if (o.cpu_slots > 0) absl::StrAppend(&cmd, " --cpu-slots ", o.cpu_slots);
  if (o.no_cache) absl::StrAppend(&cmd, " --no-cache");
  return cmd;
}

// An earlier run of the same spec is in the state directory: say what is kept, and continue it.
// A run stopped by Ctrl-C is CANCELLED (or still CANCELLING when that run was killed before its
// stages reported; the lease expiry finishes it); a failed one is FAILED. Retrying the first
// stage that did not succeed puts it and every stage it blocked back in line with fresh retry
// budgets; a stage with a checkpoint resumes from it.
absl::Status Resume(CoordinatorClient& client, const std::string& id,
                    align::v1::PipelineStatus st, const std::string& state_dir,
                    const std::atomic<bool>& stop) {
  std::vector<std::string> kept, again;
  for (const auto& s : st.stages()) {
    (s.state() == align::v1::STAGE_SUCCEEDED ? kept : again).push_back(s.name());
  }
  std::fprintf(stderr, "resuming pipeline %s (%s) from %s: %s\n", st.name().c_str(), id.c_str(),
               state_dir.c_str(),
               absl::StrCat(kept.empty() ? "no stage succeeded yet"
                                         : absl::StrCat(absl::StrJoin(kept, ", "),
                                                        " succeeded (outputs kept)"),
                            again.empty() ? "" : absl::StrCat("; to run: ",
                                                              absl::StrJoin(again, ", ")))
                   .c_str());
  const absl::Time deadline = absl::Now() + absl::Minutes(2);
  while (st.state() == align::v1::PIPELINE_CANCELLING && !stop) {
    if (absl::Now() > deadline) {
      return absl::DeadlineExceededError(absl::StrCat(
          "pipeline ", id, " is still being cancelled after 2m; run the command again later"));
    }
    absl::SleepFor(absl::Milliseconds(200));
    ASSIGN_OR_RETURN(st, client.Get(id));
  }
  if (st.state() != align::v1::PIPELINE_FAILED && st.state() != align::v1::PIPELINE_CANCELLED) {
    return absl::OkStatus();  // still running (a crashed run: leases expire, stages retry) or done
  }
  for (const auto& s : st.stages()) {
    if (s.state() == align::v1::STAGE_FAILED || s.state() == align::v1::STAGE_CANCELLED ||
        s.state() == align::v1::STAGE_SKIPPED) {
      auto r = client.Retry(id, s.name());
      if (!r.ok()) {
        return absl::Status(r.status().code(), absl::StrCat("cannot resume stage ", s.name(), ": ",
                                                            r.status().message()));
      }
      break;  // one retry resets every stage that did not succeed
    }
  }
  return absl::OkStatus();
}

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
  std::mutex mu;  // guards server/agent/pipeline_id against the signal thread
  std::string pipeline_id;
  auto shutdown_all = [&] {
    std::lock_guard<std::mutex> lock(mu);
    stop = true;
    std::fprintf(stderr,
                 "\nalignctl: interrupted; stopping the running stages (Ctrl-C again to exit at "
                 "once)\n");
    // Cancel first, so that the ranks the worker stops end as CANCELLED (a pause that the next
    // run retries with fresh budgets, from the last checkpoint) rather than as infrastructure
    // failures that would use up the stage's retries. Succeeded stages keep their outputs.
    if (server != nullptr && !pipeline_id.empty()) {
      CoordinatorClient c(ClientConfig{server->address(), "local", "", ""});
      auto cancelled = c.Cancel(pipeline_id, "interrupted (Ctrl-C); alignctl run resumes it");
      if (!cancelled.ok()) LOG(WARNING) << "cancel on interrupt: " << cancelled.status();
    }
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
    {
      std::lock_guard<std::mutex> lock(mu);
      pipeline_id = id;
    }
    if (response->already_existed()) {
      absl::Status resumed = Resume(client, id, response->status(), state_dir, stop);
      if (!resumed.ok()) {
        if (!stop) Fail(resumed);
        id.clear();
      }
    } else {
      std::fprintf(stderr, "pipeline %s (%s): state in %s, artifacts in %s/artifacts\n",
                   response->status().name().c_str(), id.c_str(), state_dir.c_str(),
                   state_dir.c_str());
    }
    ProgressView view(stderr, isatty(STDERR_FILENO) != 0);
    auto final_status = id.empty() ? absl::StatusOr<align::v1::PipelineStatus>(
                                         absl::AbortedError("not resumed"))
                                   : WaitForPipeline(client, id, view, &stop);
    if (id.empty()) {
      code = stop ? 130 : 1;
    } else if (stop || !final_status.ok()) {
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
  if (signals.interrupted()) {
    // shutdown_all has finished (it held mu): the ranks are stopped and the store is closed.
    std::fprintf(stderr, "alignctl: stopped; finished stages and checkpoints are kept in %s. "
                         "Resume with: %s\n",
                 state_dir.c_str(),
                 o.fresh ? "(not possible for a --fresh run: run it again without --fresh)"
                         : ResumeCommand(o).c_str());
    return 130;
  }
  return code;
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
