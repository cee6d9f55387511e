// The stage's data sources (StageSpec.data) resolved to files and loaded as SFT examples or
// preference pairs, with per-source counts of rows kept, dropped (and why) and bad lines skipped;
// plus the preference_format stage, which writes standardized train/test JSONL and a report.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "worker/engine/core/events.h"
#include "worker/engine/core/job.h"
#include "worker/engine/data/formats.h"
#include "worker/engine/data/jsonl.h"

namespace align::engine::data {

struct SourceSpec {
  std::string path;  // resolved local path
  DataFormat format = DataFormat::kUnspecified;
  double weight = 1.0;
  int64_t max_examples = 0;
  OnBadLine on_bad_line = OnBadLine::kFail;
  std::string language;
};

//! stage.data[i], with paths from job.inputs["data/i"] when the worker resolved them, else
//! data:// paths against the data dir. Errors name stage.data[i].<field>.
absl::StatusOr<std::vector<SourceSpec>> SourcesFromJob(const JobSpec& job);

//! Counts for the stage report: kept, dropped by reason, malformed lines skipped.
class DataReport {
 public:
  void Kept(size_t source, int64_t n = 1) { sources_[source].kept += n; }
  void Dropped(size_t source, const std::string& reason, int64_t n = 1) {
    sources_[source].dropped[reason] += n;
  }
  void SetRead(size_t source, const SourceSpec& spec, const ReadStats& stats);
  //! Drops found later (tokenization, truncation), not tied to one source.
  void DroppedLater(const std::string& reason, int64_t n = 1) { later_[reason] += n; }
  nlohmann::json ToJson() const;
  int64_t TotalKept() const;

 private:
  struct PerSource {
    std::string path, format;
    int64_t lines = 0, skipped = 0, kept = 0;
    std::map<std::string, int64_t> dropped;
    std::vector<std::string> bad_lines;
  };
  std::map<size_t, PerSource> sources_;
  std::map<std::string, int64_t> later_;
};

//! Reads each source as SFT examples (TEXT, MESSAGES, PROMPT_COMPLETION, OASST_TREE best paths).
absl::StatusOr<std::vector<std::vector<SftExample>>> LoadSftSources(
    const std::vector<SourceSpec>& sources, DataReport& report);

//! Reads each source as preference pairs (PREFERENCE, IMPLICIT_PREFERENCE, HH_RLHF, OASST_TREE,
//! ULTRAFEEDBACK).
absl::StatusOr<std::vector<std::vector<PreferencePair>>> LoadPreferenceSources(
    const std::vector<SourceSpec>& sources, DataReport& report);

//! SHA-256 of a file, or of a directory: of its files' relative names and hashes, one
//! "name hash" line each in sorted order. `size_bytes` (optional) gets the file's size or the sum
//! of the directory's. The artifact events and the eval record identify models by this hash.
absl::StatusOr<std::string> PathSha256(const std::string& path, int64_t* size_bytes = nullptr);

//! Emits an `artifact` event for a file or a directory (sha256: PathSha256; size: the sum).
absl::Status EmitArtifact(EventSink& events, const std::string& name, const std::string& path,
                          const std::string& kind);

//! The preference_format stage: load, convert, mix, shuffle, split (test_fraction, default 0.1),
//! cap (max_pairs), write output_dir/{train,test}.jsonl and report.json. Returns final metrics.
absl::StatusOr<nlohmann::json> RunPreferenceFormatStage(const JobSpec& job, EventSink& events);

}  // namespace align::engine::data
