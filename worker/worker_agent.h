// WorkerAgent: the whole align-worker (registration, heartbeats, assignment long-poll, process
// supervision, report buffering through coordinator outages, /metrics) in one embeddable object.
// align-worker's main, integration tests and `alignctl run` (local mode) start it the same way:
//
//   WorkerOptions options;
//   options.coordinator_address = server->address();
//   ASSIGN_OR_RETURN(auto agent, WorkerAgent::Start(options));
//   ...
//   agent->Shutdown();   // stops every attempt (reported as infrastructure failures) and returns
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "worker/gpu_probe.h"
#include "worker/supervisor/process_launcher.h"
#include "worker/supervisor/supervisor.h"

namespace prometheus {
class Registry;
}

namespace align::worker {

struct WorkerOptions {
  //! "host:port" of the coordinator's gRPC endpoint.
  std::string coordinator_address = "127.0.0.1:7070";
  //! Bearer token sent as "authorization: Bearer <token>"; empty = none.
  std::string token;
  //! Stable name of this worker; empty = the host name.
  std::string worker_id;
  std::map<std::string, std::string> labels;
  //! CPU slots offered to CPU stages; 0 = the number of online CPUs.
  int cpu_slots = 0;
  //! Where stage outputs go: <artifact_root>/<pipeline_id>/<stage>/ (when the job leaves it open).
  std::string artifact_root = "./artifacts";
  //! Attempt directories (<work_root>/attempts/<id>: job, logs, events) and stage scratch.
  std::string work_root = "./work";
  std::string align_train_path = "align-train";
  //! Extra arguments appended after `--job FILE` (tests drive fake engines with these).
  std::vector<std::string> align_train_args;
  //! ALIGN_DATA_DIR for data:// paths when the job does not set one.
  std::string data_dir;
  //! Address other hosts reach this one on (MASTER_ADDR for rank 0); empty = the host name.
  std::string advertise_address;
  //! Prometheus /metrics listen address ("0.0.0.0:9465"); empty = no HTTP endpoint.
  std::string metrics_listen;
  //! Optional registry to add the worker's metrics to (local mode shares one); nullptr = own.
  std::shared_ptr<prometheus::Registry> registry;
  //! Time source for hang detection, grace periods and timestamps; nullptr = the real clock.
  Clock* clock = nullptr;
  //! nullptr = posix_spawn launcher.
  std::shared_ptr<ProcessLauncher> launcher;
  //! nullptr = NVML when present, else no GPUs.
  std::shared_ptr<GpuProbe> gpu_probe;
  //! Grace period, hang detection, log rules (paths above override its path fields).
  SupervisorOptions supervisor;
  //! How often processes are checked (exits, events, hangs).
  absl::Duration supervise_interval = absl::Milliseconds(100);
  //! Long-poll wait handed to PollAssignments.
  absl::Duration poll_wait = absl::Seconds(10);
  //! Deadline of each unary RPC.
  absl::Duration rpc_timeout = absl::Seconds(10);
  //! Retry backoff while the coordinator is unreachable: doubles from initial up to max.
  absl::Duration backoff_initial = absl::Milliseconds(200);
  absl::Duration backoff_max = absl::Seconds(10);
  //! Used until the coordinator's RegisterWorker answer says otherwise.
  absl::Duration heartbeat_interval = absl::Seconds(5);
  //! At most this many attempts' unacknowledged reports are kept; progress-only reports coalesce.
  int max_buffered_reports = 1024;
  //! On Shutdown, how long to wait for attempts to stop and their exits to be reported.
  absl::Duration shutdown_timeout = absl::Seconds(30);
};

class WorkerAgent {
 public:
  //! Validates options, probes the inventory, starts /metrics and the background threads.
  //! Registration happens in the background (with backoff), so a coordinator that is not up yet
  //! is not an error.
  static absl::StatusOr<std::unique_ptr<WorkerAgent>> Start(const WorkerOptions& options);
  ~WorkerAgent();
  WorkerAgent(const WorkerAgent&) = delete;
  WorkerAgent& operator=(const WorkerAgent&) = delete;

  //! Stops every attempt (SIGTERM, grace, SIGKILL; reported FAILED/INFRASTRUCTURE so the
  //! coordinator retries them elsewhere), flushes reports for up to shutdown_timeout, then stops.
  //! Idempotent.
  void Shutdown();

  const std::string& worker_id() const;
  int64_t incarnation() const;
  //! True once RegisterWorker succeeded (and until the coordinator asks to re-register).
  bool registered() const;
  //! The bound /metrics port, 0 when disabled.
  int metrics_port() const;
  //! Attempt ids whose slots are busy (running, stopping, or ended with the exit not yet acked).
  std::vector<std::string> ActiveAttempts() const;
  //! Reports not yet acknowledged by the coordinator.
  int BufferedReports() const;
  Supervisor& supervisor();

 private:
  struct Impl;
  explicit WorkerAgent(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace align::worker
