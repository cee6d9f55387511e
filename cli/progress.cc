#include "cli/progress.h"

#include <algorithm>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "cli/output.h"

namespace align::cli {

void ProgressView::Update(const align::v1::PipelineStatus& status, bool force) {
  status_ = status;
  bool changed = force;
  for (const auto& s : status_.stages()) {
    std::string st = StageStateName(s.state());
    if (last_state_[s.name()] != st) changed = true;
  }
  absl::Time now = absl::Now();
  if (tty_) {
    if (changed || now - last_draw_ >= absl::Milliseconds(250)) Draw();
    return;
  }
  for (const auto& s : status_.stages()) {
    std::string st = StageStateName(s.state());
    bool state_changed = last_state_[s.name()] != st;
    bool progress_due = s.state() == align::v1::STAGE_RUNNING && s.progress().total_steps() > 0 &&
                        now - last_progress_[s.name()] >= absl::Seconds(10);
    if (state_changed || progress_due) {
      std::fprintf(out_, "%s\n", RenderStageProgress(s, 0).c_str());
      last_progress_[s.name()] = now;
    }
    last_state_[s.name()] = st;
  }
  std::fflush(out_);
}

void ProgressView::Draw() {
  size_t width = 0;
  for (const auto& s : status_.stages()) width = std::max(width, s.name().size());
  std::string block;
  if (drawn_lines_ > 0) absl::StrAppend(&block, "\033[", drawn_lines_, "F");
  int lines = 0;
  absl::StrAppend(&block, "\033[K", status_.name(), " (", status_.pipeline_id(), "): ",
                  PipelineStateName(status_.state()), "\n");
  ++lines;
  for (const auto& s : status_.stages()) {
    absl::StrAppend(&block, "\033[K  ", RenderStageProgress(s, static_cast<int>(width)), "\n");
    last_state_[s.name()] = StageStateName(s.state());
    ++lines;
  }
  std::fputs(block.c_str(), out_);
  std::fflush(out_);
  drawn_lines_ = lines;
  last_draw_ = absl::Now();
}

void ProgressView::Apply(const align::v1::Event& e) {
  align::v1::PipelineStatus next = status_;
  if (e.type() == align::v1::PIPELINE_STATE_CHANGED) next.set_state(e.pipeline_state());
  for (auto& s : *next.mutable_stages()) {
    if (s.name() != e.stage()) continue;
    if (e.type() == align::v1::STAGE_STATE_CHANGED) {
      s.set_state(e.stage_state());
      if (!e.message().empty() && e.stage_state() == align::v1::STAGE_FAILED) {
        s.set_reason(e.message());
      }
    }
    if (e.type() == align::v1::STAGE_PROGRESS || e.has_progress()) {
      if (e.progress().total_steps() > 0 || !e.progress().phase().empty()) {
        *s.mutable_progress() = e.progress();
      }
    }
  }
  Update(next);
}

absl::StatusOr<align::v1::PipelineStatus> WaitForPipeline(CoordinatorClient& client,
                                                          const std::string& pipeline_id,
                                                          ProgressView& view,
                                                          const std::atomic<bool>* stop) {
  auto stopped = [&] { return stop != nullptr && stop->load(); };
  int64_t after = 0;
  int stream_failures = 0;
  while (true) {
    if (stopped()) return absl::CancelledError("interrupted");
    auto status = client.Get(pipeline_id);
    if (!status.ok()) return status.status();
    view.Update(*status, /*force=*/true);
    if (IsTerminal(status->state())) return *status;
    bool ended = false;
    absl::Status s = client.Watch(pipeline_id, after, [&](const align::v1::Event& e) {
      if (stopped()) return false;  // interrupted: the stopping stages are not news
      after = std::max(after, e.sequence());
      if (e.type() == align::v1::STAGE_STATE_CHANGED ||
          e.type() == align::v1::PIPELINE_STATE_CHANGED ||
          e.type() == align::v1::ARTIFACT_CREATED) {
        // State changes carry little; fetch the whole picture (reasons, outputs, positions).
        auto fresh = client.Get(pipeline_id);
        if (fresh.ok()) {
          view.Update(*fresh);
          if (IsTerminal(fresh->state())) ended = true;
        } else {
          view.Apply(e);
        }
      } else {
        view.Apply(e);
      }
      return !ended && !stopped();
    });
    if (ended) continue;  // the next Get returns the terminal status
    if (!s.ok()) {
      if (s.code() == absl::StatusCode::kUnauthenticated ||
          s.code() == absl::StatusCode::kNotFound || ++stream_failures > 30) {
        return s;
      }
    }
    // The stream ended without a terminal state (server restart, no stream support): poll.
    if (stopped()) return absl::CancelledError("interrupted");
    std::this_thread::sleep_for(std::chrono::milliseconds(s.ok() ? 200 : 1000));
  }
}

int ExitCodeFor(align::v1::PipelineState state) {
  switch (state) {
    case align::v1::PIPELINE_SUCCEEDED:
      return 0;
    case align::v1::PIPELINE_CANCELLED:
    case align::v1::PIPELINE_CANCELLING:
      return 130;
    default:
      return 1;
  }
}

std::string PipelineSummary(const align::v1::PipelineStatus& p) {
  std::string out = absl::StrCat("pipeline ", p.name(), " (", p.pipeline_id(), ") ",
                                 PipelineStateName(p.state()));
  absl::Time created = ToTime(p.created_at()), finished = ToTime(p.finished_at());
  if (created != absl::InfinitePast() && finished != absl::InfinitePast()) {
    absl::StrAppend(&out, " in ", HumanDuration(finished - created));
  }
  if (!p.reason().empty()) absl::StrAppend(&out, ": ", p.reason());
  out += "\n";
  std::vector<std::vector<std::string>> rows;
  for (const auto& s : p.stages()) {
    std::string metrics;
    for (const char* k : {"loss", "rewards/margins", "rewards/accuracies"}) {
      if (auto it = s.progress().metrics().find(k); it != s.progress().metrics().end()) {
        absl::StrAppend(&metrics, metrics.empty() ? "" : "  ", k, " ", FormatMetric(it->second));
      }
    }
    absl::Time a = ToTime(s.started_at()), b = ToTime(s.finished_at());
    std::string dur = (a != absl::InfinitePast() && b != absl::InfinitePast())
                          ? HumanDuration(b - a)
                          : "";
    std::string note = !s.cached_from().empty() ? absl::StrCat("cached from ", s.cached_from())
                                                : s.reason();
    rows.push_back({s.name(), StageStateName(s.state()), dur, metrics, note});
  }
  absl::StrAppend(&out, RenderTable({"STAGE", "STATE", "TIME", "FINAL METRICS", "NOTE"}, rows));
  return out;
}

}  // namespace align::cli
