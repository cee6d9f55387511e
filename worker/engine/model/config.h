// ModelConfig: the Llama-family architecture description read from (and written back to) a
// Hugging Face config.json. Used by the model, the trainers and eval; no torch dependency.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace align::engine::model {

//! Which family the decoder follows; picked from `architectures` / `model_type`.
enum class ModelFamily { kLlama, kMistral, kQwen2, kQwen3 };

//! `rope_scaling.rope_type` (or `type`); absent -> kDefault.
enum class RopeScalingType { kDefault, kLinear, kLlama3 };

struct RopeScaling {
  RopeScalingType type = RopeScalingType::kDefault;
  double factor = 1.0;
  // llama3 only.
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_position_embeddings = 8192;
};

struct ModelConfig {
  ModelFamily family = ModelFamily::kLlama;
  std::string model_type = "llama";     // as written in config.json
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;      // defaults to num_attention_heads
  int64_t head_dim = 0;                 // defaults to hidden_size / num_attention_heads
  int64_t vocab_size = 0;
  int64_t max_position_embeddings = 2048;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  bool tie_word_embeddings = false;
  bool attention_bias = false;          // q/k/v (and o for llama's attention_bias) biases; Qwen2: qkv only
  bool qk_norm = false;                 // Qwen3: RMSNorm over head_dim on q and k
  std::optional<int64_t> sliding_window;  // Mistral (and Qwen2 when use_sliding_window)
  std::string torch_dtype = "float32";  // float32 | bfloat16 | float16
  std::optional<int64_t> bos_token_id;
  std::vector<int64_t> eos_token_ids;   // eos_token_id may be an int or a list
  std::optional<int64_t> pad_token_id;
  // Scalar-head checkpoints (LlamaForSequenceClassification etc.) have num_labels 1.
  int64_t num_labels = 1;
  bool is_sequence_classification = false;  // architectures says *ForSequenceClassification
};

//! Architectures accepted in config.json, for error messages.
const std::vector<std::string>& SupportedArchitectures();

//! Parses config.json text. `source` names the file in error messages.
absl::StatusOr<ModelConfig> ParseModelConfig(const std::string& json_text,
                                             const std::string& source = "config.json");
//! Reads and parses DIR/config.json.
absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& dir);

//! config.json text for this config; `scalar_head` writes the *ForSequenceClassification
//! architecture with num_labels 1.
std::string ModelConfigToJson(const ModelConfig& config, bool scalar_head);

//! The generation_config.json fields we use (eos ids may be a list).
struct GenerationConfig {
  std::optional<int64_t> bos_token_id;
  std::vector<int64_t> eos_token_ids;
  std::optional<int64_t> pad_token_id;
};
//! Reads DIR/generation_config.json; a missing file falls back to config.json's ids.
absl::StatusOr<GenerationConfig> LoadGenerationConfig(const std::string& dir,
                                                      const ModelConfig& config);

}  // namespace align::engine::model
