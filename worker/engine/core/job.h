// The job file align-train runs (proto/align/v1/job.proto TrainJob, written by the worker as proto3
// JSON with snake_case names). Parsed with nlohmann-json, not protobuf, so the engine builds
// without protobuf. Every room of the engine reads its stage settings through JobSpec.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"

namespace align::engine {

//! A parsed TrainJob. proto3 JSON omits default values, so every getter takes a fallback.
struct JobSpec {
  std::string pipeline_id;
  std::string attempt_id;
  std::string stage_name;
  std::string stage_type;       // lower case: "sft", "preference_format", "reward_model", "dpo", "ppo", "eval"
  nlohmann::json stage;         // the StageSpec object as written
  nlohmann::json defaults;      // the Defaults object
  std::map<std::string, std::string> inputs;  // resolved input paths: "model", "data/0", ...
  std::string output_dir;
  std::string work_dir;
  std::string resume_from;
  std::string events_path;
  std::string data_dir;
  int threads = 0;
  int rank = 0;                 // from RANK / LOCAL_RANK / WORLD_SIZE in the environment
  int local_rank = 0;
  int world_size = 1;

  //! stage.training.<key> (TrainingConfig), or `fallback` when absent.
  double TrainingNumber(const std::string& key, double fallback) const;
  //! stage.<type>.<key> (the type's config message), or `fallback` when absent.
  double ConfigNumber(const std::string& key, double fallback) const;
  std::string ConfigString(const std::string& key, const std::string& fallback) const;
  bool ConfigBool(const std::string& key, bool fallback) const;
  //! The type's config object (empty object when absent).
  const nlohmann::json& Config() const;
  //! stage.<key> falling back to defaults.<key>, e.g. "model", "tokenizer", "chat_template".
  std::string StageOrDefault(const std::string& key, const std::string& fallback) const;
  uint64_t Seed() const;  // defaults.seed, default 42
};

//! Parses a job file's JSON text; `source` names the file in errors.
absl::StatusOr<JobSpec> ParseJob(const std::string& json_text, const std::string& source);
absl::StatusOr<JobSpec> LoadJobFile(const std::string& path);

//! Reads a number that proto3 JSON may write as a string (int64) or a number.
std::optional<double> JsonNumber(const nlohmann::json& object, const std::string& key);

//! Resolves "data://x/y" against data_dir (or $ALIGN_DATA_DIR); other paths are returned as is.
std::string ResolveDataPath(const std::string& path, const std::string& data_dir);

//! The data directory data:// paths resolve against: data_dir, else $ALIGN_DATA_DIR, else
//! ../shared/data.
std::string DataRoot(const std::string& data_dir);

}  // namespace align::engine
