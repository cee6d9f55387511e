// The training loop on a tiny random model: exact resume after a kill for SFT and DPO, and the
// step-0 DPO invariants (policy == reference gives ln 2) with a frozen and a precomputed reference.
#include "worker/engine/train/trainer.h"

#include <filesystem>

#include "common/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "worker/engine/data/mixer.h"
#include "worker/engine/train/checkpoint.h"

namespace align::engine::train {
namespace {

namespace fs = std::filesystem;

model::ModelConfig TinyConfig() {
  model::ModelConfig c;
  c.hidden_size = 16;
  c.intermediate_size = 32;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 2;
  c.num_key_value_heads = 1;
  c.head_dim = 8;
  c.vocab_size = 32;
  c.max_position_embeddings = 64;
  c.rms_norm_eps = 1e-5;
  c.tie_word_embeddings = true;
  c.bos_token_id = 1;
  c.eos_token_ids = {2};
  return c;
}

class TrainerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = ::testing::TempDir() + "/trainer_test_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name();
    fs::remove_all(root_);
    fs::create_directories(root_);
    auto m = model::CausalLM::FromConfig(TinyConfig(), 7);
    ASSERT_OK(m.status());
    ASSERT_OK((*m)->Save(root_ + "/base"));
  }
  void TearDown() override { fs::remove_all(root_); }

  std::unique_ptr<model::CausalLM> Load(const std::string& dir) {
    model::LoadOptions o;
    o.trainable = true;
    auto m = model::CausalLM::Load(dir, o);
    EXPECT_OK(m.status());
    return m.ok() ? std::move(*m) : nullptr;
  }

  static std::vector<data::PackedRow> SftRows(int n, uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::vector<data::PackedRow> rows;
    for (int i = 0; i < n; ++i) {
      data::TokenizedExample ex;
      const int len = 5 + static_cast<int>(rng() % 6);
      ex.ids.push_back(1);
      ex.mask.push_back(0);
      for (int t = 1; t < len; ++t) {
        ex.ids.push_back(3 + static_cast<int32_t>(rng() % 29));
        ex.mask.push_back(t > 2 ? 1 : 0);
      }
      ex.ids.push_back(2);
      ex.mask.push_back(1);
      rows.push_back(data::ToRow(ex));
    }
    return rows;
  }

  static std::vector<data::TokenizedPair> Pairs(int n, uint64_t seed) {
    std::mt19937_64 rng(seed);
    auto seq = [&](int len) {
      std::vector<int32_t> v;
      for (int t = 0; t < len; ++t) v.push_back(3 + static_cast<int32_t>(rng() % 29));
      return v;
    };
    std::vector<data::TokenizedPair> pairs;
    for (int i = 0; i < n; ++i) {
      data::TokenizedPair p;
      p.prompt = seq(2 + static_cast<int>(rng() % 3));
      p.prompt.insert(p.prompt.begin(), 1);
      p.chosen = seq(2 + static_cast<int>(rng() % 3));
      p.chosen.push_back(2);
      p.rejected = seq(1 + static_cast<int>(rng() % 4));
      p.rejected.push_back(2);
      pairs.push_back(p);
    }
    return pairs;
  }

  TrainSettings Settings() const {
    TrainSettings s;
    s.learning_rate = 5e-3;
    s.batch_size = 2;
    s.gradient_accumulation_steps = 2;
    s.max_steps = 6;
    s.save_steps = 3;
    s.warmup_steps = 1;
    s.seed = 11;
    return s;
  }

  TrainPaths Paths(const std::string& name) const {
    TrainPaths p;
    p.checkpoint_root = root_ + "/" + name + "/checkpoints";
    return p;
  }

  std::string root_;
};

TEST_F(TrainerTest, SftResumeContinuesExactly) {
  auto rows = SftRows(10, 3);
  RecordingEventSink events;
  auto full_model = Load(root_ + "/base");
  SftObjective full_obj(rows, {}, 0, false, 4);
  ASSERT_OK_AND_ASSIGN(TrainResult full, RunTraining(*full_model, full_obj, Settings(), Paths("a"), events));
  ASSERT_EQ(full.losses.size(), 6u);

  // Killed after step 4: the newest complete checkpoint is step 3.
  TrainSettings killed = Settings();
  killed.stop_after_steps = 4;
  auto m1 = Load(root_ + "/base");
  SftObjective o1(rows, {}, 0, false, 4);
  ASSERT_OK_AND_ASSIGN(TrainResult first, RunTraining(*m1, o1, killed, Paths("b"), events));
  ASSERT_EQ(first.losses.size(), 4u);
  TrainPaths resume = Paths("b");
  resume.resume_from = resume.checkpoint_root;
  ASSERT_OK_AND_ASSIGN(auto ckpt, ResolveResumeCheckpoint(resume.resume_from));
  ASSERT_TRUE(ckpt.has_value());
  EXPECT_THAT(*ckpt, ::testing::EndsWith("checkpoint-3"));
  auto m2 = Load(*ckpt);
  SftObjective o2(rows, {}, 0, false, 4);
  ASSERT_OK_AND_ASSIGN(TrainResult second, RunTraining(*m2, o2, Settings(), resume, events));
  ASSERT_EQ(second.losses.size(), 3u);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(second.losses[i], full.losses[3 + i]) << "step " << 4 + i;
  for (int i = 0; i < 4; ++i) EXPECT_EQ(first.losses[i], full.losses[i]);
  EXPECT_LT(full.losses.back(), full.losses.front());
}

TEST_F(TrainerTest, DpoResumeContinuesExactly) {
  auto pairs = Pairs(12, 5);
  auto base = Load(root_ + "/base");
  auto reference = base->Clone();
  RecordingEventSink events;
  DpoObjective full_obj(pairs, {}, 0, DpoOptions(), 4);
  full_obj.SetReferenceModel(reference.get());
  ASSERT_OK_AND_ASSIGN(TrainResult full, RunTraining(*base, full_obj, Settings(), Paths("a"), events));
  ASSERT_EQ(full.losses.size(), 6u);
  EXPECT_NEAR(full.losses[0], std::log(2.0), 1e-6);

  TrainSettings killed = Settings();
  killed.stop_after_steps = 5;
  auto m1 = Load(root_ + "/base");
  DpoObjective o1(pairs, {}, 0, DpoOptions(), 4);
  o1.SetReferenceModel(reference.get());
  ASSERT_OK(RunTraining(*m1, o1, killed, Paths("b"), events).status());
  TrainPaths resume = Paths("b");
  resume.resume_from = resume.checkpoint_root;
  ASSERT_OK_AND_ASSIGN(auto ckpt, ResolveResumeCheckpoint(resume.resume_from));
  auto m2 = Load(ckpt.value_or(""));
  DpoObjective o2(pairs, {}, 0, DpoOptions(), 4);
  o2.SetReferenceModel(reference.get());
  ASSERT_OK_AND_ASSIGN(TrainResult second, RunTraining(*m2, o2, Settings(), resume, events));
  ASSERT_EQ(second.losses.size(), 3u);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(second.losses[i], full.losses[3 + i]) << "step " << 4 + i;
  EXPECT_GT(full.last_metrics["rewards/accuracies"], 0.0);
}

TEST_F(TrainerTest, DpoStepZeroIsLn2WithPrecomputedReferenceAndTwoShards) {
  auto shard_a = Pairs(5, 1);
  auto shard_b = Pairs(4, 2);
  auto pairs = data::MixSources<data::TokenizedPair>({shard_a, shard_b}, {1.0, 1.0}, 99);
  ASSERT_EQ(pairs.size(), 9u);
  auto policy = Load(root_ + "/base");
  auto reference = Load(root_ + "/base");
  ASSERT_OK_AND_ASSIGN(RefLogps ref, ComputeReferenceLogps(*reference, pairs, 0, 4));
  DpoObjective obj(pairs, {}, 0, DpoOptions(), 4);
  obj.SetPrecomputed(ref, {});
  std::vector<int64_t> all = data::SeededPermutation(9, 5);
  ASSERT_OK_AND_ASSIGN(auto m, obj.Score(*policy, false, all));
  // Precomputed in other batches (other padding lengths), so float sums may differ in the last
  // bits: zero to 1e-6, i.e. at the precision the figures are reported.
  EXPECT_NEAR(m["loss"], 0.693147, 1e-6);
  EXPECT_NEAR(m["rewards/chosen"], 0.0, 1e-6);
  EXPECT_NEAR(m["rewards/rejected"], 0.0, 1e-6);
  EXPECT_NEAR(m["rewards/margins"], 0.0, 1e-6);
  DpoObjective frozen(pairs, {}, 0, DpoOptions(), 4);
  frozen.SetReferenceModel(reference.get());
  ASSERT_OK_AND_ASSIGN(auto m2, frozen.Score(*policy, false, all));
  // A frozen reference sees the same batches as the policy: exactly zero.
  EXPECT_NEAR(m2["loss"], 0.693147, 1e-6);
  EXPECT_EQ(m2["rewards/chosen"], 0.0);
  EXPECT_EQ(m2["rewards/margins"], 0.0);
}

TEST_F(TrainerTest, RewardModelLearnsAndReportsMetrics) {
  model::LoadOptions o;
  o.trainable = true;
  o.head = model::HeadKind::kScalar;
  o.seed = 3;
  ASSERT_OK_AND_ASSIGN(auto rm, model::CausalLM::Load(root_ + "/base", o));
  auto pairs = Pairs(8, 9);
  RewardObjective obj(pairs, pairs, 0, 0.01, 4);
  TrainSettings s = Settings();
  s.save_steps = 0;
  s.max_steps = 8;
  s.learning_rate = 1e-2;
  RecordingEventSink events;
  ASSERT_OK_AND_ASSIGN(TrainResult r, RunTraining(*rm, obj, s, Paths("rm"), events));
  EXPECT_GT(r.eval_metrics["accuracy"], 0.5);
  EXPECT_TRUE(r.last_metrics.count("reward/mean"));
}

}  // namespace
}  // namespace align::engine::train
