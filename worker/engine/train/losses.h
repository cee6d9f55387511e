// Training objectives on log-probabilities and scores: the DPO family (sigmoid, IPO, hinge,
// robust, conservative via label smoothing, SimPO, ORPO, optional SFT term), the Bradley-Terry
// reward loss, and token-level cross-entropy normalised over a whole gradient-accumulated batch.
// Pure functions of tensors, so each bug-report case is a unit test with its exact value.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace align::engine::train {

enum class DpoLossType { kSigmoid, kIpo, kHinge, kRobust, kSimPo, kOrpo };

//! Parses DpoConfig.loss_type ("SIGMOID", "ipo", ...; "" = sigmoid).
absl::StatusOr<DpoLossType> ParseDpoLossType(const std::string& text);

struct DpoOptions {
  DpoLossType loss_type = DpoLossType::kSigmoid;
  double beta = 0.1;
  double label_smoothing = 0.0;  // conservative / robust DPO; must be in [0, 0.5)
  double sft_weight = 0.0;       // weight of the NLL (per-token mean) on chosen
  double simpo_gamma = 0.0;      // SimPO target reward margin
  //! Whether the loss needs a reference model (false for SimPO and ORPO).
  bool NeedsReference() const {
    return loss_type != DpoLossType::kSimPo && loss_type != DpoLossType::kOrpo;
  }
};

//! Rejects beta <= 0, label smoothing outside [0, 0.5), a negative SFT weight.
absl::Status ValidateDpoOptions(const DpoOptions& options);

//! Per-pair SUMS of completion-token log-probs and the completion token counts, all [B].
//! ref_* may be undefined for reference-free losses.
struct PairLogps {
  at::Tensor policy_chosen, policy_rejected;
  at::Tensor ref_chosen, ref_rejected;
  at::Tensor chosen_tokens, rejected_tokens;  // float counts
};

struct DpoOutput {
  at::Tensor losses;            // [B], differentiable
  at::Tensor chosen_rewards;    // [B], detached: beta * (policy - ref) (averaged for IPO/SimPO/ORPO)
  at::Tensor rejected_rewards;  // [B], detached
};

//! The DPO-family loss per pair (TRL's formulas). IPO, SimPO and ORPO use log-probs averaged over
//! completion tokens; the others sums. Prompt tokens never enter: callers pass completion sums.
DpoOutput DpoLoss(const DpoOptions& options, const PairLogps& logps);

//! Sums and counts of log p(label) over supervised positions with the causal shift: logits at t
//! predict labels at t+1; labels -100 are ignored. logits [B,T,V], labels [B,T] int64 ->
//! sums [B] float32 (differentiable), counts [B] float32, and the sum of the mean logit over each
//! row's supervised positions in `logit_sum` (detached, for logits/chosen and logits/rejected).
struct CompletionLogps {
  at::Tensor sums;
  at::Tensor counts;
  at::Tensor mean_logits;  // [B], detached
};
CompletionLogps ComputeCompletionLogps(const at::Tensor& logits, const at::Tensor& labels);

//! Per-token negative log-likelihood [B, T-1] (0 where labels are -100) and the count of
//! supervised tokens, with the causal shift.
struct TokenNll {
  at::Tensor nll;   // [B, T-1] float32, differentiable
  int64_t tokens = 0;
};
TokenNll ComputeTokenNll(const at::Tensor& logits, const at::Tensor& labels);

//! A micro-batch's share of the step loss: sum of its token losses / `global_tokens`, the count
//! of supervised tokens across the WHOLE accumulated batch, so the step's loss is the mean over
//! all its tokens (not a mean of micro-batch means). global_tokens == 0 gives 0, never NaN.
at::Tensor GlobalMeanShare(const at::Tensor& token_losses, int64_t global_tokens);

//! The TRL DPO metric set for a batch: rewards/{chosen,rejected,margins,accuracies},
//! logps/{chosen,rejected}, logits/{chosen,rejected}, and loss (mean of `out.losses`).
std::map<std::string, double> DpoMetrics(const DpoOutput& out, const PairLogps& logps,
                                         const at::Tensor& mean_logits_chosen,
                                         const at::Tensor& mean_logits_rejected);

//! Bradley-Terry reward loss: mean(-log sigmoid(r_c - r_r)) + coef * mean((r_c + r_r)^2)
//! (reward centering, Eisenstein et al. 2023, as TRL's center_rewards_coefficient).
at::Tensor BradleyTerryLoss(const at::Tensor& chosen_scores, const at::Tensor& rejected_scores,
                            double center_rewards_coefficient);

//! accuracy, margin, reward/{mean,min,max} (over chosen and rejected together).
std::map<std::string, double> RewardMetrics(const at::Tensor& chosen_scores,
                                            const at::Tensor& rejected_scores);

}  // namespace align::engine::train
