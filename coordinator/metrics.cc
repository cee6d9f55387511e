#include "coordinator/metrics.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "prometheus/text_serializer.h"

namespace align::coordinator {
namespace {

prometheus::Histogram::BucketBoundaries LatencyBuckets() {
  return {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
}
prometheus::Histogram::BucketBoundaries QueueBuckets() {
  return {0.01, 0.1, 1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 24 * 3600};
}

}  // namespace

CoordinatorMetrics::CoordinatorMetrics()
    : registry_(std::make_shared<prometheus::Registry>()),
      pipelines_(prometheus::BuildGauge().Name("align_pipelines").Help("Pipelines by state").Register(*registry_)),
      stages_(prometheus::BuildGauge().Name("align_stages").Help("Stages by state").Register(*registry_)),
      queue_depth_(&prometheus::BuildGauge().Name("align_queue_depth").Help("Stages queued and waiting for a placement").Register(*registry_).Add({})),
      workers_alive_(&prometheus::BuildGauge().Name("align_workers_alive").Help("Workers registered and heartbeating").Register(*registry_).Add({})),
      time_in_queue_(&prometheus::BuildHistogram().Name("align_stage_time_in_queue_seconds").Help("From stage ready to placed").Register(*registry_).Add({}, QueueBuckets())),
      scheduling_latency_(&prometheus::BuildHistogram().Name("align_scheduling_round_seconds").Help("Duration of one scheduling round, including the placement commit").Register(*registry_).Add({}, LatencyBuckets())),
      assignment_latency_(&prometheus::BuildHistogram().Name("align_assignment_latency_seconds").Help("From stage ready (or placement commit) to the worker receiving the assignment").Register(*registry_).Add({}, LatencyBuckets())),
      lease_expirations_(&prometheus::BuildCounter().Name("align_lease_expirations_total").Help("Attempts failed because their lease expired").Register(*registry_).Add({})),
      submits_(&prometheus::BuildCounter().Name("align_submits_total").Help("Pipelines accepted").Register(*registry_).Add({})),
      retries_(prometheus::BuildCounter().Name("align_retries_total").Help("Stage retries by failure class").Register(*registry_)),
      store_errors_(prometheus::BuildCounter().Name("align_store_errors_total").Help("Store writes that failed, by kind (unavailable, conflict)").Register(*registry_)),
      rpcs_(prometheus::BuildCounter().Name("align_rpcs_total").Help("RPCs by method and status code").Register(*registry_)),
      rpc_latency_(prometheus::BuildHistogram().Name("align_rpc_latency_seconds").Help("RPC handling latency by method").Register(*registry_)) {}

absl::Status CoordinatorMetrics::StartExposer(const std::string& address) {
  try {
    exposer_ = std::make_unique<prometheus::Exposer>(address);
    exposer_->RegisterCollectable(registry_);
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat("cannot serve /metrics on ", address, ": ", e.what(),
                                               "; pick another --metrics-listen address"));
  }
  return absl::OkStatus();
}

int CoordinatorMetrics::exposer_port() const {
  if (exposer_ == nullptr) return 0;
  auto ports = exposer_->GetListeningPorts();
  return ports.empty() ? 0 : ports.front();
}

void CoordinatorMetrics::SetPipelines(const std::map<std::string, int>& by_state) {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& [state, g] : pipeline_gauges_) g->Set(0);
  for (const auto& [state, n] : by_state) {
    auto& g = pipeline_gauges_[state];
    if (g == nullptr) g = &pipelines_.Add({{"state", state}});
    g->Set(n);
  }
}

void CoordinatorMetrics::SetStages(const std::map<std::string, int>& by_state) {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& [state, g] : stage_gauges_) g->Set(0);
  for (const auto& [state, n] : by_state) {
    auto& g = stage_gauges_[state];
    if (g == nullptr) g = &stages_.Add({{"state", state}});
    g->Set(n);
  }
}

void CoordinatorMetrics::IncRetries(const std::string& failure_class) {
  retries_.Add({{"failure_class", failure_class}}).Increment();
}

void CoordinatorMetrics::IncStoreErrors(const std::string& kind) {
  store_errors_.Add({{"kind", kind}}).Increment();
}

void CoordinatorMetrics::ObserveRpc(const std::string& method, const std::string& code,
                                    double seconds) {
  rpcs_.Add({{"method", method}, {"code", code}}).Increment();
  rpc_latency_.Add({{"method", method}}, LatencyBuckets()).Observe(seconds);
}

std::string CoordinatorMetrics::Serialize() const {
  prometheus::TextSerializer serializer;
  return serializer.Serialize(registry_->Collect());
}

}  // namespace align::coordinator
