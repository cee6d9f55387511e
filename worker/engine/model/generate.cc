#include "worker/engine/model/generate.h"

#include <algorithm>
#include <set>

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/grad_mode.h>
#include <c10/core/InferenceMode.h>

#include "absl/strings/str_cat.h"

namespace align::engine::model {
namespace {

// Picks the next token per row from float32 logits [B, V] (CPU). Returns ids and logprobs.
void Sample(const at::Tensor& logits, const GenerateOptions& o, at::Generator& gen,
            std::vector<int64_t>* ids, std::vector<float>* logprobs) {
  const int64_t B = logits.size(0);
  at::Tensor scaled = o.temperature > 0 ? logits / o.temperature : logits;
  at::Tensor logp = at::log_softmax(scaled, -1);
  at::Tensor next;
  if (o.temperature <= 0) {
    next = logits.argmax(-1);
  } else {
    at::Tensor filtered = scaled.clone();
    const int64_t V = filtered.size(-1);
    if (o.top_k > 0 && o.top_k < V) {
      at::Tensor kth = std::get<0>(at::topk(filtered, o.top_k, -1)).narrow(-1, o.top_k - 1, 1);
      filtered.masked_fill_(filtered < kth, -std::numeric_limits<float>::infinity());
    }
    if (o.top_p < 1.0) {
      auto [sorted, order] = at::sort(filtered, -1, /*descending=*/true);
      at::Tensor probs = at::softmax(sorted, -1);
      at::Tensor cum = at::cumsum(probs, -1);
      // Drop a token when the mass before it already reaches top_p (the first token always stays).
      at::Tensor drop = (cum - probs) >= o.top_p;
      at::Tensor drop_orig = at::zeros_like(drop).scatter_(-1, order, drop);
      filtered.masked_fill_(drop_orig, -std::numeric_limits<float>::infinity());
    }
    at::Tensor probs = at::softmax(filtered, -1);
    next = at::multinomial(probs, 1, /*replacement=*/false, gen).squeeze(-1);
  }
  at::Tensor lp = logp.gather(-1, next.unsqueeze(-1)).squeeze(-1).contiguous();
  next = next.contiguous();
  ids->resize(B);
  logprobs->resize(B);
  const int64_t* np = next.data_ptr<int64_t>();
  const float* lpp = lp.data_ptr<float>();
  for (int64_t b = 0; b < B; ++b) {
    (*ids)[b] = np[b];
    (*logprobs)[b] = lpp[b];
  }
}

absl::Status GenerateBatch(const CausalLM& model, const std::vector<std::vector<int32_t>>& prompts,
                           size_t first, size_t count, const GenerateOptions& o,
                           const std::set<int64_t>& eos, at::Generator& gen,
                           std::vector<GenerationResult>* out) {
  const at::Device dev = model.device();
  size_t max_len = 0;
  for (size_t i = 0; i < count; ++i) max_len = std::max(max_len, prompts[first + i].size());
  const int64_t B = static_cast<int64_t>(count), L = static_cast<int64_t>(max_len);
  std::vector<int64_t> limits(count);
  int64_t max_steps = 0;
  for (size_t i = 0; i < count; ++i) {
    limits[i] = o.max_new_tokens_per_sequence.empty() ? o.max_new_tokens
                                                      : o.max_new_tokens_per_sequence[first + i];
    max_steps = std::max(max_steps, limits[i]);
  }
  // Left padding: real tokens end at the same column so the next token is always the last one.
  at::Tensor ids = at::full({B, L}, o.pad_id, at::TensorOptions().dtype(at::kLong));
  at::Tensor mask = at::zeros({B, L}, at::TensorOptions().dtype(at::kLong));
  for (int64_t b = 0; b < B; ++b) {
    const auto& p = prompts[first + b];
    const int64_t off = L - static_cast<int64_t>(p.size());
    auto acc = ids.accessor<int64_t, 2>();
    auto macc = mask.accessor<int64_t, 2>();
    for (size_t t = 0; t < p.size(); ++t) {
      acc[b][off + t] = p[t];
      macc[b][off + t] = 1;
    }
  }
  std::vector<bool> done(count, false);
  for (size_t i = 0; i < count; ++i) done[i] = limits[i] <= 0;
  KVCache cache;
  at::Tensor step_ids = ids.to(dev);
  at::Tensor full_mask = mask.to(dev);
  const at::Tensor one = at::ones({B, 1}, at::TensorOptions().dtype(at::kLong).device(dev));
  std::vector<int64_t> next;
  std::vector<float> lps;
  for (int64_t step = 0; step < max_steps; ++step) {
    if (std::all_of(done.begin(), done.end(), [](bool d) { return d; })) break;
    ForwardOptions fo;
    fo.attention_mask = full_mask;
    fo.cache = &cache;
    fo.last_n = 1;
    at::Tensor logits = model.Forward(step_ids, fo).select(1, 0).to(at::kCPU, at::kFloat);
    Sample(logits, o, gen, &next, &lps);
    for (size_t i = 0; i < count; ++i) {
      if (done[i]) continue;
      GenerationResult& r = (*out)[first + i];
      r.tokens.push_back(static_cast<int32_t>(next[i]));
      r.logprobs.push_back(lps[i]);
      if (eos.count(next[i]) > 0) {
        r.finish_reason = FinishReason::kEos;
        done[i] = true;
      } else if (!o.stop_strings.empty() && o.decode) {
        const std::string text = o.decode(r.tokens);
        for (const auto& s : o.stop_strings) {
          if (!s.empty() && text.find(s) != std::string::npos) {
            r.finish_reason = FinishReason::kStopString;
            done[i] = true;
            break;
          }
        }
      }
      if (!done[i] && static_cast<int64_t>(r.tokens.size()) >= limits[i]) {
        r.finish_reason = FinishReason::kLength;
        done[i] = true;
      }
    }
    step_ids = at::tensor(next, at::TensorOptions().dtype(at::kLong)).view({B, 1}).to(dev);
    full_mask = at::cat({full_mask, one}, 1);
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::vector<GenerationResult>> Generate(
    const CausalLM& model, const std::vector<std::vector<int32_t>>& prompts,
    const GenerateOptions& o) {
  if (model.head() != HeadKind::kCausalLM) {
    return absl::InvalidArgumentError("Generate needs a causal-LM head, not a scalar head");
  }
  if (o.temperature < 0) return absl::InvalidArgumentError("temperature must be >= 0");
  if (o.top_p <= 0 || o.top_p > 1) return absl::InvalidArgumentError("top_p must be in (0, 1]");
  if (o.top_k < 0) return absl::InvalidArgumentError("top_k must be >= 0");
  if (!o.max_new_tokens_per_sequence.empty() &&
      o.max_new_tokens_per_sequence.size() != prompts.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "max_new_tokens_per_sequence has ", o.max_new_tokens_per_sequence.size(),
        " entries for ", prompts.size(), " prompts"));
  }
  if (!o.stop_strings.empty() && !o.decode) {
    return absl::InvalidArgumentError("stop_strings need a decode callback");
  }
  const int64_t V = model.config().vocab_size;
  for (size_t i = 0; i < prompts.size(); ++i) {
    if (prompts[i].empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("prompt ", i, " is empty; give at least one token (e.g. BOS)"));
    }
    for (int32_t t : prompts[i]) {
      if (t < 0 || t >= V) {
        return absl::InvalidArgumentError(absl::StrCat(
            "prompt ", i, " has token id ", t, " outside the vocabulary [0, ", V, ")"));
      }
    }
  }
  std::set<int64_t> eos(o.eos_ids.begin(), o.eos_ids.end());
  if (o.use_default_eos && o.eos_ids.empty()) {
    for (int64_t e : model.generation_config().eos_token_ids) eos.insert(e);
  }
  std::vector<GenerationResult> out(prompts.size());
  try {
    c10::InferenceMode inference;
    at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(o.seed);
    const size_t bs = o.batch_size > 0 ? static_cast<size_t>(o.batch_size) : prompts.size();
    for (size_t first = 0; first < prompts.size(); first += bs) {
      const size_t count = std::min(bs, prompts.size() - first);
      absl::Status s = GenerateBatch(model, prompts, first, count, o, eos, gen, &out);
      if (!s.ok()) return s;
    }
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("generation failed: ", e.what_without_backtrace()));
  }
  return out;
}

at::Tensor TokenLogProbs(const at::Tensor& logits, const at::Tensor& input_ids) {
  const int64_t B = logits.size(0), T = logits.size(1);
  at::Tensor ids = input_ids.to(logits.device(), at::kLong);
  if (T < 2) return at::zeros({B, T}, logits.options().dtype(at::kFloat));
  at::Tensor pred = logits.narrow(1, 0, T - 1).to(at::kFloat);
  at::Tensor target = ids.narrow(1, 1, T - 1).unsqueeze(-1);
  at::Tensor lp = pred.gather(-1, target).squeeze(-1) - at::logsumexp(pred, -1);
  return at::cat({at::zeros({B, 1}, lp.options()), lp}, 1);
}

at::Tensor SequenceLogProbs(const CausalLM& model, const at::Tensor& input_ids,
                            const at::Tensor& attention_mask, const at::Tensor& labels_mask) {
  ForwardOptions fo;
  fo.attention_mask = attention_mask;
  at::Tensor logits = model.Forward(input_ids, fo);
  at::Tensor lp = TokenLogProbs(logits, input_ids);
  return (lp * labels_mask.to(lp.device(), at::kFloat)).sum(1);
}

at::Tensor LastTokenScores(const at::Tensor& scores, const at::Tensor& attention_mask) {
  const int64_t T = scores.size(1);
  at::Tensor m = attention_mask.to(scores.device(), at::kLong);
  at::Tensor idx = (m * at::arange(T, m.options()).unsqueeze(0)).argmax(1);
  return scores.gather(1, idx.unsqueeze(1)).squeeze(1);
}

}  // namespace align::engine::model
