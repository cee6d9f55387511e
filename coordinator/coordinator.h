// Coordinator: the state machine behind both gRPC services. Plain methods take request protos and
// return absl::StatusOr responses, so unit tests drive them with a FakeClock and a MemoryStore and
// no server. Every state transition is committed to the Store before it becomes visible; memory is
// a cache the store can always rebuild (restart recovery, or a failed commit).
#pragma once

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "align/v1/coordinator.pb.h"
#include "align/v1/worker.pb.h"
#include "common/clock.h"
#include "common/ids.h"
#include "coordinator/metrics.h"
#include "coordinator/planner.h"
#include "coordinator/scheduler/scheduler.h"
#include "coordinator/store/store.h"
#include "coordinator/sync_point.h"

namespace align::coordinator {

struct CoordinatorConfig {
  std::string artifact_root = "./artifacts";
  std::string data_dir;
  absl::Duration lease_timeout = absl::Seconds(30);
  absl::Duration heartbeat_interval = absl::Seconds(5);
  absl::Duration recovery_grace = absl::ZeroDuration();  // zero = lease_timeout
  std::string engine_version;                            // empty = kEngineVersion
};

class Coordinator {
 public:
  //! `metrics` may be null. All references must outlive the Coordinator.
  Coordinator(Store& store, Clock& clock, IdGenerator& ids, CoordinatorMetrics* metrics,
              CoordinatorConfig config);
  ~Coordinator();

  //! Loads everything from the store. Running attempts get `recovery_grace` for their workers to
  //! re-register and report them; the rest then fail as INFRASTRUCTURE and are retried.
  absl::Status Recover();

  // --- CoordinatorService -------------------------------------------------------------------
  absl::StatusOr<v1::SubmitPipelineResponse> SubmitPipeline(const v1::SubmitPipelineRequest& request,
                                                            const std::string& submitted_by = "");
  absl::StatusOr<v1::PipelineStatus> GetPipeline(const v1::GetPipelineRequest& request);
  absl::StatusOr<v1::ListPipelinesResponse> ListPipelines(const v1::ListPipelinesRequest& request);
  absl::StatusOr<v1::CancelPipelineResponse> CancelPipeline(const v1::CancelPipelineRequest& request);
  absl::StatusOr<v1::RetryStageResponse> RetryStage(const v1::RetryStageRequest& request);
  //! Events after `after` (at most `limit`); *finished says the pipeline reached a final state
  //! (a watcher that got no events and sees finished ends its stream).
  absl::StatusOr<std::vector<v1::Event>> ReadEvents(const std::string& pipeline_id, int64_t after,
                                                    int limit, bool* finished);
  absl::StatusOr<std::vector<v1::LogLine>> ReadLogs(const v1::StreamLogsRequest& request,
                                                    bool* finished);
  absl::StatusOr<v1::GetMetricsResponse> GetMetrics(const v1::GetMetricsRequest& request);
  absl::StatusOr<v1::ListWorkersResponse> ListWorkers(const v1::ListWorkersRequest& request);

  // --- WorkerService ------------------------------------------------------------------------
  absl::StatusOr<v1::RegisterWorkerResponse> RegisterWorker(const v1::RegisterWorkerRequest& request);
  absl::StatusOr<v1::HeartbeatResponse> Heartbeat(const v1::HeartbeatRequest& request);
  //! Non-blocking: what is pending for the worker now.
  absl::StatusOr<v1::PollAssignmentsResponse> PollAssignments(const v1::PollAssignmentsRequest& request);
  using PollCallback = std::function<void(absl::StatusOr<v1::PollAssignmentsResponse>)>;
  //! Long poll: `done` runs once, with assignments as soon as there are some, or empty at
  //! `deadline` (real time; ExpirePolls ends overdue polls), or on Shutdown.
  void PollAssignmentsAsync(const v1::PollAssignmentsRequest& request, absl::Time deadline,
                            PollCallback done);
  absl::StatusOr<v1::ReportAttemptResponse> ReportAttempt(const v1::ReportAttemptRequest& request);
  absl::StatusOr<v1::RendezvousResponse> Rendezvous(const v1::RendezvousRequest& request);

  // --- Loop ---------------------------------------------------------------------------------
  //! Expires leases and dead workers, ends backoffs, runs the scheduler and delivers placements.
  absl::Status Tick();
  //! Ends long polls whose deadline (real time) passed.
  void ExpirePolls(absl::Time real_now);
  //! Blocks until an event newer than `seen` is committed, `timeout` passes or Shutdown; returns
  //! the newest event sequence.
  int64_t WaitForEvents(int64_t seen, absl::Duration timeout);
  int64_t last_event_sequence();
  //! Wakes every waiter and refuses further calls.
  void Shutdown();

  SyncPoints& sync_points() { return sync_points_; }
  //! After this, every call fails with UNAVAILABLE and nothing more is written: the in-process
  //! stand-in for kill -9 (a test then opens a new Coordinator on the same store).
  void SimulateCrashForTesting();

 private:
  struct AttemptRt {
    StoredAttempt row;
    bool delivered = false;  // a worker received the assignment (memory only)
    std::set<std::string> exited_workers;  // gang parts that reported a successful exit
    std::vector<v1::Artifact> artifacts;   // reported outputs, promoted to the stage on success
    v1::Assignment assignment_template;    // the assignment sent to each worker
    absl::Time placed_at;
    // Rendezvous
    std::string master_addr;
    int master_port = 0;
    std::set<int> checked_in;
  };
  struct StageRt {
    StoredStage row;
    PlannedStage plan;
    std::vector<std::unique_ptr<AttemptRt>> attempts;
  };
  struct PipelineRt {
    StoredPipeline row;
    std::vector<std::unique_ptr<StageRt>> stages;
    std::map<std::string, int> stage_index;
    int64_t order = 0;  // FIFO key
  };
  struct WorkerRt {
    v1::WorkerStatus status;
    absl::Time last_heartbeat;
    std::deque<v1::Assignment> pending;
  };
  struct Poller {
    std::string worker_id;
    int64_t incarnation;
    absl::Time deadline;
    PollCallback done;
  };
  // Rows changed by one transition; Commit serializes them from memory.
  struct Txn {
    WriteBatch batch;
    std::set<std::string> pipelines;
    std::set<std::pair<std::string, std::string>> stages;
    std::set<std::string> attempts;
    std::set<std::string> workers;
    std::vector<std::function<void()>> after_commit;  // run under mu_ once durable
  };

  absl::Status CheckUsable() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status Commit(Txn& t) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status RebuildFromStore() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status LoadSnapshot(const StoreSnapshot& snap) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Emit(Txn& t, v1::Event event) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  PipelineRt* FindPipeline(const std::string& id_or_name, absl::Status* error)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // NOT_FOUND naming the pipeline's stages.
  absl::Status NoSuchStage(const PipelineRt& p, const std::string& stage) const;
  AttemptRt* FindAttempt(const std::string& attempt_id, PipelineRt** p, StageRt** s)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  v1::PipelineStatus BuildStatus(const PipelineRt& p, bool with_attempts) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  const v1::StageSpec& SpecOf(const PipelineRt& p, const StageRt& s) const;
  StageOutputsByName OutputsOf(const PipelineRt& p) const;

  void SetPipelineState(PipelineRt& p, v1::PipelineState state, const std::string& reason, Txn& t)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SetStageState(PipelineRt& p, StageRt& s, v1::StageState state, const std::string& reason,
                     Txn& t) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SetAttemptState(PipelineRt& p, StageRt& s, AttemptRt& a, v1::AttemptState state, Txn& t)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  //! BLOCKED stages whose inputs exist become QUEUED (or CACHED); those behind a failed stage SKIPPED.
  void PromoteReady(PipelineRt& p, Txn& t) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void UpdatePipelineState(PipelineRt& p, Txn& t) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void FailAttempt(PipelineRt& p, StageRt& s, AttemptRt& a, v1::FailureClass failure_class,
                   const std::string& reason, const v1::AttemptExit* exit, Txn& t)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SucceedAttempt(PipelineRt& p, StageRt& s, AttemptRt& a, Txn& t)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void CancelAttempt(PipelineRt& p, StageRt& s, AttemptRt& a, const std::string& reason, Txn& t)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RemovePending(const AttemptRt& a) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool PlacedOn(const AttemptRt& a, const std::string& worker_id, int64_t incarnation) const;
  static bool Active(const AttemptRt& a);
  absl::Status ScheduleLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void DeliverPolls() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Moves a worker's pending assignments into `resp`, marking them delivered.
  void TakePending(WorkerRt& worker, v1::PollAssignmentsResponse* resp) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void UpdateGauges() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RunCallbacks() ABSL_LOCKS_EXCLUDED(mu_);

  Store& store_;
  Clock& clock_;
  CoordinatorMetrics* metrics_;
  const CoordinatorConfig config_;
  SyncPoints sync_points_;

  mutable absl::Mutex mu_;
  IdGenerator& ids_ ABSL_GUARDED_BY(mu_);
  bool shutdown_ ABSL_GUARDED_BY(mu_) = false;
  bool crashed_ ABSL_GUARDED_BY(mu_) = false;
  std::map<std::string, std::unique_ptr<PipelineRt>> pipelines_ ABSL_GUARDED_BY(mu_);
  std::multimap<std::string, std::string> names_ ABSL_GUARDED_BY(mu_);  // name -> id
  std::map<std::string, std::string> request_ids_ ABSL_GUARDED_BY(mu_);
  std::set<std::string> inflight_requests_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::pair<std::string, std::string>> attempt_index_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::pair<std::string, std::string>> cache_index_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, WorkerRt> workers_ ABSL_GUARDED_BY(mu_);
  std::vector<Poller> pollers_ ABSL_GUARDED_BY(mu_);
  std::set<std::string> seen_reports_ ABSL_GUARDED_BY(mu_);
  // Workers loaded at recovery that have not re-registered yet: their heartbeats and polls are
  // answered with reregister, so they report what they still run.
  std::set<std::string> must_reregister_ ABSL_GUARDED_BY(mu_);
  std::map<std::pair<std::string, std::string>, Waiting> waiting_ ABSL_GUARDED_BY(mu_);
  std::vector<std::function<void()>> callbacks_ ABSL_GUARDED_BY(mu_);  // run after unlocking
  int64_t next_order_ ABSL_GUARDED_BY(mu_) = 0;
  // Set when something a placement depends on changed (a stage queued, slots freed, a worker
  // came or went); otherwise the scheduler runs once a second to refresh waiting reasons.
  bool schedule_dirty_ ABSL_GUARDED_BY(mu_) = true;
  absl::Time last_schedule_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  absl::Time last_gauges_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  int64_t event_seq_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time recovery_until_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  absl::CondVar events_cv_;
};

}  // namespace align::coordinator
