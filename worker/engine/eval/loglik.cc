#include "worker/engine/eval/loglik.h"

#include <ATen/core/grad_mode.h>

#include <algorithm>
#include <map>
#include <numeric>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace align::engine::eval {

EncodedPair EncodePair(const Tokenizer& tokenizer, const LoglikRequest& request) {
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
  std::vector<int32_t> ctx = tokenizer.Encode(context, /*add_special_tokens=*/true);
  if (tokenizer.add_eos_token()) {  // a trailing EOS belongs to neither side
    if (!whole.empty()) whole.pop_back();
    if (!ctx.empty()) ctx.pop_back();
  }
  EncodedPair out;
  // Never an empty continuation: when the context's tokens cover the whole (a merge across the
  // boundary), the last token of the whole is scored.
  const size_t split = std::min(ctx.size(), whole.empty() ? size_t{0} : whole.size() - 1);
  out.context.assign(whole.begin(), whole.begin() + split);
  out.continuation.assign(whole.begin() + split, whole.end());
  return out;
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
  for (size_t i = 0; i < requests.size(); ++i) {
    EncodedPair p = EncodePair(tokenizer, requests[i]);
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
      at::Tensor logp = at::log_softmax(logits.to(at::kFloat), -1).to(at::kCPU);
      at::Tensor argmax = logp.argmax(-1);
      auto logp_a = logp.accessor<float, 3>();
      auto argmax_a = argmax.accessor<int64_t, 2>();
      for (int64_t r = 0; r < b; ++r) {
        for (size_t req : users[order[start + r]]) {
          const Row& row = rows[req];
          const int64_t len = static_cast<int64_t>(row.input.size());
          const int64_t first = len - static_cast<int64_t>(row.cont_len);
          double sum = 0;
          bool greedy = true;
          for (size_t k = 0; k < row.cont_len; ++k) {
            const int64_t pos = first + static_cast<int64_t>(k);  // predicts row.cont[k]
            sum += logp_a[r][pos][row.cont[k]];
            greedy = greedy && argmax_a[r][pos] == row.cont[k];
          }
          results[req] = LoglikResult{sum, greedy};
        }
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
