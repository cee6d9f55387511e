#include "coordinator/coordinator_server.h"

#include <fstream>
#include <sstream>
#include <thread>

#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "coordinator/coordinator.h"
#include "coordinator/metrics.h"
#include "coordinator/service/auth.h"
#include "coordinator/service/grpc_services.h"
#include "coordinator/store/store.h"

namespace align::coordinator {
namespace {

absl::StatusOr<std::string> ReadFile(const std::string& path, absl::string_view what) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", what, " ", path));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// RandomIdGenerator is not thread-safe; the Coordinator calls it under its own lock, but the
// wrapper keeps that true for any other caller.
class LockedIds final : public IdGenerator {
 public:
  std::string NewId(absl::string_view prefix, absl::Time now) override {
    absl::MutexLock lock(&mu_);
    return ids_.NewId(prefix, now);
  }

 private:
  absl::Mutex mu_;
  RandomIdGenerator ids_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

struct CoordinatorServer::Impl {
  CoordinatorOptions options;
  Clock* clock = nullptr;
  std::unique_ptr<Store> store;
  std::unique_ptr<CoordinatorMetrics> metrics;
  LockedIds ids;
  std::unique_ptr<Coordinator> core;
  TokenAuth auth;
  StreamHub hub;
  std::unique_ptr<CoordinatorServiceImpl> coordinator_service;
  std::unique_ptr<WorkerServiceImpl> worker_service;
  std::unique_ptr<grpc::Server> server;
  int port = 0;
  std::thread ticker;
  std::thread waker;
  absl::Mutex mu;
  bool stopping ABSL_GUARDED_BY(mu) = false;
  bool stopped ABSL_GUARDED_BY(mu) = false;

  bool Stopping() {
    absl::MutexLock lock(&mu);
    return stopping;
  }

  void TickerLoop() {
    int64_t seen = 0;
    while (!Stopping()) {
      absl::Status s = core->Tick();
      if (!s.ok() && !Stopping()) LOG(WARNING) << "scheduler tick: " << s;
      core->ExpirePolls(absl::Now());
      // Run again as soon as something happened, else on the timer; never more often than
      // every 5 ms so a burst of submits is scheduled in batches and submits keep the lock.
      seen = core->WaitForEvents(seen, options.tick_interval);
      absl::SleepFor(absl::Milliseconds(5));
    }
  }

  void WakerLoop() {
    int64_t seen = core->last_event_sequence();
    while (!Stopping()) {
      seen = core->WaitForEvents(seen, absl::Milliseconds(250));
      hub.WakeAll();
    }
    hub.WakeAll();
  }
};

CoordinatorServer::CoordinatorServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

CoordinatorServer::~CoordinatorServer() { Shutdown(); }

absl::StatusOr<std::unique_ptr<CoordinatorServer>> CoordinatorServer::Start(
    const CoordinatorOptions& options) {
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  impl->clock = options.clock != nullptr ? options.clock : &Clock::Real();
  ASSIGN_OR_RETURN(impl->auth, TokenAuth::LoadFile(options.token_file));
  ASSIGN_OR_RETURN(impl->store, OpenStore(options.db_path));
  impl->metrics = std::make_unique<CoordinatorMetrics>();
  if (!options.metrics_listen_address.empty()) {
    RETURN_IF_ERROR(impl->metrics->StartExposer(options.metrics_listen_address));
  }
  CoordinatorConfig config;
  config.artifact_root = options.artifact_root;
  config.data_dir = options.data_dir;
  config.lease_timeout = options.lease_timeout;
  config.heartbeat_interval = options.heartbeat_interval;
  config.recovery_grace = options.recovery_grace;
  impl->core = std::make_unique<Coordinator>(*impl->store, *impl->clock, impl->ids,
                                             impl->metrics.get(), config);
  RETURN_IF_ERROR(impl->core->Recover());

  impl->coordinator_service = std::make_unique<CoordinatorServiceImpl>(
      *impl->core, impl->auth, impl->metrics.get(), impl->hub);
  impl->worker_service =
      std::make_unique<WorkerServiceImpl>(*impl->core, impl->auth, impl->metrics.get());

  std::shared_ptr<grpc::ServerCredentials> creds;
  if (!options.tls_cert_file.empty() || !options.tls_key_file.empty()) {
    if (options.tls_cert_file.empty() || options.tls_key_file.empty()) {
      return absl::InvalidArgumentError("TLS needs both --tls-cert and --tls-key");
    }
    ASSIGN_OR_RETURN(std::string cert, ReadFile(options.tls_cert_file, "TLS certificate"));
    ASSIGN_OR_RETURN(std::string key, ReadFile(options.tls_key_file, "TLS key"));
    grpc::SslServerCredentialsOptions ssl;
    ssl.pem_key_cert_pairs.push_back({key, cert});
    creds = grpc::SslServerCredentials(ssl);
  } else {
    creds = grpc::InsecureServerCredentials();
  }
  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options.listen_address, creds, &impl->port);
  builder.SetMaxReceiveMessageSize(options.max_request_bytes);
  builder.RegisterService(impl->coordinator_service.get());
  builder.RegisterService(impl->worker_service.get());
  impl->server = builder.BuildAndStart();
  if (impl->server == nullptr || impl->port == 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", options.listen_address,
                                               "; is the port in use? pick another --listen"));
  }
  if (auto* health = impl->server->GetHealthCheckService()) {
    health->SetServingStatus(true);
  }
  Impl* raw = impl.get();
  if (options.run_background_ticker) {
    impl->ticker = std::thread([raw] { raw->TickerLoop(); });
  }
  impl->waker = std::thread([raw] { raw->WakerLoop(); });
  LOG(INFO) << "align-coordinator serving on " << options.listen_address << " (port "
            << impl->port << "), database " << options.db_path
            << (impl->auth.enabled() ? ", token auth on" : ", no auth");
  return std::unique_ptr<CoordinatorServer>(new CoordinatorServer(std::move(impl)));
}

int CoordinatorServer::port() const { return impl_->port; }

std::string CoordinatorServer::address() const {
  std::string host = impl_->options.listen_address;
  const size_t colon = host.rfind(':');
  if (colon != std::string::npos) host = host.substr(0, colon);
  if (host.empty() || host == "0.0.0.0" || host == "[::]" || host == "::") host = "127.0.0.1";
  return absl::StrCat(host, ":", impl_->port);
}

int CoordinatorServer::metrics_port() const { return impl_->metrics->exposer_port(); }

Coordinator* CoordinatorServer::coordinator() { return impl_->core.get(); }

void CoordinatorServer::Shutdown() {
  {
    absl::MutexLock lock(&impl_->mu);
    if (impl_->stopping) return;
    impl_->stopping = true;
  }
  if (auto* health = impl_->server->GetHealthCheckService()) health->SetServingStatus(false);
  impl_->core->Shutdown();  // ends long polls; streams see UNAVAILABLE
  impl_->hub.WakeAll();
  impl_->server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  if (impl_->ticker.joinable()) impl_->ticker.join();
  if (impl_->waker.joinable()) impl_->waker.join();
  impl_->server->Wait();
  {
    absl::MutexLock lock(&impl_->mu);
    impl_->stopped = true;
  }
  LOG(INFO) << "align-coordinator stopped";
}

void CoordinatorServer::Wait() {
  absl::MutexLock lock(&impl_->mu);
  auto stopped = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(impl_->mu) { return impl_->stopped; };
  impl_->mu.Await(absl::Condition(&stopped));
}

}  // namespace align::coordinator
