#include "worker/engine/core/job.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <sstream>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "common/suggest.h"

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

// ---- the TrainJob schema ---------------------------------------------------------------------
// proto/align/v1/job.proto and pipeline.proto as the worker writes them (proto3 JSON with the
// original field names, int64 as strings). ParseJob checks the file against it so that a
// misspelt key or a value of the wrong type is a bad job (exit 2), not a silent default. Keep it
// in step with the .proto files; a field the worker writes and this table lacks fails every job
// (JobFileContract in tests/unit/cli sets every proto field and catches that).

enum class Kind {
  kString,
  kBool,
  kInt32,
  kInt64,
  kUInt64,
  kDouble,
  kEnum,
  kMessage,
  kRepeatedMessage,
  kRepeatedString,
  kStringMap
};
//! The sign rule of common/config/validation.cc for the field. proto3 JSON cannot tell an
//! explicit 0 from an absent field, so 0 passes either way (the engine reads it as the default).
enum class Sign { kAny, kNonNegative, kPositive };

struct Message;
struct Field {
  std::string name;
  Kind kind;
  Sign sign = Sign::kAny;
  const Message* message = nullptr;  // kMessage, kRepeatedMessage
  std::vector<std::string> values;   // kEnum: the proto value names
};
struct Message {
  std::string name;  // e.g. "TrainingConfig (proto/align/v1/pipeline.proto)"
  std::vector<Field> fields;
  const Field* Find(const std::string& key) const {
    for (const Field& f : fields) {
      if (f.name == key) return &f;
    }
    return nullptr;
  }
  std::vector<std::string> Names() const {
    std::vector<std::string> names;
    for (const Field& f : fields) names.push_back(f.name);
    return names;
  }
};

Field Str(std::string name) { return {std::move(name), Kind::kString}; }
Field Bool(std::string name) { return {std::move(name), Kind::kBool}; }
Field I32(std::string name, Sign sign = Sign::kAny) {
  return {std::move(name), Kind::kInt32, sign};
}
Field I64(std::string name, Sign sign = Sign::kAny) {
  return {std::move(name), Kind::kInt64, sign};
}
Field U64(std::string name) { return {std::move(name), Kind::kUInt64}; }
Field Dbl(std::string name, Sign sign = Sign::kAny) {
  return {std::move(name), Kind::kDouble, sign};
}
Field Enum(std::string name, std::vector<std::string> values) {
  return {std::move(name), Kind::kEnum, Sign::kAny, nullptr, std::move(values)};
}
Field Msg(std::string name, const Message* m) {
  return {std::move(name), Kind::kMessage, Sign::kAny, m};
}
Field Msgs(std::string name, const Message* m) {
  return {std::move(name), Kind::kRepeatedMessage, Sign::kAny, m};
}
Field Strs(std::string name) { return {std::move(name), Kind::kRepeatedString}; }
Field StrMap(std::string name) { return {std::move(name), Kind::kStringMap}; }

constexpr Sign kNonNeg = Sign::kNonNegative;
constexpr Sign kPos = Sign::kPositive;

const Message& TrainJobSchema() {
  static const Message* job = [] {
    const std::string pipeline = " (proto/align/v1/pipeline.proto)";
    auto* data =
        new Message{"DataSource" + pipeline,
                    {Str("path"),
                     Enum("format", {"DATA_FORMAT_UNSPECIFIED", "TEXT", "MESSAGES",
                                     "PROMPT_COMPLETION", "PREFERENCE", "IMPLICIT_PREFERENCE",
                                     "HH_RLHF", "OASST_TREE", "ULTRAFEEDBACK"}),
                     Dbl("weight", kPos), Str("sha256"), I64("max_examples", kNonNeg),
                     Enum("on_bad_line", {"ON_BAD_LINE_UNSPECIFIED", "FAIL", "SKIP"}),
                     Str("language"), Str("split")}};
    auto* resources = new Message{
        "Resources" + pipeline,
        {I32("ranks", kPos), I32("gpus_per_rank", kNonNeg), Bool("cpu_only_allowed"),
         I32("cpus_per_rank", kPos), I64("memory_mb", kNonNeg), StrMap("node_selector")}};
    auto* retry =
        new Message{"RetryPolicy" + pipeline,
                    {I32("max_infra_retries", kNonNeg), I32("max_user_retries", kNonNeg),
                     Dbl("backoff_initial_seconds", kNonNeg), Dbl("backoff_max_seconds", kPos)}};
    auto* training = new Message{
        "TrainingConfig" + pipeline,
        {Dbl("learning_rate", kPos),
         I32("epochs", kPos),
         I64("max_steps", kNonNeg),
         I32("batch_size", kPos),
         I32("gradient_accumulation_steps", kPos),
         I32("max_length", kPos),
         Enum("lr_scheduler", {"LR_SCHEDULER_UNSPECIFIED", "LINEAR", "COSINE", "CONSTANT"}),
         Dbl("warmup_ratio"),
         I64("warmup_steps", kNonNeg),
         Dbl("weight_decay", kNonNeg),
         Dbl("adam_beta1"),
         Dbl("adam_beta2"),
         Dbl("adam_epsilon", kPos),
         Dbl("max_grad_norm", kNonNeg),
         I64("save_steps", kNonNeg),
         I32("save_total_limit", kNonNeg),
         I64("logging_steps", kPos),
         I64("eval_steps", kNonNeg),
         Dbl("eval_fraction"),
         Bool("gradient_checkpointing"),
         Enum("truncation_side", {"TRUNCATION_SIDE_UNSPECIFIED", "RIGHT", "LEFT"})}};
    auto* sft =
        new Message{"SftConfig" + pipeline,
                    {Enum("loss_on", {"LOSS_ON_UNSPECIFIED", "ASSISTANT", "COMPLETION", "ALL"}),
                     Bool("packing")}};
    auto* prefs =
        new Message{"PreferenceFormatConfig" + pipeline,
                    {Dbl("test_fraction"), I64("max_pairs", kNonNeg), Bool("drop_identical")}};
    auto* rm = new Message{"RewardModelConfig" + pipeline, {Dbl("center_rewards_coefficient")}};
    auto* dpo = new Message{
        "DpoConfig" + pipeline,
        {Dbl("beta", kPos),
         Enum("loss_type",
              {"DPO_LOSS_TYPE_UNSPECIFIED", "SIGMOID", "IPO", "HINGE", "ROBUST", "SIMPO", "ORPO"}),
         Dbl("label_smoothing"), Dbl("sft_weight", kNonNeg), Bool("precompute_ref_log_probs"),
         Str("reference_model"), Dbl("simpo_gamma", kNonNeg), I32("max_prompt_length", kNonNeg)}};
    auto* ppo = new Message{
        "PpoConfig" + pipeline,
        {Str("reward_model"), Dbl("kl_coef", kNonNeg), Dbl("cliprange", kPos),
         Dbl("cliprange_value", kPos), Dbl("vf_coef", kNonNeg), I32("num_ppo_epochs", kPos),
         I32("response_length", kPos), Dbl("temperature", kPos)}};
    auto* judge =
        new Message{"JudgeConfig" + pipeline,
                    {Str("model"), Str("endpoint"), Str("endpoint_model"), Str("api_key_env"),
                     I32("max_tokens", kPos), Dbl("timeout_seconds", kNonNeg)}};
    auto* eval = new Message{
        "EvalConfig" + pipeline,
        {Strs("suites"), I32("mmlu_shots", kNonNeg), Strs("mmlu_subjects"), I64("limit", kNonNeg),
         StrMap("gates"), Msg("judge", judge), I32("batch_size", kPos), I32("max_new_tokens", kPos),
         Strs("mt_bench_categories")}};
    // stage.type's value is checked by the runner (an unknown type is a failed stage with events).
    auto* stage = new Message{
        "StageSpec" + pipeline,
        {Str("name"), Enum("type", {}), Strs("depends_on"), Str("model"), StrMap("models"),
         Msgs("data", data), Msg("resources", resources), Msg("retry", retry),
         Msg("training", training), Str("tokenizer"), Str("chat_template"),
         I64("timeout_seconds", kNonNeg), Msg("sft", sft), Msg("preference_format", prefs),
         Msg("reward_model", rm), Msg("dpo", dpo), Msg("ppo", ppo), Msg("eval", eval)}};
    auto* defaults = new Message{
        "Defaults" + pipeline,
        {Str("model"), Str("tokenizer"), Str("chat_template"), U64("seed"),
         Enum("precision", {"PRECISION_UNSPECIFIED", "FP32", "BF16", "FP16"}), Str("output_dir")}};
    return new Message{
        "TrainJob (proto/align/v1/job.proto)",
        {Str("pipeline_id"), Str("attempt_id"), Msg("stage", stage), Msg("defaults", defaults),
         StrMap("inputs"), Str("output_dir"), Str("work_dir"), Str("resume_from"),
         Str("events_path"), Str("data_dir"), I32("threads", kNonNeg)}};
  }();
  return *job;
}

//! The value as it appears in the file, shortened for a message.
std::string Shown(const nlohmann::json& v) {
  std::string s = v.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  if (s.size() > 60) s = s.substr(0, 57) + "...";
  return s;
}

//! lowerCamelCase -> snake_case, for the hint on a key written with proto3 JSON's other spelling.
std::string SnakeCase(const std::string& key) {
  std::string out;
  for (char c : key) {
    if (std::isupper(static_cast<unsigned char>(c))) {
      out += '_';
      out += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    } else {
      out += c;
    }
  }
  return out;
}

absl::Status FieldError(const std::string& path, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(path, ": ", what));
}

//! A number field: a JSON number or (proto3 JSON's spelling of 64-bit integers, also accepted for
//! the others as protobuf does) a string holding one.
absl::Status CheckNumber(const nlohmann::json& v, const Field& f, const std::string& path) {
  const bool integer = f.kind != Kind::kDouble;
  const char* expected = integer ? "expected an integer" : "expected a number";
  double d = 0;
  bool exact_int = false;
  int64_t i = 0;
  if (v.is_number_integer()) {
    if (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)) {
      d = static_cast<double>(v.get<uint64_t>());
    } else {
      i = v.get<int64_t>();
      d = static_cast<double>(i);
      exact_int = true;
    }
  } else if (v.is_number_float()) {
    d = v.get<double>();
  } else if (v.is_string()) {
    const std::string s = v.get<std::string>();
    const bool padded = !s.empty() && (std::isspace(static_cast<unsigned char>(s.front())) ||
                                       std::isspace(static_cast<unsigned char>(s.back())));
    if (!padded && absl::SimpleAtoi(s, &i)) {
      d = static_cast<double>(i);
      exact_int = true;
    } else if (padded || !absl::SimpleAtod(s, &d) || (integer && !std::isfinite(d))) {
      return FieldError(path, absl::StrCat(expected, ", got ", Shown(v)));
    }
  } else {
    return FieldError(path, absl::StrCat(expected, ", got ", Shown(v)));
  }
  if (integer) {
    if (!exact_int && (!std::isfinite(d) || d != std::floor(d))) {
      return FieldError(path, absl::StrCat(expected, ", got ", Shown(v)));
    }
    if (f.kind == Kind::kInt32 &&
        (d < std::numeric_limits<int32_t>::min() || d > std::numeric_limits<int32_t>::max())) {
      return FieldError(path, absl::StrCat("expected a 32-bit integer, got ", Shown(v)));
    }
    if (f.kind == Kind::kUInt64 && d < 0) {
      return FieldError(path, absl::StrCat("must be >= 0, got ", Shown(v)));
    }
  }
  if (d < 0 && f.sign == Sign::kNonNegative) {
    return FieldError(path, absl::StrCat("must be >= 0, got ", Shown(v)));
  }
  if (d < 0 && f.sign == Sign::kPositive) {
    return FieldError(path, absl::StrCat("must be > 0, got ", Shown(v)));
  }
  return absl::OkStatus();
}

absl::Status CheckMessage(const nlohmann::json& obj, const Message& m, const std::string& path);

absl::Status CheckValue(const nlohmann::json& v, const Field& f, const std::string& path) {
  if (v.is_null()) return absl::OkStatus();  // proto3 JSON: null is the default
  switch (f.kind) {
    case Kind::kString:
      if (!v.is_string())
        return FieldError(path, absl::StrCat("expected a string, got ", Shown(v)));
      return absl::OkStatus();
    case Kind::kBool:
      if (!v.is_boolean())
        return FieldError(path, absl::StrCat("expected true or false, got ", Shown(v)));
      return absl::OkStatus();
    case Kind::kInt32:
    case Kind::kInt64:
    case Kind::kUInt64:
    case Kind::kDouble:
      return CheckNumber(v, f, path);
    case Kind::kEnum: {
      const std::string names = f.values.empty()
                                    ? std::string("a name")
                                    : absl::StrCat("one of ", absl::StrJoin(f.values, ", "));
      if (!v.is_string())
        return FieldError(path, absl::StrCat("expected ", names, ", got ", Shown(v)));
      if (f.values.empty()) return absl::OkStatus();
      // Case-insensitive, as the readers of these values are.
      const std::string upper = absl::AsciiStrToUpper(v.get<std::string>());
      for (const std::string& name : f.values) {
        if (name == upper) return absl::OkStatus();
      }
      std::vector<std::string> lower;
      for (const std::string& name : f.values) lower.push_back(Lower(name));
      const std::string near = NearestMatch(v.get<std::string>(), lower);
      return FieldError(
          path, absl::StrCat("expected ", names, ", got ", Shown(v),
                             near.empty() ? ""
                                          : absl::StrCat("; did you mean ",
                                                         absl::AsciiStrToUpper(near), "?")));
    }
    case Kind::kMessage:
      return CheckMessage(v, *f.message, path);
    case Kind::kRepeatedMessage:
    case Kind::kRepeatedString: {
      if (!v.is_array()) return FieldError(path, absl::StrCat("expected a list, got ", Shown(v)));
      for (size_t i = 0; i < v.size(); ++i) {
        const std::string item = absl::StrCat(path, "[", i, "]");
        if (f.kind == Kind::kRepeatedMessage) {
          RETURN_IF_ERROR(CheckMessage(v[i], *f.message, item));
        } else if (!v[i].is_string()) {
          return FieldError(item, absl::StrCat("expected a string, got ", Shown(v[i])));
        }
      }
      return absl::OkStatus();
    }
    case Kind::kStringMap: {
      if (!v.is_object()) {
        return FieldError(path, absl::StrCat("expected an object of strings, got ", Shown(v)));
      }
      for (auto& [k, item] : v.items()) {
        if (!item.is_string()) {
          return FieldError(absl::StrCat(path, "[\"", k, "\"]"),
                            absl::StrCat("expected a string, got ", Shown(item)));
        }
      }
      return absl::OkStatus();
    }
  }
  return absl::OkStatus();
}

absl::Status CheckMessage(const nlohmann::json& obj, const Message& m, const std::string& path) {
  if (!obj.is_object())
    return FieldError(path, absl::StrCat("expected an object, got ", Shown(obj)));
  for (auto& [key, value] : obj.items()) {
    const std::string field_path = path.empty() ? key : absl::StrCat(path, ".", key);
    const Field* f = m.Find(key);
    if (f == nullptr) {
      // The worker writes the proto field names; proto3 JSON's lowerCamelCase spelling is not read.
      std::string hint;
      if (const std::string snake = SnakeCase(key); snake != key && m.Find(snake) != nullptr) {
        hint = absl::StrCat("; did you mean ", snake, "? (job files use the proto field names)");
      } else {
        hint = DidYouMean(key, m.Names());
      }
      if (hint.empty()) hint = absl::StrCat("; ", m.name, " has: ", absl::StrJoin(m.Names(), ", "));
      return FieldError(field_path, absl::StrCat("unknown field", hint));
    }
    RETURN_IF_ERROR(CheckValue(value, *f, field_path));
  }
  return absl::OkStatus();
}

//! proto3 JSON reads null as the default: drop such keys so readers see them as absent.
void DropNulls(nlohmann::json& j) {
  if (j.is_object()) {
    for (auto it = j.begin(); it != j.end();) {
      if (it->is_null()) {
        it = j.erase(it);
      } else {
        DropNulls(*it);
        ++it;
      }
    }
  } else if (j.is_array()) {
    for (auto& item : j) DropNulls(item);
  }
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
  if (absl::Status st = CheckMessage(j, TrainJobSchema(), ""); !st.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": ", st.message()));
  }
  DropNulls(j);
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
  // StageSpec.config is a oneof: a block for another stage type would be silently ignored.
  static const std::vector<std::string> kConfigs = {"sft", "preference_format", "reward_model",
                                                    "dpo", "ppo", "eval"};
  if (std::find(kConfigs.begin(), kConfigs.end(), job.stage_type) != kConfigs.end()) {
    for (const std::string& key : kConfigs) {
      if (key != job.stage_type && job.stage.contains(key)) {
        return absl::InvalidArgumentError(absl::StrCat(
            source, ": stage.", key, ": stage.type is ", job.stage_type,
            ", which reads its settings from stage.", job.stage_type,
            "; move them there or set stage.type to ", absl::AsciiStrToUpper(key)));
      }
    }
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
