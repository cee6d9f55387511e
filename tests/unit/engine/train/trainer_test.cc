// The training loop on a tiny random model: exact resume after a kill for SFT and DPO, and the
// step-0 DPO invariants (policy == reference gives ln 2, rewards exactly 0) with a frozen and a
// precomputed reference; an evaluation after the last step whatever eval_steps is.
#include "worker/engine/train/trainer.h"

#include <filesystem>

#include "common/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "worker/engine/data/mixer.h"
#include "worker/engine/train/checkpoint.h"
#include "tests/unit/engine/train/tiny_data.h"

namespace align::engine::train {
namespace {

namespace fs = std::filesystem;
using ::align::testing::StatusIs;
using testing::Pairs;
using testing::SftRows;
using testing::TinyConfig;

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

// Issue 5: at step 0 (policy == reference) every pair has rewards 0, margin 0 and loss ln 2,
// exactly, also with precomputed reference log-probs, shuffled data and two data sources. The
// precompute runs the trainer's own epoch-0 micro-batches, so each pair is scored in the same batch
// (same rows, same padding) by the reference and by the policy.
TEST_F(TrainerTest, DpoStepZeroIsLn2WithPrecomputedReferenceAndTwoShards) {
  auto shard_a = Pairs(5, 1);
  auto shard_b = Pairs(4, 2);
  auto pairs = data::MixSources<data::TokenizedPair>({shard_a, shard_b}, {1.0, 1.0}, 99);
  ASSERT_EQ(pairs.size(), 9u);
  auto held_out = Pairs(5, 3);
  auto policy = Load(root_ + "/base");
  auto reference = Load(root_ + "/base");
  TrainSettings s = Settings();  // batch 2 x accumulation 2, seed 11
  s.max_steps = 1;
  s.save_steps = 0;
  const std::vector<int64_t> order = EpochOrder(9, s.seed, 0);
  ASSERT_OK_AND_ASSIGN(RefLogps ref,
                       ComputeReferenceLogps(*reference, pairs, 0, s.batch_size, order));
  ASSERT_OK_AND_ASSIGN(RefLogps ref_eval, ComputeReferenceLogps(*reference, held_out, 0, 3));

  // Every pair, scored by the policy (gradients on, as in training) in its epoch-0 micro-batch.
  const DpoOptions options;
  int checked = 0;
  for (size_t b = 0; b < order.size(); b += static_cast<size_t>(s.batch_size)) {
    std::vector<int64_t> micro(order.begin() + static_cast<long>(b),
                               order.begin() + static_cast<long>(std::min(
                                   order.size(), b + static_cast<size_t>(s.batch_size))));
    std::vector<data::TokenizedPair> chunk;
    for (int64_t i : micro) chunk.push_back(pairs[static_cast<size_t>(i)]);
    data::Batch batch = data::CollatePairs(chunk, 0);
    model::ForwardOptions fo;
    fo.attention_mask = ToTensor(batch.attention_mask, batch.rows, batch.length);
    fo.position_ids = ToTensor(batch.position_ids, batch.rows, batch.length);
    CompletionLogps lp = ComputeCompletionLogps(
        policy->Forward(ToTensor(batch.input_ids, batch.rows, batch.length), fo),
        ToTensor(batch.labels, batch.rows, batch.length));
    const int64_t k = static_cast<int64_t>(micro.size());
    PairLogps l;
    l.policy_chosen = lp.sums.narrow(0, 0, k);
    l.policy_rejected = lp.sums.narrow(0, k, k);
    l.chosen_tokens = lp.counts.narrow(0, 0, k);
    l.rejected_tokens = lp.counts.narrow(0, k, k);
    std::vector<float> rc, rr;
    for (int64_t i : micro) {
      rc.push_back(ref.chosen[static_cast<size_t>(i)]);
      rr.push_back(ref.rejected[static_cast<size_t>(i)]);
    }
    l.ref_chosen = at::tensor(rc, at::kFloat);
    l.ref_rejected = at::tensor(rr, at::kFloat);
    DpoOutput out = DpoLoss(options, l);
    for (int64_t i = 0; i < k; ++i) {
      SCOPED_TRACE(::testing::Message() << "pair " << micro[static_cast<size_t>(i)]);
      EXPECT_EQ(out.chosen_rewards[i].item<float>(), 0.0f);
      EXPECT_EQ(out.rejected_rewards[i].item<float>(), 0.0f);
      EXPECT_EQ((out.chosen_rewards[i] - out.rejected_rewards[i]).item<float>(), 0.0f);
      EXPECT_NEAR(out.losses[i].item<float>(), 0.693147, 1e-6);
      ++checked;
    }
  }
  EXPECT_EQ(checked, 9);

  // The first optimizer step: loss and metrics equal the frozen-reference run's bit for bit.
  RecordingEventSink events;
  DpoObjective precomputed(pairs, held_out, 0, options, 3);
  precomputed.SetPrecomputed(ref, ref_eval);
  ASSERT_OK_AND_ASSIGN(auto eval_pre, precomputed.Evaluate(*policy));
  ASSERT_OK_AND_ASSIGN(TrainResult pre, RunTraining(*policy, precomputed, s, Paths("pre"), events));
  auto policy2 = Load(root_ + "/base");
  DpoObjective frozen(pairs, held_out, 0, options, 3);
  frozen.SetReferenceModel(reference.get());
  ASSERT_OK_AND_ASSIGN(auto eval_frozen, frozen.Evaluate(*policy2));
  ASSERT_OK_AND_ASSIGN(TrainResult fro, RunTraining(*policy2, frozen, s, Paths("frozen"), events));
  ASSERT_EQ(pre.losses.size(), 1u);
  ASSERT_EQ(fro.losses.size(), 1u);
  EXPECT_EQ(pre.losses[0], fro.losses[0]);
  EXPECT_NEAR(pre.losses[0], 0.693147, 1e-6);
  for (const auto* m : {&pre.last_metrics, &fro.last_metrics, &eval_pre, &eval_frozen}) {
    EXPECT_EQ(m->at("rewards/chosen"), 0.0);
    EXPECT_EQ(m->at("rewards/rejected"), 0.0);
    EXPECT_EQ(m->at("rewards/margins"), 0.0);
  }
  EXPECT_EQ(pre.last_metrics.at("grad_norm"), fro.last_metrics.at("grad_norm"));
  EXPECT_EQ(eval_pre.at("loss"), eval_frozen.at("loss"));
}

TEST_F(TrainerTest, ReferenceLogpsAreIndexedByPairWhateverTheOrder) {
  auto pairs = Pairs(5, 4);
  auto reference = Load(root_ + "/base");
  // One pair per micro-batch: the same batches in any order, so the same values exactly.
  ASSERT_OK_AND_ASSIGN(RefLogps in_order, ComputeReferenceLogps(*reference, pairs, 0, 1));
  ASSERT_OK_AND_ASSIGN(RefLogps shuffled,
                       ComputeReferenceLogps(*reference, pairs, 0, 1, {3, 0, 4, 1, 2}));
  EXPECT_EQ(shuffled.chosen, in_order.chosen);
  EXPECT_EQ(shuffled.rejected, in_order.rejected);
  EXPECT_THAT(ComputeReferenceLogps(*reference, pairs, 0, 2, {0, 1, 1, 3, 4}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::HasSubstr("index 1")));
  EXPECT_THAT(ComputeReferenceLogps(*reference, pairs, 0, 2, {0, 1, 2}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::HasSubstr("3 indices for 5")));
  EXPECT_EQ(EpochOrder(9, 11, 1), data::SeededPermutation(9, 12));
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

// eval_steps 2 over 5 steps: evaluations after steps 2 and 4, and after the last step (5) even
// though it is not a multiple, so the result's eval metrics are those of the final model.
TEST_F(TrainerTest, EvaluatesAfterTheLastStepWhenEvalStepsDoesNotDivideIt) {
  auto rows = SftRows(10, 3);
  auto model = Load(root_ + "/base");
  SftObjective obj(rows, SftRows(3, 8), 0, false, 4);
  TrainSettings s = Settings();
  s.max_steps = 5;
  s.eval_steps = 2;
  RecordingEventSink events;
  ASSERT_OK_AND_ASSIGN(TrainResult r, RunTraining(*model, obj, s, Paths("e"), events));
  std::vector<int64_t> eval_steps;
  nlohmann::json last_eval;
  for (const auto& e : events.events) {
    if (e["event"] != "eval") continue;
    eval_steps.push_back(e["step"].get<int64_t>());
    last_eval = e["metrics"];
  }
  EXPECT_THAT(eval_steps, ::testing::ElementsAre(2, 4, 5));
  ASSERT_OK_AND_ASSIGN(auto fresh, obj.Evaluate(*model));
  ASSERT_TRUE(fresh.count("loss"));
  EXPECT_EQ(r.eval_metrics["loss"], fresh["loss"]);
  EXPECT_EQ(last_eval["eval/loss"].get<double>(), fresh["loss"]);

  // A multiple of eval_steps ends with exactly one evaluation at the last step.
  auto model4 = Load(root_ + "/base");
  SftObjective obj4(rows, SftRows(3, 8), 0, false, 4);
  s.max_steps = 4;
  RecordingEventSink events4;
  ASSERT_OK(RunTraining(*model4, obj4, s, Paths("e4"), events4).status());
  eval_steps.clear();
  for (const auto& e : events4.events) {
    if (e["event"] == "eval") eval_steps.push_back(e["step"].get<int64_t>());
  }
  EXPECT_THAT(eval_steps, ::testing::ElementsAre(2, 4));
}

}  // namespace
}  // namespace align::engine::train
