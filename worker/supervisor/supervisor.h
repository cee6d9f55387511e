// Runs and supervises the attempts assigned to this worker: one align-train process per local rank
// in its own process group; reads their progress events and logs; detects failed and hung ranks;
// cancels with SIGTERM, a grace period, then SIGKILL of every group; and declares an attempt ended
// only once no process of it is left. Driven by Tick() (the agent calls it on a timer; tests call it
// directly with a FakeClock), so every decision is deterministic given the clock and /proc.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "align/v1/worker.pb.h"
#include "common/clock.h"
#include "worker/supervisor/event_parser.h"
#include "worker/supervisor/failure_classifier.h"
#include "worker/supervisor/file_tailer.h"
#include "worker/supervisor/process_launcher.h"

namespace align::worker {

struct SupervisorOptions {
  std::string align_train_path = "align-train";
  std::vector<std::string> align_train_args;   // extra arguments after --job FILE
  std::string work_root;                       // attempts live in <work_root>/attempts/<id>
  std::string artifact_root;                   // default output_dir: <root>/<pipeline>/<stage>
  std::string data_dir;                        // ALIGN_DATA_DIR for data:// paths
  std::map<std::string, std::string> extra_env;
  //! Between SIGTERM and SIGKILL of a cancelled attempt's process groups.
  absl::Duration kill_grace = absl::Seconds(10);
  //! A rank is hung after max(hang_min_timeout, hang_step_multiple x recent step time) without a
  //! step event while training, once it has made hang_min_steps steps.
  double hang_step_multiple = 10;
  absl::Duration hang_min_timeout = absl::Minutes(2);
  int hang_min_steps = 2;
  std::vector<LogRule> log_rules = DefaultLogRules();
  size_t log_tail_lines = 100;
  size_t max_log_lines_per_report = 1000;
};

//! Why an attempt is being stopped.
enum class StopCause { kNone, kUserCancel, kLeaseLost, kShutdown, kHung, kRankFailed, kLeftovers,
                       kLaunchFailed };

//! Latest state of one rank, for /metrics.
struct RankSnapshot {
  std::string pipeline_id;
  std::string stage;
  std::string attempt_id;
  int rank = 0;
  v1::Progress progress;
  int64_t rss_bytes = 0;
  bool running = false;
};

class Supervisor {
 public:
  //! Fails when a log rule does not compile.
  static absl::StatusOr<std::unique_ptr<Supervisor>> Create(SupervisorOptions options,
                                                            ProcessLauncher& launcher,
                                                            Clock& clock);
  ~Supervisor();

  //! Starts every local rank of an assignment. AlreadyExists if the attempt is known (a
  //! re-delivered assignment). A rank that cannot be started ends the attempt as an
  //! infrastructure failure (reported like any other end), not an error here.
  absl::Status Start(const v1::Assignment& assignment);
  //! Begins stopping an attempt (SIGTERM now, SIGKILL after the grace period). No-op if unknown or
  //! already stopping.
  void Cancel(const std::string& attempt_id, StopCause cause, const std::string& reason);
  void CancelAll(StopCause cause, const std::string& reason);
  //! One round of supervision: exits, events, hangs, kill escalation, end confirmation.
  void Tick();

  //! Attempts whose slots are busy: running, stopping, or ended but not yet Forget()-ten.
  std::vector<v1::RunningAttempt> Running();
  std::vector<std::string> AttemptIds();
  //! The next report for an attempt (logs bounded by max_log_lines_per_report, progress, metric
  //! points, new artifacts, checkpoint; the exit once the attempt ended and its logs are drained),
  //! or nullopt when there is nothing new. worker_id/incarnation/report_id are left to the caller.
  std::optional<v1::ReportAttemptRequest> NextReport(const std::string& attempt_id);
  //! The exit of an ended attempt.
  std::optional<v1::AttemptExit> ExitOf(const std::string& attempt_id);
  //! Drops an ended attempt after its exit was accepted (its directory stays on disk).
  void Forget(const std::string& attempt_id);
  //! True when no attempt is known.
  bool Idle();
  std::vector<RankSnapshot> Snapshot();
  //! The attempt's directory (<work_root>/attempts/<id>).
  std::string AttemptDir(const std::string& attempt_id) const;

 private:
  struct Rank;
  struct Attempt;
  Supervisor(SupervisorOptions options, FailureClassifier classifier, ProcessLauncher& launcher,
             Clock& clock);

  void ReadEvents(Rank& rank, absl::Time now);
  void BeginStop(Attempt& attempt, StopCause cause, const std::string& reason, absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void TickAttempt(Attempt& attempt, absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Finish(Attempt& attempt, absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const SupervisorOptions options_;
  const FailureClassifier classifier_;
  ProcessLauncher& launcher_;
  Clock& clock_;
  absl::Mutex mu_;
  std::map<std::string, std::unique_ptr<Attempt>> attempts_ ABSL_GUARDED_BY(mu_);
};

//! A TCP port free on this host right now (for MASTER_PORT when the coordinator gave none).
int PickFreePort();

//! Kills what a previous run of the daemon left behind: for every <work_root>/attempts/<id>/
//! rank-<R>.pid whose process group still has a member carrying ALIGN_ATTEMPT_ID=<id> in its
//! environment (so a reused pid is never hit), SIGKILLs the group. A new incarnation cannot adopt
//! those ranks (the coordinator fails them and places the stage again), and they would hold GPUs.
//! Returns the number of groups killed.
int KillOrphanedRanks(const std::string& work_root);

}  // namespace align::worker
