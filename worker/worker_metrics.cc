#include "worker/worker_metrics.h"

#include "absl/strings/str_cat.h"

namespace align::worker {
namespace {

prometheus::Family<prometheus::Gauge>& G(prometheus::Registry& r, const std::string& name,
                                         const std::string& help) {
  return prometheus::BuildGauge().Name(name).Help(help).Register(r);
}
prometheus::Family<prometheus::Counter>& C(prometheus::Registry& r, const std::string& name,
                                           const std::string& help) {
  return prometheus::BuildCounter().Name(name).Help(help).Register(r);
}

}  // namespace

WorkerMetrics::WorkerMetrics(std::shared_ptr<prometheus::Registry> registry)
    : registry_(std::move(registry)),
      step_(G(*registry_, "align_worker_step", "Latest training step of a rank")),
      total_steps_(G(*registry_, "align_worker_total_steps", "Planned training steps of a rank")),
      loss_(G(*registry_, "align_worker_loss", "Latest training loss of a rank")),
      learning_rate_(G(*registry_, "align_worker_learning_rate", "Current learning rate")),
      tokens_per_second_(
          G(*registry_, "align_worker_tokens_per_second", "Training throughput of a rank")),
      reward_margin_(G(*registry_, "align_worker_reward_margin",
                       "DPO/reward model: mean chosen minus rejected reward")),
      reward_accuracy_(G(*registry_, "align_worker_reward_accuracy",
                         "DPO/reward model: fraction of pairs with chosen > rejected")),
      rewards_chosen_(G(*registry_, "align_worker_rewards_chosen", "DPO: mean chosen reward")),
      rewards_rejected_(
          G(*registry_, "align_worker_rewards_rejected", "DPO: mean rejected reward")),
      rss_(G(*registry_, "align_worker_process_rss_bytes",
             "Resident memory of a rank's process group")),
      gpu_memory_used_(G(*registry_, "align_worker_gpu_memory_used_bytes", "GPU memory in use")),
      gpu_memory_total_(G(*registry_, "align_worker_gpu_memory_total_bytes", "GPU memory")),
      gpu_utilization_(
          G(*registry_, "align_worker_gpu_utilization_ratio", "GPU utilization, 0..1")),
      attempts_running_(
          G(*registry_, "align_worker_attempts_running", "Attempts whose slots are busy")),
      attempts_finished_(C(*registry_, "align_worker_attempts_finished_total",
                           "Attempts ended, by state and failure class")),
      coordinator_errors_(C(*registry_, "align_worker_coordinator_errors_total",
                            "Failed RPCs to the coordinator, by RPC")),
      buffered_reports_(G(*registry_, "align_worker_buffered_reports",
                          "Attempt reports waiting for the coordinator")),
      registered_(G(*registry_, "align_worker_registered",
                    "1 while registered with the coordinator")) {}

void WorkerMetrics::UpdateRanks(const std::vector<RankSnapshot>& ranks) {
  absl::MutexLock lock(&mu_);
  std::set<Labels> seen;
  int running = 0;
  std::set<std::string> running_attempts;
  for (const RankSnapshot& r : ranks) {
    if (r.running) running_attempts.insert(r.attempt_id);
    Labels labels{{"pipeline", r.pipeline_id},
                  {"stage", r.stage},
                  {"attempt", r.attempt_id},
                  {"rank", absl::StrCat(r.rank)}};
    seen.insert(labels);
    auto& series = rank_series_[labels];
    series.clear();
    auto set = [&](prometheus::Family<prometheus::Gauge>& family, double value) {
      prometheus::Gauge& g = family.Add(labels);
      g.Set(value);
      series.emplace_back(&family, &g);
    };
    const auto& m = r.progress.metrics();
    auto metric = [&](prometheus::Family<prometheus::Gauge>& family, const char* key) {
      if (auto it = m.find(key); it != m.end()) set(family, it->second);
    };
    set(step_, static_cast<double>(r.progress.step()));
    set(total_steps_, static_cast<double>(r.progress.total_steps()));
    set(tokens_per_second_, r.progress.tokens_per_second());
    set(rss_, static_cast<double>(r.rss_bytes));
    metric(loss_, "loss");
    metric(learning_rate_, "learning_rate");
    metric(reward_margin_, "rewards/margins");
    metric(reward_accuracy_, "rewards/accuracies");
    metric(rewards_chosen_, "rewards/chosen");
    metric(rewards_rejected_, "rewards/rejected");
  }
  running = static_cast<int>(running_attempts.size());
  for (auto it = rank_series_.begin(); it != rank_series_.end();) {
    if (seen.count(it->first) > 0) {
      ++it;
      continue;
    }
    for (auto& [family, gauge] : it->second) family->Remove(gauge);
    it = rank_series_.erase(it);
  }
  attempts_running_.Add({}).Set(running);
}

void WorkerMetrics::UpdateGpus(const std::vector<v1::GpuInfo>& gpus) {
  for (const v1::GpuInfo& g : gpus) {
    Labels labels{{"gpu", absl::StrCat(g.index())}, {"uuid", g.uuid()}};
    gpu_memory_used_.Add(labels).Set(static_cast<double>(g.memory_used_bytes()));
    gpu_memory_total_.Add(labels).Set(static_cast<double>(g.memory_total_bytes()));
    gpu_utilization_.Add(labels).Set(g.utilization());
  }
}

void WorkerMetrics::AttemptFinished(const v1::AttemptExit& exit) {
  attempts_finished_
      .Add({{"state", v1::AttemptState_Name(exit.state())},
            {"failure_class", v1::FailureClass_Name(exit.failure_class())}})
      .Increment();
}

void WorkerMetrics::CoordinatorError(const std::string& rpc) {
  coordinator_errors_.Add({{"rpc", rpc}}).Increment();
}

void WorkerMetrics::SetBufferedReports(int n) { buffered_reports_.Add({}).Set(n); }

void WorkerMetrics::SetRegistered(bool registered) {
  registered_.Add({}).Set(registered ? 1 : 0);
}

}  // namespace align::worker
