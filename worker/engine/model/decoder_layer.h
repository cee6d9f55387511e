// Internal to worker/engine/model: one decoder layer's forward (attention + MLP), shared by
// CausalLM::Forward and its gradient-checkpointed variant. Not for use outside this folder.
#pragma once

#include <cstddef>
#include <cstdint>

#include <ATen/ATen.h>

#include "worker/engine/model/model.h"

namespace align::engine::model {

//! What every layer of one Forward call shares.
struct LayerContext {
  at::Tensor attn_bias;  // [B, 1, T, S] additive
  at::Tensor cos, sin;   // [B, 1, T, D]
  int64_t heads = 0, kv_heads = 0, head_dim = 0;
  double eps = 1e-6;
};

at::Tensor RmsNorm(const at::Tensor& x, const at::Tensor& weight, double eps);

//! x [B,T,hidden] -> x after the layer. With a cache, layer `index` appends its K/V after `past`.
at::Tensor DecoderLayerForward(const CausalLM::Layer& layer, const at::Tensor& x,
                               const LayerContext& c, KVCache* cache, size_t index, int64_t past);

//! Same result, but keeps only x for backward and recomputes the layer then (no cache).
at::Tensor CheckpointedDecoderLayer(const CausalLM::Layer& layer, const at::Tensor& x,
                                    const LayerContext& c);

}  // namespace align::engine::model
