#include "worker/engine/train/losses.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace align::engine::train {

absl::StatusOr<DpoLossType> ParseDpoLossType(const std::string& text) {
  const std::string t = absl::AsciiStrToLower(text);
  if (t.empty() || t == "sigmoid" || t == "dpo_loss_type_unspecified") return DpoLossType::kSigmoid;
  if (t == "ipo") return DpoLossType::kIpo;
  if (t == "hinge") return DpoLossType::kHinge;
  if (t == "robust") return DpoLossType::kRobust;
  if (t == "simpo") return DpoLossType::kSimPo;
  if (t == "orpo") return DpoLossType::kOrpo;
  return absl::InvalidArgumentError(absl::StrCat(
      "dpo.loss_type: '", text, "' is not one of SIGMOID, IPO, HINGE, ROBUST, SIMPO, ORPO"));
}

absl::Status ValidateDpoOptions(const DpoOptions& o) {
  if (!(o.beta > 0)) {
    return absl::InvalidArgumentError(absl::StrCat("dpo.beta: must be > 0, got ", o.beta));
  }
  if (o.label_smoothing < 0 || o.label_smoothing >= 0.5) {
    return absl::InvalidArgumentError(absl::StrCat(
        "dpo.label_smoothing: must be in [0, 0.5), got ", o.label_smoothing,
        " (0.5 or more makes the loss prefer the rejected answer or vanish)"));
  }
  if (o.sft_weight < 0) {
    return absl::InvalidArgumentError(absl::StrCat("dpo.sft_weight: must be >= 0, got ", o.sft_weight));
  }
  return absl::OkStatus();
}

DpoOutput DpoLoss(const DpoOptions& o, const PairLogps& l) {
  const double beta = o.beta;
  const double ls = o.label_smoothing;
  const at::Tensor nc = l.chosen_tokens.clamp_min(1);
  const at::Tensor nr = l.rejected_tokens.clamp_min(1);
  DpoOutput out;
  at::Tensor pc = l.policy_chosen, pr = l.policy_rejected;
  if (o.loss_type == DpoLossType::kSimPo || o.loss_type == DpoLossType::kOrpo) {
    pc = pc / nc;
    pr = pr / nr;
    if (o.loss_type == DpoLossType::kSimPo) {
      const at::Tensor logits = pc - pr;
      out.losses = -at::log_sigmoid(beta * logits - o.simpo_gamma) * (1 - ls) -
                   at::log_sigmoid(-(beta * logits - o.simpo_gamma)) * ls;
    } else {
      // ORPO: NLL on chosen minus beta * log sigmoid(log odds ratio); log-probs are per-token means.
      const at::Tensor log_odds =
          (pc - pr) - (at::log1p(-at::exp(pc).clamp_max(1 - 1e-7)) -
                       at::log1p(-at::exp(pr).clamp_max(1 - 1e-7)));
      out.losses = -pc - beta * at::log_sigmoid(log_odds);
    }
    out.chosen_rewards = (beta * pc).detach();
    out.rejected_rewards = (beta * pr).detach();
  } else {
    at::Tensor rc = l.ref_chosen, rr = l.ref_rejected;
    if (o.loss_type == DpoLossType::kIpo) {
      pc = pc / nc;
      pr = pr / nr;
      rc = rc / nc;
      rr = rr / nr;
    }
    const at::Tensor chosen_ratio = pc - rc;
    const at::Tensor rejected_ratio = pr - rr;
    const at::Tensor logits = chosen_ratio - rejected_ratio;
    switch (o.loss_type) {
      case DpoLossType::kSigmoid:
        out.losses = -at::log_sigmoid(beta * logits) * (1 - ls) - at::log_sigmoid(-beta * logits) * ls;
        break;
      case DpoLossType::kRobust:
        out.losses = (-at::log_sigmoid(beta * logits) * (1 - ls) +
                      at::log_sigmoid(-beta * logits) * ls) /
                     (1 - 2 * ls);
        break;
      case DpoLossType::kHinge:
        out.losses = at::relu(1 - beta * logits);
        break;
      case DpoLossType::kIpo:
        out.losses = at::pow(logits - 1 / (2 * beta), 2);
        break;
      default:
        break;
    }
    out.chosen_rewards = (beta * chosen_ratio).detach();
    out.rejected_rewards = (beta * rejected_ratio).detach();
  }
  if (o.sft_weight > 0 && o.loss_type != DpoLossType::kOrpo) {
    out.losses = out.losses + o.sft_weight * (-l.policy_chosen / nc);
  }
  return out;
}

CompletionLogps ComputeCompletionLogps(const at::Tensor& logits, const at::Tensor& labels) {
  const int64_t t = logits.size(1);
  at::Tensor lg = logits.narrow(1, 0, t - 1).to(at::kFloat);
  at::Tensor lb = labels.narrow(1, 1, t - 1);
  at::Tensor mask = lb.ne(-100);
  at::Tensor safe = lb.clamp_min(0).unsqueeze(-1);
  // gather - logsumexp avoids materialising a [B,T,V] log_softmax.
  at::Tensor tok = lg.gather(-1, safe).squeeze(-1) - at::logsumexp(lg, -1);
  at::Tensor maskf = mask.to(at::kFloat);
  CompletionLogps out;
  out.sums = (tok * maskf).sum(-1);
  out.counts = maskf.sum(-1);
  {
    at::NoGradGuard no_grad;
    at::Tensor per_pos = lg.detach().mean(-1);
    out.mean_logits = (per_pos * maskf).sum(-1) / out.counts.clamp_min(1);
  }
  return out;
}

TokenNll ComputeTokenNll(const at::Tensor& logits, const at::Tensor& labels) {
  const int64_t t = logits.size(1);
  at::Tensor lg = logits.narrow(1, 0, t - 1).to(at::kFloat);
  at::Tensor lb = labels.narrow(1, 1, t - 1);
  at::Tensor maskf = lb.ne(-100).to(at::kFloat);
  at::Tensor safe = lb.clamp_min(0).unsqueeze(-1);
  at::Tensor tok = at::logsumexp(lg, -1) - lg.gather(-1, safe).squeeze(-1);
  TokenNll out;
  out.nll = tok * maskf;
  out.tokens = static_cast<int64_t>(maskf.sum().item<double>());
  return out;
}

at::Tensor GlobalMeanShare(const at::Tensor& token_losses, int64_t global_tokens) {
  if (global_tokens <= 0) return token_losses.sum() * 0.0;  // keeps the graph; exactly 0
  return token_losses.sum() / static_cast<double>(global_tokens);
}

std::map<std::string, double> DpoMetrics(const DpoOutput& out, const PairLogps& logps,
                                         const at::Tensor& mean_logits_chosen,
                                         const at::Tensor& mean_logits_rejected) {
  at::NoGradGuard no_grad;
  std::map<std::string, double> m;
  m["loss"] = out.losses.detach().mean().item<double>();
  m["rewards/chosen"] = out.chosen_rewards.mean().item<double>();
  m["rewards/rejected"] = out.rejected_rewards.mean().item<double>();
  m["rewards/margins"] = (out.chosen_rewards - out.rejected_rewards).mean().item<double>();
  m["rewards/accuracies"] =
      out.chosen_rewards.gt(out.rejected_rewards).to(at::kFloat).mean().item<double>();
  m["logps/chosen"] = logps.policy_chosen.detach().mean().item<double>();
  m["logps/rejected"] = logps.policy_rejected.detach().mean().item<double>();
  if (mean_logits_chosen.defined()) m["logits/chosen"] = mean_logits_chosen.mean().item<double>();
  if (mean_logits_rejected.defined()) {
    m["logits/rejected"] = mean_logits_rejected.mean().item<double>();
  }
  return m;
}

at::Tensor BradleyTerryLoss(const at::Tensor& chosen, const at::Tensor& rejected, double coef) {
  at::Tensor loss = -at::log_sigmoid(chosen - rejected).mean();
  if (coef > 0) loss = loss + coef * at::pow(chosen + rejected, 2).mean();
  return loss;
}

std::map<std::string, double> RewardMetrics(const at::Tensor& chosen, const at::Tensor& rejected) {
  at::NoGradGuard no_grad;
  at::Tensor c = chosen.detach().to(at::kFloat), r = rejected.detach().to(at::kFloat);
  at::Tensor all = at::cat({c, r});
  return {{"accuracy", c.gt(r).to(at::kFloat).mean().item<double>()},
          {"margin", (c - r).mean().item<double>()},
          {"reward/mean", all.mean().item<double>()},
          {"reward/min", all.min().item<double>()},
          {"reward/max", all.max().item<double>()}};
}

}  // namespace align::engine::train
