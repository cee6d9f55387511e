#include "coordinator/store/memory_store.h"

#include <algorithm>
#include <tuple>

#include "absl/strings/str_cat.h"

namespace align::coordinator {

void MemoryStore::SetFailWrites(bool fail) {
  absl::MutexLock lock(&mu_);
  fail_writes_ = fail;
}

absl::Status MemoryStore::Apply(const WriteBatch& batch) {
  absl::MutexLock lock(&mu_);
  if (fail_writes_) {
    return absl::UnavailableError("store write failed: no space left on device (simulated)");
  }
  // Check everything first so that a failing batch changes nothing.
  for (const StageExpectation& e : batch.expect) {
    auto it = stages_.find({e.pipeline_id, e.stage});
    if (it == stages_.end() || it->second.status.state() != e.state) {
      return absl::FailedPreconditionError(
          absl::StrCat("stage ", e.pipeline_id, "/", e.stage, " is no longer in state ",
                       v1::StageState_Name(e.state)));
    }
  }
  for (const StoredPipeline& p : batch.new_pipelines) {
    if (pipelines_.count(p.status.pipeline_id()) > 0) {
      return absl::AlreadyExistsError(absl::StrCat("pipeline ", p.status.pipeline_id(), " exists"));
    }
    const std::string& rid = p.status.client_request_id();
    if (!rid.empty()) {
      auto it = request_ids_.find(rid);
      if (it != request_ids_.end()) {
        return absl::AlreadyExistsError(
            absl::StrCat("client_request_id ", rid, " already created pipeline ", it->second));
      }
    }
  }
  for (const StoredPipeline& p : batch.new_pipelines) {
    pipelines_[p.status.pipeline_id()] = p;
    if (!p.status.client_request_id().empty()) {
      request_ids_[p.status.client_request_id()] = p.status.pipeline_id();
    }
  }
  for (const StoredPipeline& p : batch.pipelines) pipelines_[p.status.pipeline_id()] = p;
  for (const StoredStage& s : batch.stages) stages_[{s.pipeline_id, s.status.name()}] = s;
  for (const StoredAttempt& a : batch.attempts) attempts_[a.status.attempt_id()] = a;
  for (const v1::WorkerStatus& w : batch.workers) workers_[w.worker_id()] = w;
  for (const v1::Event& e : batch.events) events_.push_back(e);
  for (const v1::LogLine& l : batch.logs) {
    auto& lines = logs_[{l.attempt_id(), l.rank()}];
    lines.push_back(l);
    if (lines.size() > static_cast<size_t>(kLogLinesKept)) {
      lines.erase(lines.begin(), lines.end() - kLogLinesKept);
    }
  }
  for (const auto& m : batch.metrics) metrics_.push_back(m);
  for (const v1::Artifact& a : batch.artifacts) {
    artifacts_[{a.pipeline_id(), a.stage(), a.name()}] = a;
  }
  for (const std::string& r : batch.report_ids) reports_[r] = true;
  return absl::OkStatus();
}

absl::StatusOr<StoreSnapshot> MemoryStore::Load() {
  absl::MutexLock lock(&mu_);
  StoreSnapshot snap;
  for (const auto& [id, p] : pipelines_) snap.pipelines.push_back(p);
  for (const auto& [key, s] : stages_) snap.stages.push_back(s);
  for (const auto& [id, a] : attempts_) snap.attempts.push_back(a);
  for (const auto& [id, w] : workers_) snap.workers.push_back(w);
  for (const v1::Event& e : events_) {
    snap.last_event_sequence = std::max(snap.last_event_sequence, e.sequence());
  }
  return snap;
}

absl::StatusOr<std::optional<std::string>> MemoryStore::FindByRequestId(
    const std::string& client_request_id) {
  absl::MutexLock lock(&mu_);
  auto it = request_ids_.find(client_request_id);
  if (it == request_ids_.end()) return std::optional<std::string>();
  return std::optional<std::string>(it->second);
}

absl::StatusOr<std::vector<v1::Event>> MemoryStore::ReadEvents(const std::string& pipeline_id,
                                                               int64_t after, int limit) {
  absl::MutexLock lock(&mu_);
  std::vector<v1::Event> out;
  for (const v1::Event& e : events_) {
    if (e.pipeline_id() == pipeline_id && e.sequence() > after) {
      out.push_back(e);
      if (static_cast<int>(out.size()) >= limit) break;
    }
  }
  return out;
}

absl::StatusOr<std::vector<v1::LogLine>> MemoryStore::ReadLogs(const std::string& pipeline_id,
                                                               const std::string& stage, int rank,
                                                               int64_t tail) {
  absl::MutexLock lock(&mu_);
  std::vector<v1::LogLine> out;
  for (const auto& [key, lines] : logs_) {
    for (const v1::LogLine& l : lines) {
      if (l.pipeline_id() != pipeline_id) continue;
      if (!stage.empty() && l.stage() != stage) continue;
      if (rank >= 0 && l.rank() != rank) continue;
      out.push_back(l);
    }
  }
  std::stable_sort(out.begin(), out.end(), [](const v1::LogLine& a, const v1::LogLine& b) {
    return std::make_tuple(a.attempt_id(), a.rank(), a.offset()) <
           std::make_tuple(b.attempt_id(), b.rank(), b.offset());
  });
  if (tail > 0 && out.size() > static_cast<size_t>(tail)) out.erase(out.begin(), out.end() - tail);
  return out;
}

absl::StatusOr<std::vector<v1::MetricSeries>> MemoryStore::ReadMetrics(
    const std::string& pipeline_id, const std::string& stage,
    const std::vector<std::string>& names) {
  absl::MutexLock lock(&mu_);
  std::map<std::tuple<std::string, std::string, std::string>, v1::MetricSeries> merged;
  for (const auto& [pid, series] : metrics_) {
    if (pid != pipeline_id) continue;
    if (!stage.empty() && series.stage() != stage) continue;
    if (!names.empty() && std::find(names.begin(), names.end(), series.name()) == names.end()) {
      continue;
    }
    v1::MetricSeries& m = merged[{series.stage(), series.attempt_id(), series.name()}];
    m.set_name(series.name());
    m.set_stage(series.stage());
    m.set_attempt_id(series.attempt_id());
    for (const auto& p : series.points()) *m.add_points() = p;
  }
  std::vector<v1::MetricSeries> out;
  for (auto& [k, m] : merged) out.push_back(std::move(m));
  return out;
}

absl::StatusOr<std::vector<v1::Artifact>> MemoryStore::ReadArtifacts(const std::string& pipeline_id,
                                                                     const std::string& stage) {
  absl::MutexLock lock(&mu_);
  std::vector<v1::Artifact> out;
  for (const auto& [k, a] : artifacts_) {
    if (a.pipeline_id() == pipeline_id && (stage.empty() || a.stage() == stage)) out.push_back(a);
  }
  return out;
}

absl::StatusOr<bool> MemoryStore::HasReport(const std::string& report_id) {
  absl::MutexLock lock(&mu_);
  return reports_.count(report_id) > 0;
}

}  // namespace align::coordinator
