// The worker's Prometheus metrics (all named align_worker_*): per-rank training progress with
// labels pipeline, stage, attempt, rank; GPU memory and utilization per GPU; the agent's own health
// (coordinator errors, buffered reports, finished attempts). Served on --metrics-listen.
#pragma once

#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "align/v1/state.pb.h"
#include "worker/supervisor/supervisor.h"

namespace align::worker {

class WorkerMetrics {
 public:
  explicit WorkerMetrics(std::shared_ptr<prometheus::Registry> registry);
  const std::shared_ptr<prometheus::Registry>& registry() const { return registry_; }

  //! Replaces the per-rank series with `ranks` (series of attempts no longer present are removed).
  void UpdateRanks(const std::vector<RankSnapshot>& ranks);
  void UpdateGpus(const std::vector<v1::GpuInfo>& gpus);
  void AttemptFinished(const v1::AttemptExit& exit);
  void CoordinatorError(const std::string& rpc);
  void SetBufferedReports(int n);
  void SetRegistered(bool registered);

 private:
  using Labels = std::map<std::string, std::string>;
  struct RankGauges;
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Gauge>& step_;
  prometheus::Family<prometheus::Gauge>& total_steps_;
  prometheus::Family<prometheus::Gauge>& loss_;
  prometheus::Family<prometheus::Gauge>& learning_rate_;
  prometheus::Family<prometheus::Gauge>& tokens_per_second_;
  prometheus::Family<prometheus::Gauge>& reward_margin_;
  prometheus::Family<prometheus::Gauge>& reward_accuracy_;
  prometheus::Family<prometheus::Gauge>& rewards_chosen_;
  prometheus::Family<prometheus::Gauge>& rewards_rejected_;
  prometheus::Family<prometheus::Gauge>& rss_;
  prometheus::Family<prometheus::Gauge>& gpu_memory_used_;
  prometheus::Family<prometheus::Gauge>& gpu_memory_total_;
  prometheus::Family<prometheus::Gauge>& gpu_utilization_;
  prometheus::Family<prometheus::Gauge>& attempts_running_;
  prometheus::Family<prometheus::Counter>& attempts_finished_;
  prometheus::Family<prometheus::Counter>& coordinator_errors_;
  prometheus::Family<prometheus::Gauge>& buffered_reports_;
  prometheus::Family<prometheus::Gauge>& registered_;
  absl::Mutex mu_;
  std::map<Labels, std::vector<std::pair<prometheus::Family<prometheus::Gauge>*,
                                         prometheus::Gauge*>>>
      rank_series_ ABSL_GUARDED_BY(mu_);
};

}  // namespace align::worker
