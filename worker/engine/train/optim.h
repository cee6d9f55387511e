// AdamW (decoupled weight decay, torch.optim.AdamW's update order), learning-rate schedules with
// warmup (Hugging Face's linear / cosine / constant) and global grad-norm clipping, on plain
// at::Tensors so the whole optimizer state can be checkpointed and restored bit for bit.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <ATen/ATen.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace align::engine::train {

struct AdamWOptions {
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;  // applied to matrices only (not norms or biases), as HF Trainer does
};

class AdamW {
 public:
  AdamW(std::vector<std::pair<std::string, at::Tensor>> params, AdamWOptions options);
  //! One update with learning rate `lr` on the parameters' .grad() (missing grads are skipped).
  void Step(double lr);
  void ZeroGrad();
  int64_t step() const { return step_; }
  //! exp_avg.<name> and exp_avg_sq.<name> tensors (float32), for checkpoints.
  std::vector<std::pair<std::string, at::Tensor>> StateTensors() const;
  //! Restores moments and the step count; errors name a missing or mis-shaped tensor.
  absl::Status LoadState(const std::map<std::string, at::Tensor>& tensors, int64_t step);

 private:
  struct Slot {
    std::string name;
    at::Tensor param, exp_avg, exp_avg_sq;
    bool decay = true;
  };
  std::vector<Slot> slots_;
  AdamWOptions options_;
  int64_t step_ = 0;
};

enum class LrSchedule { kLinear, kCosine, kConstant };
absl::StatusOr<LrSchedule> ParseLrSchedule(const std::string& text);

//! Learning rate at optimizer step `step` (0-based, the step about to be taken): linear warmup
//! from 0 over `warmup_steps`, then linear decay to 0 at `total_steps`, half-cosine to 0, or
//! constant (Hugging Face get_*_schedule_with_warmup).
double LearningRateAt(LrSchedule schedule, double base_lr, int64_t step, int64_t total_steps,
                      int64_t warmup_steps);

//! Scales gradients so their global L2 norm is at most `max_norm` (<= 0: no clipping) and
//! returns the norm before clipping (torch.nn.utils.clip_grad_norm_).
double ClipGradNorm(const std::vector<at::Tensor>& params, double max_norm);

}  // namespace align::engine::train
