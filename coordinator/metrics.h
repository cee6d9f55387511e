// The coordinator's Prometheus metrics (prometheus-cpp), all named align_*. One instance per
// coordinator; an optional exposer serves /metrics. docs/operations.md lists every series.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "absl/status/statusor.h"
#include "prometheus/counter.h"
#include "prometheus/exposer.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace align::coordinator {

class CoordinatorMetrics {
 public:
  CoordinatorMetrics();
  //! Serves /metrics on `address` ("127.0.0.1:0" picks a port).
  absl::Status StartExposer(const std::string& address);
  int exposer_port() const;

  void SetPipelines(const std::map<std::string, int>& by_state);
  void SetStages(const std::map<std::string, int>& by_state);
  void SetQueueDepth(int n) { queue_depth_->Set(n); }
  void SetWorkersAlive(int n) { workers_alive_->Set(n); }
  void ObserveTimeInQueue(double seconds) { time_in_queue_->Observe(seconds); }
  void ObserveSchedulingLatency(double seconds) { scheduling_latency_->Observe(seconds); }
  void ObserveAssignmentLatency(double seconds) { assignment_latency_->Observe(seconds); }
  void IncLeaseExpirations() { lease_expirations_->Increment(); }
  void IncRetries(const std::string& failure_class);
  void IncStoreErrors(const std::string& kind);
  void ObserveRpc(const std::string& method, const std::string& code, double seconds);
  void IncSubmits() { submits_->Increment(); }

  prometheus::Registry& registry() { return *registry_; }
  //! The text exposition of every metric (for tests and `alignctl` without HTTP).
  std::string Serialize() const;

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<prometheus::Exposer> exposer_;
  prometheus::Family<prometheus::Gauge>& pipelines_;
  prometheus::Family<prometheus::Gauge>& stages_;
  prometheus::Gauge* queue_depth_;
  prometheus::Gauge* workers_alive_;
  prometheus::Histogram* time_in_queue_;
  prometheus::Histogram* scheduling_latency_;
  prometheus::Histogram* assignment_latency_;
  prometheus::Counter* lease_expirations_;
  prometheus::Counter* submits_;
  prometheus::Family<prometheus::Counter>& retries_;
  prometheus::Family<prometheus::Counter>& store_errors_;
  prometheus::Family<prometheus::Counter>& rpcs_;
  prometheus::Family<prometheus::Histogram>& rpc_latency_;
  std::mutex mu_;  // guards label-keyed lookups below (Family::Add is thread-safe, this is a cache)
  std::map<std::string, prometheus::Gauge*> pipeline_gauges_;
  std::map<std::string, prometheus::Gauge*> stage_gauges_;
};

}  // namespace align::coordinator
