// CoordinatorServer: the whole coordinator (store, state machine, scheduler loop, gRPC services,
// optional /metrics) in one embeddable object. align-coordinator's main, integration tests and
// `alignctl run` (local mode) all start it the same way:
//
//   ASSIGN_OR_RETURN(auto server, CoordinatorServer::Start(options));
//   ... connect to absl::StrCat("127.0.0.1:", server->port()) ...
//   server->Shutdown();
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/clock.h"

namespace align::coordinator {

class Coordinator;

struct CoordinatorOptions {
  //! gRPC listen address; port 0 picks a free port (see CoordinatorServer::port()).
  std::string listen_address = "127.0.0.1:0";
  //! SQLite database file, or ":memory:" for a throwaway in-memory store (tests, local mode).
  std::string db_path = ":memory:";
  //! Where stage outputs go: <artifact_root>/<pipeline_id>/<stage>/.
  std::string artifact_root = "./artifacts";
  //! ALIGN_DATA_DIR handed to the engine for data:// paths (TrainJob.data_dir).
  std::string data_dir;
  //! Bearer tokens, one per line: "<role> <token> [name]", role = user | worker | admin.
  //! Empty: no authentication (local mode, tests).
  std::string token_file;
  //! A worker that misses heartbeats for this long loses its leases (attempts fail INFRASTRUCTURE).
  absl::Duration lease_timeout = absl::Seconds(30);
  //! How often workers are told to heartbeat.
  absl::Duration heartbeat_interval = absl::Seconds(5);
  //! After a restart, how long workers have to re-register and report what they still run.
  //! Defaults to lease_timeout when zero.
  absl::Duration recovery_grace = absl::ZeroDuration();
  //! How often the scheduler and lease checks run besides running on every event.
  absl::Duration tick_interval = absl::Milliseconds(200);
  //! Prometheus exposer address ("127.0.0.1:9464"); empty disables the HTTP endpoint.
  std::string metrics_listen_address;
  //! TLS: both set enables TLS on the gRPC port.
  std::string tls_cert_file;
  std::string tls_key_file;
  //! Largest request accepted, in bytes.
  int max_request_bytes = 16 << 20;
  //! Time source; nullptr = the real clock. Must outlive the server.
  Clock* clock = nullptr;
  //! When false no background tick thread runs; tests call coordinator()->Tick() themselves.
  bool run_background_ticker = true;
};

class CoordinatorServer {
 public:
  //! Opens (and migrates, and recovers from) the store, then starts serving.
  static absl::StatusOr<std::unique_ptr<CoordinatorServer>> Start(const CoordinatorOptions& options);
  ~CoordinatorServer();
  CoordinatorServer(const CoordinatorServer&) = delete;
  CoordinatorServer& operator=(const CoordinatorServer&) = delete;

  //! The bound gRPC port (useful with port 0).
  int port() const;
  //! "127.0.0.1:<port>"-style address a local client can dial.
  std::string address() const;
  //! The bound /metrics port, 0 when disabled.
  int metrics_port() const;
  //! Stops accepting RPCs, ends long polls and streams, closes the store. Idempotent.
  void Shutdown();
  //! Blocks until Shutdown() is called (from another thread or a signal handler thread).
  void Wait();
  //! The state machine (handlers, Tick()), for tests and local mode.
  Coordinator* coordinator();

 private:
  struct Impl;
  explicit CoordinatorServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace align::coordinator
