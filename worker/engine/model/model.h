// CausalLM: the Llama-family decoder (Llama 2/3, Mistral, Qwen2, Qwen3) with a causal-LM head or a
// scalar (reward/value) head, built from plain at::Tensor parameters so autograd flows through
// Forward. Loads and saves the Hugging Face layout. Used by train/ (SFT, RM, DPO) and eval/.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <ATen/ATen.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "worker/engine/model/config.h"

namespace align::engine::model {

//! kCausalLM: logits [B,T,V] from lm_head (or the tied embedding).
//! kScalar: scores [B,T] float32 from score.weight [1, hidden] (reward / value models).
enum class HeadKind { kCausalLM, kScalar };

struct LoadOptions {
  at::Device device = at::kCPU;
  //! Parameter dtype; unset -> float32 on CPU, bfloat16 on CUDA.
  std::optional<at::ScalarType> dtype;
  HeadKind head = HeadKind::kCausalLM;
  //! Seed for parameters the checkpoint lacks (a new score head: normal(0, 1/sqrt(hidden))).
  uint64_t seed = 0;
  //! Parameters get requires_grad when true.
  bool trainable = false;
};

//! Per-layer key/value cache. Forward appends to it. Tensors are [B, num_kv_heads, capacity,
//! head_dim] buffers of which the first `length` positions are valid; under no-grad they grow by
//! doubling (written in place), with grad enabled each call concatenates (autograd-safe).
struct KVCache {
  std::vector<at::Tensor> keys;
  std::vector<at::Tensor> values;
  int64_t length = 0;
  //! Cached positions (S), 0 when empty.
  int64_t Length() const { return length; }
  void Clear() {
    keys.clear();
    values.clear();
    length = 0;
  }
};

struct ForwardOptions {
  //! [B, S_past + T] (with a cache) or [B, T]; 1 = real token, 0 = padding (left or right).
  //! Undefined -> all ones.
  at::Tensor attention_mask;
  //! [B, T] int64. Undefined -> cumsum(attention_mask) - 1 (clamped at 0), counted per segment
  //! when sequence_ids is given, and offset by the real tokens already in the cache.
  at::Tensor position_ids;
  //! [B, T] int64 segment ids for PACKED rows: a token attends only to earlier tokens with the
  //! same id (and positions restart at 0 per segment unless position_ids is given).
  //! Not supported together with a cache.
  at::Tensor sequence_ids;
  //! When set, keys/values of this call are appended and attention covers the cache too.
  KVCache* cache = nullptr;
  //! Recompute each layer in backward instead of keeping its activations (training memory).
  bool gradient_checkpointing = false;
  //! Only compute the head for the last `last_n` positions (generation); 0 = all positions.
  int64_t last_n = 0;
};

struct SaveOptions {
  //! Tokenizer files (tokenizer.json, tokenizer.model, tokenizer_config.json,
  //! special_tokens_map.json, added_tokens.json, vocab.json, merges.txt, chat_template.jinja)
  //! copied from here when present; empty = none.
  std::string tokenizer_source_dir;
  //! Storage dtype; unset -> the config's torch_dtype.
  std::optional<at::ScalarType> dtype;
  //! Shard above this many bytes of tensor data (Hugging Face's default is 5 GB).
  uint64_t max_shard_bytes = 5ull * 1000 * 1000 * 1000;
  //! EOS ids for generation_config.json; empty -> the config's.
  std::vector<int64_t> eos_token_ids;
};

class CausalLM {
 public:
  //! Loads DIR (config.json + model.safetensors[.index.json]). Errors name the file and tensor.
  //! A causal-LM checkpoint loaded with HeadKind::kScalar gets a new score.weight [1, hidden];
  //! a *ForSequenceClassification checkpoint loaded as kCausalLM uses the tied/lm_head weight
  //! if present and fails otherwise.
  static absl::StatusOr<std::unique_ptr<CausalLM>> Load(const std::string& dir,
                                                        const LoadOptions& options);
  //! Random initialisation (normal(0, 0.02), norms 1, biases 0), deterministic in `seed`.
  static absl::StatusOr<std::unique_ptr<CausalLM>> FromConfig(const ModelConfig& config,
                                                              uint64_t seed,
                                                              const LoadOptions& options = {});

  //! input_ids [B,T] int64 -> logits [B,T',V] in the parameter dtype (kCausalLM) or scores
  //! [B,T'] float32 (kScalar), T' = last_n or T. Throws c10::Error on shape errors (callers
  //! inside the engine catch at their boundary); see ForwardChecked for a Status version.
  at::Tensor Forward(const at::Tensor& input_ids, const ForwardOptions& options = {}) const;
  absl::StatusOr<at::Tensor> ForwardChecked(const at::Tensor& input_ids,
                                            const ForwardOptions& options = {}) const;

  //! Hugging Face names in checkpoint order (model.embed_tokens.weight, model.layers.0...,
  //! model.norm.weight, lm_head.weight unless tied, or score.weight). Tensors are shared.
  std::vector<std::pair<std::string, at::Tensor>> NamedParameters() const;
  std::vector<at::Tensor> Parameters() const;
  int64_t NumParameters() const;

  //! Writes DIR atomically (DIR.tmp-*, fsync, rename over DIR): config.json,
  //! generation_config.json, model.safetensors (or shards + index), tokenizer files.
  absl::Status Save(const std::string& dir, const SaveOptions& options = {}) const;

  //! Deep copy (same device/dtype/head), e.g. a frozen DPO reference; not trainable.
  std::unique_ptr<CausalLM> Clone() const;
  //! Sets requires_grad on every parameter.
  void SetTrainable(bool trainable);
  //! Moves/casts all parameters (keeps requires_grad).
  void To(at::Device device, std::optional<at::ScalarType> dtype = std::nullopt);

  const ModelConfig& config() const { return config_; }
  const GenerationConfig& generation_config() const { return generation_config_; }
  HeadKind head() const { return head_; }
  at::Device device() const;
  at::ScalarType dtype() const;

  struct Layer {
    at::Tensor input_norm, post_norm;
    at::Tensor q_proj, k_proj, v_proj, o_proj;
    at::Tensor q_bias, k_bias, v_bias, o_bias;  // undefined when absent
    at::Tensor q_norm, k_norm;                  // Qwen3
    at::Tensor gate_proj, up_proj, down_proj;
  };

 private:
  CausalLM() = default;
  at::Tensor HeadWeight() const;
  at::Tensor RopeInvFreq(at::Device device) const;

  ModelConfig config_;
  GenerationConfig generation_config_;
  HeadKind head_ = HeadKind::kCausalLM;
  at::Tensor embed_tokens_;
  std::vector<Layer> layers_;
  at::Tensor norm_;
  at::Tensor lm_head_;  // undefined when tied
  at::Tensor score_;    // kScalar
  at::Tensor inv_freq_; // float32 on the model device, rope scaling applied

  friend class CausalLMBuilder;
};

//! Sets torch's intra-op threads and OpenBLAS's pool (the worker's CPU allotment); <= 0 leaves
//! the defaults.
void SetComputeThreads(int threads);

//! The best device available: CUDA when this LibTorch has it and a GPU is present, else CPU.
at::Device DefaultDevice();

}  // namespace align::engine::model
