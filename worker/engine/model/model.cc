#include "worker/engine/model/model.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <ATen/core/grad_mode.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"
#include "worker/engine/model/blas.h"
#include "worker/engine/model/decoder_layer.h"
#include "worker/engine/model/safetensors.h"


namespace align::engine::model {
namespace fs = std::filesystem;

namespace {

at::ScalarType DtypeFromName(const std::string& name) {
  if (name == "bfloat16") return at::kBFloat16;
  if (name == "float16") return at::kHalf;
  return at::kFloat;
}

std::string DtypeToName(at::ScalarType t) {
  if (t == at::kBFloat16) return "bfloat16";
  if (t == at::kHalf) return "float16";
  return "float32";
}

std::string ShapeString(at::IntArrayRef s) { return absl::StrCat("[", absl::StrJoin(s, ", "), "]"); }




// Expected HF tensor names and shapes for a config, in checkpoint order.
struct Expected {
  std::string name;
  std::vector<int64_t> shape;
};

std::vector<Expected> ExpectedTensors(const ModelConfig& c, HeadKind head) {
  std::vector<Expected> out;
  const int64_t h = c.hidden_size, q = c.num_attention_heads * c.head_dim,
                kv = c.num_key_value_heads * c.head_dim, i = c.intermediate_size;
  const bool o_bias = c.attention_bias && c.family != ModelFamily::kQwen2;
  out.push_back({"model.embed_tokens.weight", {c.vocab_size, h}});
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const std::string p = absl::StrCat("model.layers.", l, ".");
    out.push_back({p + "self_attn.q_proj.weight", {q, h}});
    if (c.attention_bias) out.push_back({p + "self_attn.q_proj.bias", {q}});
    out.push_back({p + "self_attn.k_proj.weight", {kv, h}});
    if (c.attention_bias) out.push_back({p + "self_attn.k_proj.bias", {kv}});
    out.push_back({p + "self_attn.v_proj.weight", {kv, h}});
    if (c.attention_bias) out.push_back({p + "self_attn.v_proj.bias", {kv}});
    out.push_back({p + "self_attn.o_proj.weight", {h, q}});
    if (o_bias) out.push_back({p + "self_attn.o_proj.bias", {h}});
    if (c.qk_norm) {
      out.push_back({p + "self_attn.q_norm.weight", {c.head_dim}});
      out.push_back({p + "self_attn.k_norm.weight", {c.head_dim}});
    }
    out.push_back({p + "mlp.gate_proj.weight", {i, h}});
    out.push_back({p + "mlp.up_proj.weight", {i, h}});
    out.push_back({p + "mlp.down_proj.weight", {h, i}});
    out.push_back({p + "input_layernorm.weight", {h}});
    out.push_back({p + "post_attention_layernorm.weight", {h}});
  }
  out.push_back({"model.norm.weight", {h}});
  if (head == HeadKind::kScalar) {
    out.push_back({"score.weight", {1, h}});
  } else if (!c.tie_word_embeddings) {
    out.push_back({"lm_head.weight", {c.vocab_size, h}});
  }
  return out;
}


}  // namespace

// Builds a CausalLM from a name -> tensor map (already checked). Friend of CausalLM.
class CausalLMBuilder {
 public:
  static std::unique_ptr<CausalLM> Build(const ModelConfig& config, HeadKind head,
                                         std::map<std::string, at::Tensor>& t) {
    auto m = std::unique_ptr<CausalLM>(new CausalLM());
    m->config_ = config;
    m->head_ = head;
    m->generation_config_.bos_token_id = config.bos_token_id;
    m->generation_config_.eos_token_ids = config.eos_token_ids;
    m->generation_config_.pad_token_id = config.pad_token_id;
    auto take = [&](const std::string& n) -> at::Tensor {
      auto it = t.find(n);
      return it == t.end() ? at::Tensor() : it->second;
    };
    m->embed_tokens_ = take("model.embed_tokens.weight");
    for (int64_t l = 0; l < config.num_hidden_layers; ++l) {
      const std::string p = absl::StrCat("model.layers.", l, ".");
      CausalLM::Layer L;
      L.q_proj = take(p + "self_attn.q_proj.weight");
      L.k_proj = take(p + "self_attn.k_proj.weight");
      L.v_proj = take(p + "self_attn.v_proj.weight");
      L.o_proj = take(p + "self_attn.o_proj.weight");
      L.q_bias = take(p + "self_attn.q_proj.bias");
      L.k_bias = take(p + "self_attn.k_proj.bias");
      L.v_bias = take(p + "self_attn.v_proj.bias");
      L.o_bias = take(p + "self_attn.o_proj.bias");
      L.q_norm = take(p + "self_attn.q_norm.weight");
      L.k_norm = take(p + "self_attn.k_norm.weight");
      L.gate_proj = take(p + "mlp.gate_proj.weight");
      L.up_proj = take(p + "mlp.up_proj.weight");
      L.down_proj = take(p + "mlp.down_proj.weight");
      L.input_norm = take(p + "input_layernorm.weight");
      L.post_norm = take(p + "post_attention_layernorm.weight");
      m->layers_.push_back(std::move(L));
    }
    m->norm_ = take("model.norm.weight");
    if (head == HeadKind::kScalar) {
      m->score_ = take("score.weight");
    } else if (!config.tie_word_embeddings) {
      m->lm_head_ = take("lm_head.weight");
    }
    m->inv_freq_ = m->RopeInvFreq(m->embed_tokens_.device());
    return m;
  }
};

at::Tensor CausalLM::RopeInvFreq(at::Device device) const {
  // Same float32 arithmetic as transformers' rope init, so positions match to the last bit.
  const int64_t d = config_.head_dim;
  at::Tensor exponent = at::arange(0, d, 2, at::TensorOptions().dtype(at::kLong)).to(at::kFloat) /
                        static_cast<double>(d);
  at::Tensor inv_freq = 1.0 / at::pow(config_.rope_theta, exponent);
  const RopeScaling& rs = config_.rope_scaling;
  if (rs.type == RopeScalingType::kLinear) {
    inv_freq = inv_freq / rs.factor;
  } else if (rs.type == RopeScalingType::kLlama3) {
    const double old_len = static_cast<double>(rs.original_max_position_embeddings);
    const double low_wavelen = old_len / rs.low_freq_factor;
    const double high_wavelen = old_len / rs.high_freq_factor;
    at::Tensor wavelen = 2 * M_PI / inv_freq;
    at::Tensor llama = at::where(wavelen > low_wavelen, inv_freq / rs.factor, inv_freq);
    at::Tensor smooth = (old_len / wavelen - rs.low_freq_factor) /
                        (rs.high_freq_factor - rs.low_freq_factor);
    at::Tensor smoothed = (1 - smooth) * llama / rs.factor + smooth * llama;
    at::Tensor medium = (wavelen >= high_wavelen).logical_and(wavelen <= low_wavelen);
    inv_freq = at::where(medium, smoothed, llama);
  }
  return inv_freq.to(device);
}

absl::StatusOr<std::unique_ptr<CausalLM>> CausalLM::Load(const std::string& dir,
                                                         const LoadOptions& options) {
  ASSIGN_OR_RETURN(ModelConfig config, LoadModelConfig(dir));
  ASSIGN_OR_RETURN(GenerationConfig gen, LoadGenerationConfig(dir, config));
  const at::ScalarType dtype =
      options.dtype.value_or(options.device.is_cuda() ? at::kBFloat16 : at::kFloat);
  ASSIGN_OR_RETURN(auto tensors, ReadSafetensorsDir(dir, dtype));
  const std::string source = fs::exists(dir + "/model.safetensors.index.json")
                                 ? dir + "/model.safetensors.index.json"
                                 : dir + "/model.safetensors";
  try {
    // A classification checkpoint loaded as an LM may lack lm_head: use the tied embedding.
    if (options.head == HeadKind::kCausalLM && !config.tie_word_embeddings &&
        tensors.count("lm_head.weight") == 0 && config.is_sequence_classification) {
      return absl::InvalidArgumentError(absl::StrCat(
          source, ": missing tensor 'lm_head.weight': ", dir,
          " is a sequence-classification (scalar head) checkpoint; load it with the scalar head"));
    }
    bool new_score = false;
    for (const Expected& e : ExpectedTensors(config, options.head)) {
      auto it = tensors.find(e.name);
      if (it == tensors.end()) {
        if (e.name == "score.weight") {
          new_score = true;
          continue;
        }
        return absl::NotFoundError(absl::StrCat(
            source, ": missing tensor '", e.name, "' (expected shape ", ShapeString(e.shape),
            " from ", dir, "/config.json)"));
      }
      if (it->second.sizes() != at::IntArrayRef(e.shape)) {
        return absl::InvalidArgumentError(absl::StrCat(
            source, ": tensor '", e.name, "' has shape ", ShapeString(it->second.sizes()),
            " but ", dir, "/config.json implies ", ShapeString(e.shape),
            " (hidden_size ", config.hidden_size, ", intermediate_size ", config.intermediate_size,
            ", heads ", config.num_attention_heads, "/", config.num_key_value_heads, ", head_dim ",
            config.head_dim, ", vocab_size ", config.vocab_size, ")"));
      }
    }
    if (new_score) {
      auto gen_cpu = at::make_generator<at::CPUGeneratorImpl>(options.seed);
      tensors["score.weight"] =
          at::normal(0.0, 1.0 / std::sqrt(static_cast<double>(config.hidden_size + 1)),
                     {1, config.hidden_size}, gen_cpu, at::TensorOptions().dtype(at::kFloat))
              .to(dtype);
      LOG(INFO) << dir << ": no score.weight in the checkpoint; initialised a new scalar head";
    }
    std::set<std::string> used;
    for (const Expected& e : ExpectedTensors(config, options.head)) used.insert(e.name);
    for (auto it = tensors.begin(); it != tensors.end();) {
      if (used.count(it->first) == 0) {
        if (it->first != "lm_head.weight" && it->first != "score.weight" &&
            it->first.find("rotary_emb") == std::string::npos) {
          LOG(WARNING) << source << ": ignoring unexpected tensor '" << it->first << "'";
        }
        it = tensors.erase(it);
      } else {
        it->second = it->second.to(options.device);
        ++it;
      }
    }
    auto model = CausalLMBuilder::Build(config, options.head, tensors);
    model->generation_config_ = gen;
    model->SetTrainable(options.trainable);
    return model;
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat(dir, ": loading failed: ", e.what_without_backtrace()));
  }
}

absl::StatusOr<std::unique_ptr<CausalLM>> CausalLM::FromConfig(const ModelConfig& config,
                                                               uint64_t seed,
                                                               const LoadOptions& options) {
  try {
    const at::ScalarType dtype =
        options.dtype.value_or(options.device.is_cuda() ? at::kBFloat16 : at::kFloat);
    auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
    std::map<std::string, at::Tensor> tensors;
    const auto f32 = at::TensorOptions().dtype(at::kFloat);
    for (const Expected& e : ExpectedTensors(config, options.head)) {
      at::Tensor t;
      const bool is_norm = e.name.find("norm") != std::string::npos;
      const bool is_bias = e.name.size() > 5 && e.name.substr(e.name.size() - 5) == ".bias";
      if (is_norm) {
        t = at::ones(e.shape, f32);
      } else if (is_bias) {
        t = at::zeros(e.shape, f32);
      } else {
        t = at::normal(0.0, 0.02, e.shape, gen, f32);
      }
      tensors[e.name] = t.to(options.device, dtype);
    }
    auto model = CausalLMBuilder::Build(config, options.head, tensors);
    model->SetTrainable(options.trainable);
    return model;
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("random init failed: ", e.what_without_backtrace()));
  }
}

at::Tensor CausalLM::HeadWeight() const { return lm_head_.defined() ? lm_head_ : embed_tokens_; }

at::Device CausalLM::device() const { return embed_tokens_.device(); }
at::ScalarType CausalLM::dtype() const { return embed_tokens_.scalar_type(); }

at::Tensor CausalLM::Forward(const at::Tensor& input_ids, const ForwardOptions& options) const {
  TORCH_CHECK(input_ids.dim() == 2, "input_ids must be [B, T], got ", input_ids.sizes());
  const at::Device dev = device();
  const at::Tensor ids = input_ids.to(dev, at::kLong);
  const int64_t B = ids.size(0), T = ids.size(1);
  KVCache* cache = options.cache;
  TORCH_CHECK(cache == nullptr || !options.sequence_ids.defined(),
              "sequence_ids (packed rows) cannot be combined with a KV cache");
  const int64_t past = cache != nullptr ? cache->Length() : 0;
  const int64_t S = past + T;
  const auto long_opts = at::TensorOptions().dtype(at::kLong).device(dev);

  at::Tensor mask;  // [B, S] long
  if (options.attention_mask.defined()) {
    mask = options.attention_mask.to(dev, at::kLong);
    TORCH_CHECK(mask.dim() == 2 && mask.size(0) == B && mask.size(1) == S,
                "attention_mask must be [B, past + T] = [", B, ", ", S, "], got ", mask.sizes());
  } else {
    mask = at::ones({B, S}, long_opts);
  }
  at::Tensor seq;
  if (options.sequence_ids.defined()) {
    seq = options.sequence_ids.to(dev, at::kLong);
    TORCH_CHECK(seq.sizes() == ids.sizes(), "sequence_ids must be [B, T] like input_ids");
  }

  at::Tensor pos;
  if (options.position_ids.defined()) {
    pos = options.position_ids.to(dev, at::kLong);
    TORCH_CHECK(pos.sizes() == ids.sizes(), "position_ids must be [B, T] like input_ids");
  } else if (seq.defined()) {
    at::Tensor idx = at::arange(T, long_opts).unsqueeze(0).expand({B, T});
    at::Tensor is_start = at::ones({B, T}, long_opts.dtype(at::kBool));
    if (T > 1) {
      is_start.narrow(1, 1, T - 1).copy_(seq.narrow(1, 1, T - 1) != seq.narrow(1, 0, T - 1));
    }
    at::Tensor starts = at::where(is_start, idx, at::zeros_like(idx));
    pos = idx - std::get<0>(at::cummax(starts, 1));
  } else {
    pos = (at::cumsum(mask, 1) - 1).clamp_min(0).narrow(1, past, T);
  }

  // Additive attention bias [B, 1, T, S]: causal + padding (+ window, + segments).
  at::Tensor allowed;
  {
    at::Tensor qi = at::arange(past, S, long_opts).view({T, 1});
    at::Tensor kj = at::arange(S, long_opts).view({1, S});
    at::Tensor causal = kj <= qi;  // [T, S]
    if (config_.sliding_window) causal = causal.logical_and((qi - kj) < *config_.sliding_window);
    allowed = causal.unsqueeze(0).logical_and(mask.view({B, 1, S}) != 0);  // [B, T, S]
    if (seq.defined()) allowed = allowed.logical_and(seq.unsqueeze(2) == seq.unsqueeze(1));
  }
  const at::ScalarType dt = dtype();
  // A large finite negative (not -inf) keeps fully masked rows (padding queries) NaN-free.
  const double lowest = dt == at::kHalf ? -65504.0 : dt == at::kBFloat16 ? -3.38e38 : -3.4028e38;
  at::Tensor attn_bias = at::zeros({B, 1, T, S}, at::TensorOptions().dtype(dt).device(dev))
                             .masked_fill_(allowed.unsqueeze(1).logical_not(), lowest);

  // RoPE tables [B, 1, T, D] in the activation dtype.
  at::Tensor freqs = pos.to(at::kFloat).unsqueeze(-1) * inv_freq_.view({1, 1, -1});
  at::Tensor emb = at::cat({freqs, freqs}, -1);
  at::Tensor cos = emb.cos().to(dt).unsqueeze(1);
  at::Tensor sin = emb.sin().to(dt).unsqueeze(1);

  const int64_t H = config_.num_attention_heads, Hkv = config_.num_key_value_heads,
                D = config_.head_dim;
  const double eps = config_.rms_norm_eps;

  if (cache != nullptr && cache->keys.size() != layers_.size()) {
    cache->keys.assign(layers_.size(), at::Tensor());
    cache->values.assign(layers_.size(), at::Tensor());
  }

  at::Tensor x = at::embedding(embed_tokens_, ids);
  const LayerContext lc{attn_bias, cos, sin, H, Hkv, D, eps};
  // Checkpointing only matters when a graph is being recorded; it never mixes with a cache.
  const bool checkpoint =
      options.gradient_checkpointing && cache == nullptr && at::GradMode::is_enabled();
  for (size_t l = 0; l < layers_.size(); ++l) {
    x = checkpoint ? CheckpointedDecoderLayer(layers_[l], x, lc)
                   : DecoderLayerForward(layers_[l], x, lc, cache, l, past);
  }
  if (cache != nullptr) cache->length = S;
  if (options.last_n > 0 && options.last_n < T) x = x.narrow(1, T - options.last_n, options.last_n);
  x = RmsNorm(x, norm_, eps);
  if (head_ == HeadKind::kScalar) return at::linear(x, score_).squeeze(-1).to(at::kFloat);
  return at::linear(x, HeadWeight());
}

absl::StatusOr<at::Tensor> CausalLM::ForwardChecked(const at::Tensor& input_ids,
                                                    const ForwardOptions& options) const {
  try {
    return Forward(input_ids, options);
  } catch (const c10::Error& e) {
    return absl::InvalidArgumentError(absl::StrCat("model forward failed: ", e.what_without_backtrace()));
  }
}

std::vector<std::pair<std::string, at::Tensor>> CausalLM::NamedParameters() const {
  std::vector<std::pair<std::string, at::Tensor>> out;
  auto add = [&](std::string name, const at::Tensor& t) {
    if (t.defined()) out.emplace_back(std::move(name), t);
  };
  add("model.embed_tokens.weight", embed_tokens_);
  for (size_t l = 0; l < layers_.size(); ++l) {
    const Layer& L = layers_[l];
    const std::string p = absl::StrCat("model.layers.", l, ".");
    add(p + "self_attn.q_proj.weight", L.q_proj);
    add(p + "self_attn.q_proj.bias", L.q_bias);
    add(p + "self_attn.k_proj.weight", L.k_proj);
    add(p + "self_attn.k_proj.bias", L.k_bias);
    add(p + "self_attn.v_proj.weight", L.v_proj);
    add(p + "self_attn.v_proj.bias", L.v_bias);
    add(p + "self_attn.o_proj.weight", L.o_proj);
    add(p + "self_attn.o_proj.bias", L.o_bias);
    add(p + "self_attn.q_norm.weight", L.q_norm);
    add(p + "self_attn.k_norm.weight", L.k_norm);
    add(p + "mlp.gate_proj.weight", L.gate_proj);
    add(p + "mlp.up_proj.weight", L.up_proj);
    add(p + "mlp.down_proj.weight", L.down_proj);
    add(p + "input_layernorm.weight", L.input_norm);
    add(p + "post_attention_layernorm.weight", L.post_norm);
  }
  add("model.norm.weight", norm_);
  add("lm_head.weight", lm_head_);
  add("score.weight", score_);
  return out;
}

std::vector<at::Tensor> CausalLM::Parameters() const {
  std::vector<at::Tensor> out;
  for (auto& [n, t] : NamedParameters()) out.push_back(t);
  return out;
}

int64_t CausalLM::NumParameters() const {
  int64_t n = 0;
  for (auto& [name, t] : NamedParameters()) n += t.numel();
  return n;
}

void CausalLM::SetTrainable(bool trainable) {
  for (auto& [n, t] : NamedParameters()) {
    at::Tensor p = t;
    p.requires_grad_(trainable);
  }
}

void CausalLM::To(at::Device device, std::optional<at::ScalarType> dtype) {
  const at::ScalarType dt = dtype.value_or(this->dtype());
  auto move = [&](at::Tensor& t) {
    if (!t.defined()) return;
    const bool rg = t.requires_grad();
    t = t.detach().to(device, dt).requires_grad_(rg);
  };
  move(embed_tokens_);
  for (Layer& L : layers_) {
    for (at::Tensor* t : {&L.input_norm, &L.post_norm, &L.q_proj, &L.k_proj, &L.v_proj, &L.o_proj,
                          &L.q_bias, &L.k_bias, &L.v_bias, &L.o_bias, &L.q_norm, &L.k_norm,
                          &L.gate_proj, &L.up_proj, &L.down_proj}) {
      move(*t);
    }
  }
  move(norm_);
  move(lm_head_);
  move(score_);
  inv_freq_ = inv_freq_.to(device);
}

std::unique_ptr<CausalLM> CausalLM::Clone() const {
  at::NoGradGuard no_grad;
  std::map<std::string, at::Tensor> tensors;
  for (auto& [n, t] : NamedParameters()) tensors[n] = t.detach().clone();
  auto m = CausalLMBuilder::Build(config_, head_, tensors);
  m->generation_config_ = generation_config_;
  return m;
}

namespace {

absl::Status WriteTextFile(const std::string& path, const std::string& text) {
  {
    std::ofstream out(path, std::ios::binary);
    out << text;
    out.flush();
    if (!out) return absl::InternalError(absl::StrCat(path, ": write failed"));
  }
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
  return absl::OkStatus();
}

void FsyncDir(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
}

constexpr const char* kTokenizerFiles[] = {
    "tokenizer.json",   "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json",
    "added_tokens.json", "vocab.json",     "merges.txt",            "chat_template.jinja",
    "chat_template.json"};

}  // namespace

absl::Status CausalLM::Save(const std::string& dir, const SaveOptions& options) const {
  const at::ScalarType dt = options.dtype.value_or(DtypeFromName(config_.torch_dtype));
  fs::path target = fs::absolute(fs::path(dir));
  if (target.filename().empty()) target = target.parent_path();
  std::error_code ec;
  fs::create_directories(target.parent_path(), ec);
  if (ec) {
    return absl::InternalError(
        absl::StrCat(target.parent_path().string(), ": cannot create directory: ", ec.message()));
  }
  std::random_device rd;
  const std::string suffix = absl::StrCat(::getpid(), "-", rd());
  const fs::path tmp = target.string() + ".tmp-" + suffix;
  fs::create_directory(tmp, ec);
  if (ec) return absl::InternalError(absl::StrCat(tmp.string(), ": cannot create: ", ec.message()));
  auto fail = [&](absl::Status s) {
    std::error_code ignore;
    fs::remove_all(tmp, ignore);
    return s;
  };

  ModelConfig cfg = config_;
  cfg.torch_dtype = DtypeToName(dt);
  if (!options.eos_token_ids.empty()) cfg.eos_token_ids = options.eos_token_ids;
  const bool scalar = head_ == HeadKind::kScalar;
  if (auto s = WriteTextFile((tmp / "config.json").string(), ModelConfigToJson(cfg, scalar)); !s.ok()) {
    return fail(s);
  }
  nlohmann::json gen;
  const auto bos = generation_config_.bos_token_id ? generation_config_.bos_token_id : cfg.bos_token_id;
  if (bos) gen["bos_token_id"] = *bos;
  std::vector<int64_t> eos = !options.eos_token_ids.empty() ? options.eos_token_ids
                                                            : generation_config_.eos_token_ids;
  if (eos.size() == 1) {
    gen["eos_token_id"] = eos[0];
  } else if (!eos.empty()) {
    gen["eos_token_id"] = eos;
  }
  if (generation_config_.pad_token_id) gen["pad_token_id"] = *generation_config_.pad_token_id;
  if (auto s = WriteTextFile((tmp / "generation_config.json").string(), gen.dump(2) + "\n"); !s.ok()) {
    return fail(s);
  }

  std::vector<std::pair<std::string, at::Tensor>> tensors;
  try {
    at::NoGradGuard no_grad;
    for (auto& [n, t] : NamedParameters()) tensors.emplace_back(n, t.detach().to(at::kCPU, dt));
  } catch (const c10::Error& e) {
    return fail(absl::InternalError(absl::StrCat(dir, ": ", e.what_without_backtrace())));
  }
  if (auto s = WriteSafetensorsDir(tmp.string(), tensors, options.max_shard_bytes); !s.ok()) {
    return fail(s);
  }
  if (!options.tokenizer_source_dir.empty()) {
    for (const char* name : kTokenizerFiles) {
      fs::path src = fs::path(options.tokenizer_source_dir) / name;
      if (!fs::exists(src)) continue;
      fs::copy_file(src, tmp / name, fs::copy_options::overwrite_existing, ec);
      if (ec) {
        return fail(absl::InternalError(
            absl::StrCat(src.string(), ": cannot copy tokenizer file: ", ec.message())));
      }
      // Copies of read-only inputs stay writable so the directory can be replaced later.
      fs::permissions(tmp / name, fs::perms::owner_read | fs::perms::owner_write,
                      fs::perm_options::add, ec);
    }
  }
  FsyncDir(tmp.string());
  // Swap in: a directory cannot be renamed over a non-empty one, so move the old aside first.
  fs::path old;
  if (fs::exists(target)) {
    old = target.string() + ".old-" + suffix;
    fs::rename(target, old, ec);
    if (ec) {
      return fail(absl::InternalError(absl::StrCat(target.string(), ": cannot replace: ", ec.message())));
    }
  }
  fs::rename(tmp, target, ec);
  if (ec) {
    if (!old.empty()) fs::rename(old, target, ec);
    return fail(absl::InternalError(absl::StrCat(target.string(), ": rename failed: ", ec.message())));
  }
  FsyncDir(target.parent_path().string());
  if (!old.empty()) fs::remove_all(old, ec);
  return absl::OkStatus();
}

void SetComputeThreads(int threads) {
  if (threads <= 0) return;
  at::set_num_threads(threads);
  SetOpenBlasThreads(threads);  // its pool is its own: by default one thread per core
}

at::Device DefaultDevice() { return at::hasCUDA() ? at::Device(at::kCUDA) : at::Device(at::kCPU); }

}  // namespace align::engine::model
