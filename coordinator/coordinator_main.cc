// align-coordinator: flags -> CoordinatorOptions -> CoordinatorServer; stops cleanly on SIGTERM
// or SIGINT.
#include <csignal>
#include <cstdio>
#include <string>
#include <thread>

#include "CLI/CLI.hpp"
#include "absl/time/time.h"
#include "common/logging.h"
#include "common/version.h"
#include "coordinator/coordinator_server.h"

namespace {

absl::Duration Seconds(double s) { return absl::Milliseconds(static_cast<int64_t>(s * 1000)); }

}  // namespace

int main(int argc, char** argv) {
  align::coordinator::CoordinatorOptions options;
  options.listen_address = "0.0.0.0:7070";
  options.db_path = "align.db";
  double lease_timeout_s = 30, heartbeat_s = 5, grace_s = 0;
  std::string log_level = "info";

  CLI::App app{"align-coordinator: the durable control plane of align (pipelines, scheduling, "
               "leases, gRPC API)"};
  app.set_version_flag("--version", std::string(align::kEngineVersion));
  app.add_option("--listen", options.listen_address, "gRPC listen address (host:port; port 0 picks one)")
      ->capture_default_str();
  app.add_option("--db", options.db_path,
                 "SQLite database file (created and migrated on start; ':memory:' keeps nothing)")
      ->capture_default_str();
  app.add_option("--artifact-root", options.artifact_root,
                 "Root of stage outputs: <root>/<pipeline>/<stage>/ (a shared file system on clusters)")
      ->capture_default_str();
  app.add_option("--data-dir", options.data_dir,
                 "ALIGN_DATA_DIR given to the engine for data:// paths");
  app.add_option("--token-file", options.token_file,
                 "Bearer tokens, lines '<user|worker|admin> <token> [name]'; unset = no auth");
  app.add_option("--metrics-listen", options.metrics_listen_address,
                 "Prometheus /metrics address, e.g. 0.0.0.0:9464; unset = off");
  app.add_option("--lease-timeout", lease_timeout_s,
                 "Seconds without heartbeat before a worker's attempts fail (INFRASTRUCTURE)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--heartbeat-interval", heartbeat_s, "Seconds between worker heartbeats")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--recovery-grace", grace_s,
                 "Seconds after a restart for workers to re-register running attempts (0 = lease timeout)")
      ->capture_default_str();
  app.add_option("--tls-cert", options.tls_cert_file, "PEM certificate chain (enables TLS with --tls-key)")
      ->check(CLI::ExistingFile);
  app.add_option("--tls-key", options.tls_key_file, "PEM private key")->check(CLI::ExistingFile);
  app.add_option("--max-request-bytes", options.max_request_bytes, "Largest request accepted")
      ->capture_default_str();
  app.add_option("--log-level", log_level, "debug, info, warning or error")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  align::LogLevel level;
  if (!align::ParseLogLevel(log_level, &level)) {
    std::fprintf(stderr, "--log-level: expected debug, info, warning or error, got '%s'\n",
                 log_level.c_str());
    return 2;
  }
  align::SetMinLogLevel(level);
  if (heartbeat_s >= lease_timeout_s) {
    std::fprintf(stderr, "--heartbeat-interval (%g s) must be shorter than --lease-timeout (%g s)\n",
                 heartbeat_s, lease_timeout_s);
    return 2;
  }
  options.lease_timeout = Seconds(lease_timeout_s);
  options.heartbeat_interval = Seconds(heartbeat_s);
  options.recovery_grace = Seconds(grace_s);

  // Signals are taken synchronously by one thread, so shutdown runs outside a signal handler.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  auto server = align::coordinator::CoordinatorServer::Start(options);
  if (!server.ok()) {
    std::fprintf(stderr, "align-coordinator: %s\n", std::string(server.status().message()).c_str());
    return 1;
  }
  std::printf("align-coordinator %s listening on port %d\n", align::kEngineVersion, (*server)->port());
  std::fflush(stdout);
  int sig = 0;
  sigwait(&signals, &sig);
  LOG(INFO) << "signal " << sig << " received; shutting down";
  (*server)->Shutdown();
  return 0;
}
