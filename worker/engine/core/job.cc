#include "worker/engine/core/job.h"

#include <cctype>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace align::engine {
namespace {

const nlohmann::json& EmptyObject() {
  static const nlohmann::json* empty = new nlohmann::json(nlohmann::json::object());
  return *empty;
}

std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

int EnvInt(const char* name, int fallback) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  return std::atoi(v);
}

}  // namespace

std::optional<double> JsonNumber(const nlohmann::json& object, const std::string& key) {
  if (!object.is_object()) return std::nullopt;
  auto it = object.find(key);
  if (it == object.end() || it->is_null()) return std::nullopt;
  if (it->is_number()) return it->get<double>();
  if (it->is_boolean()) return it->get<bool>() ? 1.0 : 0.0;
  if (it->is_string()) {
    const std::string s = it->get<std::string>();
    char* end = nullptr;
    const double v = std::strtod(s.c_str(), &end);
    if (end != s.c_str() && *end == '\0') return v;
  }
  return std::nullopt;
}

const nlohmann::json& JobSpec::Config() const {
  auto it = stage.find(stage_type);
  if (it == stage.end() || !it->is_object()) return EmptyObject();
  return *it;
}

double JobSpec::TrainingNumber(const std::string& key, double fallback) const {
  auto it = stage.find("training");
  if (it == stage.end()) return fallback;
  return JsonNumber(*it, key).value_or(fallback);
}

double JobSpec::ConfigNumber(const std::string& key, double fallback) const {
  return JsonNumber(Config(), key).value_or(fallback);
}

std::string JobSpec::ConfigString(const std::string& key, const std::string& fallback) const {
  const auto& c = Config();
  auto it = c.find(key);
  if (it == c.end() || !it->is_string() || it->get<std::string>().empty()) return fallback;
  return it->get<std::string>();
}

bool JobSpec::ConfigBool(const std::string& key, bool fallback) const {
  const auto& c = Config();
  auto it = c.find(key);
  if (it == c.end() || !it->is_boolean()) return fallback;
  return it->get<bool>();
}

std::string JobSpec::StageOrDefault(const std::string& key, const std::string& fallback) const {
  for (const nlohmann::json* obj : {&stage, &defaults}) {
    auto it = obj->find(key);
    if (it != obj->end() && it->is_string() && !it->get<std::string>().empty()) {
      return it->get<std::string>();
    }
  }
  return fallback;
}

uint64_t JobSpec::Seed() const {
  auto v = JsonNumber(defaults, "seed");
  return v ? static_cast<uint64_t>(*v) : 42;
}

absl::StatusOr<JobSpec> ParseJob(const std::string& json_text, const std::string& source) {
  nlohmann::json j = nlohmann::json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": not a JSON object; expected a TrainJob (proto/align/v1/job.proto)"));
  }
  JobSpec job;
  auto str = [&](const char* key) {
    auto it = j.find(key);
    return (it != j.end() && it->is_string()) ? it->get<std::string>() : std::string();
  };
  job.pipeline_id = str("pipeline_id");
  job.attempt_id = str("attempt_id");
  job.output_dir = str("output_dir");
  job.work_dir = str("work_dir");
  job.resume_from = str("resume_from");
  job.events_path = str("events_path");
  job.data_dir = str("data_dir");
  job.threads = static_cast<int>(JsonNumber(j, "threads").value_or(0));
  if (auto it = j.find("stage"); it != j.end() && it->is_object()) job.stage = *it;
  if (!job.stage.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": field 'stage' is missing"));
  }
  if (auto it = j.find("defaults"); it != j.end() && it->is_object()) {
    job.defaults = *it;
  } else {
    job.defaults = nlohmann::json::object();
  }
  job.stage_name = job.stage.value("name", "");
  job.stage_type = Lower(job.stage.value("type", ""));
  if (job.stage_type.empty() || job.stage_type == "stage_type_unspecified") {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": field 'stage.type' is missing; expected one of sft, "
                             "preference_format, reward_model, dpo, ppo, eval"));
  }
  if (auto it = j.find("inputs"); it != j.end() && it->is_object()) {
    for (auto& [k, v] : it->items()) {
      // data:// inputs come through unresolved: the data directory is the worker's to know.
      if (v.is_string()) job.inputs[k] = ResolveDataPath(v.get<std::string>(), job.data_dir);
    }
  }
  job.world_size = EnvInt("WORLD_SIZE", 1);
  job.rank = EnvInt("RANK", 0);
  job.local_rank = EnvInt("LOCAL_RANK", job.rank);
  return job;
}

absl::StatusOr<JobSpec> LoadJobFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open job file"));
  std::stringstream ss;
  ss << in.rdbuf();
  return ParseJob(ss.str(), path);
}

std::string DataRoot(const std::string& data_dir) {
  if (!data_dir.empty()) return data_dir;
  const char* env = std::getenv("ALIGN_DATA_DIR");
  return env != nullptr ? env : "../shared/data";
}

std::string ResolveDataPath(const std::string& path, const std::string& data_dir) {
  constexpr char kPrefix[] = "data://";
  if (path.rfind(kPrefix, 0) != 0) return path;
  return absl::StrCat(DataRoot(data_dir), "/", path.substr(sizeof(kPrefix) - 1));
}

}  // namespace align::engine
