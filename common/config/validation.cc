// Semantic validation of a PipelineSpec: the rules that hold whatever the spec came from (YAML or
// a proto sent over gRPC). The YAML parser runs it with YAML paths and source locations;
// ValidatePipelineSpec runs it with proto paths.
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/config/internal.h"
#include "common/config/pipeline_config.h"
#include "common/eval_scores.h"

namespace align::config {
namespace internal {
namespace {

using namespace align::v1;  // NOLINT: enum values read better unqualified here

bool IsTrainingStage(StageType type) {
  return type == SFT || type == REWARD_MODEL || type == DPO || type == PPO;
}

bool IsStageName(absl::string_view name) {
  if (name.empty() || name.size() > 63) return false;
  if (!absl::ascii_islower(name[0]) && !absl::ascii_isdigit(name[0])) return false;
  for (char c : name) {
    if (!absl::ascii_islower(c) && !absl::ascii_isdigit(c) && c != '_' && c != '-') return false;
  }
  return true;
}

bool IsSha256(absl::string_view s) {
  if (s.size() != 64) return false;
  for (char c : s) {
    if (!absl::ascii_isdigit(c) && !(c >= 'a' && c <= 'f')) return false;
  }
  return true;
}

std::string Num(double v) { return absl::StrCat(v); }

class Validator {
 public:
  Validator(const PipelineSpec& spec, const SemanticContext& context,
            std::vector<ConfigError>* errors)
      : spec_(spec), context_(context), errors_(errors) {}

  void Run() {
    CheckTop();
    CheckMetadata();
    CheckDefaults();
    CheckStageList();
    for (int i = 0; i < spec_.stages_size(); ++i) CheckStage(i);
    CheckCycles();
  }

 private:
  // ---- paths and locations -------------------------------------------------------------------
  std::string StagesPath() const { return context_.yaml_paths ? "spec.stages" : "stages"; }
  std::string StagePath(int i) const { return absl::StrCat(StagesPath(), "[", i, "]"); }
  std::string DefaultsPath() const { return context_.yaml_paths ? "spec.defaults" : "defaults"; }
  std::string ConfigPath(int i) const {
    const StageSpec& s = spec_.stages(i);
    if (context_.yaml_paths) return StagePath(i) + ".config";
    const auto* oneof = StageSpec::descriptor()->FindOneofByName("config");
    const auto* field = s.GetReflection()->GetOneofFieldDescriptor(s, oneof);
    return StagePath(i) + "." + (field != nullptr ? field->name() : std::string("config"));
  }
  // A reference-field path from StageReferenceFields ("dpo.reference_model") in this style.
  std::string RefFieldPath(int i, const std::string& rel) const {
    if (context_.yaml_paths) {
      for (absl::string_view member : {"dpo.", "ppo.", "eval."}) {
        if (absl::StartsWith(rel, member)) {
          return StagePath(i) + ".config." + rel.substr(member.size());
        }
      }
    }
    return StagePath(i) + "." + rel;
  }

  const Location* Find(const std::string& path) const {
    if (context_.locations == nullptr) return nullptr;
    auto it = context_.locations->find(path);
    return it == context_.locations->end() ? nullptr : &it->second;
  }

  //! Written explicitly in the YAML (so a zero there is the user's, not "unset").
  bool Explicit(const std::string& path) const { return Find(path) != nullptr; }

  void Error(const std::string& path, std::string message) {
    ConfigError e;
    e.field_path = path;
    e.message = std::move(message);
    e.source = context_.source;
    const Location* exact = Find(path);
    if (exact != nullptr && exact->invalid) return;  // the converter has reported this value
    // The nearest recorded ancestor gives the position of fields that were not written.
    std::string p = path;
    while (!p.empty()) {
      if (const Location* loc = Find(p)) {
        e.source = loc->source;
        e.line = loc->line;
        e.column = loc->column;
        break;
      }
      const size_t cut = p.find_last_of(".[");
      if (cut == std::string::npos) break;
      p.resize(cut);
    }
    errors_->push_back(std::move(e));
  }

  // ---- numeric helpers -----------------------------------------------------------------------
  //! Must be > 0 when written; a 0 that was not written means "unset".
  template <typename T>
  void Positive(const std::string& path, T value) {
    if (value < 0 || (value == 0 && Explicit(path))) {
      Error(path, absl::StrCat("must be > 0, got ", Num(static_cast<double>(value))));
    }
  }
  template <typename T>
  void NonNegative(const std::string& path, T value) {
    if (value < 0) Error(path, absl::StrCat("must be >= 0, got ", Num(static_cast<double>(value))));
  }
  //! In [0, 1).
  void Fraction(const std::string& path, double value) {
    if (value < 0 || value >= 1) {
      Error(path, absl::StrCat("must be in [0, 1), got ", Num(value)));
    }
  }

  // ---- top level -----------------------------------------------------------------------------
  void CheckTop() {
    if (!spec_.api_version().empty() && spec_.api_version() != "align/v1") {
      Error(context_.yaml_paths ? "apiVersion" : "api_version",
            absl::StrCat("unsupported API version \"", spec_.api_version(),
                         "\"; expected align/v1"));
    }
    if (!spec_.kind().empty() && spec_.kind() != "Pipeline") {
      Error("kind", absl::StrCat("unsupported kind \"", spec_.kind(), "\"; expected Pipeline"));
    }
  }

  void CheckMetadata() {
    const std::string& name = spec_.metadata().name();
    if (name.empty()) {
      if (!Explicit("metadata.name")) {
        Error("metadata.name", "required; expected the pipeline's name (UTF-8, 1..128 bytes)");
      } else {
        Error("metadata.name", "must not be empty; expected UTF-8, 1..128 bytes");
      }
      return;
    }
    if (!IsValidUtf8(name)) {
      Error("metadata.name", "invalid UTF-8; expected UTF-8, 1..128 bytes");
    } else if (name.size() > 128) {
      Error("metadata.name", absl::StrCat("too long (", name.size(), " bytes); expected at most 128"));
    } else {
      for (unsigned char c : name) {
        if (c < 0x20 || c == 0x7f) {
          Error("metadata.name", "contains a control character; expected printable UTF-8");
          break;
        }
      }
    }
    for (const auto& [key, value] : spec_.metadata().labels()) {
      if (key.empty()) Error("metadata.labels", "label keys must not be empty");
    }
  }

  void CheckDefaults() {
    const Defaults& d = spec_.defaults();
    const std::string base = DefaultsPath();
    for (const auto& [field, value] : {std::pair<const char*, const std::string*>{"model", &d.model()},
                                       {"tokenizer", &d.tokenizer()},
                                       {"chat_template", &d.chat_template()}}) {
      if (absl::StrContains(*value, "${")) {
        Error(base + "." + field,
              "spec.defaults cannot reference a stage output (every stage would depend on it, "
              "including the producer); set it on the stages that use it");
      }
    }
  }

  void CheckStageList() {
    if (spec_.stages_size() == 0) {
      Error(StagesPath(), "at least one stage is required; expected a list of stages");
      return;
    }
    absl::flat_hash_map<std::string, int> first;
    for (int i = 0; i < spec_.stages_size(); ++i) {
      const StageSpec& s = spec_.stages(i);
      if (s.name().empty()) continue;
      auto [it, inserted] = first.emplace(s.name(), i);
      if (!inserted) {
        Error(StagePath(i) + ".name",
              absl::StrCat("duplicate stage name \"", s.name(), "\" (also ", StagePath(it->second),
                           "); stage names must be unique"));
      }
      if (inserted) names_.push_back(s.name());
      index_.emplace(s.name(), i);
    }
  }

  // ---- stages --------------------------------------------------------------------------------
  void CheckStage(int i) {
    const StageSpec& s = spec_.stages(i);
    const std::string base = StagePath(i);
    if (s.name().empty()) {
      Error(base + ".name", Explicit(base + ".name")
                                ? "must not be empty; expected [a-z0-9][a-z0-9_-]*"
                                : "required; expected a stage name matching [a-z0-9][a-z0-9_-]*");
    } else if (!IsStageName(s.name())) {
      Error(base + ".name",
            absl::StrCat("invalid stage name \"", s.name(),
                         "\"; expected 1..63 characters from [a-z0-9_-], starting with a letter or "
                         "digit (it is used in ${stages.<name>...} and --set stages.<name>...)"));
    }
    if (s.type() == STAGE_TYPE_UNSPECIFIED) {
      if (!Explicit(base + ".type")) {
        Error(base + ".type",
              absl::StrCat("required; expected one of: ",
                           absl::StrJoin(EnumYamlNames(StageType_descriptor()), ", ")));
      }
      // Without a type, config cannot be checked.
    }
    CheckConfigKind(i);
    CheckDependsOn(i);
    CheckReferences(i);
    CheckModel(i);
    CheckData(i);
    CheckResources(i);
    CheckRetry(i);
    CheckTraining(i);
    NonNegative(base + ".timeout_seconds", s.timeout_seconds());
    switch (s.type()) {
      case DPO: CheckDpo(i); break;
      case PPO: CheckPpo(i); break;
      case PREFERENCE_FORMAT: CheckPreferenceFormat(i); break;
      case EVAL: CheckEval(i); break;
      case REWARD_MODEL:
        NonNegative(ConfigPath(i) + ".center_rewards_coefficient",
                    s.reward_model().center_rewards_coefficient());
        break;
      default: break;
    }
  }

  void CheckConfigKind(int i) {
    const StageSpec& s = spec_.stages(i);
    if (s.config_case() == StageSpec::CONFIG_NOT_SET || s.type() == STAGE_TYPE_UNSPECIFIED) return;
    const auto* field = StageSpec::descriptor()->FindFieldByNumber(s.config_case());
    const std::string type_name = StageTypeName(s.type());
    if (field->name() != type_name) {
      Error(StagePath(i) + "." + field->name(),
            absl::StrCat("config is for ", field->name(), " but the stage type is ", type_name,
                         "; expected config ", type_name));
    }
  }

  void CheckDependsOn(int i) {
    const StageSpec& s = spec_.stages(i);
    absl::flat_hash_set<std::string> seen;
    for (int k = 0; k < s.depends_on_size(); ++k) {
      const std::string& dep = s.depends_on(k);
      const std::string path = absl::StrCat(StagePath(i), ".depends_on[", k, "]");
      if (dep == s.name()) {
        Error(path, absl::StrCat("stage \"", dep, "\" cannot depend on itself"));
      } else if (!index_.contains(dep)) {
        Error(path, absl::StrCat("unknown stage \"", dep, "\"; expected one of: ",
                                 absl::StrJoin(names_, ", "), DidYouMean(dep, names_)));
      } else if (!seen.insert(dep).second) {
        Error(path, absl::StrCat("\"", dep, "\" is listed twice"));
      }
    }
  }

  void CheckReferences(int i) {
    const StageSpec& s = spec_.stages(i);
    for (const StageRefField& field : StageReferenceFields(s)) {
      const std::string path = RefFieldPath(i, field.path);
      auto refs = FindStageRefs(*field.value);
      if (!refs.ok()) {
        Error(path, std::string(refs.status().message()));
        continue;
      }
      const bool wants_data = absl::StartsWith(field.path, "data[");
      for (const StageRef& ref : *refs) {
        auto it = index_.find(ref.stage);
        if (ref.stage == s.name()) {
          Error(path, absl::StrCat("stage \"", s.name(), "\" cannot reference its own outputs (",
                                   ref.ToString(), ")"));
          continue;
        }
        if (it == index_.end()) {
          Error(path, absl::StrCat("reference ", ref.ToString(), " names unknown stage \"",
                                   ref.stage, "\"; expected one of: ", absl::StrJoin(names_, ", "),
                                   DidYouMean(ref.stage, names_)));
          continue;
        }
        const StageSpec& producer = spec_.stages(it->second);
        const std::vector<std::string>& outputs = StageOutputs(producer.type());
        if (producer.type() == STAGE_TYPE_UNSPECIFIED) continue;  // its own error says why
        if (std::find(outputs.begin(), outputs.end(), ref.output) == outputs.end()) {
          Error(path, absl::StrCat("reference ", ref.ToString(), ": stage \"", ref.stage, "\" (",
                                   StageTypeName(producer.type()), ") has no output \"",
                                   ref.output, "\"; expected one of: ", absl::StrJoin(outputs, ", "),
                                   DidYouMean(ref.output, outputs)));
          continue;
        }
        if (wants_data && ref.output != "train" && ref.output != "test") {
          Error(path, absl::StrCat("reference ", ref.ToString(),
                                   " is not a dataset; expected the train or test output of a "
                                   "preference_format stage"));
        } else if (!wants_data && ref.output != "model") {
          Error(path, absl::StrCat("reference ", ref.ToString(),
                                   " is not a model; expected ${stages.<stage>.outputs.model}"));
        } else if (field.path == "ppo.reward_model" && producer.type() != REWARD_MODEL) {
          Error(path, absl::StrCat("reference ", ref.ToString(), " is a ",
                                   StageTypeName(producer.type()),
                                   " model; expected the model of a reward_model stage"));
        }
      }
    }
  }

  void CheckModel(int i) {
    const StageSpec& s = spec_.stages(i);
    const bool has_model = !s.model().empty() || !spec_.defaults().model().empty();
    if (IsTrainingStage(s.type()) && !has_model) {
      Error(StagePath(i) + ".model",
            absl::StrCat("required for a ", StageTypeName(s.type()),
                         " stage; set model on the stage or in spec.defaults (a path, "
                         "data://..., or ${stages.<stage>.outputs.model})"));
    }
    if (s.type() == EVAL && !has_model && s.models().empty()) {
      Error(StagePath(i) + ".models",
            "an eval stage needs models (e.g. {candidate: ${stages.dpo.outputs.model}}), a "
            "model, or spec.defaults.model");
    }
    for (const auto& [name, value] : s.models()) {
      const std::string path = absl::StrCat(StagePath(i), ".models[", name, "]");
      if (!IsStageName(name)) {
        Error(path, "model names must match [a-z0-9][a-z0-9_-]* (they name metrics and gates)");
      }
      if (value.empty()) Error(path, "empty model; expected a path or a stage output reference");
    }
    if (s.type() != EVAL && !s.models().empty()) {
      Error(StagePath(i) + ".models", "only eval stages take named models; use model");
    }
  }

  void CheckData(int i) {
    const StageSpec& s = spec_.stages(i);
    const bool needs_data = IsTrainingStage(s.type()) || s.type() == PREFERENCE_FORMAT;
    if (needs_data && s.data_size() == 0) {
      Error(StagePath(i) + ".data",
            absl::StrCat("a ", StageTypeName(s.type()),
                         " stage needs at least one data source; expected a list of {path, format}"));
    }
    for (int k = 0; k < s.data_size(); ++k) {
      const DataSource& d = s.data(k);
      const std::string base = absl::StrCat(StagePath(i), ".data[", k, "]");
      if (d.path().empty()) {
        if (!Explicit(base + ".path")) {
          Error(base + ".path", "required; expected a local path, data://..., an http(s) URL or "
                                "${stages.<stage>.outputs.train}");
        } else {
          Error(base + ".path", "must not be empty");
        }
      }
      if (IsUrl(d.path()) && d.sha256().empty()) {
        Error(base + ".sha256", "required for a URL (downloads are verified); expected 64 hex digits");
      }
      if (!d.sha256().empty() && !IsSha256(d.sha256())) {
        Error(base + ".sha256", absl::StrCat("expected 64 lower-case hex digits, got \"", d.sha256(),
                                             "\" (", d.sha256().size(), " characters)"));
      }
      Positive(base + ".weight", d.weight());
      NonNegative(base + ".max_examples", d.max_examples());
    }
  }

  void CheckResources(int i) {
    const Resources& r = spec_.stages(i).resources();
    const std::string base = StagePath(i) + ".resources";
    Positive(base + ".ranks", r.ranks());
    NonNegative(base + ".gpus_per_rank", r.gpus_per_rank());
    Positive(base + ".cpus_per_rank", r.cpus_per_rank());
    NonNegative(base + ".memory_mb", r.memory_mb());
    for (const auto& [key, value] : r.node_selector()) {
      if (key.empty()) Error(base + ".node_selector", "label keys must not be empty");
    }
  }

  void CheckRetry(int i) {
    const RetryPolicy& r = spec_.stages(i).retry();
    const std::string base = StagePath(i) + ".retry";
    NonNegative(base + ".max_infra_retries", r.max_infra_retries());
    NonNegative(base + ".max_user_retries", r.max_user_retries());
    NonNegative(base + ".backoff_initial_seconds", r.backoff_initial_seconds());
    Positive(base + ".backoff_max_seconds", r.backoff_max_seconds());
    if (r.backoff_max_seconds() > 0 && r.backoff_initial_seconds() > r.backoff_max_seconds()) {
      Error(base + ".backoff_initial_seconds",
            absl::StrCat("must not exceed backoff_max_seconds (", Num(r.backoff_max_seconds()),
                         "), got ", Num(r.backoff_initial_seconds())));
    }
  }

  void CheckTraining(int i) {
    const StageSpec& s = spec_.stages(i);
    if (!s.has_training()) return;
    const std::string base = StagePath(i) + ".training";
    if (s.type() != STAGE_TYPE_UNSPECIFIED && !IsTrainingStage(s.type())) {
      Error(base, absl::StrCat("a ", StageTypeName(s.type()),
                               " stage does not train; training applies to sft, reward_model, "
                               "dpo and ppo stages"));
      return;
    }
    const TrainingConfig& t = s.training();
    if (t.learning_rate() < 0 || (t.learning_rate() == 0 && Explicit(base + ".learning_rate"))) {
      Error(base + ".learning_rate",
            absl::StrCat("must be > 0, got ", Num(t.learning_rate()), "; expected e.g. 2e-5"));
    }
    Positive(base + ".epochs", t.epochs());
    NonNegative(base + ".max_steps", t.max_steps());
    Positive(base + ".batch_size", t.batch_size());
    Positive(base + ".gradient_accumulation_steps", t.gradient_accumulation_steps());
    Positive(base + ".max_length", t.max_length());
    Fraction(base + ".warmup_ratio", t.warmup_ratio());
    NonNegative(base + ".warmup_steps", t.warmup_steps());
    NonNegative(base + ".weight_decay", t.weight_decay());
    if (t.has_adam_beta1()) Fraction(base + ".adam_beta1", t.adam_beta1());
    if (t.has_adam_beta2()) Fraction(base + ".adam_beta2", t.adam_beta2());
    Positive(base + ".adam_epsilon", t.adam_epsilon());
    NonNegative(base + ".max_grad_norm", t.max_grad_norm());
    NonNegative(base + ".save_steps", t.save_steps());
    NonNegative(base + ".save_total_limit", t.save_total_limit());
    Positive(base + ".logging_steps", t.logging_steps());
    NonNegative(base + ".eval_steps", t.eval_steps());
    if (t.has_eval_fraction()) Fraction(base + ".eval_fraction", t.eval_fraction());
  }

  void CheckDpo(int i) {
    const DpoConfig& c = spec_.stages(i).dpo();
    const std::string base = ConfigPath(i);
    if (c.beta() < 0 || (c.beta() == 0 && Explicit(base + ".beta"))) {
      Error(base + ".beta", absl::StrCat("must be > 0, got ", Num(c.beta()),
                                         "; expected e.g. 0.1 (Zephyr uses 0.01)"));
    }
    if (c.label_smoothing() < 0 || c.label_smoothing() >= 0.5) {
      Error(base + ".label_smoothing",
            absl::StrCat("must be in [0, 0.5) (conservative DPO flips at most half the labels), got ",
                         Num(c.label_smoothing())));
    }
    NonNegative(base + ".sft_weight", c.sft_weight());
    NonNegative(base + ".simpo_gamma", c.simpo_gamma());
    NonNegative(base + ".max_prompt_length", c.max_prompt_length());
    const int max_length = spec_.stages(i).training().max_length();
    if (max_length > 0 && c.max_prompt_length() >= max_length) {
      Error(base + ".max_prompt_length",
            absl::StrCat("must be less than training.max_length (", max_length, "), got ",
                         c.max_prompt_length()));
    }
  }

  void CheckPpo(int i) {
    const PpoConfig& c = spec_.stages(i).ppo();
    const std::string base = ConfigPath(i);
    if (c.reward_model().empty()) {
      Error(base + ".reward_model",
            "required; expected a reward model (e.g. ${stages.rm.outputs.model})");
    }
    NonNegative(base + ".kl_coef", c.kl_coef());
    Positive(base + ".cliprange", c.cliprange());
    Positive(base + ".cliprange_value", c.cliprange_value());
    NonNegative(base + ".vf_coef", c.vf_coef());
    Positive(base + ".num_ppo_epochs", c.num_ppo_epochs());
    Positive(base + ".response_length", c.response_length());
    Positive(base + ".temperature", c.temperature());
  }

  void CheckPreferenceFormat(int i) {
    const PreferenceFormatConfig& c = spec_.stages(i).preference_format();
    const std::string base = ConfigPath(i);
    if (c.has_test_fraction()) Fraction(base + ".test_fraction", c.test_fraction());
    NonNegative(base + ".max_pairs", c.max_pairs());
  }

  void CheckEval(int i) {
    const EvalConfig& c = spec_.stages(i).eval();
    const std::string base = ConfigPath(i);
    if (c.suites_size() == 0) {
      Error(base + ".suites", absl::StrCat("an eval stage needs at least one suite; expected a "
                                           "list from: ",
                                           absl::StrJoin(EvalSuites(), ", ")));
    }
    absl::flat_hash_set<std::string> suites;
    for (int k = 0; k < c.suites_size(); ++k) {
      const std::string& suite = c.suites(k);
      const std::string path = absl::StrCat(base, ".suites[", k, "]");
      if (std::find(EvalSuites().begin(), EvalSuites().end(), suite) == EvalSuites().end()) {
        Error(path, absl::StrCat("unknown suite \"", suite, "\"; expected one of: ",
                                 absl::StrJoin(EvalSuites(), ", "), DidYouMean(suite, EvalSuites())));
      } else if (!suites.insert(suite).second) {
        Error(path, absl::StrCat("suite \"", suite, "\" is listed twice"));
      }
    }
    if (c.has_mmlu_shots() && (c.mmlu_shots() < 0 || c.mmlu_shots() > 5)) {
      Error(base + ".mmlu_shots", absl::StrCat("must be in 0..5 (MMLU has 5 dev questions per "
                                               "subject), got ", c.mmlu_shots()));
    }
    NonNegative(base + ".limit", c.limit());
    Positive(base + ".batch_size", c.batch_size());
    Positive(base + ".max_new_tokens", c.max_new_tokens());
    EvalScoreContext score_context;
    score_context.suites.assign(c.suites().begin(), c.suites().end());
    for (const auto& [name, ref] : spec_.stages(i).models()) score_context.model_names.push_back(name);
    std::sort(score_context.model_names.begin(), score_context.model_names.end());
    std::vector<std::string> gate_keys;
    for (const auto& [key, value] : c.gates()) gate_keys.push_back(key);
    std::sort(gate_keys.begin(), gate_keys.end());
    for (const std::string& key : gate_keys) {
      const std::string path = absl::StrCat(base, ".gates[", key, "]");
      const std::string& value = c.gates().at(key);
      // The engine reads a gate key as a dotted path into the results' scores: check it names a
      // score the eval stage writes, so a misspelt gate fails now rather than after training.
      if (absl::Status st = CheckEvalScorePath(key, score_context); !st.ok()) {
        Error(path, std::string(st.message()));
      }
      std::string op;
      double threshold = 0;
      if (!ParseGate(value, &op, &threshold)) {
        Error(path, absl::StrCat("bad gate \"", value, "\"; expected an operator (>=, >, <=, <, ==) "
                                 "and a number, e.g. \">= 0.25\""));
      }
    }
    const JudgeConfig& j = c.judge();
    if (suites.contains("mt_bench") && j.model().empty() && j.endpoint().empty()) {
      Error(base + ".judge", "mt_bench needs a judge; expected judge.model (a model directory) or "
                             "judge.endpoint with judge.endpoint_model (an OpenAI-compatible API)");
    }
    if (!j.model().empty() && !j.endpoint().empty()) {
      Error(base + ".judge", "set judge.model or judge.endpoint, not both");
    }
    // winrate scores answers with a reward model: models.reward_model, else judge.model.
    if (suites.contains("winrate") && !spec_.stages(i).models().contains("reward_model") &&
        j.model().empty()) {
      Error(base + ".judge", "winrate needs a reward model to score answers; expected "
                             "models.reward_model or judge.model (an endpoint cannot score)");
    }
    if (j.max_tokens() < 0) {
      Error(base + ".judge.max_tokens", absl::StrCat("must be > 0 (0 = 2048), got ", j.max_tokens()));
    }
    NonNegative(base + ".judge.timeout_seconds", j.timeout_seconds());
    const std::vector<std::string>& categories = MtBenchCategories();
    for (int k = 0; k < c.mt_bench_categories_size(); ++k) {
      const std::string& cat = c.mt_bench_categories(k);
      if (std::find(categories.begin(), categories.end(), cat) == categories.end()) {
        Error(absl::StrCat(base, ".mt_bench_categories[", k, "]"),
              absl::StrCat("unknown MT-Bench category \"", cat, "\"; expected one of: ",
                           absl::StrJoin(categories, ", "), DidYouMean(cat, categories)));
      }
    }
    if (!j.endpoint().empty()) {
      if (!IsUrl(j.endpoint())) {
        Error(base + ".judge.endpoint", absl::StrCat("expected an http(s) URL, got \"",
                                                     j.endpoint(), "\""));
      }
      if (j.endpoint_model().empty()) {
        Error(base + ".judge.endpoint_model", "required with judge.endpoint; expected the model "
                                              "name the endpoint serves");
      }
    }
  }

  void CheckCycles() {
    const std::vector<std::string> cycle = FindDependencyCycle(spec_);
    if (cycle.empty()) return;
    auto it = index_.find(cycle.front());
    const int i = it == index_.end() ? 0 : it->second;
    Error(StagePath(i) + ".depends_on",
          absl::StrCat("dependency cycle: ", absl::StrJoin(cycle, " -> "),
                       " (depends_on and ${stages...} references); expected a DAG"));
  }

  const PipelineSpec& spec_;
  const SemanticContext& context_;
  std::vector<ConfigError>* errors_;
  std::vector<std::string> names_;                 // stage names in spec order
  absl::flat_hash_map<std::string, int> index_;    // name -> first index
};

}  // namespace

void ValidateSemantics(const PipelineSpec& spec, const SemanticContext& context,
                       std::vector<ConfigError>* errors) {
  Validator(spec, context, errors).Run();
}

}  // namespace internal

std::vector<ConfigError> ValidatePipelineSpecErrors(const align::v1::PipelineSpec& spec) {
  std::vector<ConfigError> errors;
  internal::SemanticContext context;
  context.yaml_paths = false;
  internal::ValidateSemantics(spec, context, &errors);
  return errors;
}

absl::Status ValidatePipelineSpec(const align::v1::PipelineSpec& spec) {
  return ErrorsToStatus(ValidatePipelineSpecErrors(spec));
}

}  // namespace align::config
