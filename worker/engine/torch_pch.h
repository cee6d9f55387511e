// Precompiled header for engine libraries that use LibTorch. Only ATen (tensors, ops, autograd
// through Tensor::backward) is included: torch/torch.h costs 3x the compile time and memory.
#pragma once

#include <ATen/ATen.h>
