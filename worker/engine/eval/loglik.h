// Log-likelihood scoring of (context, continuation) pairs with an engine model, batched, with
// lm-evaluation-harness's rules: trailing spaces of the context move into the continuation; the
// continuation's tokens are enc(context + continuation) minus the first len(enc(context)) tokens
// (so a SentencePiece "▁" is never scored on its own); inputs longer than the model's context are
// cut from the left. Results do not depend on the batch size. Requests with the same model input
// share one forward row (lm-eval's logits cache: MMLU's four one-token answers " A".." D" are one
// row, not four).
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/engine/eval/multiple_choice.h"
#include "worker/engine/model/model.h"
#include "worker/engine/tokenizer/tokenizer.h"

namespace align::engine::eval {

struct LoglikOptions {
  int batch_size = 16;
  int64_t max_length = 0;  // 0 = the model's max_position_embeddings
  //! Requests whose input (context + continuation without its last token) is the same token
  //! sequence are scored from one forward row; off = one row per request (the results are the
  //! same; the benchmark compares the two).
  bool share_inputs = true;
  //! Called after each batch with (forward rows done, rows in all): the eval stage turns it into
  //! `progress` events. May be empty.
  std::function<void(int64_t done, int64_t total)> progress;
};

//! The token split of one request: context tokens and the continuation tokens to score.
struct EncodedPair {
  std::vector<int32_t> context;
  std::vector<int32_t> continuation;
};
//! lm-eval's _encode_pair. BOS (when the tokenizer adds one) leads the context.
EncodedPair EncodePair(const Tokenizer& tokenizer, const LoglikRequest& request);

//! Scores requests with `model` (a causal-LM head). Distinct inputs are sorted by length (longest
//! first), right-padded into batches of options.batch_size, and the results returned in request
//! order.
absl::StatusOr<std::vector<LoglikResult>> ScoreLoglik(const model::CausalLM& model,
                                                      const Tokenizer& tokenizer,
                                                      const std::vector<LoglikRequest>& requests,
                                                      const LoglikOptions& options);

//! A LoglikFn bound to a model and tokenizer (both must outlive it).
LoglikFn MakeLoglikFn(const model::CausalLM& model, const Tokenizer& tokenizer,
                      const LoglikOptions& options);

}  // namespace align::engine::eval
