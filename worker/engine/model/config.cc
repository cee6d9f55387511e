#include "worker/engine/model/config.h"

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "nlohmann/json.hpp"

namespace align::engine::model {
namespace {

using json = nlohmann::json;

struct ArchEntry {
  const char* architecture;
  const char* model_type;
  ModelFamily family;
  bool classification;
};

constexpr ArchEntry kArchitectures[] = {
    {"LlamaForCausalLM", "llama", ModelFamily::kLlama, false},
    {"LlamaForSequenceClassification", "llama", ModelFamily::kLlama, true},
    {"MistralForCausalLM", "mistral", ModelFamily::kMistral, false},
    {"MistralForSequenceClassification", "mistral", ModelFamily::kMistral, true},
    {"Qwen2ForCausalLM", "qwen2", ModelFamily::kQwen2, false},
    {"Qwen2ForSequenceClassification", "qwen2", ModelFamily::kQwen2, true},
    {"Qwen3ForCausalLM", "qwen3", ModelFamily::kQwen3, false},
    {"Qwen3ForSequenceClassification", "qwen3", ModelFamily::kQwen3, true},
};

const char* FamilyArchPrefix(ModelFamily family) {
  switch (family) {
    case ModelFamily::kLlama: return "Llama";
    case ModelFamily::kMistral: return "Mistral";
    case ModelFamily::kQwen2: return "Qwen2";
    case ModelFamily::kQwen3: return "Qwen3";
  }
  return "Llama";
}

// Reads an integer field; absent -> keeps *out. Wrong type -> error naming the field.
absl::Status GetInt(const json& j, const char* key, const std::string& source, int64_t* out) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_number_integer()) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": field '", key, "' must be an integer, got ", it->dump()));
  }
  *out = it->get<int64_t>();
  return absl::OkStatus();
}

absl::Status GetDouble(const json& j, const char* key, const std::string& source, double* out) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_number()) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": field '", key, "' must be a number, got ", it->dump()));
  }
  *out = it->get<double>();
  return absl::OkStatus();
}

absl::Status GetBool(const json& j, const char* key, const std::string& source, bool* out) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_boolean()) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": field '", key, "' must be true or false, got ", it->dump()));
  }
  *out = it->get<bool>();
  return absl::OkStatus();
}

absl::Status GetIdList(const json& j, const char* key, const std::string& source,
                       std::vector<int64_t>* out) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return absl::OkStatus();
  out->clear();
  if (it->is_number_integer()) {
    out->push_back(it->get<int64_t>());
    return absl::OkStatus();
  }
  if (it->is_array()) {
    for (const auto& v : *it) {
      if (!v.is_number_integer()) break;
      out->push_back(v.get<int64_t>());
    }
    if (out->size() == it->size()) return absl::OkStatus();
  }
  return absl::InvalidArgumentError(absl::StrCat(
      source, ": field '", key, "' must be an integer or a list of integers, got ", it->dump()));
}

absl::Status GetOptionalId(const json& j, const char* key, const std::string& source,
                           std::optional<int64_t>* out) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_number_integer()) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": field '", key, "' must be an integer, got ", it->dump()));
  }
  *out = it->get<int64_t>();
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

const std::vector<std::string>& SupportedArchitectures() {
  static const auto* names = [] {
    auto* v = new std::vector<std::string>;
    for (const auto& a : kArchitectures) v->push_back(a.architecture);
    return v;
  }();
  return *names;
}

absl::StatusOr<ModelConfig> ParseModelConfig(const std::string& json_text,
                                             const std::string& source) {
  json j = json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": not a JSON object; expected a Hugging Face config.json"));
  }
  ModelConfig c;
  // Pick the family: architectures[0] first, model_type as a fallback.
  const ArchEntry* entry = nullptr;
  std::string seen;
  if (auto it = j.find("architectures"); it != j.end() && it->is_array() && !it->empty()) {
    for (const auto& a : *it) {
      if (!a.is_string()) continue;
      seen = a.get<std::string>();
      for (const auto& e : kArchitectures) {
        if (seen == e.architecture) entry = &e;
      }
      if (entry != nullptr) break;
    }
  }
  std::string model_type;
  if (auto it = j.find("model_type"); it != j.end() && it->is_string()) {
    model_type = it->get<std::string>();
  }
  if (entry == nullptr && seen.empty() && !model_type.empty()) {
    for (const auto& e : kArchitectures) {
      if (model_type == e.model_type && !e.classification) {
        entry = &e;
        break;
      }
    }
  }
  if (entry == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        source, ": unsupported architecture '", seen.empty() ? model_type : seen,
        "' (model_type '", model_type, "'); supported architectures: ",
        absl::StrJoin(SupportedArchitectures(), ", "),
        " (model_type llama, mistral, qwen2, qwen3)"));
  }
  c.family = entry->family;
  c.model_type = model_type.empty() ? entry->model_type : model_type;
  c.is_sequence_classification = entry->classification;

  absl::Status s;
#define CFG_TRY(expr)           \
  s = (expr);                   \
  if (!s.ok()) return s;
  CFG_TRY(GetInt(j, "hidden_size", source, &c.hidden_size));
  CFG_TRY(GetInt(j, "intermediate_size", source, &c.intermediate_size));
  CFG_TRY(GetInt(j, "num_hidden_layers", source, &c.num_hidden_layers));
  CFG_TRY(GetInt(j, "num_attention_heads", source, &c.num_attention_heads));
  CFG_TRY(GetInt(j, "num_key_value_heads", source, &c.num_key_value_heads));
  CFG_TRY(GetInt(j, "head_dim", source, &c.head_dim));
  CFG_TRY(GetInt(j, "vocab_size", source, &c.vocab_size));
  CFG_TRY(GetInt(j, "max_position_embeddings", source, &c.max_position_embeddings));
  CFG_TRY(GetDouble(j, "rms_norm_eps", source, &c.rms_norm_eps));
  CFG_TRY(GetDouble(j, "rope_theta", source, &c.rope_theta));
  CFG_TRY(GetBool(j, "tie_word_embeddings", source, &c.tie_word_embeddings));
  CFG_TRY(GetBool(j, "attention_bias", source, &c.attention_bias));
  CFG_TRY(GetOptionalId(j, "bos_token_id", source, &c.bos_token_id));
  CFG_TRY(GetIdList(j, "eos_token_id", source, &c.eos_token_ids));
  CFG_TRY(GetOptionalId(j, "pad_token_id", source, &c.pad_token_id));
  CFG_TRY(GetInt(j, "num_labels", source, &c.num_labels));
  if (auto it = j.find("id2label"); it != j.end() && it->is_object() && !j.contains("num_labels")) {
    c.num_labels = static_cast<int64_t>(it->size());
  }
  // Defaults that differ per family (transformers' config classes).
  if (!j.contains("tie_word_embeddings")) c.tie_word_embeddings = false;
  if (c.family == ModelFamily::kQwen2) c.attention_bias = true;  // Qwen2 always has qkv bias
  if (c.family == ModelFamily::kQwen3) c.qk_norm = true;
  if (c.family == ModelFamily::kMistral) {
    int64_t window = 4096;
    auto it = j.find("sliding_window");
    if (it != j.end()) {
      if (it->is_null()) {
        window = 0;
      } else {
        CFG_TRY(GetInt(j, "sliding_window", source, &window));
      }
    }
    if (window > 0) c.sliding_window = window;
  } else if (c.family == ModelFamily::kQwen2 || c.family == ModelFamily::kQwen3) {
    bool use = false;
    CFG_TRY(GetBool(j, "use_sliding_window", source, &use));
    int64_t window = 0;
    CFG_TRY(GetInt(j, "sliding_window", source, &window));
    if (use && window > 0) c.sliding_window = window;
  }
  if (auto it = j.find("torch_dtype"); it != j.end() && it->is_string()) {
    c.torch_dtype = it->get<std::string>();
    if (c.torch_dtype != "float32" && c.torch_dtype != "bfloat16" && c.torch_dtype != "float16") {
      return absl::InvalidArgumentError(absl::StrCat(
          source, ": field 'torch_dtype' is '", c.torch_dtype,
          "'; supported: float32, bfloat16, float16"));
    }
  }
  if (auto it = j.find("rope_scaling"); it != j.end() && !it->is_null()) {
    if (!it->is_object()) {
      return absl::InvalidArgumentError(
          absl::StrCat(source, ": field 'rope_scaling' must be an object or null"));
    }
    std::string type = "default";
    if (auto t = it->find("rope_type"); t != it->end() && t->is_string()) {
      type = t->get<std::string>();
    } else if (auto t2 = it->find("type"); t2 != it->end() && t2->is_string()) {
      type = t2->get<std::string>();
    }
    if (type == "default") {
      c.rope_scaling.type = RopeScalingType::kDefault;
    } else if (type == "linear") {
      c.rope_scaling.type = RopeScalingType::kLinear;
    } else if (type == "llama3") {
      c.rope_scaling.type = RopeScalingType::kLlama3;
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          source, ": rope_scaling type '", type, "' is not supported; supported: default, linear, llama3"));
    }
    CFG_TRY(GetDouble(*it, "factor", source, &c.rope_scaling.factor));
    CFG_TRY(GetDouble(*it, "low_freq_factor", source, &c.rope_scaling.low_freq_factor));
    CFG_TRY(GetDouble(*it, "high_freq_factor", source, &c.rope_scaling.high_freq_factor));
    CFG_TRY(GetInt(*it, "original_max_position_embeddings", source,
                   &c.rope_scaling.original_max_position_embeddings));
  }
#undef CFG_TRY
  // Validation: the sizes that the weights are checked against.
  auto require_positive = [&](const char* name, int64_t v) -> absl::Status {
    if (v <= 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(source, ": field '", name, "' must be a positive integer (got ", v, ")"));
    }
    return absl::OkStatus();
  };
  for (auto [name, v] : {std::pair<const char*, int64_t>{"hidden_size", c.hidden_size},
                         {"intermediate_size", c.intermediate_size},
                         {"num_hidden_layers", c.num_hidden_layers},
                         {"num_attention_heads", c.num_attention_heads},
                         {"vocab_size", c.vocab_size}}) {
    if (auto st = require_positive(name, v); !st.ok()) return st;
  }
  if (c.num_key_value_heads <= 0) c.num_key_value_heads = c.num_attention_heads;
  if (c.head_dim <= 0) {
    if (c.hidden_size % c.num_attention_heads != 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          source, ": hidden_size ", c.hidden_size, " is not divisible by num_attention_heads ",
          c.num_attention_heads, " and no head_dim is given"));
    }
    c.head_dim = c.hidden_size / c.num_attention_heads;
  }
  if (c.num_attention_heads % c.num_key_value_heads != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        source, ": num_attention_heads ", c.num_attention_heads,
        " must be a multiple of num_key_value_heads ", c.num_key_value_heads));
  }
  if (c.head_dim % 2 != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": head_dim ", c.head_dim, " must be even for rotary embeddings"));
  }
  return c;
}

absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& dir) {
  const std::string path = dir + "/config.json";
  auto text = ReadFile(path);
  if (!text.ok()) {
    return absl::NotFoundError(absl::StrCat(
        path, ": cannot read; a model directory needs a Hugging Face config.json"));
  }
  return ParseModelConfig(*text, path);
}

std::string ModelConfigToJson(const ModelConfig& c, bool scalar_head) {
  json j;
  j["architectures"] = {absl::StrCat(FamilyArchPrefix(c.family),
                                     scalar_head ? "ForSequenceClassification" : "ForCausalLM")};
  j["model_type"] = c.model_type;
  j["hidden_size"] = c.hidden_size;
  j["intermediate_size"] = c.intermediate_size;
  j["num_hidden_layers"] = c.num_hidden_layers;
  j["num_attention_heads"] = c.num_attention_heads;
  j["num_key_value_heads"] = c.num_key_value_heads;
  j["head_dim"] = c.head_dim;
  j["vocab_size"] = c.vocab_size;
  j["max_position_embeddings"] = c.max_position_embeddings;
  j["rms_norm_eps"] = c.rms_norm_eps;
  j["rope_theta"] = c.rope_theta;
  j["hidden_act"] = "silu";
  j["tie_word_embeddings"] = c.tie_word_embeddings;
  j["torch_dtype"] = c.torch_dtype;
  if (c.family == ModelFamily::kLlama || c.family == ModelFamily::kQwen3) {
    j["attention_bias"] = c.attention_bias;
  }
  if (c.family == ModelFamily::kLlama) j["mlp_bias"] = false;
  if (c.family == ModelFamily::kMistral) {
    j["sliding_window"] = c.sliding_window ? json(*c.sliding_window) : json(nullptr);
  }
  if (c.family == ModelFamily::kQwen2 || c.family == ModelFamily::kQwen3) {
    j["use_sliding_window"] = c.sliding_window.has_value();
    j["sliding_window"] = c.sliding_window.value_or(4096);
    j["max_window_layers"] = c.num_hidden_layers;
  }
  switch (c.rope_scaling.type) {
    case RopeScalingType::kDefault:
      j["rope_scaling"] = nullptr;
      break;
    case RopeScalingType::kLinear:
      j["rope_scaling"] = {{"rope_type", "linear"}, {"factor", c.rope_scaling.factor}};
      break;
    case RopeScalingType::kLlama3:
      j["rope_scaling"] = {
          {"rope_type", "llama3"},
          {"factor", c.rope_scaling.factor},
          {"low_freq_factor", c.rope_scaling.low_freq_factor},
          {"high_freq_factor", c.rope_scaling.high_freq_factor},
          {"original_max_position_embeddings", c.rope_scaling.original_max_position_embeddings}};
      break;
  }
  if (c.bos_token_id) j["bos_token_id"] = *c.bos_token_id;
  if (c.eos_token_ids.size() == 1) {
    j["eos_token_id"] = c.eos_token_ids[0];
  } else if (!c.eos_token_ids.empty()) {
    j["eos_token_id"] = c.eos_token_ids;
  }
  if (c.pad_token_id) j["pad_token_id"] = *c.pad_token_id;
  if (scalar_head) {
    j["num_labels"] = 1;
    j["id2label"] = {{"0", "LABEL_0"}};
    j["label2id"] = {{"LABEL_0", 0}};
  }
  return j.dump(2) + "\n";
}

absl::StatusOr<GenerationConfig> LoadGenerationConfig(const std::string& dir,
                                                      const ModelConfig& config) {
  GenerationConfig g;
  g.bos_token_id = config.bos_token_id;
  g.eos_token_ids = config.eos_token_ids;
  g.pad_token_id = config.pad_token_id;
  const std::string path = dir + "/generation_config.json";
  auto text = ReadFile(path);
  if (!text.ok()) return g;  // optional file
  json j = json::parse(*text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a JSON object"));
  }
  absl::Status s = GetOptionalId(j, "bos_token_id", path, &g.bos_token_id);
  if (!s.ok()) return s;
  s = GetIdList(j, "eos_token_id", path, &g.eos_token_ids);
  if (!s.ok()) return s;
  s = GetOptionalId(j, "pad_token_id", path, &g.pad_token_id);
  if (!s.ok()) return s;
  return g;
}

}  // namespace align::engine::model
