// Batched generation with a KV cache (greedy, temperature, top-k, top-p; seeded), plus the
// log-probability helpers the trainers (SFT/DPO/PPO) and eval share.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <ATen/ATen.h>

#include "absl/status/statusor.h"
#include "worker/engine/model/model.h"

namespace align::engine::model {

struct GenerateOptions {
  int64_t max_new_tokens = 128;
  //! 0 = greedy (argmax). Otherwise logits are divided by it before top-k/top-p and sampling.
  double temperature = 0.0;
  int64_t top_k = 0;     // 0 = off
  double top_p = 1.0;    // 1 = off
  uint64_t seed = 0;     // same seed + same prompts + same batch -> same output
  //! Stop ids; empty -> the model's generation_config.json eos ids (use_default_eos).
  std::vector<int64_t> eos_ids;
  bool use_default_eos = true;
  //! Generation of a sequence stops once its decoded continuation contains one of these; the
  //! tokens are kept (callers trim the text). Needs `decode`.
  std::vector<std::string> stop_strings;
  std::function<std::string(const std::vector<int32_t>&)> decode;
  //! Per-prompt cap on new tokens (same size as prompts, or empty = max_new_tokens for all).
  std::vector<int64_t> max_new_tokens_per_sequence;
  //! Rows per forward batch; 0 = all prompts at once. Prompts are processed in order.
  int64_t batch_size = 0;
  //! Id written into padding slots (never attended to).
  int64_t pad_id = 0;
};

enum class FinishReason { kEos, kStopString, kLength };

struct GenerationResult {
  //! New tokens only (the EOS token is included when generation stopped on it).
  std::vector<int32_t> tokens;
  //! log p(token) for each new token under the model's distribution scaled by temperature
  //! (raw distribution for greedy), before top-k/top-p truncation — what PPO needs.
  std::vector<float> logprobs;
  FinishReason finish_reason = FinishReason::kLength;
};

//! Generates continuations for each prompt (left-padded into batches, position ids counted from
//! the first real token). Errors: empty prompt, ids out of vocabulary, bad options.
absl::StatusOr<std::vector<GenerationResult>> Generate(
    const CausalLM& model, const std::vector<std::vector<int32_t>>& prompts,
    const GenerateOptions& options);

//! logits [B,T,V], input_ids [B,T] -> [B,T] float32 where entry t is log p(ids[t] | ids[<t])
//! and entry 0 is 0. Differentiable.
at::Tensor TokenLogProbs(const at::Tensor& logits, const at::Tensor& input_ids);

//! Sum over t of log p(ids[t] | ids[<t]) where labels_mask[b,t] != 0 -> [B] float32,
//! differentiable (runs the model's Forward with attention_mask). labels_mask marks the tokens
//! that are scored (e.g. the response), and must be 0 at t = 0.
at::Tensor SequenceLogProbs(const CausalLM& model, const at::Tensor& input_ids,
                            const at::Tensor& attention_mask, const at::Tensor& labels_mask);

//! Scalar-head helper: scores [B,T] and attention_mask [B,T] -> [B], the score at each row's
//! last real token (works for left and right padding).
at::Tensor LastTokenScores(const at::Tensor& scores, const at::Tensor& attention_mask);

}  // namespace align::engine::model
