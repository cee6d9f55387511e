#include "worker/engine/model/decoder_layer.h"

#include <algorithm>
#include <cmath>

#include <ATen/core/grad_mode.h>

#if __has_include(<torch/version.h>)
#include <torch/version.h>
#endif
#if defined(TORCH_VERSION_MAJOR) && TORCH_VERSION_MAJOR >= 2
#define ALIGN_HAVE_SDPA 1
#endif

namespace align::engine::model {
namespace {

at::Tensor RotateHalf(const at::Tensor& x) {
  const int64_t half = x.size(-1) / 2;
  at::Tensor x1 = x.narrow(-1, 0, half);
  at::Tensor x2 = x.narrow(-1, half, half);
  return at::cat({-x2, x1}, -1);
}

at::Tensor Linear(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b) {
  return b.defined() ? at::linear(x, w, b) : at::linear(x, w);
}

}  // namespace

at::Tensor RmsNorm(const at::Tensor& x, const at::Tensor& weight, double eps) {
  at::Tensor xf = x.to(at::kFloat);
  at::Tensor var = xf.pow(2).mean(-1, /*keepdim=*/true);
  xf = xf * at::rsqrt(var + eps);
  return weight * xf.to(x.scalar_type());
}

at::Tensor DecoderLayerForward(const CausalLM::Layer& L, const at::Tensor& input,
                               const LayerContext& c, KVCache* cache, size_t l, int64_t past) {
  const int64_t B = input.size(0), T = input.size(1), S = past + T;
  const int64_t H = c.heads, Hkv = c.kv_heads, D = c.head_dim, rep = H / Hkv;
  const double eps = c.eps;
  [[maybe_unused]] const double scale = 1.0 / std::sqrt(static_cast<double>(D));
  const at::ScalarType dt = input.scalar_type();
  const at::Tensor& cos = c.cos;
  const at::Tensor& sin = c.sin;
  const at::Tensor& attn_bias = c.attn_bias;
  at::Tensor x = input;
  at::Tensor h = RmsNorm(x, L.input_norm, eps);
  at::Tensor q = Linear(h, L.q_proj, L.q_bias).view({B, T, H, D});
  at::Tensor k = Linear(h, L.k_proj, L.k_bias).view({B, T, Hkv, D});
  at::Tensor v = Linear(h, L.v_proj, L.v_bias).view({B, T, Hkv, D}).transpose(1, 2);
  if (L.q_norm.defined()) {
    q = RmsNorm(q, L.q_norm, eps);
    k = RmsNorm(k, L.k_norm, eps);
  }
  q = q.transpose(1, 2);
  k = k.transpose(1, 2);
  q = q * cos + RotateHalf(q) * sin;
  k = k * cos + RotateHalf(k) * sin;
  if (cache != nullptr) {
    at::Tensor& ck = cache->keys[l];
    at::Tensor& cv = cache->values[l];
    if (at::GradMode::is_enabled()) {
      if (past > 0) {
        k = at::cat({ck.narrow(2, 0, past), k}, 2);
        v = at::cat({cv.narrow(2, 0, past), v}, 2);
      }
      ck = k;
      cv = v;
    } else {
      // Amortised O(1) appends: write into a buffer that doubles when full.
      if (!ck.defined() || ck.size(2) < S) {
        const int64_t capacity = std::max<int64_t>(S, ck.defined() ? 2 * ck.size(2) : 2 * S);
        at::Tensor nk = at::empty({B, Hkv, capacity, D}, k.options());
        at::Tensor nv = at::empty({B, Hkv, capacity, D}, v.options());
        if (past > 0) {
          nk.narrow(2, 0, past).copy_(ck.narrow(2, 0, past));
          nv.narrow(2, 0, past).copy_(cv.narrow(2, 0, past));
        }
        ck = nk;
        cv = nv;
      }
      ck.narrow(2, past, T).copy_(k);
      cv.narrow(2, past, T).copy_(v);
      k = ck.narrow(2, 0, S);
      v = cv.narrow(2, 0, S);
    }
  }
  at::Tensor attn;
#ifdef ALIGN_HAVE_SDPA
  {
    at::Tensor kr = rep > 1 ? k.repeat_interleave(rep, 1) : k;
    at::Tensor vr = rep > 1 ? v.repeat_interleave(rep, 1) : v;
    attn = at::scaled_dot_product_attention(q, kr, vr, attn_bias);
  }
#else
  {
    // Grouped heads share one K/V: fold the rep query heads into the query axis instead of
    // copying K and V rep times.
    at::Tensor qg = q.reshape({B, Hkv, rep * T, D});
    at::Tensor scores = at::matmul(qg, k.transpose(-1, -2)).view({B, H, T, S}) * scale;
    scores = scores + attn_bias;
    at::Tensor probs = at::softmax(scores, -1, at::kFloat).to(dt);
    attn = at::matmul(probs.view({B, Hkv, rep * T, S}), v).view({B, H, T, D});
  }
#endif
  attn = attn.transpose(1, 2).reshape({B, T, H * D});
  x = x + Linear(attn, L.o_proj, L.o_bias);
  h = RmsNorm(x, L.post_norm, eps);
  at::Tensor mlp = at::linear(at::silu(at::linear(h, L.gate_proj)) * at::linear(h, L.up_proj),
                              L.down_proj);
  x = x + mlp;
  return x;
}

}  // namespace align::engine::model
