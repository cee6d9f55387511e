#include "worker/engine/model/model.h"

#include <filesystem>
#include <set>

#include <ATen/core/grad_mode.h>

#include "absl/strings/str_format.h"
#include "common/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/engine/model/test_util.h"
#include "worker/engine/model/generate.h"
#include "worker/engine/model/safetensors.h"

namespace align::engine::model {
namespace {

namespace fs = std::filesystem;
using ::align::testing::StatusIs;
using ::testing::HasSubstr;

void ExpectSameParameters(const CausalLM& a, const CausalLM& b) {
  auto pa = a.NamedParameters();
  auto pb = b.NamedParameters();
  ASSERT_EQ(pa.size(), pb.size());
  for (size_t i = 0; i < pa.size(); ++i) {
    EXPECT_EQ(pa[i].first, pb[i].first);
    EXPECT_TRUE(at::equal(pa[i].second, pb[i].second)) << pa[i].first;
  }
}

at::Tensor Ids(std::vector<int64_t> v) {
  const int64_t n = static_cast<int64_t>(v.size());
  return at::tensor(v, at::kLong).view({1, n});
}

TEST(CausalLMTest, LoadsStoriesWithHuggingFaceNames) {
  ASSERT_OK_AND_ASSIGN(auto m, CausalLM::Load(testutil::StoriesDir(), {}));
  auto named = m->NamedParameters();
  // Tied embeddings: no lm_head; 5 layers x 9 tensors + embed + norm.
  ASSERT_EQ(named.size(), 47u);
  EXPECT_EQ(named.front().first, "model.embed_tokens.weight");
  EXPECT_EQ(named[1].first, "model.layers.0.self_attn.q_proj.weight");
  EXPECT_EQ(named.back().first, "model.norm.weight");
  ASSERT_OK_AND_ASSIGN(auto raw, ReadSafetensorsDir(testutil::StoriesDir(), at::kFloat));
  int64_t total = 0;
  for (auto& [n, t] : raw) total += t.numel();
  EXPECT_EQ(m->NumParameters(), total);
  EXPECT_EQ(m->generation_config().eos_token_ids, std::vector<int64_t>({2}));
  at::Tensor logits = m->Forward(Ids({1, 403, 407, 261, 378}));
  EXPECT_EQ(logits.sizes(), at::IntArrayRef({1, 5, 512}));
  // The golden's first greedy token after "Once upon a time".
  EXPECT_EQ(logits[0][4].argmax().item<int64_t>(), 432);
}

TEST(CausalLMTest, SaveLoadRoundTripIsBitExact) {
  ASSERT_OK_AND_ASSIGN(auto m, CausalLM::Load(testutil::StoriesDir(), {}));
  const std::string out = testutil::FreshDir("out") + "/model";
  SaveOptions so;
  so.tokenizer_source_dir = testutil::StoriesDir();
  ASSERT_OK(m->Save(out, so));
  for (const char* f : {"config.json", "generation_config.json", "model.safetensors",
                        "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"}) {
    EXPECT_TRUE(fs::exists(fs::path(out) / f)) << f;
  }
  auto cfg = testutil::ReadJson(out + "/config.json");
  EXPECT_EQ(cfg["architectures"][0], "LlamaForCausalLM");
  EXPECT_EQ(cfg["tie_word_embeddings"], true);
  EXPECT_EQ(testutil::ReadJson(out + "/generation_config.json")["eos_token_id"], 2);
  // No temp or backup directories are left beside the output.
  int siblings = 0;
  for (auto& e : fs::directory_iterator(fs::path(out).parent_path())) {
    (void)e;
    ++siblings;
  }
  EXPECT_EQ(siblings, 1);
  ASSERT_OK_AND_ASSIGN(auto back, CausalLM::Load(out, {}));
  ExpectSameParameters(*m, *back);
  // The original file's tensors are byte-identical too (same F32 data).
  ASSERT_OK_AND_ASSIGN(auto orig, ReadSafetensors(testutil::StoriesDir() + "/model.safetensors", at::kFloat));
  ASSERT_OK_AND_ASSIGN(auto saved, ReadSafetensors(out + "/model.safetensors", at::kFloat));
  ASSERT_EQ(orig.size(), saved.size());
  for (auto& [n, t] : orig) EXPECT_TRUE(at::equal(t, saved.at(n))) << n;
  // Saving again over an existing directory replaces it.
  ASSERT_OK(back->Save(out, {}));
  EXPECT_FALSE(fs::exists(fs::path(out) / "tokenizer.json"));
}

TEST(CausalLMTest, RandomFamiliesSaveAndLoad) {
  for (ModelFamily f : {ModelFamily::kLlama, ModelFamily::kMistral, ModelFamily::kQwen2,
                        ModelFamily::kQwen3}) {
    SCOPED_TRACE(static_cast<int>(f));
    ModelConfig c = testutil::TinyConfig(f);
    ASSERT_OK_AND_ASSIGN(auto m, CausalLM::FromConfig(c, 3));
    const std::string out = testutil::FreshDir(absl::StrCat("fam", static_cast<int>(f)));
    ASSERT_OK(m->Save(out, {}));
    ASSERT_OK_AND_ASSIGN(auto back, CausalLM::Load(out, {}));
    ExpectSameParameters(*m, *back);
    EXPECT_EQ(back->config().sliding_window, c.sliding_window);
    EXPECT_EQ(back->config().rope_scaling.type, c.rope_scaling.type);
    at::Tensor ids = Ids({1, 5, 9, 11, 30, 7, 8, 3, 60});
    EXPECT_TRUE(at::equal(m->Forward(ids), back->Forward(ids)));
    auto names = m->NamedParameters();
    auto has = [&](const std::string& n) {
      return std::any_of(names.begin(), names.end(), [&](auto& p) { return p.first == n; });
    };
    EXPECT_EQ(has("model.layers.0.self_attn.q_proj.bias"), f == ModelFamily::kQwen2);
    EXPECT_FALSE(has("model.layers.0.self_attn.o_proj.bias"));
    EXPECT_EQ(has("model.layers.1.self_attn.k_norm.weight"), f == ModelFamily::kQwen3);
    EXPECT_EQ(has("lm_head.weight"), f == ModelFamily::kLlama || f == ModelFamily::kMistral);
  }
}

TEST(CausalLMTest, ShardedSaveWritesIndexAndLoads) {
  ASSERT_OK_AND_ASSIGN(auto m, CausalLM::FromConfig(testutil::TinyConfig(ModelFamily::kLlama), 5));
  const std::string out = testutil::FreshDir("sharded");
  SaveOptions so;
  so.max_shard_bytes = 16 * 1024;
  ASSERT_OK(m->Save(out, so));
  EXPECT_FALSE(fs::exists(out + "/model.safetensors"));
  auto index = testutil::ReadJson(out + "/model.safetensors.index.json");
  std::set<std::string> shard_files;
  for (auto& [name, file] : index["weight_map"].items()) shard_files.insert(file.get<std::string>());
  const std::string n = absl::StrFormat("%05d", shard_files.size());
  EXPECT_GE(shard_files.size(), 3u);
  EXPECT_EQ(index["weight_map"]["model.embed_tokens.weight"], "model-00001-of-" + n + ".safetensors");
  EXPECT_EQ(index["weight_map"]["lm_head.weight"], "model-" + n + "-of-" + n + ".safetensors");
  for (const auto& f : shard_files) EXPECT_TRUE(fs::exists(out + "/" + f)) << f;
  ASSERT_OK_AND_ASSIGN(auto back, CausalLM::Load(out, {}));
  ExpectSameParameters(*m, *back);
}

TEST(CausalLMTest, Bf16SaveAndConversionOnLoad) {
  ASSERT_OK_AND_ASSIGN(auto m, CausalLM::FromConfig(testutil::TinyConfig(ModelFamily::kQwen2), 9));
  const std::string out = testutil::FreshDir("bf16");
  SaveOptions so;
  so.dtype = at::kBFloat16;
  ASSERT_OK(m->Save(out, so));
  EXPECT_EQ(testutil::ReadJson(out + "/config.json")["torch_dtype"], "bfloat16");
  ASSERT_OK_AND_ASSIGN(auto header, ReadSafetensorsHeader(out + "/model.safetensors"));
  EXPECT_EQ(header.at("model.norm.weight").dtype, "BF16");
  ASSERT_OK_AND_ASSIGN(auto back, CausalLM::Load(out, {}));  // converted to float32
  EXPECT_EQ(back->dtype(), at::kFloat);
  auto pa = m->NamedParameters();
  auto pb = back->NamedParameters();
  for (size_t i = 0; i < pa.size(); ++i) {
    EXPECT_TRUE(at::equal(pa[i].second.to(at::kBFloat16).to(at::kFloat), pb[i].second));
  }
}

TEST(CausalLMTest, PaddingLeftOrRightDoesNotChangeRealTokenLogits) {
  ASSERT_OK_AND_ASSIGN(auto m, CausalLM::Load(testutil::StoriesDir(), {}));
  at::Tensor ref = m->Forward(Ids({1, 403, 407, 261, 378}));
  at::Tensor left = at::tensor(std::vector<int64_t>{0, 0, 0, 1, 403, 407, 261, 378}).view({1, 8});
  ForwardOptions lo;
  lo.attention_mask = at::tensor(std::vector<int64_t>{0, 0, 0, 1, 1, 1, 1, 1}).view({1, 8});
  at::Tensor l = m->Forward(left, lo);
  EXPECT_TRUE(at::allclose(l.narrow(1, 3, 5), ref, 1e-5, 1e-5));
  at::Tensor right = at::tensor(std::vector<int64_t>{1, 403, 407, 261, 378, 0, 0}).view({1, 7});
  ForwardOptions ro;
  ro.attention_mask = at::tensor(std::vector<int64_t>{1, 1, 1, 1, 1, 0, 0}).view({1, 7});
  at::Tensor r = m->Forward(right, ro);
  EXPECT_TRUE(at::allclose(r.narrow(1, 0, 5), ref, 1e-5, 1e-5));
  EXPECT_FALSE(r.isnan().any().item<bool>());
  EXPECT_FALSE(l.isnan().any().item<bool>());
}

TEST(CausalLMTest, PackedSequencesDoNotAttendAcrossSegments) {
  ASSERT_OK_AND_ASSIGN(auto m, CausalLM::Load(testutil::StoriesDir(), {}));
  at::Tensor a = m->Forward(Ids({1, 403, 407, 261}));
  at::Tensor b = m->Forward(Ids({1, 378, 432}));
  ForwardOptions po;
  po.sequence_ids = at::tensor(std::vector<int64_t>{0, 0, 0, 0, 1, 1, 1}).view({1, 7});
  at::Tensor packed = m->Forward(Ids({1, 403, 407, 261, 1, 378, 432}), po);
  EXPECT_TRUE(at::allclose(packed.narrow(1, 0, 4), a, 1e-5, 1e-5));
  EXPECT_TRUE(at::allclose(packed.narrow(1, 4, 3), b, 1e-5, 1e-5));
}

TEST(CausalLMTest, KvCacheMatchesFullForward) {
  ASSERT_OK_AND_ASSIGN(auto m, CausalLM::FromConfig(testutil::TinyConfig(ModelFamily::kQwen3), 4));
  at::Tensor ids = Ids({1, 5, 9, 11, 30, 7});
  at::Tensor full = m->Forward(ids);
  KVCache cache;
  ForwardOptions fo;
  fo.cache = &cache;
  at::Tensor first = m->Forward(ids.narrow(1, 0, 4), fo);
  at::Tensor rest = m->Forward(ids.narrow(1, 4, 2), fo);
  EXPECT_EQ(cache.Length(), 6);
  EXPECT_TRUE(at::allclose(at::cat({first, rest}, 1), full, 1e-5, 1e-5));
}

TEST(CausalLMTest, SlidingWindowLimitsAttention) {
  // One Mistral layer with window 4: the output at position t sees only tokens t-3..t.
  ModelConfig c = testutil::TinyConfig(ModelFamily::kMistral);
  c.num_hidden_layers = 1;
  ASSERT_OK_AND_ASSIGN(auto m, CausalLM::FromConfig(c, 11));
  at::Tensor a = m->Forward(Ids({1, 5, 9, 11, 30, 7, 8}));
  at::Tensor b = m->Forward(Ids({40, 5, 9, 11, 30, 7, 8}));
  EXPECT_FALSE(at::allclose(a.narrow(1, 3, 1), b.narrow(1, 3, 1)));
  EXPECT_TRUE(at::equal(a.narrow(1, 4, 3), b.narrow(1, 4, 3)));
}

TEST(CausalLMTest, GradientsFlowToEveryParameter) {
  ASSERT_OK_AND_ASSIGN(auto m, CausalLM::FromConfig(testutil::TinyConfig(ModelFamily::kQwen2), 2));
  m->SetTrainable(true);
  at::Tensor ids = at::tensor(std::vector<int64_t>{1, 5, 9, 11, 0, 0, 1, 7, 8, 3, 4, 6}).view({2, 6});
  at::Tensor mask = at::tensor(std::vector<int64_t>{1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1}).view({2, 6});
  at::Tensor labels = mask.clone();
  labels.select(1, 0).fill_(0);
  at::Tensor lp = SequenceLogProbs(*m, ids, mask, labels);
  EXPECT_EQ(lp.sizes(), at::IntArrayRef({2}));
  (-lp.sum()).backward();
  for (auto& [n, t] : m->NamedParameters()) {
    ASSERT_TRUE(t.grad().defined()) << n;
    EXPECT_GT(t.grad().abs().sum().item<double>(), 0.0) << n;
  }
  // A clone is a deep, frozen copy.
  auto ref = m->Clone();
  for (auto& [n, t] : ref->NamedParameters()) EXPECT_FALSE(t.requires_grad()) << n;
  at::NoGradGuard ng;
  m->NamedParameters()[0].second.add_(1.0);
  EXPECT_FALSE(at::equal(m->NamedParameters()[0].second, ref->NamedParameters()[0].second));
}

TEST(CausalLMTest, ScalarHeadLoadsSavesAsSequenceClassification) {
  LoadOptions lo;
  lo.head = HeadKind::kScalar;
  lo.seed = 1;
  ASSERT_OK_AND_ASSIGN(auto rm, CausalLM::Load(testutil::StoriesDir(), lo));
  EXPECT_EQ(rm->NamedParameters().back().first, "score.weight");
  EXPECT_EQ(rm->NamedParameters().back().second.sizes(), at::IntArrayRef({1, 64}));
  at::Tensor ids = at::tensor(std::vector<int64_t>{0, 1, 403, 1, 403, 407}).view({2, 3});
  at::Tensor mask = at::tensor(std::vector<int64_t>{0, 1, 1, 1, 1, 1}).view({2, 3});
  ForwardOptions fo;
  fo.attention_mask = mask;
  at::Tensor scores = rm->Forward(ids, fo);
  EXPECT_EQ(scores.sizes(), at::IntArrayRef({2, 3}));
  EXPECT_EQ(scores.scalar_type(), at::kFloat);
  at::Tensor last = LastTokenScores(scores, mask);
  EXPECT_FLOAT_EQ(last[0].item<float>(), scores[0][2].item<float>());
  // Left-padded [pad, 1, 403] and unpadded [1, 403] score the same.
  at::Tensor single = rm->Forward(Ids({1, 403}));
  EXPECT_NEAR(last[0].item<float>(), single[0][1].item<float>(), 1e-5);
  const std::string out = testutil::FreshDir("rm");
  ASSERT_OK(rm->Save(out, {}));
  auto cfg = testutil::ReadJson(out + "/config.json");
  EXPECT_EQ(cfg["architectures"][0], "LlamaForSequenceClassification");
  EXPECT_EQ(cfg["num_labels"], 1);
  ASSERT_OK_AND_ASSIGN(auto back, CausalLM::Load(out, lo));
  ExpectSameParameters(*rm, *back);
}

}  // namespace
}  // namespace align::engine::model

namespace align::engine::model {
namespace {

TEST(CausalLMTest, GradientCheckpointingGivesTheSameGradients) {
  ASSERT_OK_AND_ASSIGN(auto m, CausalLM::FromConfig(testutil::TinyConfig(ModelFamily::kQwen3), 6));
  m->SetTrainable(true);
  at::Tensor ids = at::tensor(std::vector<int64_t>{1, 5, 9, 11, 0, 0, 1, 7, 8, 3, 4, 6}).view({2, 6});
  at::Tensor mask = at::tensor(std::vector<int64_t>{1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1}).view({2, 6});
  auto grads = [&](bool checkpoint) {
    for (auto& p : m->Parameters()) p.mutable_grad() = at::Tensor();
    ForwardOptions fo;
    fo.attention_mask = mask;
    fo.gradient_checkpointing = checkpoint;
    at::Tensor logits = m->Forward(ids, fo);
    (TokenLogProbs(logits, ids) * mask).sum().backward();
    std::vector<at::Tensor> out;
    for (auto& p : m->Parameters()) out.push_back(p.grad().clone());
    return out;
  };
  auto plain = grads(false);
  auto ckpt = grads(true);
  ASSERT_EQ(plain.size(), ckpt.size());
  for (size_t i = 0; i < plain.size(); ++i) {
    EXPECT_TRUE(at::allclose(plain[i], ckpt[i], 1e-5, 1e-6)) << m->NamedParameters()[i].first;
  }
}

}  // namespace
}  // namespace align::engine::model
