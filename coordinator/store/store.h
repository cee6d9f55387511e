// Store: the coordinator's durable state behind one interface. SqliteStore (WAL, migrations) is
// the real backend; MemoryStore has the same semantics for unit tests. Only the Coordinator writes
// state transitions; every write is one atomic WriteBatch, optionally guarded by preconditions so
// that two writers racing for the same stage cannot both win.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "align/v1/state.pb.h"
#include "align/v1/pipeline.pb.h"

namespace align::coordinator {

//! One pipeline row. `status` carries everything but its stages (they are rows of their own).
struct StoredPipeline {
  v1::PipelineStatus status;
  std::string source_yaml;
  bool no_cache = false;
};

//! One stage row. `status` carries everything but its attempts.
struct StoredStage {
  std::string pipeline_id;
  int index = 0;                 // position in the spec; FIFO order within a pipeline
  v1::StageStatus status;
  absl::Time next_attempt_at = absl::InfinitePast();  // backoff deadline in RETRY_WAIT
  std::string last_checkpoint;   // newest complete checkpoint of any attempt (resume point)
};

//! Where the ranks of one attempt run on one worker.
struct RankPlacement {
  std::string worker_id;
  int64_t incarnation = 0;
  std::vector<int> ranks;
  std::vector<int> gpu_indices;
  bool operator==(const RankPlacement&) const = default;
};

//! One attempt row plus its lease.
struct StoredAttempt {
  std::string pipeline_id;
  std::string stage;
  v1::AttemptStatus status;
  std::vector<RankPlacement> placement;
  int world_size = 1;
  int cpus_per_rank = 1;
  std::string lease_id;
  absl::Time lease_expires = absl::InfinitePast();
  bool cancel_requested = false;
};

//! A precondition of a WriteBatch: the stage must currently be in `state`.
struct StageExpectation {
  std::string pipeline_id;
  std::string stage;
  v1::StageState state = v1::STAGE_STATE_UNSPECIFIED;
};

//! Everything one state transition writes, applied atomically (all or nothing).
struct WriteBatch {
  //! Pipelines inserted as new rows: a client_request_id that exists already fails the whole
  //! batch with ALREADY_EXISTS (the message names the existing pipeline id).
  std::vector<StoredPipeline> new_pipelines;
  std::vector<StoredPipeline> pipelines;  // upserts
  std::vector<StoredStage> stages;        // upserts
  std::vector<StoredAttempt> attempts;    // upserts (the lease travels with the attempt)
  std::vector<v1::WorkerStatus> workers;  // upserts
  std::vector<v1::Event> events;          // appended; sequence is set by the caller
  std::vector<v1::LogLine> logs;          // appended; each (attempt, rank) keeps its last N lines
  std::vector<std::pair<std::string, v1::MetricSeries>> metrics;  // (pipeline_id, series)
  std::vector<v1::Artifact> artifacts;    // upserts keyed by (pipeline, stage, name)
  std::vector<std::string> report_ids;    // ReportAttempt idempotency keys seen
  std::vector<StageExpectation> expect;   // all must hold, else FAILED_PRECONDITION
  //! State transitions are fsynced (synchronous=FULL); progress and logs may be relaxed.
  bool durable = true;

  bool empty() const {
    return new_pipelines.empty() && pipelines.empty() && stages.empty() && attempts.empty() &&
           workers.empty() && events.empty() && logs.empty() && metrics.empty() &&
           artifacts.empty() && report_ids.empty();
  }
};

//! What a restarted coordinator loads.
struct StoreSnapshot {
  std::vector<StoredPipeline> pipelines;
  std::vector<StoredStage> stages;
  std::vector<StoredAttempt> attempts;
  std::vector<v1::WorkerStatus> workers;
  int64_t last_event_sequence = 0;
};

class Store {
 public:
  virtual ~Store() = default;

  //! Applies the batch atomically. Errors: ALREADY_EXISTS (duplicate client_request_id),
  //! FAILED_PRECONDITION (an expectation failed), UNAVAILABLE (disk full, I/O error; nothing
  //! written). Lock contention is retried inside and never surfaces.
  virtual absl::Status Apply(const WriteBatch& batch) = 0;
  //! Everything needed to rebuild the coordinator's memory.
  virtual absl::StatusOr<StoreSnapshot> Load() = 0;
  //! The pipeline id stored for a client request id, if any.
  virtual absl::StatusOr<std::optional<std::string>> FindByRequestId(
      const std::string& client_request_id) = 0;
  //! Events of a pipeline with sequence > after, oldest first, at most `limit`.
  virtual absl::StatusOr<std::vector<v1::Event>> ReadEvents(const std::string& pipeline_id,
                                                            int64_t after, int limit) = 0;
  //! Stored log lines (stage/rank filters: empty / -1 = all), oldest first; the last `tail` when > 0.
  virtual absl::StatusOr<std::vector<v1::LogLine>> ReadLogs(const std::string& pipeline_id,
                                                            const std::string& stage, int rank,
                                                            int64_t tail) = 0;
  //! Metric series of a pipeline (filters: empty = all).
  virtual absl::StatusOr<std::vector<v1::MetricSeries>> ReadMetrics(
      const std::string& pipeline_id, const std::string& stage,
      const std::vector<std::string>& names) = 0;
  //! Artifacts of a pipeline (lineage), optionally of one stage.
  virtual absl::StatusOr<std::vector<v1::Artifact>> ReadArtifacts(const std::string& pipeline_id,
                                                                  const std::string& stage) = 0;
  //! Whether a ReportAttempt idempotency key was applied already.
  virtual absl::StatusOr<bool> HasReport(const std::string& report_id) = 0;
};

//! Lines kept per (attempt, rank) in the log tail table.
inline constexpr int kLogLinesKept = 2000;

//! Opens a store: ":memory:" gives a MemoryStore, anything else a SqliteStore file.
absl::StatusOr<std::unique_ptr<Store>> OpenStore(const std::string& path);

}  // namespace align::coordinator
