#include "worker/supervisor/event_parser.h"

#include <algorithm>
#include <filesystem>

#include <google/protobuf/util/time_util.h>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"

namespace align::worker {
namespace {

constexpr size_t kStepTimeWindow = 8;
constexpr size_t kMaxPendingPoints = 4096;

double Number(const nlohmann::json& obj, const char* key, double fallback) {
  auto it = obj.find(key);
  if (it == obj.end() || !it->is_number()) return fallback;
  return it->get<double>();
}

std::string String(const nlohmann::json& obj, const char* key) {
  auto it = obj.find(key);
  if (it == obj.end() || !it->is_string()) return "";
  return it->get<std::string>();
}

google::protobuf::Timestamp ToTimestamp(absl::Time t) {
  return google::protobuf::util::TimeUtil::NanosecondsToTimestamp(absl::ToUnixNanos(t));
}

}  // namespace

void EventParser::Consume(const std::string& line, absl::Time now) {
  if (line.empty()) return;
  nlohmann::json ev = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (!ev.is_object() || !ev.contains("event") || !ev["event"].is_string()) {
    ++malformed_;
    return;
  }
  const std::string type = ev["event"].get<std::string>();
  if (type == "step") {
    const int64_t step = static_cast<int64_t>(Number(ev, "step", progress_.step()));
    progress_.set_step(step);
    progress_.set_total_steps(static_cast<int64_t>(Number(ev, "total_steps", progress_.total_steps())));
    progress_.set_epoch(Number(ev, "epoch", progress_.epoch()));
    progress_.set_tokens_per_second(Number(ev, "tokens_per_second", 0));
    progress_.set_phase("train");
    StepPoint point{.step = step, .metrics = {}};
    if (auto m = ev.find("metrics"); m != ev.end() && m->is_object()) {
      for (auto& [k, v] : m->items()) {
        if (!v.is_number()) continue;
        (*progress_.mutable_metrics())[k] = v.get<double>();
        point.metrics.emplace_back(k, v.get<double>());
      }
    }
    if (progress_.tokens_per_second() > 0) {
      point.metrics.emplace_back("tokens_per_second", progress_.tokens_per_second());
    }
    pending_points_.push_back(std::move(point));
    while (pending_points_.size() > kMaxPendingPoints) pending_points_.pop_front();
    absl::Duration took = absl::Seconds(Number(ev, "step_seconds", 0));
    if (last_step_at_ != absl::InfinitePast() && in_train_phase_) {
      took = std::max(took, now - last_step_at_);
    }
    step_times_.push_back(took);
    while (step_times_.size() > kStepTimeWindow) step_times_.pop_front();
    const double seconds = absl::ToDoubleSeconds(took);
    if (seconds > 0 && progress_.total_steps() > step) {
      progress_.set_eta_seconds(seconds * static_cast<double>(progress_.total_steps() - step));
    }
    last_step_at_ = now;
    in_train_phase_ = true;
    ++steps_seen_;
  } else if (type == "phase") {
    progress_.set_phase(String(ev, "phase"));
    in_train_phase_ = progress_.phase() == "train";
    if (in_train_phase_) last_step_at_ = now;  // the clock restarts when training (re)starts
  } else if (type == "progress") {
    // Work counted in items rather than optimizer steps (eval suites): a bar without metrics.
    const std::string suite = String(ev, "suite");
    progress_.set_phase(suite.empty() ? String(ev, "phase") : absl::StrCat(String(ev, "phase"), " ", suite));
    progress_.set_step(static_cast<int64_t>(Number(ev, "done", 0)));
    progress_.set_total_steps(static_cast<int64_t>(Number(ev, "total", 0)));
    progress_.set_eta_seconds(Number(ev, "eta_seconds", 0));
    progress_.set_tokens_per_second(0);
    in_train_phase_ = false;
  } else if (type == "start") {
    progress_.set_phase("start");
  } else if (type == "eval") {
    if (auto m = ev.find("metrics"); m != ev.end() && m->is_object()) {
      for (auto& [k, v] : m->items()) {
        if (v.is_number()) (*progress_.mutable_metrics())[k] = v.get<double>();
      }
    }
  } else if (type == "checkpoint") {
    checkpoint_ = String(ev, "path");
  } else if (type == "artifact") {
    v1::Artifact a;
    a.set_name(String(ev, "name"));
    const std::string path = String(ev, "path");
    // Paths built by joining a directory with a trailing slash read "a//b"; lineage compares URIs.
    a.set_uri(path.find("://") != std::string::npos
                  ? path
                  : "file://" + std::filesystem::path(path).lexically_normal().string());
    a.set_kind(String(ev, "kind"));
    a.set_sha256(String(ev, "sha256"));
    a.set_size_bytes(static_cast<int64_t>(Number(ev, "size_bytes", 0)));
    *a.mutable_created_at() = ToTimestamp(now);
    artifacts_.push_back(std::move(a));
  } else if (type == "done") {
    done_ = true;
    progress_.set_phase("done");
    if (auto m = ev.find("metrics"); m != ev.end() && m->is_object()) {
      for (auto& [k, v] : m->items()) {
        if (v.is_number()) (*progress_.mutable_metrics())[k] = v.get<double>();
      }
    }
  } else if (type == "error") {
    error_message_ = String(ev, "message");
    error_class_ = String(ev, "failure_class");
  } else {
    return;  // unknown event types are for other readers
  }
  *progress_.mutable_updated_at() = ToTimestamp(now);
  ++progress_version_;
}

absl::Duration EventParser::recent_step_time() const {
  absl::Duration out = absl::ZeroDuration();
  for (auto d : step_times_) out = std::max(out, d);
  return out;
}

std::vector<StepPoint> EventParser::TakeStepPoints() {
  std::vector<StepPoint> out(std::make_move_iterator(pending_points_.begin()),
                             std::make_move_iterator(pending_points_.end()));
  pending_points_.clear();
  return out;
}

}  // namespace align::worker
