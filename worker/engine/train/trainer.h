// The shared training loop (gradient accumulation, AdamW, schedule, clipping, eval, atomic
// checkpoints with exact resume, progress events) and the three objectives built on it: SFT
// (token-level NLL), DPO family (pairs, frozen or precomputed reference) and the Bradley-Terry
// reward model. Inputs are already tokenized, so tests drive it with tiny random models.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <ATen/ATen.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "worker/engine/core/events.h"
#include "worker/engine/core/job.h"
#include "worker/engine/data/batching.h"
#include "worker/engine/model/model.h"
#include "worker/engine/train/distributed.h"
#include "worker/engine/train/losses.h"
#include "worker/engine/train/optim.h"

namespace align::engine::train {

//! TrainingConfig with its documented defaults (proto/align/v1/pipeline.proto).
struct TrainSettings {
  double learning_rate = 2e-5;
  int64_t epochs = 1;
  int64_t max_steps = 0;
  int64_t batch_size = 8;
  int64_t gradient_accumulation_steps = 1;
  int64_t max_length = 512;
  LrSchedule schedule = LrSchedule::kLinear;
  double warmup_ratio = 0.0;
  int64_t warmup_steps = 0;
  AdamWOptions adam;
  double max_grad_norm = 1.0;
  int64_t save_steps = 0;
  int64_t save_total_limit = 2;
  int64_t logging_steps = 1;
  int64_t eval_steps = 0;
  double eval_fraction = 0.05;
  data::TruncationSide truncation_side = data::TruncationSide::kRight;
  bool gradient_checkpointing = false;
  uint64_t seed = 42;
  //! Tests only: stop (as if killed) after this many optimizer steps, without a final save.
  int64_t stop_after_steps = 0;
};

//! Reads stage.training and defaults.seed; errors name the field.
absl::StatusOr<TrainSettings> SettingsFromJob(const JobSpec& job);

struct TrainPaths {
  std::string checkpoint_root;      // <work_dir>/checkpoints
  std::string resume_from;          // a checkpoint dir, or a root to take the newest complete one
  std::string output_model_dir;     // final model (HF layout); empty = do not save
  std::string tokenizer_source_dir; // tokenizer files copied into saved models
};

//! One micro-batch's contribution: `loss` is already divided by the step's denominator, so
//! summing micro-batch losses gives the step loss; `metrics` are additive the same way.
struct MicroStep {
  at::Tensor loss;
  std::map<std::string, double> metrics;
  int64_t tokens = 0;  // real (non-padding) tokens processed, for throughput
};

class Objective {
 public:
  virtual ~Objective() = default;
  virtual int64_t NumExamples() const = 0;
  //! What a global batch's loss is divided by: supervised tokens (SFT) or pairs (DPO, RM).
  virtual int64_t Denominator(const std::vector<int64_t>& indices) const = 0;
  virtual absl::StatusOr<MicroStep> Micro(const model::CausalLM& policy,
                                          const std::vector<int64_t>& indices,
                                          int64_t denominator) = 0;
  //! Held-out metrics (names without the eval/ prefix); empty when there is no eval split.
  virtual absl::StatusOr<std::map<std::string, double>> Evaluate(const model::CausalLM& policy) = 0;
};

struct TrainResult {
  int64_t steps = 0;
  std::map<std::string, double> last_metrics;
  std::map<std::string, double> eval_metrics;
  std::vector<double> losses;  // per optimizer step run by this call
  std::string resumed_from;
  std::string final_model_dir;
};

//! The order RunTraining reads the examples of `epoch` in: SeededPermutation(n, seed + epoch).
//! Its micro-batches are the consecutive `batch_size` slices of it (a global batch is a whole
//! number of micro-batches, so gradient accumulation does not move their boundaries).
std::vector<int64_t> EpochOrder(int64_t n, uint64_t seed, int64_t epoch);

//! Runs the loop on `policy` (trainable). On resume, weights come from the checkpoint: callers
//! load the policy from ResolveResumeCheckpoint() instead of the base model (every rank the same
//! one). With a `collective` of world size W > 1 (null = one process), each global batch is split
//! over the ranks (rank r takes its examples r, r + W, ...; the order and the batches stay those
//! of one rank, so the losses match a 1-rank run up to float summation order), gradients and
//! figures are summed before clipping and AdamW, and only rank 0 writes checkpoints, the final
//! model and step/eval/checkpoint events; every rank returns the same losses and metrics.
absl::StatusOr<TrainResult> RunTraining(model::CausalLM& policy, Objective& objective,
                                        const TrainSettings& settings, const TrainPaths& paths,
                                        EventSink& events, Collective* collective = nullptr);

//! The checkpoint to resume from: `resume_from` itself when it is a complete checkpoint, the
//! newest complete one under it when it is a root; nullopt when empty. NotFound when set but
//! nothing complete is there.
absl::StatusOr<std::optional<std::string>> ResolveResumeCheckpoint(const std::string& resume_from);

// ---- Objectives ----

//! SFT on packed or unpacked rows: mean NLL over every supervised token of the global batch.
class SftObjective final : public Objective {
 public:
  SftObjective(std::vector<data::PackedRow> train, std::vector<data::PackedRow> eval,
               int32_t pad_id, bool packed, int64_t eval_batch_size);
  int64_t NumExamples() const override { return static_cast<int64_t>(train_.size()); }
  int64_t Denominator(const std::vector<int64_t>& indices) const override;
  absl::StatusOr<MicroStep> Micro(const model::CausalLM& policy, const std::vector<int64_t>& indices,
                                  int64_t denominator) override;
  //! Also reports eos_prob: the mean probability the model gives EOS where the held-out data ends
  //! a supervised turn with it (a fresh stories260K gives ~0: </s> was never trained).
  absl::StatusOr<std::map<std::string, double>> Evaluate(const model::CausalLM& policy) override;
  void set_eos_id(int64_t eos_id) { eos_id_ = eos_id; }

 private:
  std::vector<data::PackedRow> train_, eval_;
  int32_t pad_id_;
  int64_t eos_id_ = -1;
  bool packed_;
  int64_t eval_batch_size_;
};

//! Reference log-prob sums of the completion tokens of each pair.
struct RefLogps {
  std::vector<float> chosen, rejected;
};
//! Runs `reference` over `pairs` (no grad) in micro-batches of `batch_size` taken from `order`
//! (every pair index once; empty = 0..n-1); the result is indexed by pair. A pair's log-probs
//! depend in their last bits on the micro-batch it sits in: the padded length changes how the sum
//! over positions is blocked, and the other rows change the GEMM blocking (measured on the tests'
//! tiny model: up to 2e-6 on a sum, 3e-8 on a logit; none on stories260K). To equal a frozen
//! reference bit for bit at step 0, pass the trainer's own micro-batches: EpochOrder(n, seed, 0)
//! and the training batch size for the training split, 0..n-1 and the eval batch size for the
//! held-out split.
absl::StatusOr<RefLogps> ComputeReferenceLogps(const model::CausalLM& reference,
                                               const std::vector<data::TokenizedPair>& pairs,
                                               int32_t pad_id, int64_t batch_size,
                                               const std::vector<int64_t>& order = {});

//! DPO family. The reference is either a frozen model or precomputed log-probs (one per pair).
class DpoObjective final : public Objective {
 public:
  DpoObjective(std::vector<data::TokenizedPair> train, std::vector<data::TokenizedPair> eval,
               int32_t pad_id, DpoOptions options, int64_t eval_batch_size);
  void SetReferenceModel(const model::CausalLM* reference) { reference_ = reference; }
  void SetPrecomputed(RefLogps train, RefLogps eval) {
    train_ref_ = std::move(train);
    eval_ref_ = std::move(eval);
    precomputed_ = true;
  }
  int64_t NumExamples() const override { return static_cast<int64_t>(train_.size()); }
  int64_t Denominator(const std::vector<int64_t>& indices) const override {
    return static_cast<int64_t>(indices.size());
  }
  absl::StatusOr<MicroStep> Micro(const model::CausalLM& policy, const std::vector<int64_t>& indices,
                                  int64_t denominator) override;
  absl::StatusOr<std::map<std::string, double>> Evaluate(const model::CausalLM& policy) override;
  //! Loss and metrics of a set of pairs (no grad), e.g. at step 0.
  absl::StatusOr<std::map<std::string, double>> Score(const model::CausalLM& policy,
                                                      bool eval_split,
                                                      const std::vector<int64_t>& indices);

 private:
  absl::StatusOr<std::pair<DpoOutput, std::map<std::string, double>>> Forward(
      const model::CausalLM& policy, bool eval_split, const std::vector<int64_t>& indices);
  std::vector<data::TokenizedPair> train_, eval_;
  int32_t pad_id_;
  DpoOptions options_;
  int64_t eval_batch_size_;
  const model::CausalLM* reference_ = nullptr;
  bool precomputed_ = false;
  RefLogps train_ref_, eval_ref_;
};

//! Bradley-Terry reward model on a scalar-head model; score at the last non-padding token.
class RewardObjective final : public Objective {
 public:
  RewardObjective(std::vector<data::TokenizedPair> train, std::vector<data::TokenizedPair> eval,
                  int32_t pad_id, double center_coefficient, int64_t eval_batch_size);
  int64_t NumExamples() const override { return static_cast<int64_t>(train_.size()); }
  int64_t Denominator(const std::vector<int64_t>& indices) const override {
    return static_cast<int64_t>(indices.size());
  }
  absl::StatusOr<MicroStep> Micro(const model::CausalLM& policy, const std::vector<int64_t>& indices,
                                  int64_t denominator) override;
  absl::StatusOr<std::map<std::string, double>> Evaluate(const model::CausalLM& policy) override;

 private:
  std::vector<data::TokenizedPair> train_, eval_;
  int32_t pad_id_;
  double center_;
  int64_t eval_batch_size_;
};

//! Batch vectors -> int64 tensors [rows, length].
at::Tensor ToTensor(const std::vector<int64_t>& values, int64_t rows, int64_t length);

}  // namespace align::engine::train
