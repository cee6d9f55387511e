#include "coordinator/scheduler/scheduler.h"

#include <algorithm>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace align::coordinator {
namespace {

bool Eligible(const SchedWorker& w, const v1::Resources& r) {
  if (!w.schedulable) return false;
  for (const auto& [k, v] : r.node_selector()) {
    auto it = w.labels.find(k);
    if (it == w.labels.end() || it->second != v) return false;
  }
  if (r.memory_mb() > 0 && w.memory_bytes > 0 && r.memory_mb() * (int64_t{1} << 20) > w.memory_bytes) {
    return false;
  }
  return true;
}

// Ranks a worker could hold when empty, and holds now.
int CapacityRanks(const SchedWorker& w, int gpus_per_rank, int cpus_per_rank, bool now) {
  if (gpus_per_rank > 0) {
    return static_cast<int>((now ? w.free_gpus.size() : w.gpu_indices.size())) / gpus_per_rank;
  }
  return (now ? w.free_cpu_slots : w.cpu_slots) / std::max(1, cpus_per_rank);
}

std::string Plural(int n, absl::string_view one, absl::string_view many) {
  return absl::StrCat(n, " ", n == 1 ? one : many);
}

}  // namespace

Decisions Schedule(const std::vector<SchedStage>& queued, const std::vector<SchedWorker>& input) {
  Decisions d;
  std::vector<SchedWorker> workers = input;  // free slots are consumed as we place
  std::vector<const SchedStage*> order;
  for (const SchedStage& s : queued) order.push_back(&s);
  std::stable_sort(order.begin(), order.end(), [](const SchedStage* a, const SchedStage* b) {
    return std::make_tuple(-a->priority, a->submit_order, a->pipeline_id, a->stage) <
           std::make_tuple(-b->priority, b->submit_order, b->pipeline_id, b->stage);
  });
  const bool any_schedulable =
      std::any_of(workers.begin(), workers.end(), [](const SchedWorker& w) { return w.schedulable; });

  std::vector<std::pair<const SchedStage*, std::string>> still_waiting;
  for (const SchedStage* s : order) {
    const v1::Resources& r = s->resources;
    const int ranks = std::max(1, r.ranks());
    const int cpus = std::max(1, r.cpus_per_rank());
    int gpus = std::max(0, r.gpus_per_rank());
    if (!any_schedulable) {
      still_waiting.push_back({s, "no worker is registered and alive yet"});
      continue;
    }
    std::vector<SchedWorker*> eligible;
    for (SchedWorker& w : workers) {
      if (Eligible(w, r)) eligible.push_back(&w);
    }
    auto total_capacity = [&](int g) {
      int total = 0;
      for (SchedWorker* w : eligible) total += CapacityRanks(*w, g, cpus, /*now=*/false);
      return total;
    };
    bool on_cpu = false;
    if (gpus > 0 && total_capacity(gpus) < ranks && r.cpu_only_allowed()) {
      gpus = 0;
      on_cpu = true;
    }
    if (total_capacity(gpus) < ranks) {
      std::string need = gpus > 0 ? absl::StrCat(Plural(ranks, "rank", "ranks"), " x ",
                                                 Plural(gpus, "GPU", "GPUs"))
                                  : absl::StrCat(Plural(ranks, "rank", "ranks"), " x ",
                                                 Plural(cpus, "CPU slot", "CPU slots"));
      std::string why;
      if (eligible.empty()) {
        why = r.node_selector().empty() && r.memory_mb() == 0
                  ? "no alive worker"
                  : "no alive worker matches its node_selector/memory_mb";
      } else if (gpus > 0 && total_capacity(gpus) == 0) {
        why = absl::StrCat("no eligible worker has ", Plural(gpus, "GPU", "GPUs"),
                           " (set resources.cpu_only_allowed to run on CPU workers)");
      } else {
        why = absl::StrCat("the eligible workers together hold at most ",
                           Plural(total_capacity(gpus), "rank", "ranks"));
      }
      d.impossible.push_back(
          {s->pipeline_id, s->stage, absl::StrCat("needs ", need, ", but ", why)});
      continue;
    }
    // Fill the roomiest workers first: fewer workers per gang, less cross-host traffic. CPU
    // stages prefer workers without GPUs so GPU hosts stay free for GPU work.
    std::stable_sort(eligible.begin(), eligible.end(), [&](SchedWorker* a, SchedWorker* b) {
      const bool a_gpu = !a->gpu_indices.empty(), b_gpu = !b->gpu_indices.empty();
      const int a_free = CapacityRanks(*a, gpus, cpus, true), b_free = CapacityRanks(*b, gpus, cpus, true);
      if (gpus == 0 && a_gpu != b_gpu) return !a_gpu;
      if (a_free != b_free) return a_free > b_free;
      return a->worker_id < b->worker_id;
    });
    int free_now = 0;
    for (SchedWorker* w : eligible) free_now += CapacityRanks(*w, gpus, cpus, true);
    if (free_now < ranks) {
      still_waiting.push_back(
          {s, absl::StrCat("waiting for resources: needs ",
                           gpus > 0 ? absl::StrCat(Plural(ranks, "rank", "ranks"), " x ",
                                                   Plural(gpus, "GPU", "GPUs"))
                                    : absl::StrCat(Plural(ranks, "rank", "ranks"), " x ",
                                                   Plural(cpus, "CPU slot", "CPU slots")),
                           "; ", free_now, " of ", ranks, " fit on the ", eligible.size(),
                           " eligible workers now")});
      continue;
    }
    Placement p;
    p.pipeline_id = s->pipeline_id;
    p.stage = s->stage;
    p.world_size = ranks;
    p.on_cpu = on_cpu;
    int next_rank = 0;
    for (SchedWorker* w : eligible) {
      if (next_rank == ranks) break;
      const int take = std::min(ranks - next_rank, CapacityRanks(*w, gpus, cpus, true));
      if (take == 0) continue;
      RankPlacement rp;
      rp.worker_id = w->worker_id;
      rp.incarnation = w->incarnation;
      for (int i = 0; i < take; ++i) {
        rp.ranks.push_back(next_rank++);
        if (gpus > 0) {
          for (int g = 0; g < gpus; ++g) {
            rp.gpu_indices.push_back(w->free_gpus.front());
            w->free_gpus.erase(w->free_gpus.begin());
          }
        } else {
          w->free_cpu_slots -= cpus;
        }
      }
      p.ranks.push_back(std::move(rp));
    }
    d.placements.push_back(std::move(p));
  }
  int position = 0;
  for (const auto& [s, reason] : still_waiting) {
    d.waiting[{s->pipeline_id, s->stage}] = Waiting{++position, reason};
  }
  return d;
}

}  // namespace align::coordinator
