// Scheduler: a pure function from a cluster snapshot (queued stages, workers and their free slots)
// to decisions: placements (all ranks of a stage at once, or none), stages that can never run
// (with the reason), and for every other queued stage its queue position and why it waits.
// No I/O, no clock, no threads: the Coordinator builds the snapshot and applies the decisions.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "align/v1/pipeline.pb.h"
#include "coordinator/store/store.h"

namespace align::coordinator {

struct SchedStage {
  std::string pipeline_id;
  std::string stage;
  int priority = 0;              // higher first
  int64_t submit_order = 0;      // FIFO among equal priorities (pipeline creation, then index)
  v1::Resources resources;       // defaults applied (ranks >= 1, cpus_per_rank >= 1)
};

struct SchedWorker {
  std::string worker_id;
  int64_t incarnation = 0;
  bool schedulable = true;       // alive and not draining
  std::vector<int> gpu_indices;  // all GPUs of the worker
  std::vector<int> free_gpus;    // indices not in use
  int cpu_slots = 0;
  int free_cpu_slots = 0;
  int64_t memory_bytes = 0;      // 0 = unknown
  std::map<std::string, std::string> labels;
};

struct Placement {
  std::string pipeline_id;
  std::string stage;
  std::vector<RankPlacement> ranks;  // per worker: ranks and GPU indices
  int world_size = 1;
  bool on_cpu = false;               // a GPU stage placed on CPU (cpu_only_allowed)
};

struct Impossible {
  std::string pipeline_id;
  std::string stage;
  std::string reason;
};

struct Waiting {
  int queue_position = 0;  // 1-based among the stages still queued after this round
  std::string reason;
};

struct Decisions {
  std::vector<Placement> placements;
  std::vector<Impossible> impossible;
  std::map<std::pair<std::string, std::string>, Waiting> waiting;  // (pipeline, stage)
};

//! Places stages in priority-then-FIFO order; a stage that does not fit now is skipped (smaller
//! stages behind it may still be placed) and reported with its position and reason.
Decisions Schedule(const std::vector<SchedStage>& queued, const std::vector<SchedWorker>& workers);

}  // namespace align::coordinator
