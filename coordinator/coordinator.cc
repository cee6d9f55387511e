#include "coordinator/coordinator.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/config/pipeline_config.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "common/version.h"

namespace align::coordinator {
namespace {

using v1::AttemptState;
using v1::PipelineState;
using v1::StageState;

void SetTs(google::protobuf::Timestamp* ts, absl::Time t) {
  const int64_t ns = absl::ToUnixNanos(t);
  ts->set_seconds(ns / 1000000000);
  ts->set_nanos(static_cast<int>(ns % 1000000000));
}

absl::Time FromTs(const google::protobuf::Timestamp& ts) {
  return absl::FromUnixSeconds(ts.seconds()) + absl::Nanoseconds(ts.nanos());
}

bool StageTerminal(StageState s) {
  return s == v1::STAGE_SUCCEEDED || s == v1::STAGE_CACHED || s == v1::STAGE_FAILED ||
         s == v1::STAGE_CANCELLED || s == v1::STAGE_SKIPPED;
}
bool StageDone(StageState s) { return s == v1::STAGE_SUCCEEDED || s == v1::STAGE_CACHED; }
bool PipelineTerminal(PipelineState s) {
  return s == v1::PIPELINE_SUCCEEDED || s == v1::PIPELINE_FAILED || s == v1::PIPELINE_CANCELLED;
}

std::string ClassName(v1::FailureClass c) {
  switch (c) {
    case v1::USER_ERROR: return "user_error";
    case v1::INFRASTRUCTURE: return "infrastructure";
    case v1::CANCELLED_BY_USER: return "cancelled";
    default: return "unspecified";
  }
}

absl::Duration Backoff(const v1::RetryPolicy& r, int retry_number) {
  const double initial = r.has_backoff_initial_seconds() ? r.backoff_initial_seconds() : 5.0;
  const double cap = r.backoff_max_seconds() > 0 ? r.backoff_max_seconds() : 300.0;
  const double s = std::min(cap, initial * std::pow(2.0, std::max(0, retry_number - 1)));
  return absl::Seconds(s);
}

}  // namespace

Coordinator::Coordinator(Store& store, Clock& clock, IdGenerator& ids, CoordinatorMetrics* metrics,
                         CoordinatorConfig config)
    : store_(store), clock_(clock), metrics_(metrics), config_(std::move(config)), ids_(ids) {}

Coordinator::~Coordinator() { Shutdown(); }

void Coordinator::Shutdown() {
  std::vector<Poller> pollers;
  {
    absl::MutexLock lock(&mu_);
    shutdown_ = true;
    pollers.swap(pollers_);
    events_cv_.SignalAll();
  }
  for (Poller& p : pollers) p.done(v1::PollAssignmentsResponse());
}

void Coordinator::SimulateCrashForTesting() {
  absl::MutexLock lock(&mu_);
  crashed_ = true;
}

absl::Status Coordinator::CheckUsable() const {
  if (crashed_) return absl::UnavailableError("coordinator crashed (simulated); restart it");
  if (shutdown_) return absl::UnavailableError("coordinator is shutting down; retry elsewhere");
  return absl::OkStatus();
}

void Coordinator::RunCallbacks() {
  std::vector<std::function<void()>> cbs;
  {
    absl::MutexLock lock(&mu_);
    cbs.swap(callbacks_);
  }
  for (auto& cb : cbs) cb();
}

// ---------------------------------------------------------------------------------------------
// Persistence

void Coordinator::Emit(Txn& t, v1::Event event) {
  event.set_sequence(++event_seq_);
  SetTs(event.mutable_time(), clock_.Now());
  t.batch.events.push_back(std::move(event));
}

absl::Status Coordinator::Commit(Txn& t) {
  for (const std::string& id : t.pipelines) {
    auto it = pipelines_.find(id);
    if (it != pipelines_.end()) t.batch.pipelines.push_back(it->second->row);
  }
  for (const auto& [pid, name] : t.stages) {
    auto it = pipelines_.find(pid);
    if (it == pipelines_.end()) continue;
    t.batch.stages.push_back(it->second->stages[it->second->stage_index[name]]->row);
  }
  for (const std::string& id : t.attempts) {
    PipelineRt* p = nullptr;
    StageRt* s = nullptr;
    if (AttemptRt* a = FindAttempt(id, &p, &s)) t.batch.attempts.push_back(a->row);
  }
  for (const std::string& id : t.workers) {
    auto it = workers_.find(id);
    if (it != workers_.end()) t.batch.workers.push_back(it->second.status);
  }
  if (t.batch.empty()) {
    for (auto& f : t.after_commit) f();
    return absl::OkStatus();
  }
  absl::Status s = store_.Apply(t.batch);
  if (!s.ok()) {
    if (metrics_ != nullptr) {
      metrics_->IncStoreErrors(s.code() == absl::StatusCode::kFailedPrecondition ? "conflict"
                                                                                 : "unavailable");
    }
    LOG(WARNING) << "store commit failed (" << s << "); reloading state from the store";
    // Memory already moved ahead of the store: rebuild it from what is durable.
    absl::Status r = RebuildFromStore();
    if (!r.ok()) LOG(ERROR) << "reloading from the store failed: " << r;
    return s;
  }
  if (!t.batch.events.empty()) events_cv_.SignalAll();
  for (auto& f : t.after_commit) f();
  return absl::OkStatus();
}

absl::Status Coordinator::RebuildFromStore() {
  ASSIGN_OR_RETURN(StoreSnapshot snap, store_.Load());
  return LoadSnapshot(snap);
}

absl::Status Coordinator::Recover() {
  {
    absl::MutexLock lock(&mu_);
    ASSIGN_OR_RETURN(StoreSnapshot snap, store_.Load());
    RETURN_IF_ERROR(LoadSnapshot(snap));
    const absl::Duration grace =
        config_.recovery_grace > absl::ZeroDuration() ? config_.recovery_grace : config_.lease_timeout;
    const absl::Time now = clock_.Now();
    recovery_until_ = now + grace;
    int running = 0;
    for (auto& [id, p] : pipelines_) {
      for (auto& s : p->stages) {
        for (auto& a : s->attempts) {
          if (!Active(*a)) continue;
          ++running;
          // Workers get the grace period to re-register and claim the attempt.
          a->row.lease_expires = now + grace;  // stored expiries are not renewed durably
          a->delivered = true;  // unknown: assume the worker may have it
        }
      }
    }
    for (auto& [id, w] : workers_) {
      // Until it re-registers a worker is not given new work.
      if (w.status.state() == v1::WORKER_ALIVE) w.status.set_state(v1::WORKER_SUSPECT);
      w.last_heartbeat = now;
      must_reregister_.insert(id);
    }
    LOG(INFO) << "recovered " << pipelines_.size() << " pipelines and " << running
              << " running attempts from the store; workers have " << absl::FormatDuration(grace)
              << " to re-register";
  }
  return absl::OkStatus();
}

absl::Status Coordinator::LoadSnapshot(const StoreSnapshot& snap) {
  schedule_dirty_ = true;
  // Pollers and pending assignments are memory only; keep the pollers, rebuild everything else.
  std::map<std::string, WorkerRt> old_workers;
  old_workers.swap(workers_);
  pipelines_.clear();
  names_.clear();
  request_ids_.clear();
  attempt_index_.clear();
  cache_index_.clear();
  waiting_.clear();
  event_seq_ = std::max(event_seq_, snap.last_event_sequence);
  for (const StoredPipeline& sp : snap.pipelines) {
    auto p = std::make_unique<PipelineRt>();
    p->row = sp;
    p->order = next_order_++;
    const std::string id = sp.status.pipeline_id();
    names_.insert({sp.status.name(), id});
    if (!sp.status.client_request_id().empty()) request_ids_[sp.status.client_request_id()] = id;
    for (int i = 0; i < sp.status.spec().stages_size(); ++i) {
      auto st = std::make_unique<StageRt>();
      st->plan.index = i;
      st->plan.depends_on = config::StageDependencies(sp.status.spec().stages(i));
      st->row.pipeline_id = id;
      st->row.index = i;
      st->row.status.set_name(sp.status.spec().stages(i).name());
      p->stage_index[sp.status.spec().stages(i).name()] = i;
      p->stages.push_back(std::move(st));
    }
    pipelines_[id] = std::move(p);
  }
  for (const StoredStage& ss : snap.stages) {
    auto it = pipelines_.find(ss.pipeline_id);
    if (it == pipelines_.end()) continue;
    auto si = it->second->stage_index.find(ss.status.name());
    if (si == it->second->stage_index.end()) continue;
    StageRt& st = *it->second->stages[si->second];
    st.row = ss;
    if (ss.status.state() == v1::STAGE_SUCCEEDED && !ss.status.cache_key().empty()) {
      cache_index_[ss.status.cache_key()] = {ss.pipeline_id, ss.status.name()};
    }
  }
  for (const StoredAttempt& sa : snap.attempts) {
    auto it = pipelines_.find(sa.pipeline_id);
    if (it == pipelines_.end()) continue;
    auto si = it->second->stage_index.find(sa.stage);
    if (si == it->second->stage_index.end()) continue;
    auto a = std::make_unique<AttemptRt>();
    a->row = sa;
    a->delivered = true;
    a->placed_at = FromTs(sa.status.created_at());
    attempt_index_[sa.status.attempt_id()] = {sa.pipeline_id, sa.stage};
    it->second->stages[si->second]->attempts.push_back(std::move(a));
  }
  for (const v1::WorkerStatus& ws : snap.workers) {
    WorkerRt& w = workers_[ws.worker_id()];
    w.status = ws;
    auto old = old_workers.find(ws.worker_id());
    if (old != old_workers.end() && old->second.status.incarnation() == ws.incarnation()) {
      w.last_heartbeat = old->second.last_heartbeat;
      // Keep assignments not yet polled whose attempts are still placed and not delivered.
      for (v1::Assignment& asg : old->second.pending) {
        PipelineRt* p = nullptr;
        StageRt* s = nullptr;
        AttemptRt* a = FindAttempt(asg.attempt_id(), &p, &s);
        if (a != nullptr && Active(*a)) {
          a->delivered = false;
          a->assignment_template = asg;
          w.pending.push_back(std::move(asg));
        }
      }
    } else {
      w.last_heartbeat = FromTs(ws.last_heartbeat());
    }
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------
// Lookups

bool Coordinator::Active(const AttemptRt& a) {
  return a.row.status.state() == v1::ATTEMPT_ASSIGNED || a.row.status.state() == v1::ATTEMPT_RUNNING;
}

bool Coordinator::PlacedOn(const AttemptRt& a, const std::string& worker_id,
                           int64_t incarnation) const {
  for (const RankPlacement& rp : a.row.placement) {
    if (rp.worker_id == worker_id && rp.incarnation == incarnation) return true;
  }
  return false;
}

Coordinator::PipelineRt* Coordinator::FindPipeline(const std::string& id_or_name,
                                                   absl::Status* error) {
  auto it = pipelines_.find(id_or_name);
  if (it != pipelines_.end()) return it->second.get();
  const auto range = names_.equal_range(id_or_name);
  const auto count = std::distance(range.first, range.second);
  if (count == 1) return pipelines_[range.first->second].get();
  if (count > 1) {
    *error = absl::FailedPreconditionError(absl::StrCat(
        "pipeline name '", id_or_name, "' is used by ", count,
        " pipelines; use a pipeline id (alignctl list --name-prefix ", id_or_name, ")"));
    return nullptr;
  }
  *error = absl::NotFoundError(absl::StrCat("no pipeline with id or name '", id_or_name,
                                            "'; see alignctl list"));
  return nullptr;
}

absl::Status Coordinator::NoSuchStage(const PipelineRt& p, const std::string& stage) const {
  std::vector<std::string> names;
  for (const auto& s : p.stages) names.push_back(s->row.status.name());
  return absl::NotFoundError(absl::StrCat("pipeline ", p.row.status.pipeline_id(), " has no stage '",
                                          stage, "'; its stages: ", absl::StrJoin(names, ", ")));
}

Coordinator::AttemptRt* Coordinator::FindAttempt(const std::string& attempt_id, PipelineRt** p,
                                                 StageRt** s) {
  auto it = attempt_index_.find(attempt_id);
  if (it == attempt_index_.end()) return nullptr;
  auto pit = pipelines_.find(it->second.first);
  if (pit == pipelines_.end()) return nullptr;
  *p = pit->second.get();
  *s = (*p)->stages[(*p)->stage_index[it->second.second]].get();
  for (auto& a : (*s)->attempts) {
    if (a->row.status.attempt_id() == attempt_id) return a.get();
  }
  return nullptr;
}

const v1::StageSpec& Coordinator::SpecOf(const PipelineRt& p, const StageRt& s) const {
  return p.row.status.spec().stages(s.row.index);
}

StageOutputsByName Coordinator::OutputsOf(const PipelineRt& p) const {
  StageOutputsByName out;
  for (const auto& s : p.stages) {
    if (!StageDone(s->row.status.state())) continue;
    auto& m = out[s->row.status.name()];
    for (const v1::Artifact& a : s->row.status.outputs()) m[a.name()] = a;
  }
  return out;
}

v1::PipelineStatus Coordinator::BuildStatus(const PipelineRt& p, bool with_attempts) const {
  v1::PipelineStatus out = p.row.status;
  for (const auto& s : p.stages) {
    v1::StageStatus* st = out.add_stages();
    *st = s->row.status;
    if (st->state() == v1::STAGE_QUEUED) {
      auto w = waiting_.find({p.row.status.pipeline_id(), st->name()});
      if (w != waiting_.end()) {
        st->set_queue_position(w->second.queue_position);
        st->set_waiting_reason(w->second.reason);
      } else if (st->waiting_reason().empty()) {
        st->set_waiting_reason("waiting for the next scheduling round");
      }
    }
    for (const auto& a : s->attempts) {
      if (Active(*a)) *st->mutable_progress() = a->row.status.progress();
      if (with_attempts) *st->add_attempts() = a->row.status;
    }
    // A finished stage keeps its last attempt's final progress (step, loss, rewards...), which
    // summaries and `alignctl get` show as the stage's final metrics.
    if (!st->has_progress() && !s->attempts.empty() &&
        s->attempts.back()->row.status.has_progress()) {
      *st->mutable_progress() = s->attempts.back()->row.status.progress();
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// State transitions

void Coordinator::SetPipelineState(PipelineRt& p, PipelineState state, const std::string& reason,
                                   Txn& t) {
  if (p.row.status.state() == state) return;
  const absl::Time now = clock_.Now();
  p.row.status.set_state(state);
  if (!reason.empty() || PipelineTerminal(state)) p.row.status.set_reason(reason);
  SetTs(p.row.status.mutable_updated_at(), now);
  if (PipelineTerminal(state)) SetTs(p.row.status.mutable_finished_at(), now);
  t.pipelines.insert(p.row.status.pipeline_id());
  v1::Event e;
  e.set_pipeline_id(p.row.status.pipeline_id());
  e.set_type(v1::PIPELINE_STATE_CHANGED);
  e.set_pipeline_state(state);
  e.set_message(reason.empty() ? v1::PipelineState_Name(state)
                               : absl::StrCat(v1::PipelineState_Name(state), ": ", reason));
  Emit(t, std::move(e));
}

void Coordinator::SetStageState(PipelineRt& p, StageRt& s, StageState state,
                                const std::string& reason, Txn& t) {
  if (s.row.status.state() == state) return;
  const absl::Time now = clock_.Now();
  s.row.status.set_state(state);
  s.row.status.set_reason(reason);
  if (state == v1::STAGE_QUEUED) {
    SetTs(s.row.status.mutable_ready_at(), now);
    schedule_dirty_ = true;
  }
  if (state != v1::STAGE_QUEUED) {
    s.row.status.clear_waiting_reason();
    s.row.status.set_queue_position(0);
    waiting_.erase({p.row.status.pipeline_id(), s.row.status.name()});
  }
  if (state == v1::STAGE_RUNNING && !s.row.status.has_started_at()) {
    SetTs(s.row.status.mutable_started_at(), now);
  }
  if (StageTerminal(state)) SetTs(s.row.status.mutable_finished_at(), now);
  t.stages.insert({p.row.status.pipeline_id(), s.row.status.name()});
  v1::Event e;
  e.set_pipeline_id(p.row.status.pipeline_id());
  e.set_stage(s.row.status.name());
  e.set_type(v1::STAGE_STATE_CHANGED);
  e.set_stage_state(state);
  e.set_message(reason.empty() ? v1::StageState_Name(state)
                               : absl::StrCat(v1::StageState_Name(state), ": ", reason));
  Emit(t, std::move(e));
}

void Coordinator::SetAttemptState(PipelineRt& p, StageRt& s, AttemptRt& a, AttemptState state,
                                  Txn& t) {
  if (a.row.status.state() == state) return;
  const absl::Time now = clock_.Now();
  a.row.status.set_state(state);
  if (state == v1::ATTEMPT_RUNNING && !a.row.status.has_started_at()) {
    SetTs(a.row.status.mutable_started_at(), now);
  }
  if (!Active(a)) {
    schedule_dirty_ = true;  // its slots are free again
    SetTs(a.row.status.mutable_finished_at(), now);
    a.row.lease_id.clear();
    a.row.lease_expires = absl::InfinitePast();
    RemovePending(a);
  }
  t.attempts.insert(a.row.status.attempt_id());
  v1::Event e;
  e.set_pipeline_id(p.row.status.pipeline_id());
  e.set_stage(s.row.status.name());
  e.set_attempt_id(a.row.status.attempt_id());
  e.set_type(v1::ATTEMPT_STATE_CHANGED);
  e.set_attempt_state(state);
  e.set_message(a.row.status.reason().empty()
                    ? v1::AttemptState_Name(state)
                    : absl::StrCat(v1::AttemptState_Name(state), ": ", a.row.status.reason()));
  Emit(t, std::move(e));
}

void Coordinator::RemovePending(const AttemptRt& a) {
  for (const RankPlacement& rp : a.row.placement) {
    auto it = workers_.find(rp.worker_id);
    if (it == workers_.end()) continue;
    auto& q = it->second.pending;
    q.erase(std::remove_if(q.begin(), q.end(),
                           [&](const v1::Assignment& x) {
                             return x.attempt_id() == a.row.status.attempt_id();
                           }),
            q.end());
  }
}

void Coordinator::PromoteReady(PipelineRt& p, Txn& t) {
  if (p.row.status.state() == v1::PIPELINE_CANCELLING || PipelineTerminal(p.row.status.state())) {
    return;
  }
  bool changed = true;
  while (changed) {
    changed = false;
    for (auto& sp : p.stages) {
      StageRt& s = *sp;
      if (s.row.status.state() != v1::STAGE_BLOCKED) continue;
      bool all_done = true;
      std::string blocked_by;
      for (const std::string& dep : s.plan.depends_on) {
        auto di = p.stage_index.find(dep);
        if (di == p.stage_index.end()) continue;
        const StageState ds = p.stages[di->second]->row.status.state();
        if (!StageDone(ds)) all_done = false;
        if (ds == v1::STAGE_FAILED || ds == v1::STAGE_CANCELLED || ds == v1::STAGE_SKIPPED) {
          blocked_by = dep;
        }
      }
      if (!blocked_by.empty()) {
        SetStageState(p, s, v1::STAGE_SKIPPED,
                      absl::StrCat("dependency '", blocked_by, "' did not succeed"), t);
        changed = true;
        continue;
      }
      if (!all_done) continue;
      const StageOutputsByName upstream = OutputsOf(p);
      absl::StatusOr<std::string> key =
          StageCacheKey(SpecOf(p, s), p.row.status.spec().defaults(), upstream,
                        config_.engine_version.empty() ? kEngineVersion : config_.engine_version);
      if (!key.ok()) {
        SetStageState(p, s, v1::STAGE_FAILED, std::string(key.status().message()), t);
        changed = true;
        continue;
      }
      s.row.status.set_cache_key(*key);
      if (!p.row.no_cache) {
        auto hit = cache_index_.find(*key);
        if (hit != cache_index_.end()) {
          auto hp = pipelines_.find(hit->second.first);
          if (hp != pipelines_.end() && hp->second.get() != &p) {
            const StageRt& src = *hp->second->stages[hp->second->stage_index[hit->second.second]];
            if (src.row.status.state() == v1::STAGE_SUCCEEDED) {
              *s.row.status.mutable_outputs() = src.row.status.outputs();
              s.row.status.set_cached_from(absl::StrCat(hit->second.first, "/", hit->second.second));
              SetStageState(p, s, v1::STAGE_CACHED,
                            absl::StrCat("identical to ", s.row.status.cached_from(),
                                         " (same spec, inputs and engine); outputs reused"),
                            t);
              changed = true;
              continue;
            }
          }
        }
      }
      SetStageState(p, s, v1::STAGE_QUEUED, "", t);
      changed = true;
    }
  }
}

void Coordinator::UpdatePipelineState(PipelineRt& p, Txn& t) {
  if (PipelineTerminal(p.row.status.state())) return;
  bool all_terminal = true, all_done = true, any_active = false, any_started = false;
  std::string failed_reason;
  for (const auto& s : p.stages) {
    const StageState st = s->row.status.state();
    if (!StageTerminal(st)) all_terminal = false;
    if (!StageDone(st)) all_done = false;
    if (st == v1::STAGE_ASSIGNED || st == v1::STAGE_RUNNING) any_active = true;
    if (st != v1::STAGE_BLOCKED && st != v1::STAGE_QUEUED) any_started = true;
    if (st == v1::STAGE_FAILED && failed_reason.empty()) {
      failed_reason = absl::StrCat("stage '", s->row.status.name(), "' failed: ", s->row.status.reason());
    }
  }
  if (p.row.status.state() == v1::PIPELINE_CANCELLING) {
    if (!any_active) SetPipelineState(p, v1::PIPELINE_CANCELLED, p.row.status.reason(), t);
    return;
  }
  if (all_terminal) {
    if (all_done) {
      SetPipelineState(p, v1::PIPELINE_SUCCEEDED, "", t);
    } else {
      SetPipelineState(p, v1::PIPELINE_FAILED,
                       failed_reason.empty() ? "a stage did not succeed" : failed_reason, t);
    }
    return;
  }
  if (any_started && p.row.status.state() == v1::PIPELINE_QUEUED) {
    SetPipelineState(p, v1::PIPELINE_RUNNING, "", t);
  }
}

void Coordinator::FailAttempt(PipelineRt& p, StageRt& s, AttemptRt& a,
                              v1::FailureClass failure_class, const std::string& reason,
                              const v1::AttemptExit* exit, Txn& t) {
  if (!Active(a)) return;
  a.row.status.set_failure_class(failure_class);
  a.row.status.set_reason(reason);
  if (exit != nullptr) {
    a.row.status.set_exit_code(exit->exit_code());
    a.row.status.set_signal(exit->signal());
    *a.row.status.mutable_log_tail() = exit->log_tail();
  }
  const bool cancelling = a.row.cancel_requested || p.row.status.state() == v1::PIPELINE_CANCELLING;
  SetAttemptState(p, s, a, cancelling ? v1::ATTEMPT_CANCELLED : v1::ATTEMPT_FAILED, t);
  if (cancelling) {
    SetStageState(p, s, v1::STAGE_CANCELLED, p.row.status.reason(), t);
    UpdatePipelineState(p, t);
    return;
  }
  const v1::RetryPolicy& policy = SpecOf(p, s).retry();
  const bool infra = failure_class == v1::INFRASTRUCTURE;
  const int used = infra ? s.row.status.infra_retries() : s.row.status.user_retries();
  const int budget = infra ? (policy.has_max_infra_retries() ? policy.max_infra_retries() : 3)
                           : policy.max_user_retries();
  if (used < budget) {
    if (infra) {
      s.row.status.set_infra_retries(used + 1);
    } else {
      s.row.status.set_user_retries(used + 1);
    }
    if (metrics_ != nullptr) metrics_->IncRetries(ClassName(failure_class));
    const absl::Duration backoff = Backoff(policy, used + 1);
    s.row.next_attempt_at = clock_.Now() + backoff;
    SetStageState(p, s, v1::STAGE_RETRY_WAIT,
                  absl::StrCat("attempt ", a.row.status.number(), " failed (", ClassName(failure_class),
                               "): ", reason, "; retry ", used + 1, " of ", budget, " in ",
                               absl::FormatDuration(backoff),
                               s.row.last_checkpoint.empty()
                                   ? ""
                                   : absl::StrCat(", resuming from ", s.row.last_checkpoint)),
                  t);
  } else {
    SetStageState(p, s, v1::STAGE_FAILED,
                  absl::StrCat(ClassName(failure_class), ": ", reason,
                               budget > 0 ? absl::StrCat(" (after ", used, " retries)") : ""),
                  t);
    PromoteReady(p, t);  // dependents become SKIPPED
  }
  UpdatePipelineState(p, t);
}

void Coordinator::SucceedAttempt(PipelineRt& p, StageRt& s, AttemptRt& a, Txn& t) {
  SetAttemptState(p, s, a, v1::ATTEMPT_SUCCEEDED, t);
  s.row.status.clear_outputs();
  for (const v1::Artifact& art : a.artifacts) *s.row.status.add_outputs() = art;
  if (s.row.status.outputs().empty()) {
    // The engine did not report artifacts: fall back to the conventional layout.
    JobContext ctx{p.row.status.pipeline_id(), a.row.status.attempt_id(), config_.artifact_root,
                   config_.data_dir};
    for (const std::string& name : config::StageOutputs(SpecOf(p, s).type())) {
      v1::Artifact* art = s.row.status.add_outputs();
      art->set_name(name);
      art->set_uri(absl::StrCat("file://", StageOutputDir(ctx, p.row.status.spec(), s.row.status.name()), name));
      art->set_pipeline_id(p.row.status.pipeline_id());
      art->set_stage(s.row.status.name());
      art->set_attempt_id(a.row.status.attempt_id());
    }
  }
  SetStageState(p, s, v1::STAGE_SUCCEEDED, "", t);
  if (!s.row.status.cache_key().empty()) {
    cache_index_[s.row.status.cache_key()] = {p.row.status.pipeline_id(), s.row.status.name()};
  }
  PromoteReady(p, t);
  UpdatePipelineState(p, t);
}

void Coordinator::CancelAttempt(PipelineRt& p, StageRt& s, AttemptRt& a, const std::string& reason,
                                Txn& t) {
  if (!Active(a)) return;
  a.row.status.set_failure_class(v1::CANCELLED_BY_USER);
  a.row.status.set_reason(reason);
  SetAttemptState(p, s, a, v1::ATTEMPT_CANCELLED, t);
  SetStageState(p, s, v1::STAGE_CANCELLED, reason, t);
}

// ---------------------------------------------------------------------------------------------
// CoordinatorService

absl::StatusOr<v1::SubmitPipelineResponse> Coordinator::SubmitPipeline(
    const v1::SubmitPipelineRequest& request, const std::string& submitted_by) {
  const std::string& rid = request.client_request_id();
  auto existing = [&](const std::string& id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    v1::SubmitPipelineResponse resp;
    resp.set_pipeline_id(id);
    resp.set_already_existed(true);
    auto it = pipelines_.find(id);
    if (it != pipelines_.end()) *resp.mutable_status() = BuildStatus(*it->second, false);
    return resp;
  };
  {
    absl::MutexLock lock(&mu_);
    RETURN_IF_ERROR(CheckUsable());
    if (!rid.empty()) {
      // A concurrent submit with the same id finishes first; then we answer with its pipeline.
      auto free = [this, &rid]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return inflight_requests_.count(rid) == 0 || shutdown_;
      };
      mu_.Await(absl::Condition(&free));
      auto it = request_ids_.find(rid);
      if (it != request_ids_.end()) return existing(it->second);
      inflight_requests_.insert(rid);
    }
  }
  auto release = [&]() {
    if (rid.empty()) return;
    absl::MutexLock lock(&mu_);
    inflight_requests_.erase(rid);
  };

  v1::PipelineSpec spec = request.spec();
  absl::StatusOr<std::vector<PlannedStage>> plan = PlanPipeline(&spec);
  if (!plan.ok()) {
    release();
    return plan.status();
  }
  auto p = std::make_unique<PipelineRt>();
  Txn t;
  WriteBatch batch;
  {
    absl::MutexLock lock(&mu_);
    const absl::Time now = clock_.Now();
    const std::string id = ids_.NewId("p", now);
    p->row.no_cache = request.no_cache();
    p->row.source_yaml = request.source_yaml();
    v1::PipelineStatus& st = p->row.status;
    st.set_pipeline_id(id);
    st.set_name(spec.metadata().name());
    st.set_state(v1::PIPELINE_QUEUED);
    *st.mutable_spec() = spec;
    st.set_client_request_id(rid);
    st.set_submitted_by(submitted_by);
    SetTs(st.mutable_created_at(), now);
    SetTs(st.mutable_updated_at(), now);
    for (const PlannedStage& ps : *plan) {
      auto s = std::make_unique<StageRt>();
      s->plan = ps;
      s->row.pipeline_id = id;
      s->row.index = ps.index;
      s->row.status.set_name(spec.stages(ps.index).name());
      s->row.status.set_type(spec.stages(ps.index).type());
      s->row.status.set_state(v1::STAGE_BLOCKED);
      p->stage_index[s->row.status.name()] = ps.index;
      p->stages.push_back(std::move(s));
    }
    v1::Event e;
    e.set_pipeline_id(id);
    e.set_type(v1::PIPELINE_STATE_CHANGED);
    e.set_pipeline_state(v1::PIPELINE_QUEUED);
    e.set_message(absl::StrCat("submitted", submitted_by.empty() ? "" : " by " + submitted_by));
    Emit(t, std::move(e));
    PromoteReady(*p, t);
    UpdatePipelineState(*p, t);
    batch = std::move(t.batch);
    batch.new_pipelines.push_back(p->row);
    batch.pipelines.clear();
    for (const auto& s : p->stages) batch.stages.push_back(s->row);
  }
  // Committed without holding mu_, so concurrent submits share one fsync (group commit).
  absl::Status s = store_.Apply(batch);
  if (s.code() == absl::StatusCode::kAlreadyExists && !rid.empty()) {
    release();
    ASSIGN_OR_RETURN(std::optional<std::string> id, store_.FindByRequestId(rid));
    absl::MutexLock lock(&mu_);
    if (id.has_value()) return existing(*id);
    return s;
  }
  if (!s.ok()) {
    if (metrics_ != nullptr) metrics_->IncStoreErrors("unavailable");
    release();
    return s;
  }
  sync_points_.Process(kSyncAfterSubmitCommit);
  v1::SubmitPipelineResponse resp;
  {
    absl::MutexLock lock(&mu_);
    const std::string id = p->row.status.pipeline_id();
    if (pipelines_.count(id) > 0) {
      // A reload from the store (after another call's failed commit) already brought it in.
      if (!rid.empty()) inflight_requests_.erase(rid);
      resp.set_pipeline_id(id);
      *resp.mutable_status() = BuildStatus(*pipelines_[id], false);
      events_cv_.SignalAll();
      return resp;
    }
    p->order = next_order_++;
    names_.insert({p->row.status.name(), id});
    if (!rid.empty()) {
      request_ids_[rid] = id;
      inflight_requests_.erase(rid);
    }
    for (const auto& st : p->stages) {
      if (st->row.status.state() == v1::STAGE_SUCCEEDED && !st->row.status.cache_key().empty()) {
        cache_index_[st->row.status.cache_key()] = {id, st->row.status.name()};
      }
    }
    resp.set_pipeline_id(id);
    *resp.mutable_status() = BuildStatus(*p, false);
    pipelines_[id] = std::move(p);
    events_cv_.SignalAll();
  }
  if (metrics_ != nullptr) metrics_->IncSubmits();
  return resp;
}

absl::StatusOr<v1::PipelineStatus> Coordinator::GetPipeline(const v1::GetPipelineRequest& request) {
  absl::MutexLock lock(&mu_);
  RETURN_IF_ERROR(CheckUsable());
  absl::Status error;
  PipelineRt* p = FindPipeline(request.pipeline_id(), &error);
  if (p == nullptr) return error;
  return BuildStatus(*p, true);
}

absl::StatusOr<v1::ListPipelinesResponse> Coordinator::ListPipelines(
    const v1::ListPipelinesRequest& request) {
  if (request.page_size() < 0 || request.page_size() > 500) {
    return absl::InvalidArgumentError(
        absl::StrCat("page_size ", request.page_size(), " is out of range; expected 0..500"));
  }
  int64_t offset = 0;
  if (!request.page_token().empty() && !absl::SimpleAtoi(request.page_token(), &offset)) {
    return absl::InvalidArgumentError(
        absl::StrCat("page_token '", request.page_token(), "' is not one this server issued"));
  }
  const int page = request.page_size() == 0 ? 50 : request.page_size();
  absl::MutexLock lock(&mu_);
  RETURN_IF_ERROR(CheckUsable());
  std::vector<const PipelineRt*> all;
  for (const auto& [id, p] : pipelines_) {
    const v1::PipelineStatus& st = p->row.status;
    if (request.states_size() > 0 &&
        std::find(request.states().begin(), request.states().end(), st.state()) ==
            request.states().end()) {
      continue;
    }
    if (!absl::StartsWith(st.name(), request.name_prefix())) continue;
    bool labels_ok = true;
    for (const auto& [k, v] : request.labels()) {
      auto it = st.spec().metadata().labels().find(k);
      if (it == st.spec().metadata().labels().end() || it->second != v) labels_ok = false;
    }
    if (labels_ok) all.push_back(p.get());
  }
  std::sort(all.begin(), all.end(), [](const PipelineRt* a, const PipelineRt* b) {
    return a->order > b->order;  // newest first
  });
  v1::ListPipelinesResponse resp;
  for (int64_t i = offset; i < static_cast<int64_t>(all.size()) && i < offset + page; ++i) {
    *resp.add_pipelines() = BuildStatus(*all[i], false);
  }
  if (offset + page < static_cast<int64_t>(all.size())) {
    resp.set_next_page_token(absl::StrCat(offset + page));
  }
  return resp;
}

absl::StatusOr<v1::CancelPipelineResponse> Coordinator::CancelPipeline(
    const v1::CancelPipelineRequest& request) {
  absl::MutexLock lock(&mu_);
  RETURN_IF_ERROR(CheckUsable());
  absl::Status error;
  PipelineRt* p = FindPipeline(request.pipeline_id(), &error);
  if (p == nullptr) return error;
  Txn t;
  if (!PipelineTerminal(p->row.status.state()) &&
      p->row.status.state() != v1::PIPELINE_CANCELLING) {
    const std::string reason =
        request.reason().empty() ? "cancelled by user" : absl::StrCat("cancelled: ", request.reason());
    SetPipelineState(*p, v1::PIPELINE_CANCELLING, reason, t);
    for (auto& s : p->stages) {
      const StageState st = s->row.status.state();
      if (st == v1::STAGE_BLOCKED || st == v1::STAGE_QUEUED || st == v1::STAGE_RETRY_WAIT) {
        SetStageState(*p, *s, v1::STAGE_CANCELLED, reason, t);
        continue;
      }
      for (auto& a : s->attempts) {
        if (!Active(*a)) continue;
        if (!a->delivered) {
          CancelAttempt(*p, *s, *a, reason, t);  // no worker has it yet
        } else {
          a->row.cancel_requested = true;  // told in the next heartbeat; confirmed by its report
          t.attempts.insert(a->row.status.attempt_id());
        }
      }
    }
    UpdatePipelineState(*p, t);
  }
  RETURN_IF_ERROR(Commit(t));
  v1::CancelPipelineResponse resp;
  *resp.mutable_status() = BuildStatus(*p, true);
  return resp;
}

absl::StatusOr<v1::RetryStageResponse> Coordinator::RetryStage(const v1::RetryStageRequest& request) {
  absl::MutexLock lock(&mu_);
  RETURN_IF_ERROR(CheckUsable());
  absl::Status error;
  PipelineRt* p = FindPipeline(request.pipeline_id(), &error);
  if (p == nullptr) return error;
  auto si = p->stage_index.find(request.stage());
  if (si == p->stage_index.end()) {
    return NoSuchStage(*p, request.stage());
  }
  StageRt& s = *p->stages[si->second];
  const StageState st = s.row.status.state();
  if (st != v1::STAGE_FAILED && st != v1::STAGE_CANCELLED && st != v1::STAGE_SKIPPED) {
    return absl::FailedPreconditionError(absl::StrCat(
        "stage '", request.stage(), "' is ", v1::StageState_Name(st),
        "; only a FAILED, CANCELLED or SKIPPED stage can be retried"));
  }
  if (p->row.status.state() == v1::PIPELINE_CANCELLING) {
    return absl::FailedPreconditionError("the pipeline is being cancelled; wait until it is CANCELLED");
  }
  Txn t;
  // The stage and every stage it blocked start over with fresh budgets.
  for (auto& other : p->stages) {
    const StageState os = other->row.status.state();
    if (other.get() == &s || os == v1::STAGE_SKIPPED || os == v1::STAGE_CANCELLED ||
        os == v1::STAGE_FAILED) {
      other->row.status.set_infra_retries(0);
      other->row.status.set_user_retries(0);
      SetStageState(*p, *other, v1::STAGE_BLOCKED, "retry requested", t);
    }
  }
  p->row.status.clear_finished_at();
  SetPipelineState(*p, v1::PIPELINE_RUNNING, "retry of stage " + request.stage(), t);
  PromoteReady(*p, t);
  UpdatePipelineState(*p, t);
  RETURN_IF_ERROR(Commit(t));
  v1::RetryStageResponse resp;
  *resp.mutable_status() = BuildStatus(*p, true);
  return resp;
}

absl::StatusOr<std::vector<v1::Event>> Coordinator::ReadEvents(const std::string& pipeline_id,
                                                               int64_t after, int limit,
                                                               bool* finished) {
  std::string id;
  {
    absl::MutexLock lock(&mu_);
    RETURN_IF_ERROR(CheckUsable());
    absl::Status error;
    PipelineRt* p = FindPipeline(pipeline_id, &error);
    if (p == nullptr) return error;
    id = p->row.status.pipeline_id();
    *finished = PipelineTerminal(p->row.status.state());
  }
  return store_.ReadEvents(id, after, limit);
}

absl::StatusOr<std::vector<v1::LogLine>> Coordinator::ReadLogs(const v1::StreamLogsRequest& request,
                                                               bool* finished) {
  std::string id;
  {
    absl::MutexLock lock(&mu_);
    RETURN_IF_ERROR(CheckUsable());
    absl::Status error;
    PipelineRt* p = FindPipeline(request.pipeline_id(), &error);
    if (p == nullptr) return error;
    id = p->row.status.pipeline_id();
    *finished = PipelineTerminal(p->row.status.state());
    if (!request.stage().empty() && p->stage_index.count(request.stage()) == 0) {
      return NoSuchStage(*p, request.stage());
    }
  }
  return store_.ReadLogs(id, request.stage(), request.rank(), request.tail());
}

absl::StatusOr<v1::GetMetricsResponse> Coordinator::GetMetrics(const v1::GetMetricsRequest& request) {
  std::string id;
  {
    absl::MutexLock lock(&mu_);
    RETURN_IF_ERROR(CheckUsable());
    absl::Status error;
    PipelineRt* p = FindPipeline(request.pipeline_id(), &error);
    if (p == nullptr) return error;
    id = p->row.status.pipeline_id();
  }
  std::vector<std::string> names(request.names().begin(), request.names().end());
  ASSIGN_OR_RETURN(std::vector<v1::MetricSeries> series, store_.ReadMetrics(id, request.stage(), names));
  v1::GetMetricsResponse resp;
  for (auto& s : series) *resp.add_series() = std::move(s);
  return resp;
}

absl::StatusOr<v1::ListWorkersResponse> Coordinator::ListWorkers(const v1::ListWorkersRequest&) {
  absl::MutexLock lock(&mu_);
  RETURN_IF_ERROR(CheckUsable());
  // Free slots derived from the attempts placed on each worker.
  std::map<std::string, std::pair<int, int>> used;  // gpus, cpu slots
  std::map<std::string, std::vector<std::string>> running;
  for (const auto& [id, p] : pipelines_) {
    for (const auto& s : p->stages) {
      for (const auto& a : s->attempts) {
        if (!Active(*a)) continue;
        for (const RankPlacement& rp : a->row.placement) {
          used[rp.worker_id].first += static_cast<int>(rp.gpu_indices.size());
          if (rp.gpu_indices.empty()) {
            used[rp.worker_id].second += static_cast<int>(rp.ranks.size()) * a->row.cpus_per_rank;
          }
          running[rp.worker_id].push_back(a->row.status.attempt_id());
        }
      }
    }
  }
  v1::ListWorkersResponse resp;
  for (const auto& [id, w] : workers_) {
    v1::WorkerStatus* ws = resp.add_workers();
    *ws = w.status;
    SetTs(ws->mutable_last_heartbeat(), w.last_heartbeat);
    ws->set_free_gpus(w.status.inventory().gpus_size() - used[id].first);
    ws->set_free_cpu_slots(w.status.inventory().cpu_slots() - used[id].second);
    ws->clear_running_attempts();
    for (const std::string& a : running[id]) ws->add_running_attempts(a);
  }
  return resp;
}

// ---------------------------------------------------------------------------------------------
// WorkerService

absl::StatusOr<v1::RegisterWorkerResponse> Coordinator::RegisterWorker(
    const v1::RegisterWorkerRequest& request) {
  if (request.worker_id().empty()) {
    return absl::InvalidArgumentError("RegisterWorker: worker_id is empty; set --worker-id or a hostname");
  }
  if (request.incarnation() == 0) {
    return absl::InvalidArgumentError("RegisterWorker: incarnation is 0; use a new random number per start");
  }
  absl::MutexLock lock(&mu_);
  RETURN_IF_ERROR(CheckUsable());
  const absl::Time now = clock_.Now();
  Txn t;
  v1::RegisterWorkerResponse resp;
  resp.set_heartbeat_interval_ms(absl::ToInt64Milliseconds(config_.heartbeat_interval));
  resp.set_lease_timeout_ms(absl::ToInt64Milliseconds(config_.lease_timeout));
  std::set<std::string> reported;
  for (const v1::RunningAttempt& r : request.running()) reported.insert(r.attempt_id());

  for (auto& [pid, p] : pipelines_) {
    for (auto& s : p->stages) {
      for (auto& a : s->attempts) {
        if (!Active(*a)) continue;
        bool on_this_worker = false, same_incarnation = false;
        for (const RankPlacement& rp : a->row.placement) {
          if (rp.worker_id != request.worker_id()) continue;
          on_this_worker = true;
          same_incarnation = rp.incarnation == request.incarnation();
        }
        if (!on_this_worker) continue;
        if (!same_incarnation) {
          FailAttempt(*p, *s, *a, v1::INFRASTRUCTURE,
                      absl::StrCat("worker ", request.worker_id(),
                                   " restarted (new incarnation) while running the attempt"),
                      nullptr, t);
        } else if (reported.count(a->row.status.attempt_id()) > 0) {
          // Re-attach: the worker still runs it (coordinator restart or partition).
          a->row.lease_expires = now + config_.lease_timeout;
          a->delivered = true;
        } else if (a->delivered) {
          FailAttempt(*p, *s, *a, v1::INFRASTRUCTURE,
                      absl::StrCat("worker ", request.worker_id(),
                                   " re-registered without the attempt (lost in a coordinator "
                                   "restart or partition)"),
                      nullptr, t);
        }
      }
    }
  }
  for (const std::string& id : reported) {
    PipelineRt* p = nullptr;
    StageRt* s = nullptr;
    AttemptRt* a = FindAttempt(id, &p, &s);
    if (a == nullptr || !Active(*a) || !PlacedOn(*a, request.worker_id(), request.incarnation()) ||
        a->row.cancel_requested) {
      resp.add_cancel_attempts(id);
    }
  }
  must_reregister_.erase(request.worker_id());
  WorkerRt& w = workers_[request.worker_id()];
  if (w.status.incarnation() != request.incarnation()) w.pending.clear();
  w.status.set_worker_id(request.worker_id());
  w.status.set_incarnation(request.incarnation());
  w.status.set_state(v1::WORKER_ALIVE);
  *w.status.mutable_inventory() = request.inventory();
  SetTs(w.status.mutable_registered_at(), now);
  SetTs(w.status.mutable_last_heartbeat(), now);
  w.last_heartbeat = now;
  t.workers.insert(request.worker_id());
  schedule_dirty_ = true;
  RETURN_IF_ERROR(Commit(t));
  LOG(INFO) << "worker " << request.worker_id() << " registered (incarnation "
            << request.incarnation() << ", " << request.inventory().gpus_size() << " GPUs, "
            << request.inventory().cpu_slots() << " CPU slots, " << reported.size() << " running)";
  return resp;
}

absl::StatusOr<v1::HeartbeatResponse> Coordinator::Heartbeat(const v1::HeartbeatRequest& request) {
  absl::MutexLock lock(&mu_);
  RETURN_IF_ERROR(CheckUsable());
  v1::HeartbeatResponse resp;
  auto wit = workers_.find(request.worker_id());
  if (wit == workers_.end() || wit->second.status.incarnation() != request.incarnation() ||
      wit->second.status.state() == v1::WORKER_DEAD || must_reregister_.count(request.worker_id()) > 0) {
    resp.set_reregister(true);
    return resp;
  }
  const absl::Time now = clock_.Now();
  WorkerRt& w = wit->second;
  w.last_heartbeat = now;
  Txn t;
  if (w.status.state() != v1::WORKER_ALIVE && w.status.state() != v1::WORKER_DRAINING) {
    w.status.set_state(v1::WORKER_ALIVE);
    t.workers.insert(request.worker_id());
    schedule_dirty_ = true;
  }
  if (request.gpus_size() > 0) {
    *w.status.mutable_inventory()->mutable_gpus() = request.gpus();
  }
  for (const v1::RunningAttempt& r : request.running()) {
    PipelineRt* p = nullptr;
    StageRt* s = nullptr;
    AttemptRt* a = FindAttempt(r.attempt_id(), &p, &s);
    if (a == nullptr || !Active(*a) || !PlacedOn(*a, request.worker_id(), request.incarnation())) {
      resp.add_cancel_attempts(r.attempt_id());
      continue;
    }
    a->row.lease_expires = now + config_.lease_timeout;
    a->delivered = true;
    if (r.has_progress()) {
      *a->row.status.mutable_progress() = r.progress();  // memory only: progress is not state
    }
    if (a->row.cancel_requested) resp.add_cancel_attempts(r.attempt_id());
    if (a->row.status.state() == v1::ATTEMPT_ASSIGNED) {
      SetAttemptState(*p, *s, *a, v1::ATTEMPT_RUNNING, t);
      SetStageState(*p, *s, v1::STAGE_RUNNING, "", t);
      UpdatePipelineState(*p, t);
    }
  }
  RETURN_IF_ERROR(Commit(t));
  return resp;
}

absl::StatusOr<v1::PollAssignmentsResponse> Coordinator::PollAssignments(
    const v1::PollAssignmentsRequest& request) {
  absl::MutexLock lock(&mu_);
  RETURN_IF_ERROR(CheckUsable());
  v1::PollAssignmentsResponse resp;
  auto wit = workers_.find(request.worker_id());
  if (wit == workers_.end() || wit->second.status.incarnation() != request.incarnation() ||
      wit->second.status.state() == v1::WORKER_DEAD || must_reregister_.count(request.worker_id()) > 0) {
    resp.set_reregister(true);
    return resp;
  }
  TakePending(wit->second, &resp);
  return resp;
}

void Coordinator::TakePending(WorkerRt& worker, v1::PollAssignmentsResponse* resp) {
  const absl::Time now = clock_.Now();
  for (v1::Assignment& a : worker.pending) {
    PipelineRt* p = nullptr;
    StageRt* s = nullptr;
    if (AttemptRt* at = FindAttempt(a.attempt_id(), &p, &s)) {
      at->delivered = true;
      if (metrics_ != nullptr) {
        metrics_->ObserveAssignmentLatency(absl::ToDoubleSeconds(now - at->placed_at));
      }
    }
    *resp->add_assignments() = std::move(a);
  }
  worker.pending.clear();
}

void Coordinator::PollAssignmentsAsync(const v1::PollAssignmentsRequest& request,
                                       absl::Time deadline, PollCallback done) {
  absl::StatusOr<v1::PollAssignmentsResponse> now = PollAssignments(request);
  if (!now.ok() || now->assignments_size() > 0 || now->reregister() || deadline <= absl::Now()) {
    done(std::move(now));
    return;
  }
  {
    absl::MutexLock lock(&mu_);
    if (!shutdown_) {
      auto wit = workers_.find(request.worker_id());
      if (wit != workers_.end() && wit->second.pending.empty()) {
        pollers_.push_back(Poller{request.worker_id(), request.incarnation(), deadline, std::move(done)});
        return;
      }
    }
  }
  done(PollAssignments(request));  // something arrived meanwhile, or shutting down
}

void Coordinator::DeliverPolls() {
  // Called under mu_: hand pending assignments to waiting long polls (run after unlock).
  for (auto it = pollers_.begin(); it != pollers_.end();) {
    auto wit = workers_.find(it->worker_id);
    if (wit == workers_.end() || wit->second.pending.empty()) {
      ++it;
      continue;
    }
    v1::PollAssignmentsResponse resp;
    if (wit->second.status.incarnation() != it->incarnation) {
      resp.set_reregister(true);
    } else {
      TakePending(wit->second, &resp);
    }
    callbacks_.push_back([done = std::move(it->done), resp = std::move(resp)]() { done(resp); });
    it = pollers_.erase(it);
  }
}

void Coordinator::ExpirePolls(absl::Time real_now) {
  {
    absl::MutexLock lock(&mu_);
    for (auto it = pollers_.begin(); it != pollers_.end();) {
      if (it->deadline <= real_now) {
        callbacks_.push_back([done = std::move(it->done)]() { done(v1::PollAssignmentsResponse()); });
        it = pollers_.erase(it);
      } else {
        ++it;
      }
    }
  }
  RunCallbacks();
}

absl::StatusOr<v1::ReportAttemptResponse> Coordinator::ReportAttempt(
    const v1::ReportAttemptRequest& request) {
  v1::ReportAttemptResponse resp;
  absl::MutexLock lock(&mu_);
  RETURN_IF_ERROR(CheckUsable());
  PipelineRt* p = nullptr;
  StageRt* s = nullptr;
  AttemptRt* a = FindAttempt(request.attempt_id(), &p, &s);
  if (a == nullptr || !PlacedOn(*a, request.worker_id(), request.incarnation())) {
    // Unknown attempt or a report from another life of the worker: fenced.
    resp.set_accepted(false);
    resp.set_cancel(true);
    return resp;
  }
  if (!request.report_id().empty()) {
    if (seen_reports_.count(request.report_id()) > 0) {
      resp.set_accepted(true);
      resp.set_cancel(a->row.cancel_requested);
      return resp;
    }
    absl::StatusOr<bool> seen = store_.HasReport(request.report_id());
    if (seen.ok() && *seen) {
      seen_reports_.insert(request.report_id());
      resp.set_accepted(true);
      resp.set_cancel(a->row.cancel_requested);
      return resp;
    }
  }
  if (!Active(*a)) {
    // The attempt already ended here (lease expired, cancelled): the worker must stop it.
    resp.set_accepted(false);
    resp.set_cancel(true);
    return resp;
  }
  const absl::Time now = clock_.Now();
  Txn t;
  a->row.lease_expires = now + config_.lease_timeout;
  a->delivered = true;
  if (!request.report_id().empty()) t.batch.report_ids.push_back(request.report_id());
  for (const v1::LogLine& l : request.logs()) {
    v1::LogLine line = l;
    line.set_pipeline_id(p->row.status.pipeline_id());
    line.set_stage(s->row.status.name());
    line.set_attempt_id(a->row.status.attempt_id());
    t.batch.logs.push_back(std::move(line));
  }
  for (const v1::MetricSeries& m : request.metrics()) {
    v1::MetricSeries series = m;
    series.set_stage(s->row.status.name());
    series.set_attempt_id(a->row.status.attempt_id());
    t.batch.metrics.push_back({p->row.status.pipeline_id(), std::move(series)});
  }
  for (const v1::Artifact& art : request.artifacts()) {
    v1::Artifact x = art;
    x.set_pipeline_id(p->row.status.pipeline_id());
    x.set_stage(s->row.status.name());
    x.set_attempt_id(a->row.status.attempt_id());
    if (!x.has_created_at()) SetTs(x.mutable_created_at(), now);
    auto same = std::find_if(a->artifacts.begin(), a->artifacts.end(),
                             [&](const v1::Artifact& y) { return y.name() == x.name(); });
    if (same != a->artifacts.end()) {
      *same = x;
    } else {
      a->artifacts.push_back(x);
    }
    t.batch.artifacts.push_back(x);
    v1::Event e;
    e.set_pipeline_id(p->row.status.pipeline_id());
    e.set_stage(s->row.status.name());
    e.set_attempt_id(a->row.status.attempt_id());
    e.set_type(v1::ARTIFACT_CREATED);
    *e.mutable_artifact() = x;
    e.set_message(absl::StrCat("artifact ", x.name(), " at ", x.uri()));
    Emit(t, std::move(e));
  }
  if (!request.checkpoint().empty() && request.checkpoint() != s->row.last_checkpoint) {
    s->row.last_checkpoint = request.checkpoint();
    t.stages.insert({p->row.status.pipeline_id(), s->row.status.name()});
  }
  if (request.has_progress()) {
    *a->row.status.mutable_progress() = request.progress();
    t.attempts.insert(a->row.status.attempt_id());
    v1::Event e;
    e.set_pipeline_id(p->row.status.pipeline_id());
    e.set_stage(s->row.status.name());
    e.set_attempt_id(a->row.status.attempt_id());
    e.set_type(v1::STAGE_PROGRESS);
    *e.mutable_progress() = request.progress();
    Emit(t, std::move(e));
  }
  if (a->row.status.state() == v1::ATTEMPT_ASSIGNED) {
    SetAttemptState(*p, *s, *a, v1::ATTEMPT_RUNNING, t);
    SetStageState(*p, *s, v1::STAGE_RUNNING, "", t);
    UpdatePipelineState(*p, t);
  }
  if (request.has_exit()) {
    const v1::AttemptExit& exit = request.exit();
    switch (exit.state()) {
      case v1::ATTEMPT_SUCCEEDED:
        a->exited_workers.insert(request.worker_id());
        if (a->exited_workers.size() >= a->row.placement.size()) SucceedAttempt(*p, *s, *a, t);
        break;
      case v1::ATTEMPT_CANCELLED:
        if (a->row.cancel_requested || p->row.status.state() == v1::PIPELINE_CANCELLING) {
          CancelAttempt(*p, *s, *a, p->row.status.reason(), t);
          UpdatePipelineState(*p, t);
        } else {
          FailAttempt(*p, *s, *a, v1::INFRASTRUCTURE,
                      absl::StrCat("stopped by the worker: ",
                                   exit.reason().empty() ? "no reason given" : exit.reason()),
                      &exit, t);
        }
        break;
      default: {
        const v1::FailureClass fc = exit.failure_class() == v1::FAILURE_CLASS_UNSPECIFIED
                                        ? v1::USER_ERROR
                                        : exit.failure_class();
        FailAttempt(*p, *s, *a, fc, exit.reason().empty() ? "attempt failed" : exit.reason(), &exit, t);
        // Other ranks of a gang stop too.
        break;
      }
    }
  }
  t.batch.durable = request.has_exit() || !request.artifacts().empty() || !request.checkpoint().empty();
  RETURN_IF_ERROR(Commit(t));
  if (!request.report_id().empty()) seen_reports_.insert(request.report_id());
  resp.set_accepted(true);
  resp.set_cancel(a->row.cancel_requested);
  return resp;
}

absl::StatusOr<v1::RendezvousResponse> Coordinator::Rendezvous(const v1::RendezvousRequest& request) {
  absl::MutexLock lock(&mu_);
  RETURN_IF_ERROR(CheckUsable());
  PipelineRt* p = nullptr;
  StageRt* s = nullptr;
  AttemptRt* a = FindAttempt(request.attempt_id(), &p, &s);
  if (a == nullptr || !Active(*a)) {
    return absl::NotFoundError(absl::StrCat("attempt ", request.attempt_id(),
                                            " is not running; stop its ranks"));
  }
  if (request.rank() < 0 || request.rank() >= a->row.world_size) {
    return absl::InvalidArgumentError(absl::StrCat("rank ", request.rank(), " is outside world size ",
                                                   a->row.world_size));
  }
  if (request.rank() == 0) {
    if (!request.address().empty()) a->master_addr = request.address();
    if (request.port() > 0) a->master_port = request.port();
  }
  a->checked_in.insert(request.rank());
  v1::RendezvousResponse resp;
  resp.set_master_addr(a->master_addr.empty() ? a->assignment_template.master_addr() : a->master_addr);
  resp.set_master_port(a->master_port == 0 ? a->assignment_template.master_port() : a->master_port);
  resp.set_world_size(a->row.world_size);
  resp.set_ready(static_cast<int>(a->checked_in.size()) >= a->row.world_size);
  return resp;
}

// ---------------------------------------------------------------------------------------------
// The loop

absl::Status Coordinator::Tick() {
  absl::Status status;
  {
    absl::MutexLock lock(&mu_);
    RETURN_IF_ERROR(CheckUsable());
    const absl::Time now = clock_.Now();
    Txn t;
    // Workers that stopped heartbeating.
    for (auto& [id, w] : workers_) {
      const v1::WorkerState ws = w.status.state();
      if (ws == v1::WORKER_DEAD) continue;
      if (now >= recovery_until_ && now - w.last_heartbeat >= config_.lease_timeout) {
        w.status.set_state(v1::WORKER_DEAD);
        w.pending.clear();
        t.workers.insert(id);
        schedule_dirty_ = true;
        LOG(WARNING) << "worker " << id << " missed heartbeats for "
                     << absl::FormatDuration(now - w.last_heartbeat) << "; marked DEAD";
      } else if (ws == v1::WORKER_ALIVE && now - w.last_heartbeat >= 3 * config_.heartbeat_interval) {
        w.status.set_state(v1::WORKER_SUSPECT);
        t.workers.insert(id);
        schedule_dirty_ = true;
      }
    }
    for (auto& [pid, p] : pipelines_) {
      if (PipelineTerminal(p->row.status.state())) continue;
      for (auto& s : p->stages) {
        const int64_t timeout_s = SpecOf(*p, *s).timeout_seconds();
        for (auto& a : s->attempts) {
          if (timeout_s > 0 && Active(*a) && a->row.status.has_started_at() &&
              now - FromTs(a->row.status.started_at()) >= absl::Seconds(timeout_s)) {
            // The worker sees the attempt ended in its next heartbeat and stops the ranks.
            FailAttempt(*p, *s, *a, v1::USER_ERROR,
                        absl::StrCat("timed out after ", timeout_s, " s (stage timeout_seconds)"),
                        nullptr, t);
            continue;
          }
          if (!Active(*a) || a->row.lease_expires > now) continue;
          if (metrics_ != nullptr) metrics_->IncLeaseExpirations();
          std::string who = a->row.placement.empty() ? "" : a->row.placement.front().worker_id;
          FailAttempt(*p, *s, *a, v1::INFRASTRUCTURE,
                      absl::StrCat("lease expired: worker ", who, " sent no heartbeat for ",
                                   absl::FormatDuration(config_.lease_timeout)),
                      nullptr, t);
        }
        if (s->row.status.state() == v1::STAGE_RETRY_WAIT && s->row.next_attempt_at <= now) {
          SetStageState(*p, *s, v1::STAGE_QUEUED, "", t);
        }
      }
    }
    status = Commit(t);
    if (status.ok()) status = ScheduleLocked();
    DeliverPolls();
    UpdateGauges();
  }
  RunCallbacks();
  return status;
}

absl::Status Coordinator::ScheduleLocked() {
  const absl::Time started = absl::Now();
  const absl::Time now = clock_.Now();
  // Nothing changed that could place a stage: only refresh waiting reasons, once a second.
  if (!schedule_dirty_ && started - last_schedule_ < absl::Seconds(1)) return absl::OkStatus();
  // With no worker to place on, waiting reasons are all the same: refresh them once a second.
  const bool any_alive = std::any_of(workers_.begin(), workers_.end(), [](const auto& w) {
    return w.second.status.state() == v1::WORKER_ALIVE;
  });
  if (!any_alive && started - last_schedule_ < absl::Seconds(1)) return absl::OkStatus();
  schedule_dirty_ = false;
  last_schedule_ = started;
  std::vector<SchedStage> queued;
  for (const auto& [pid, p] : pipelines_) {
    if (p->row.status.state() == v1::PIPELINE_CANCELLING) continue;
    for (const auto& s : p->stages) {
      if (s->row.status.state() != v1::STAGE_QUEUED) continue;
      SchedStage q;
      q.pipeline_id = pid;
      q.stage = s->row.status.name();
      q.priority = p->row.status.spec().metadata().priority();
      q.submit_order = p->order * 1000 + s->row.index;
      q.resources = SpecOf(*p, *s).resources();
      queued.push_back(std::move(q));
    }
  }
  if (queued.empty()) {
    waiting_.clear();
    return absl::OkStatus();
  }
  std::vector<SchedWorker> workers;
  std::map<std::string, SchedWorker*> by_id;
  for (const auto& [id, w] : workers_) {
    SchedWorker sw;
    sw.worker_id = id;
    sw.incarnation = w.status.incarnation();
    sw.schedulable = w.status.state() == v1::WORKER_ALIVE;
    for (const v1::GpuInfo& g : w.status.inventory().gpus()) sw.gpu_indices.push_back(g.index());
    sw.free_gpus = sw.gpu_indices;
    sw.cpu_slots = w.status.inventory().cpu_slots();
    sw.free_cpu_slots = sw.cpu_slots;
    sw.memory_bytes = w.status.inventory().memory_bytes();
    for (const auto& [k, v] : w.status.inventory().labels()) sw.labels[k] = v;
    workers.push_back(std::move(sw));
  }
  for (SchedWorker& w : workers) by_id[w.worker_id] = &w;
  for (const auto& [pid, p] : pipelines_) {
    for (const auto& s : p->stages) {
      for (const auto& a : s->attempts) {
        if (!Active(*a)) continue;
        for (const RankPlacement& rp : a->row.placement) {
          auto it = by_id.find(rp.worker_id);
          if (it == by_id.end()) continue;
          SchedWorker& w = *it->second;
          for (int g : rp.gpu_indices) {
            w.free_gpus.erase(std::remove(w.free_gpus.begin(), w.free_gpus.end(), g), w.free_gpus.end());
          }
          if (rp.gpu_indices.empty()) {
            w.free_cpu_slots -= static_cast<int>(rp.ranks.size()) * a->row.cpus_per_rank;
          }
        }
      }
    }
  }
  const Decisions d = Schedule(queued, workers);
  waiting_ = d.waiting;
  Txn t;
  for (const Impossible& imp : d.impossible) {
    PipelineRt& p = *pipelines_[imp.pipeline_id];
    StageRt& s = *p.stages[p.stage_index[imp.stage]];
    SetStageState(p, s, v1::STAGE_FAILED, absl::StrCat("unschedulable: ", imp.reason), t);
    PromoteReady(p, t);
    UpdatePipelineState(p, t);
  }
  std::vector<std::pair<AttemptRt*, std::vector<v1::Assignment>>> to_send;
  for (const Placement& pl : d.placements) {
    PipelineRt& p = *pipelines_[pl.pipeline_id];
    StageRt& s = *p.stages[p.stage_index[pl.stage]];
    const v1::StageSpec& spec = SpecOf(p, s);
    auto a = std::make_unique<AttemptRt>();
    const std::string attempt_id = ids_.NewId("a", now);
    a->row.pipeline_id = pl.pipeline_id;
    a->row.stage = pl.stage;
    a->row.placement = pl.ranks;
    a->row.world_size = pl.world_size;
    a->row.cpus_per_rank = std::max(1, spec.resources().cpus_per_rank());
    a->row.lease_id = ids_.NewId("l", now);
    a->row.lease_expires = now + config_.lease_timeout;
    a->placed_at = now;
    v1::AttemptStatus& st = a->row.status;
    st.set_attempt_id(attempt_id);
    st.set_number(static_cast<int>(s.attempts.size()) + 1);
    st.set_worker_id(pl.ranks.front().worker_id);
    st.set_worker_incarnation(pl.ranks.front().incarnation);
    st.set_resumed_from_checkpoint(s.row.last_checkpoint);
    SetTs(st.mutable_created_at(), now);
    JobContext ctx{pl.pipeline_id, attempt_id, config_.artifact_root, config_.data_dir,
                   s.row.last_checkpoint, a->row.cpus_per_rank};
    absl::StatusOr<v1::TrainJob> job = BuildTrainJob(ctx, p.row.status.spec(), spec, OutputsOf(p));
    if (!job.ok()) {
      SetStageState(p, s, v1::STAGE_FAILED, std::string(job.status().message()), t);
      PromoteReady(p, t);
      UpdatePipelineState(p, t);
      continue;
    }
    if (pl.on_cpu) job->mutable_stage()->mutable_resources()->set_gpus_per_rank(0);
    v1::Assignment asg;
    asg.set_attempt_id(attempt_id);
    asg.set_pipeline_id(pl.pipeline_id);
    asg.set_stage(pl.stage);
    *asg.mutable_job() = *job;
    asg.set_world_size(pl.world_size);
    auto master = workers_.find(pl.ranks.front().worker_id);
    asg.set_master_addr(master != workers_.end() && !master->second.status.inventory().address().empty()
                            ? master->second.status.inventory().address()
                            : "127.0.0.1");
    // A port per attempt from a fixed range, so retries on the same host do not collide.
    asg.set_master_port(29500 + static_cast<int>(std::hash<std::string>()(attempt_id) % 2000));
    asg.set_lease_id(a->row.lease_id);
    SetTs(asg.mutable_lease_expires(), a->row.lease_expires);
    asg.set_cpus_per_rank(a->row.cpus_per_rank);
    a->assignment_template = asg;
    std::vector<v1::Assignment> per_worker;
    for (const RankPlacement& rp : pl.ranks) {
      v1::Assignment w = asg;
      for (int r : rp.ranks) w.add_ranks(r);
      for (int g : rp.gpu_indices) w.add_gpu_indices(g);
      per_worker.push_back(std::move(w));
    }
    t.batch.expect.push_back({pl.pipeline_id, pl.stage, v1::STAGE_QUEUED});
    if (metrics_ != nullptr && s.row.status.has_ready_at()) {
      metrics_->ObserveTimeInQueue(absl::ToDoubleSeconds(now - FromTs(s.row.status.ready_at())));
    }
    AttemptRt* raw = a.get();
    attempt_index_[attempt_id] = {pl.pipeline_id, pl.stage};
    s.attempts.push_back(std::move(a));
    SetAttemptState(p, s, *raw, v1::ATTEMPT_ASSIGNED, t);
    SetStageState(p, s, v1::STAGE_ASSIGNED,
                  absl::StrCat("placed on ", raw->row.status.worker_id()), t);
    UpdatePipelineState(p, t);
    to_send.push_back({raw, std::move(per_worker)});
  }
  // The placement (attempt, lease, stage ASSIGNED) is durable before any worker hears of it.
  RETURN_IF_ERROR(Commit(t));
  mu_.Unlock();
  sync_points_.Process(kSyncAfterPlacementCommit);
  mu_.Lock();
  if (crashed_ || shutdown_) return CheckUsable();
  for (auto& [a, per_worker] : to_send) {
    if (!Active(*a)) continue;
    for (v1::Assignment& asg : per_worker) {
      std::string wid = asg.ranks_size() > 0 ? "" : "";
      for (const RankPlacement& rp : a->row.placement) {
        if (!rp.ranks.empty() && asg.ranks_size() > 0 && rp.ranks.front() == asg.ranks(0)) {
          wid = rp.worker_id;
        }
      }
      auto wit = workers_.find(wid);
      if (wit != workers_.end()) wit->second.pending.push_back(std::move(asg));
    }
  }
  if (metrics_ != nullptr) metrics_->ObserveSchedulingLatency(absl::ToDoubleSeconds(absl::Now() - started));
  return absl::OkStatus();
}

void Coordinator::UpdateGauges() {
  if (metrics_ == nullptr) return;
  // O(pipelines): refreshed at most every 500 ms, not on every tick.
  const absl::Time now = absl::Now();
  if (now - last_gauges_ < absl::Milliseconds(500)) return;
  last_gauges_ = now;
  std::map<std::string, int> ps, ss;
  int queued = 0, alive = 0;
  for (const auto& [id, p] : pipelines_) {
    ++ps[v1::PipelineState_Name(p->row.status.state())];
    for (const auto& s : p->stages) {
      ++ss[v1::StageState_Name(s->row.status.state())];
      if (s->row.status.state() == v1::STAGE_QUEUED) ++queued;
    }
  }
  for (const auto& [id, w] : workers_) alive += w.status.state() == v1::WORKER_ALIVE ? 1 : 0;
  metrics_->SetPipelines(ps);
  metrics_->SetStages(ss);
  metrics_->SetQueueDepth(queued);
  metrics_->SetWorkersAlive(alive);
}

int64_t Coordinator::WaitForEvents(int64_t seen, absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  const absl::Time deadline = absl::Now() + timeout;
  while (event_seq_ <= seen && !shutdown_ && !crashed_) {
    if (events_cv_.WaitWithDeadline(&mu_, deadline)) break;
  }
  return event_seq_;
}

int64_t Coordinator::last_event_sequence() {
  absl::MutexLock lock(&mu_);
  return event_seq_;
}

}  // namespace align::coordinator
