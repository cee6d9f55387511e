// Gradient checkpointing for one decoder layer: a custom autograd function that runs the layer
// without recording a graph, saves only its input, and recomputes it in backward.
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/custom_function.h>

#include "worker/engine/model/decoder_layer.h"

namespace align::engine::model {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

std::vector<at::Tensor> LayerParameters(const CausalLM::Layer& L) {
  std::vector<at::Tensor> out;
  for (const at::Tensor* t : {&L.input_norm, &L.post_norm, &L.q_proj, &L.k_proj, &L.v_proj,
                              &L.o_proj, &L.q_bias, &L.k_bias, &L.v_bias, &L.o_bias, &L.q_norm,
                              &L.k_norm, &L.gate_proj, &L.up_proj, &L.down_proj}) {
    if (t->defined()) out.push_back(*t);
  }
  return out;
}

struct CheckpointFunction : public torch::autograd::Function<CheckpointFunction> {
  // `params` are passed so autograd connects the output to them; the layer reads them through
  // `layer` (the same tensors).
  static variable_list forward(AutogradContext* ctx, const at::Tensor& x,
                               at::TensorList params, const CausalLM::Layer* layer,
                               const LayerContext* c) {
    ctx->save_for_backward({x, c->attn_bias, c->cos, c->sin});
    ctx->saved_data["layer"] = reinterpret_cast<int64_t>(layer);
    ctx->saved_data["heads"] = c->heads;
    ctx->saved_data["kv_heads"] = c->kv_heads;
    ctx->saved_data["head_dim"] = c->head_dim;
    ctx->saved_data["eps"] = c->eps;
    ctx->saved_data["num_params"] = static_cast<int64_t>(params.size());
    return {DecoderLayerForward(*layer, x, *c, nullptr, 0, 0)};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_out) {
    auto saved = ctx->get_saved_variables();
    const auto* layer = reinterpret_cast<const CausalLM::Layer*>(ctx->saved_data["layer"].toInt());
    LayerContext c;
    c.attn_bias = saved[1];
    c.cos = saved[2];
    c.sin = saved[3];
    c.heads = ctx->saved_data["heads"].toInt();
    c.kv_heads = ctx->saved_data["kv_heads"].toInt();
    c.head_dim = ctx->saved_data["head_dim"].toInt();
    c.eps = ctx->saved_data["eps"].toDouble();
    std::vector<at::Tensor> params = LayerParameters(*layer);
    at::Tensor x = saved[0].detach().requires_grad_(saved[0].requires_grad());
    at::AutoGradMode enable(true);
    at::Tensor y = DecoderLayerForward(*layer, x, c, nullptr, 0, 0);
    // Differentiate only what needs a gradient (frozen parameters are skipped).
    variable_list inputs;
    std::vector<int> slot;  // index into the result: 0 = x, 1 + i = params[i]
    if (x.requires_grad()) {
      inputs.push_back(x);
      slot.push_back(0);
    }
    for (size_t i = 0; i < params.size(); ++i) {
      if (params[i].requires_grad()) {
        inputs.push_back(params[i]);
        slot.push_back(static_cast<int>(i) + 1);
      }
    }
    // One slot per forward argument: x, each parameter, then the two pointers.
    variable_list result(1 + params.size() + 2);
    if (!inputs.empty()) {
      variable_list grads = torch::autograd::grad({y}, inputs, {grad_out[0]},
                                                  /*retain_graph=*/false, /*create_graph=*/false,
                                                  /*allow_unused=*/true);
      for (size_t i = 0; i < grads.size(); ++i) result[slot[i]] = grads[i];
    }
    return result;
  }
};

}  // namespace

at::Tensor CheckpointedDecoderLayer(const CausalLM::Layer& layer, const at::Tensor& x,
                                    const LayerContext& c) {
  const std::vector<at::Tensor> params = LayerParameters(layer);
  // TensorList (not the vector) so autograd registers every parameter as an input.
  return CheckpointFunction::apply(x, at::TensorList(params), &layer, &c)[0];
}

}  // namespace align::engine::model
