// align-worker: the daemon on each GPU host. Parses flags, starts a WorkerAgent, and on SIGTERM or
// SIGINT stops every attempt (reported as infrastructure failures, so they are retried elsewhere)
// before exiting. See docs/operations.md ("Workers").
#include <signal.h>

#include <cstdio>
#include <fstream>
#include <sstream>

#include <CLI/CLI.hpp>

#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/logging.h"
#include "common/version.h"
#include "worker/supervisor/failure_classifier.h"
#include "worker/worker_agent.h"

int main(int argc, char** argv) {
  using align::worker::WorkerOptions;
  WorkerOptions o;
  std::string token_file;
  std::vector<std::string> labels;
  std::string log_rules_file;
  std::string log_level = "info";
  double kill_grace_s = 10;
  double hang_multiple = 10;
  double hang_min_s = 120;

  CLI::App app{"align-worker: runs and supervises align-train processes for an align-coordinator"};
  app.set_version_flag("--version", std::string("align-worker ") + align::kEngineVersion);
  app.add_option("--coordinator", o.coordinator_address, "Coordinator gRPC address host:port")
      ->capture_default_str();
  app.add_option("--token-file", token_file,
                 "File holding the bearer token (role worker) for the coordinator");
  app.add_option("--worker-id", o.worker_id, "Stable worker name (default: the host name)");
  app.add_option("--labels", labels, "Labels offered for placement: k=v, repeatable or comma-separated");
  app.add_option("--cpu-slots", o.cpu_slots, "CPU slots for CPU stages (0: online CPUs)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("--artifact-root", o.artifact_root,
                 "Where stage outputs go (local dir, or a shared file system on clusters)")
      ->capture_default_str();
  app.add_option("--work-dir", o.work_root, "Attempt directories (job, logs, events) and scratch")
      ->capture_default_str();
  app.add_option("--align-train", o.align_train_path, "Path of the align-train binary")
      ->capture_default_str();
  app.add_option("--data-dir", o.data_dir, "ALIGN_DATA_DIR for data:// paths");
  app.add_option("--advertise-address", o.advertise_address,
                 "Address other hosts reach this one on (MASTER_ADDR; default: host name)");
  app.add_option("--metrics-listen", o.metrics_listen,
                 "Serve Prometheus /metrics here, e.g. 0.0.0.0:9465 (empty: off)");
  app.add_option("--kill-grace-seconds", kill_grace_s, "SIGTERM -> SIGKILL grace period")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("--hang-step-multiple", hang_multiple,
                 "A rank is hung after this many recent step times without a step event")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--hang-min-seconds", hang_min_s, "Never call a rank hung sooner than this")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("--log-rules", log_rules_file,
                 "YAML list of {name, pattern, class: user_error|infrastructure} failure rules "
                 "(replaces the built-in ones)");
  app.add_option("--log-level", log_level, "debug, info, warning or error")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  align::LogLevel level;
  if (!align::ParseLogLevel(log_level, &level)) {
    std::fprintf(stderr, "--log-level: '%s' is not one of debug, info, warning, error\n",
                 log_level.c_str());
    return 2;
  }
  align::SetMinLogLevel(level);
  std::vector<std::string> label_items;
  for (const std::string& arg : labels) {
    for (absl::string_view item : absl::StrSplit(arg, ',', absl::SkipEmpty())) {
      label_items.emplace_back(item);
    }
  }
  for (const std::string& kv : label_items) {
    std::pair<std::string, std::string> parts = absl::StrSplit(kv, absl::MaxSplits('=', 1));
    if (parts.first.empty() || kv.find('=') == std::string::npos) {
      std::fprintf(stderr, "--labels: '%s' is not k=v\n", kv.c_str());
      return 2;
    }
    o.labels[parts.first] = parts.second;
  }
  if (!token_file.empty()) {
    std::ifstream in(token_file);
    if (!in) {
      std::fprintf(stderr, "--token-file: cannot read %s\n", token_file.c_str());
      return 2;
    }
    std::stringstream ss;
    ss << in.rdbuf();
    o.token = std::string(absl::StripAsciiWhitespace(ss.str()));
  }
  if (!log_rules_file.empty()) {
    auto rules = align::worker::LoadLogRules(log_rules_file);
    if (!rules.ok()) {
      std::fprintf(stderr, "--log-rules: %s\n", std::string(rules.status().message()).c_str());
      return 2;
    }
    o.supervisor.log_rules = *std::move(rules);
  }
  o.supervisor.kill_grace = absl::Seconds(kill_grace_s);
  o.supervisor.hang_step_multiple = hang_multiple;
  o.supervisor.hang_min_timeout = absl::Seconds(hang_min_s);
  o.shutdown_timeout = o.supervisor.kill_grace + absl::Seconds(20);

  // Block the stop signals in every thread (children get them unblocked at spawn) and wait here.
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);

  auto agent = align::worker::WorkerAgent::Start(o);
  if (!agent.ok()) {
    std::fprintf(stderr, "align-worker: %s\n", std::string(agent.status().message()).c_str());
    return 1;
  }
  int sig = 0;
  sigwait(&stop, &sig);
  LOG(INFO) << "align-worker: received signal " << sig << ", shutting down";
  (*agent)->Shutdown();
  return 0;
}
