// Structured progress events from align-train (format: docs/events.md). Thread-safe; each event
// is one JSON line, flushed at once so the worker sees progress as it happens.
#pragma once

#include <cstdio>
#include <memory>
#include <mutex>
#include <string>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"

namespace align::engine {

class EventSink {
 public:
  virtual ~EventSink() = default;
  //! Writes {"event": type, "time": now, ...fields}.
  virtual void Emit(const std::string& type, nlohmann::json fields) = 0;
};

//! Appends JSON lines to a file (or stdout when the path is empty).
class JsonLinesEventSink final : public EventSink {
 public:
  static absl::StatusOr<std::unique_ptr<JsonLinesEventSink>> Open(const std::string& path);
  ~JsonLinesEventSink() override;
  void Emit(const std::string& type, nlohmann::json fields) override;

 private:
  explicit JsonLinesEventSink(std::FILE* file, bool owned) : file_(file), owned_(owned) {}
  std::mutex mu_;
  std::FILE* file_;
  bool owned_;
};

//! Keeps every event in memory, for tests.
class RecordingEventSink final : public EventSink {
 public:
  void Emit(const std::string& type, nlohmann::json fields) override;
  std::vector<nlohmann::json> events;  // guarded by mu
  std::mutex mu;
};

}  // namespace align::engine
