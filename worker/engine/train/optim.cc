#include "worker/engine/train/optim.h"

#include <cmath>

#include <ATen/core/grad_mode.h>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace align::engine::train {

AdamW::AdamW(std::vector<std::pair<std::string, at::Tensor>> params, AdamWOptions options)
    : options_(options) {
  for (auto& [name, p] : params) {
    Slot s;
    s.name = name;
    s.param = p;
    s.exp_avg = at::zeros_like(p, p.options().dtype(at::kFloat));
    s.exp_avg_sq = at::zeros_like(p, p.options().dtype(at::kFloat));
    s.decay = p.dim() >= 2;
    slots_.push_back(std::move(s));
  }
}

void AdamW::Step(double lr) {
  at::NoGradGuard no_grad;
  ++step_;
  const double bc1 = 1 - std::pow(options_.beta1, static_cast<double>(step_));
  const double bc2 = 1 - std::pow(options_.beta2, static_cast<double>(step_));
  const double step_size = lr / bc1;
  const double bc2_sqrt = std::sqrt(bc2);
  for (Slot& s : slots_) {
    at::Tensor g = s.param.grad();
    if (!g.defined()) continue;
    if (g.scalar_type() != at::kFloat) g = g.to(at::kFloat);
    at::Tensor p = s.param;
    if (s.decay && options_.weight_decay != 0) p.mul_(1 - lr * options_.weight_decay);
    s.exp_avg.mul_(options_.beta1).add_(g, 1 - options_.beta1);
    s.exp_avg_sq.mul_(options_.beta2).addcmul_(g, g, 1 - options_.beta2);
    at::Tensor denom = (s.exp_avg_sq.sqrt() / bc2_sqrt).add_(options_.eps);
    if (p.scalar_type() == at::kFloat) {
      p.addcdiv_(s.exp_avg, denom, -step_size);
    } else {
      p.copy_(p.to(at::kFloat).addcdiv_(s.exp_avg, denom, -step_size));
    }
  }
}

void AdamW::ZeroGrad() {
  for (Slot& s : slots_) {
    at::Tensor g = s.param.mutable_grad();
    if (g.defined()) g.zero_();
  }
}

std::vector<std::pair<std::string, at::Tensor>> AdamW::StateTensors() const {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (const Slot& s : slots_) {
    out.emplace_back("exp_avg." + s.name, s.exp_avg);
    out.emplace_back("exp_avg_sq." + s.name, s.exp_avg_sq);
  }
  return out;
}

absl::Status AdamW::LoadState(const std::map<std::string, at::Tensor>& tensors, int64_t step) {
  at::NoGradGuard no_grad;
  for (Slot& s : slots_) {
    for (auto [key, dst] : {std::pair<std::string, at::Tensor*>{"exp_avg." + s.name, &s.exp_avg},
                            {"exp_avg_sq." + s.name, &s.exp_avg_sq}}) {
      auto it = tensors.find(key);
      if (it == tensors.end()) {
        return absl::DataLossError(absl::StrCat("optimizer state: tensor '", key,
                                                "' is missing; the checkpoint does not match "
                                                "this model"));
      }
      if (!it->second.sizes().equals(dst->sizes())) {
        return absl::DataLossError(absl::StrCat("optimizer state: tensor '", key,
                                                "' has the wrong shape for this model"));
      }
      dst->copy_(it->second);
    }
  }
  step_ = step;
  return absl::OkStatus();
}

absl::StatusOr<LrSchedule> ParseLrSchedule(const std::string& text) {
  const std::string t = absl::AsciiStrToLower(text);
  if (t.empty() || t == "linear" || t == "lr_scheduler_unspecified") return LrSchedule::kLinear;
  if (t == "cosine") return LrSchedule::kCosine;
  if (t == "constant") return LrSchedule::kConstant;
  return absl::InvalidArgumentError(
      absl::StrCat("training.lr_scheduler: '", text, "' is not one of LINEAR, COSINE, CONSTANT"));
}

double LearningRateAt(LrSchedule schedule, double base_lr, int64_t step, int64_t total_steps,
                      int64_t warmup_steps) {
  if (step < warmup_steps) {
    return base_lr * static_cast<double>(step) / static_cast<double>(std::max<int64_t>(1, warmup_steps));
  }
  const double span = static_cast<double>(std::max<int64_t>(1, total_steps - warmup_steps));
  const double progress = static_cast<double>(step - warmup_steps) / span;
  switch (schedule) {
    case LrSchedule::kLinear:
      return base_lr * std::max(0.0, 1.0 - progress);
    case LrSchedule::kCosine:
      return base_lr * std::max(0.0, 0.5 * (1.0 + std::cos(M_PI * progress)));
    case LrSchedule::kConstant:
      return base_lr;
  }
  return base_lr;
}

double ClipGradNorm(const std::vector<at::Tensor>& params, double max_norm) {
  at::NoGradGuard no_grad;
  std::vector<at::Tensor> norms;
  for (const auto& p : params) {
    if (p.grad().defined()) norms.push_back(p.grad().to(at::kFloat).norm(2));
  }
  if (norms.empty()) return 0.0;
  const double total = at::stack(norms).norm(2).item<double>();
  if (max_norm > 0) {
    const double coef = max_norm / (total + 1e-6);
    if (coef < 1) {
      for (const auto& p : params) {
        if (p.grad().defined()) p.mutable_grad().mul_(coef);
      }
    }
  }
  return total;
}

}  // namespace align::engine::train
