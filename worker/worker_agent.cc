#include "worker/worker_agent.h"

#include <unistd.h>

#include <filesystem>
#include <thread>

#include <grpcpp/grpcpp.h>
#include <prometheus/exposer.h>
#include <prometheus/registry.h>

#include "absl/strings/str_cat.h"
#include "align/v1/worker.grpc.pb.h"
#include "common/grpc_status.h"
#include "common/ids.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "common/version.h"
#include "worker/worker_metrics.h"

namespace align::worker {

namespace fs = std::filesystem;

namespace {

std::string HostName() {
  char buf[256] = {};
  if (gethostname(buf, sizeof(buf) - 1) != 0) return "localhost";
  return buf;
}

//! Doubles from `initial` to `max`; Reset() after a success.
class Backoff {
 public:
  Backoff(absl::Duration initial, absl::Duration max) : initial_(initial), max_(max), next_(initial) {}
  absl::Duration Next() {
    const absl::Duration d = next_;
    next_ = std::min(max_, next_ * 2);
    return d;
  }
  void Reset() { next_ = initial_; }

 private:
  absl::Duration initial_, max_, next_;
};

// A report the coordinator has not acknowledged yet; resent as is (same report_id) until it is.
struct PendingReport {
  v1::ReportAttemptRequest request;
  int64_t rejected_in_generation = -1;
};

}  // namespace

struct WorkerAgent::Impl {
  WorkerOptions options;
  Clock* clock = nullptr;
  std::string worker_id;
  int64_t incarnation = 0;
  std::shared_ptr<ProcessLauncher> launcher;
  std::shared_ptr<GpuProbe> gpu_probe;
  std::unique_ptr<Supervisor> supervisor;
  std::unique_ptr<WorkerMetrics> metrics;
  std::unique_ptr<prometheus::Exposer> exposer;
  int metrics_port = 0;
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<v1::WorkerService::Stub> stub;
  v1::WorkerInventory inventory;

  mutable absl::Mutex mu;
  absl::CondVar cv;
  bool stopping ABSL_GUARDED_BY(mu) = false;       // threads exit
  bool draining ABSL_GUARDED_BY(mu) = false;       // no new assignments (Shutdown in progress)
  bool registered ABSL_GUARDED_BY(mu) = false;
  int64_t generation ABSL_GUARDED_BY(mu) = 0;      // bumped by every successful registration
  absl::Duration heartbeat_interval ABSL_GUARDED_BY(mu);
  grpc::ClientContext* poll_context ABSL_GUARDED_BY(mu) = nullptr;
  bool shut_down ABSL_GUARDED_BY(mu) = false;

  absl::Mutex report_mu;
  std::map<std::string, PendingReport> pending ABSL_GUARDED_BY(report_mu);
  std::map<std::string, int64_t> report_seq ABSL_GUARDED_BY(report_mu);

  std::vector<std::thread> threads;

  void WaitFor(absl::Duration d) {
    absl::MutexLock lock(&mu);
    if (!stopping) cv.WaitWithTimeout(&mu, d);
  }
  bool Stopping() {
    absl::MutexLock lock(&mu);
    return stopping;
  }
  void Wake() {
    absl::MutexLock lock(&mu);
    cv.SignalAll();
  }

  void PrepareContext(grpc::ClientContext& ctx, absl::Duration timeout) {
    ctx.set_deadline(std::chrono::system_clock::now() + absl::ToChronoMilliseconds(timeout));
    if (!options.token.empty()) ctx.AddMetadata("authorization", "Bearer " + options.token);
  }

  std::vector<v1::GpuInfo> Gpus() {
    auto gpus = gpu_probe->Probe();
    if (!gpus.ok()) {
      LOG(WARNING) << "GPU probe failed: " << gpus.status();
      return {};
    }
    return *std::move(gpus);
  }

  absl::Status Register() {
    v1::RegisterWorkerRequest req;
    req.set_worker_id(worker_id);
    req.set_incarnation(incarnation);
    *req.mutable_inventory() = inventory;
    req.mutable_inventory()->clear_gpus();
    for (auto& g : Gpus()) *req.mutable_inventory()->add_gpus() = g;
    for (auto& r : supervisor->Running()) *req.add_running() = std::move(r);
    v1::RegisterWorkerResponse resp;
    grpc::ClientContext ctx;
    PrepareContext(ctx, options.rpc_timeout);
    RETURN_IF_ERROR(FromGrpcStatus(stub->RegisterWorker(&ctx, req, &resp)));
    for (const std::string& id : resp.cancel_attempts()) {
      supervisor->Cancel(id, StopCause::kLeaseLost,
                         "lease lost: the coordinator no longer wants this attempt");
    }
    absl::MutexLock lock(&mu);
    if (resp.heartbeat_interval_ms() > 0) {
      heartbeat_interval = absl::Milliseconds(resp.heartbeat_interval_ms());
    }
    registered = true;
    ++generation;
    cv.SignalAll();
    return absl::OkStatus();
  }

  absl::Status Heartbeat() {
    v1::HeartbeatRequest req;
    req.set_worker_id(worker_id);
    req.set_incarnation(incarnation);
    for (auto& r : supervisor->Running()) *req.add_running() = std::move(r);
    const std::vector<v1::GpuInfo> gpus = Gpus();
    for (const auto& g : gpus) *req.add_gpus() = g;
    metrics->UpdateGpus(gpus);
    v1::HeartbeatResponse resp;
    grpc::ClientContext ctx;
    PrepareContext(ctx, options.rpc_timeout);
    RETURN_IF_ERROR(FromGrpcStatus(stub->Heartbeat(&ctx, req, &resp)));
    for (const std::string& id : resp.cancel_attempts()) {
      supervisor->Cancel(id, StopCause::kUserCancel, "cancelled by the coordinator");
    }
    if (resp.reregister()) {
      LOG(INFO) << "coordinator asks worker " << worker_id << " to register again";
      absl::MutexLock lock(&mu);
      registered = false;
    }
    return absl::OkStatus();
  }

  void ControlLoop() {
    Backoff backoff(options.backoff_initial, options.backoff_max);
    while (!Stopping()) {
      bool need_register;
      absl::Duration interval;
      {
        absl::MutexLock lock(&mu);
        need_register = !registered;
        interval = heartbeat_interval;
      }
      const absl::Status st = need_register ? Register() : Heartbeat();
      if (!st.ok()) {
        const absl::Duration wait = backoff.Next();
        metrics->CoordinatorError(need_register ? "RegisterWorker" : "Heartbeat");
        LOG(WARNING) << (need_register ? "RegisterWorker" : "Heartbeat") << " to "
                     << options.coordinator_address << " failed: " << st << "; retrying in "
                     << absl::FormatDuration(wait);
        WaitFor(wait);
        continue;
      }
      if (need_register) {
        LOG(INFO) << "worker " << worker_id << " registered with " << options.coordinator_address
                  << " (incarnation " << incarnation << ")";
      }
      metrics->SetRegistered(true);
      backoff.Reset();
      WaitFor(need_register ? absl::ZeroDuration() : interval);
    }
  }

  void PollLoop() {
    Backoff backoff(options.backoff_initial, options.backoff_max);
    while (true) {
      {
        absl::MutexLock lock(&mu);
        auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
          return stopping || (registered && !draining);
        };
        mu.Await(absl::Condition(&ready));
        if (stopping) return;
      }
      v1::PollAssignmentsRequest req;
      req.set_worker_id(worker_id);
      req.set_incarnation(incarnation);
      req.set_wait_ms(absl::ToInt64Milliseconds(options.poll_wait));
      v1::PollAssignmentsResponse resp;
      grpc::ClientContext ctx;
      PrepareContext(ctx, options.poll_wait + options.rpc_timeout);
      {
        absl::MutexLock lock(&mu);
        if (stopping || draining) continue;
        poll_context = &ctx;
      }
      const grpc::Status st = stub->PollAssignments(&ctx, req, &resp);
      {
        absl::MutexLock lock(&mu);
        poll_context = nullptr;
      }
      if (!st.ok()) {
        if (Stopping()) return;
        metrics->CoordinatorError("PollAssignments");
        WaitFor(backoff.Next());
        continue;
      }
      backoff.Reset();
      if (resp.reregister()) {
        absl::MutexLock lock(&mu);
        registered = false;
        cv.SignalAll();
      }
      for (const v1::Assignment& a : resp.assignments()) {
        const absl::Status started = supervisor->Start(a);
        if (absl::IsAlreadyExists(started)) continue;  // re-delivered after a coordinator restart
        if (!started.ok()) LOG(ERROR) << "assignment rejected: " << started;
      }
    }
  }

  void SuperviseLoop() {
    absl::Time last_gpu = absl::InfinitePast();
    while (!Stopping()) {
      supervisor->Tick();
      metrics->UpdateRanks(supervisor->Snapshot());
      if (absl::Now() - last_gpu > absl::Seconds(5)) {
        metrics->UpdateGpus(Gpus());
        last_gpu = absl::Now();
      }
      WaitFor(options.supervise_interval);
    }
  }

  //! Sends what is pending; false when the coordinator could not be reached.
  bool FlushReports() {
    int64_t gen;
    {
      absl::MutexLock lock(&mu);
      if (!registered) return false;
      gen = generation;
    }
    absl::MutexLock lock(&report_mu);
    for (const std::string& id : supervisor->AttemptIds()) {
      if (pending.count(id) > 0) continue;
      if (static_cast<int>(pending.size()) >= options.max_buffered_reports) break;
      std::optional<v1::ReportAttemptRequest> next = supervisor->NextReport(id);
      if (!next) continue;
      next->set_worker_id(worker_id);
      next->set_incarnation(incarnation);
      next->set_report_id(absl::StrCat(id, "/", incarnation, "/", ++report_seq[id]));
      pending[id] = PendingReport{std::move(*next), -1};
    }
    metrics->SetBufferedReports(static_cast<int>(pending.size()));
    for (auto it = pending.begin(); it != pending.end();) {
      const std::string id = it->first;
      PendingReport& p = it->second;
      if (p.rejected_in_generation >= gen) {  // wait for a fresh registration before retrying
        ++it;
        continue;
      }
      v1::ReportAttemptResponse resp;
      grpc::ClientContext ctx;
      PrepareContext(ctx, options.rpc_timeout);
      const absl::Status st = FromGrpcStatus(stub->ReportAttempt(&ctx, p.request, &resp));
      if (!st.ok()) {
        metrics->CoordinatorError("ReportAttempt");
        LOG(WARNING) << "ReportAttempt " << p.request.report_id() << " failed: " << st
                     << "; kept for replay";
        return false;
      }
      const bool has_exit = p.request.has_exit();
      if (!resp.accepted()) {
        if (p.rejected_in_generation < 0) {
          // Maybe the coordinator restarted and does not know this incarnation yet: register
          // again and retry once before giving the attempt up.
          p.rejected_in_generation = gen;
          absl::MutexLock l(&mu);
          if (generation == gen) registered = false;
          cv.SignalAll();
          ++it;
          continue;
        }
        LOG(WARNING) << "coordinator rejected report " << p.request.report_id()
                     << "; stopping attempt " << id;
        if (!has_exit) {
          supervisor->Cancel(id, StopCause::kLeaseLost,
                             "lease lost: the coordinator rejected this attempt's reports");
        }
      }
      if (resp.cancel() && !has_exit) {
        supervisor->Cancel(id, StopCause::kUserCancel, "cancelled by the coordinator");
      }
      if (has_exit) {
        metrics->AttemptFinished(p.request.exit());
        supervisor->Forget(id);
        report_seq.erase(id);
      }
      it = pending.erase(it);
    }
    metrics->SetBufferedReports(static_cast<int>(pending.size()));
    return true;
  }

  void ReportLoop() {
    Backoff backoff(options.backoff_initial, options.backoff_max);
    while (!Stopping()) {
      if (FlushReports()) {
        backoff.Reset();
        WaitFor(options.supervise_interval * 2);
      } else {
        WaitFor(backoff.Next());
      }
    }
  }

  int Buffered() {
    absl::MutexLock lock(&report_mu);
    return static_cast<int>(pending.size());
  }
};

WorkerAgent::WorkerAgent(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

WorkerAgent::~WorkerAgent() { Shutdown(); }

absl::StatusOr<std::unique_ptr<WorkerAgent>> WorkerAgent::Start(const WorkerOptions& options) {
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  WorkerOptions& o = impl->options;
  if (o.coordinator_address.empty()) {
    return absl::InvalidArgumentError("worker: --coordinator (host:port) is required");
  }
  if (o.work_root.empty() || o.artifact_root.empty()) {
    return absl::InvalidArgumentError("worker: --work-dir and --artifact-root must not be empty");
  }
  std::error_code ec;
  for (const std::string& dir : {o.work_root, o.artifact_root}) {
    fs::create_directories(dir, ec);
    if (ec) {
      return absl::FailedPreconditionError(
          absl::StrCat("worker: cannot create directory ", dir, ": ", ec.message()));
    }
  }
  impl->clock = o.clock != nullptr ? o.clock : &Clock::Real();
  impl->worker_id = o.worker_id.empty() ? HostName() : o.worker_id;
  impl->incarnation = NewIncarnation();
  impl->launcher = o.launcher ? o.launcher : std::make_shared<PosixProcessLauncher>();
  impl->gpu_probe = o.gpu_probe ? o.gpu_probe : std::shared_ptr<GpuProbe>(DefaultGpuProbe());
  {
    absl::MutexLock lock(&impl->mu);
    impl->heartbeat_interval = o.heartbeat_interval;
  }

  if (const int killed = KillOrphanedRanks(o.work_root); killed > 0) {
    LOG(WARNING) << "killed " << killed << " orphaned rank(s) of a previous worker run";
  }
  SupervisorOptions sup = o.supervisor;
  sup.align_train_path = o.align_train_path;
  sup.align_train_args = o.align_train_args;
  sup.work_root = fs::absolute(o.work_root).string();
  sup.artifact_root = fs::absolute(o.artifact_root).string();
  sup.data_dir = o.data_dir;
  ASSIGN_OR_RETURN(impl->supervisor, Supervisor::Create(std::move(sup), *impl->launcher,
                                                        *impl->clock));

  auto registry = o.registry ? o.registry : std::make_shared<prometheus::Registry>();
  impl->metrics = std::make_unique<WorkerMetrics>(registry);
  if (!o.metrics_listen.empty()) {
    try {
      impl->exposer = std::make_unique<prometheus::Exposer>(o.metrics_listen);
    } catch (const std::exception& e) {
      return absl::FailedPreconditionError(absl::StrCat(
          "worker: cannot serve /metrics on ", o.metrics_listen, ": ", e.what()));
    }
    impl->exposer->RegisterCollectable(registry);
    const auto ports = impl->exposer->GetListeningPorts();
    impl->metrics_port = ports.empty() ? 0 : ports[0];
  }

  v1::WorkerInventory& inv = impl->inventory;
  inv.set_hostname(HostName());
  inv.set_address(o.advertise_address.empty() ? HostName() : o.advertise_address);
  const long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  inv.set_cpu_slots(o.cpu_slots > 0 ? o.cpu_slots : static_cast<int>(std::max(1L, cpus)));
  inv.set_memory_bytes(static_cast<int64_t>(sysconf(_SC_PHYS_PAGES)) * sysconf(_SC_PAGESIZE));
  for (const auto& [k, v] : o.labels) (*inv.mutable_labels())[k] = v;
  inv.set_engine_version(kEngineVersion);
  inv.set_artifact_root(fs::absolute(o.artifact_root).string());

  grpc::ChannelArguments args;
  // Reconnect quickly once a restarted coordinator is back (gRPC's default backoff reaches 120 s).
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS,
              static_cast<int>(absl::ToInt64Milliseconds(o.backoff_max)));
  args.SetMaxReceiveMessageSize(64 << 20);
  impl->channel = grpc::CreateCustomChannel(o.coordinator_address,
                                            grpc::InsecureChannelCredentials(), args);
  impl->stub = v1::WorkerService::NewStub(impl->channel);

  LOG(INFO) << "worker " << impl->worker_id << " starting: coordinator " << o.coordinator_address
            << ", " << inv.cpu_slots() << " CPU slot(s), work dir " << o.work_root
            << ", artifacts " << o.artifact_root;
  Impl* p = impl.get();
  impl->threads.emplace_back([p] { p->ControlLoop(); });
  impl->threads.emplace_back([p] { p->PollLoop(); });
  impl->threads.emplace_back([p] { p->SuperviseLoop(); });
  impl->threads.emplace_back([p] { p->ReportLoop(); });
  return std::unique_ptr<WorkerAgent>(new WorkerAgent(std::move(impl)));
}

void WorkerAgent::Shutdown() {
  Impl& s = *impl_;
  {
    absl::MutexLock lock(&s.mu);
    if (s.shut_down) return;
    s.shut_down = true;
    s.draining = true;
    if (s.poll_context != nullptr) s.poll_context->TryCancel();
  }
  LOG(INFO) << "worker " << s.worker_id << " shutting down: stopping attempts";
  s.supervisor->CancelAll(StopCause::kShutdown, "the worker shut down");
  // Wait (real time) for the attempts to end and their exits to be acknowledged.
  const absl::Time deadline = absl::Now() + s.options.shutdown_timeout;
  while (!s.supervisor->Idle() && absl::Now() < deadline) s.WaitFor(absl::Milliseconds(50));
  if (!s.supervisor->Idle()) {
    LOG(WARNING) << "worker shut down with unreported attempts (coordinator unreachable?)";
  }
  {
    absl::MutexLock lock(&s.mu);
    s.stopping = true;
    if (s.poll_context != nullptr) s.poll_context->TryCancel();
    s.cv.SignalAll();
  }
  for (auto& t : s.threads) t.join();
  s.threads.clear();
  // Whatever the coordinator heard, no process may outlive the daemon's stop.
  const absl::Time kill_deadline = absl::Now() + s.options.supervisor.kill_grace + absl::Seconds(5);
  bool all_ended = false;
  while (!all_ended && absl::Now() < kill_deadline) {
    s.supervisor->Tick();
    all_ended = true;
    for (const auto& id : s.supervisor->AttemptIds()) {
      all_ended = all_ended && s.supervisor->ExitOf(id).has_value();
    }
    if (!all_ended) absl::SleepFor(absl::Milliseconds(20));
  }
}

const std::string& WorkerAgent::worker_id() const { return impl_->worker_id; }
int64_t WorkerAgent::incarnation() const { return impl_->incarnation; }
bool WorkerAgent::registered() const {
  absl::MutexLock lock(&impl_->mu);
  return impl_->registered;
}
int WorkerAgent::metrics_port() const { return impl_->metrics_port; }
std::vector<std::string> WorkerAgent::ActiveAttempts() const {
  return impl_->supervisor->AttemptIds();
}
int WorkerAgent::BufferedReports() const { return impl_->Buffered(); }
Supervisor& WorkerAgent::supervisor() { return *impl_->supervisor; }

}  // namespace align::worker
