#include "worker/engine/eval/loglik.h"

#include <ATen/core/grad_mode.h>

#include <algorithm>
#include <map>
#include <numeric>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace align::engine::eval {

namespace {

// EncodePair with the context's tokens looked up in `context_cache` (keyed by the context after
// its trailing spaces moved out): MMLU's four answers, TruthfulQA's 10-ish answers share one
// context, which is then tokenized once instead of once per answer.
EncodedPair EncodePairCached(const Tokenizer& tokenizer, const LoglikRequest& request,
                             absl::flat_hash_map<std::string, std::vector<int32_t>>* context_cache) {
  std::string context = request.context;
  std::string continuation = request.continuation;
  size_t n_spaces = 0;
  while (n_spaces < context.size() &&
         std::isspace(static_cast<unsigned char>(context[context.size() - 1 - n_spaces]))) {
    ++n_spaces;
  }
  if (n_spaces > 0) {
    continuation = context.substr(context.size() - n_spaces) + continuation;
    context.resize(context.size() - n_spaces);
  }
  std::vector<int32_t> whole = tokenizer.Encode(context + continuation, /*add_special_tokens=*/true);
  if (tokenizer.add_eos_token() && !whole.empty()) whole.pop_back();  // a trailing EOS belongs to neither side
  auto encode_context = [&]() {
    std::vector<int32_t> ctx = tokenizer.Encode(context, /*add_special_tokens=*/true);
    if (tokenizer.add_eos_token() && !ctx.empty()) ctx.pop_back();
    return ctx;
  };
  size_t ctx_size = 0;
  if (context_cache == nullptr) {
    ctx_size = encode_context().size();
  } else {
    auto it = context_cache->find(context);
    if (it == context_cache->end()) it = context_cache->emplace(context, encode_context()).first;
    ctx_size = it->second.size();
  }
  EncodedPair out;
  // Never an empty continuation: when the context's tokens cover the whole (a merge across the
  // boundary), the last token of the whole is scored.
  const size_t split = std::min(ctx_size, whole.empty() ? size_t{0} : whole.size() - 1);
  out.context.assign(whole.begin(), whole.begin() + split);
  out.continuation.assign(whole.begin() + split, whole.end());
  return out;
}

}  // namespace

EncodedPair EncodePair(const Tokenizer& tokenizer, const LoglikRequest& request) {
  return EncodePairCached(tokenizer, request, nullptr);
}

absl::StatusOr<std::vector<LoglikResult>> ScoreLoglik(const model::CausalLM& model,
                                                      const Tokenizer& tokenizer,
                                                      const std::vector<LoglikRequest>& requests,
                                                      const LoglikOptions& options) {
  if (model.head() != model::HeadKind::kCausalLM) {
    return absl::InvalidArgumentError("log-likelihood scoring needs a causal-LM head, not a scalar head");
  }
  const int64_t max_length =
      options.max_length > 0 ? options.max_length : model.config().max_position_embeddings;
  const int batch_size = std::max(1, options.batch_size);
  struct Row {
    std::vector<int32_t> input;  // (context + continuation)[:-1], left-truncated
    size_t cont_len = 0;
    std::vector<int32_t> cont;
  };
  std::vector<Row> rows(requests.size());
  absl::flat_hash_map<std::string, std::vector<int32_t>> context_tokens;
  for (size_t i = 0; i < requests.size(); ++i) {
    EncodedPair p = EncodePairCached(tokenizer, requests[i], &context_tokens);
    if (p.continuation.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("request ", i, ": empty text to score"));
    }
    if (p.context.empty()) {
      // Nothing to condition the first token on: lm-eval uses the end-of-text token here.
      const auto bos = tokenizer.bos_id().has_value() ? tokenizer.bos_id() : tokenizer.eos_id();
      if (!bos.has_value()) {
        return absl::InvalidArgumentError(absl::StrCat("request ", i, ": empty context and the tokenizer has no BOS/EOS"));
      }
      p.context.push_back(*bos);
    }
    if (static_cast<int64_t>(p.continuation.size()) > max_length) {
      return absl::InvalidArgumentError(absl::StrCat("request ", i, ": continuation of ",
                                                     p.continuation.size(), " tokens exceeds the model's context of ",
                                                     max_length));
    }
    std::vector<int32_t> all = p.context;
    all.insert(all.end(), p.continuation.begin(), p.continuation.end());
    const size_t keep = std::min<size_t>(all.size(), max_length + 1);
    rows[i].input.assign(all.end() - keep, all.end() - 1);
    rows[i].cont_len = p.continuation.size();
    rows[i].cont = std::move(p.continuation);
  }
  // One forward row per distinct input (the first request with it), scoring every request that
  // shares it: the logits at each position depend only on the input tokens.
  std::vector<std::vector<size_t>> users;  // per forward row: the requests it scores
  std::vector<size_t> owner;               // per forward row: the request whose input it runs
  {
    std::map<std::vector<int32_t>, size_t> seen;
    for (size_t i = 0; i < rows.size(); ++i) {
      if (options.share_inputs) {
        auto [it, inserted] = seen.emplace(rows[i].input, owner.size());
        if (!inserted) {
          users[it->second].push_back(i);
          continue;
        }
      }
      owner.push_back(i);
      users.push_back({i});
    }
  }
  // Longest first: the batch's padded length is its first row's; the order among equal
  // lengths is by request index so the grouping is deterministic.
  std::vector<size_t> order(owner.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return rows[owner[a]].input.size() > rows[owner[b]].input.size();
  });
  context_tokens.clear();
  // Per forward row: how many of its last positions are scored (the longest continuation among
  // the requests that share it). Only those positions' log-probs are computed and copied.
  std::vector<int64_t> scored(owner.size(), 0);
  for (size_t f = 0; f < owner.size(); ++f) {
    for (size_t req : users[f]) scored[f] = std::max<int64_t>(scored[f], rows[req].cont_len);
  }
  std::vector<LoglikResult> results(requests.size());
  try {
    at::NoGradGuard no_grad;
    const at::Device device = model.device();
    for (size_t start = 0; start < order.size(); start += batch_size) {
      const size_t end = std::min(order.size(), start + batch_size);
      const int64_t b = static_cast<int64_t>(end - start);
      const int64_t t = static_cast<int64_t>(rows[owner[order[start]]].input.size());
      at::Tensor ids = at::zeros({b, t}, at::kLong);
      at::Tensor mask = at::zeros({b, t}, at::kLong);
      auto ids_a = ids.accessor<int64_t, 2>();
      auto mask_a = mask.accessor<int64_t, 2>();
      for (int64_t r = 0; r < b; ++r) {
        const Row& row = rows[owner[order[start + r]]];
        for (size_t k = 0; k < row.input.size(); ++k) {
          ids_a[r][k] = row.input[k];
          mask_a[r][k] = 1;
        }
      }
      model::ForwardOptions fo;
      fo.attention_mask = mask.to(device);
      at::Tensor logits = model.Forward(ids.to(device), fo);
      // Gather the scored positions (row r's last scored[r] input positions) into [N, V] and
      // normalise only those: the log-softmax over [B, T, V] is never materialised, and only N
      // rows of V floats reach the CPU.
      std::vector<int64_t> flat;    // index into the [B * T] positions
      std::vector<int64_t> base(b);  // per row: where its first scored position is in `flat`
      for (int64_t r = 0; r < b; ++r) {
        const size_t f = order[start + r];
        const int64_t len = static_cast<int64_t>(rows[owner[f]].input.size());
        base[r] = static_cast<int64_t>(flat.size());
        for (int64_t pos = len - scored[f]; pos < len; ++pos) flat.push_back(r * t + pos);
      }
      const int64_t vocab = logits.size(-1);
      at::Tensor index = at::from_blob(flat.data(), {static_cast<int64_t>(flat.size())}, at::kLong).to(device);
      at::Tensor picked = logits.reshape({b * t, vocab}).index_select(0, index);
      at::Tensor logp = at::log_softmax(picked.to(at::kFloat), -1);
      at::Tensor argmax = logp.argmax(-1).to(at::kCPU);
      logp = logp.to(at::kCPU).contiguous();
      const float* logp_p = logp.data_ptr<float>();
      const int64_t* argmax_p = argmax.data_ptr<int64_t>();
      for (int64_t r = 0; r < b; ++r) {
        const size_t f = order[start + r];
        for (size_t req : users[f]) {
          const Row& row = rows[req];
          // Row r's scored positions end at its last input position; the request's
          // continuation is the last cont_len of them.
          const int64_t first = base[r] + scored[f] - static_cast<int64_t>(row.cont_len);
          double sum = 0;
          bool greedy = true;
          for (size_t k = 0; k < row.cont_len; ++k) {
            const int64_t n = first + static_cast<int64_t>(k);  // predicts row.cont[k]
            sum += logp_p[n * vocab + row.cont[k]];
            greedy = greedy && argmax_p[n] == row.cont[k];
          }
          results[req] = LoglikResult{sum, greedy};
        }
      }
      if (options.progress) {
        options.progress(static_cast<int64_t>(end), static_cast<int64_t>(order.size()));
      }
    }
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("log-likelihood forward pass failed: ", e.what_without_backtrace()));
  }
  return results;
}

LoglikFn MakeLoglikFn(const model::CausalLM& model, const Tokenizer& tokenizer,
                      const LoglikOptions& options) {
  return [&model, &tokenizer, options](const std::vector<LoglikRequest>& requests) {
    return ScoreLoglik(model, tokenizer, requests, options);
  };
}

}  // namespace align::engine::eval
