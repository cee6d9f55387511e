// Parses align-train's JSON-lines progress events (docs/events.md) of one rank into the latest
// progress, the step times hang detection needs, artifacts, checkpoints and the final error.
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "align/v1/state.pb.h"

namespace align::worker {

struct StepPoint {
  int64_t step = 0;
  std::vector<std::pair<std::string, double>> metrics;  // loss, learning_rate, rewards/...
};

class EventParser {
 public:
  //! Consumes one line; `now` is the worker's clock at the time it was read. Malformed lines are
  //! counted and skipped: a rank's bad output must never stop its supervision.
  void Consume(const std::string& line, absl::Time now);

  const v1::Progress& progress() const { return progress_; }
  //! Bumped whenever progress changes, so reports carry it only when new.
  int64_t progress_version() const { return progress_version_; }
  int64_t steps_seen() const { return steps_seen_; }
  //! When the last step event arrived (InfinitePast before the first).
  absl::Time last_step_at() const { return last_step_at_; }
  //! False after a phase event other than train (eval, save): a pause in steps is then expected.
  bool in_train_phase() const { return in_train_phase_; }
  //! The longest of the recent step durations (from step_seconds and arrival gaps).
  absl::Duration recent_step_time() const;
  const std::vector<v1::Artifact>& artifacts() const { return artifacts_; }
  const std::string& checkpoint() const { return checkpoint_; }
  bool done() const { return done_; }
  const std::string& error_message() const { return error_message_; }
  const std::string& error_class() const { return error_class_; }
  int64_t malformed_lines() const { return malformed_; }
  //! Step metric points not yet taken (bounded; the oldest are dropped first).
  std::vector<StepPoint> TakeStepPoints();

 private:
  v1::Progress progress_;
  int64_t progress_version_ = 0;
  int64_t steps_seen_ = 0;
  absl::Time last_step_at_ = absl::InfinitePast();
  bool in_train_phase_ = true;
  std::deque<absl::Duration> step_times_;
  std::vector<v1::Artifact> artifacts_;
  std::string checkpoint_;
  bool done_ = false;
  std::string error_message_;
  std::string error_class_;
  int64_t malformed_ = 0;
  std::deque<StepPoint> pending_points_;
};

}  // namespace align::worker
