// Live progress of a pipeline for `submit --wait`, `watch` and `run`: per-stage bars (step/total,
// loss, tokens/s, ETA) redrawn in place on a terminal, or one line per change otherwise.
#pragma once

#include <atomic>
#include <cstdio>
#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "align/v1/state.pb.h"
#include "cli/coordinator_client.h"

namespace align::cli {

class ProgressView {
 public:
  //! `tty`: redraw the block of bars in place with ANSI escapes; otherwise print changes only.
  ProgressView(std::FILE* out, bool tty) : out_(out), tty_(tty) {}

  //! Shows `status` (throttled on a terminal; state changes are always shown).
  void Update(const align::v1::PipelineStatus& status, bool force = false);
  //! Applies one WatchPipeline event to the last status and shows it.
  void Apply(const align::v1::Event& event);
  const align::v1::PipelineStatus& status() const { return status_; }
  void set_status(const align::v1::PipelineStatus& status) { status_ = status; }

 private:
  void Draw();

  std::FILE* out_;
  bool tty_;
  align::v1::PipelineStatus status_;
  int drawn_lines_ = 0;
  absl::Time last_draw_ = absl::InfinitePast();
  std::map<std::string, std::string> last_state_;      // stage -> state name printed
  std::map<std::string, absl::Time> last_progress_;    // stage -> last progress line (non-TTY)
};

//! Follows a pipeline until it ends (WatchPipeline events, GetPipeline for the full picture;
//! polling GetPipeline when the stream is unavailable) and returns its final status.
//! `stop` (may be null) ends the wait early with Cancelled.
absl::StatusOr<align::v1::PipelineStatus> WaitForPipeline(CoordinatorClient& client,
                                                          const std::string& pipeline_id,
                                                          ProgressView& view,
                                                          const std::atomic<bool>* stop);

//! alignctl's exit code for a finished pipeline: 0 succeeded, 1 failed, 130 cancelled.
int ExitCodeFor(align::v1::PipelineState state);

//! The closing summary: one line per stage with its state, duration and final metrics.
std::string PipelineSummary(const align::v1::PipelineStatus& status);

}  // namespace align::cli
