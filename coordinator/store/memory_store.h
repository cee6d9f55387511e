// MemoryStore: the Store semantics (atomic batches, unique request ids, preconditions, bounded log
// tails) held in process memory. For unit tests and throwaway local runs; nothing survives exit.
#pragma once

#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "coordinator/store/store.h"

namespace align::coordinator {

class MemoryStore final : public Store {
 public:
  absl::Status Apply(const WriteBatch& batch) override;
  absl::StatusOr<StoreSnapshot> Load() override;
  absl::StatusOr<std::optional<std::string>> FindByRequestId(
      const std::string& client_request_id) override;
  absl::StatusOr<std::vector<v1::Event>> ReadEvents(const std::string& pipeline_id, int64_t after,
                                                    int limit) override;
  absl::StatusOr<std::vector<v1::LogLine>> ReadLogs(const std::string& pipeline_id,
                                                    const std::string& stage, int rank,
                                                    int64_t tail) override;
  absl::StatusOr<std::vector<v1::MetricSeries>> ReadMetrics(
      const std::string& pipeline_id, const std::string& stage,
      const std::vector<std::string>& names) override;
  absl::StatusOr<std::vector<v1::Artifact>> ReadArtifacts(const std::string& pipeline_id,
                                                          const std::string& stage) override;
  absl::StatusOr<bool> HasReport(const std::string& report_id) override;

  //! Makes every following Apply fail with UNAVAILABLE (simulates a full disk) until cleared.
  void SetFailWrites(bool fail);

 private:
  using StageKey = std::pair<std::string, std::string>;
  mutable absl::Mutex mu_;
  bool fail_writes_ ABSL_GUARDED_BY(mu_) = false;
  std::map<std::string, StoredPipeline> pipelines_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::string> request_ids_ ABSL_GUARDED_BY(mu_);
  std::map<StageKey, StoredStage> stages_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, StoredAttempt> attempts_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, v1::WorkerStatus> workers_ ABSL_GUARDED_BY(mu_);
  std::vector<v1::Event> events_ ABSL_GUARDED_BY(mu_);
  // (attempt, rank) -> lines
  std::map<std::pair<std::string, int>, std::vector<v1::LogLine>> logs_ ABSL_GUARDED_BY(mu_);
  std::vector<std::pair<std::string, v1::MetricSeries>> metrics_ ABSL_GUARDED_BY(mu_);
  std::map<std::tuple<std::string, std::string, std::string>, v1::Artifact> artifacts_
      ABSL_GUARDED_BY(mu_);
  std::map<std::string, bool> reports_ ABSL_GUARDED_BY(mu_);
};

}  // namespace align::coordinator
