#include "worker/engine/train/losses.h"

#include <cmath>

#include "common/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace align::engine::train {
namespace {

using ::align::testing::IsOk;
using ::align::testing::StatusIs;

at::Tensor T(std::vector<float> v) { return at::tensor(v, at::kFloat); }

PairLogps Sums(double pc, double pr, double rc, double rr, double nc, double nr) {
  return {T({static_cast<float>(pc)}), T({static_cast<float>(pr)}), T({static_cast<float>(rc)}),
          T({static_cast<float>(rr)}), T({static_cast<float>(nc)}), T({static_cast<float>(nr)})};
}

// Prompt 3 tokens (policy -1.0, ref -1.2 each) must be masked out; completions give the loss.
TEST(DpoLossTest, SigmoidBugReportCaseFromLogits) {
  // Build logits whose log-softmax gives exactly the per-token log-probs, then go through the
  // masked completion-logps path so prompt masking is exercised too.
  auto row_logits = [](std::vector<double> token_logps, std::vector<int64_t> ids, int64_t vocab) {
    // logits: at position t (predicting ids[t+1]) put log p on the target and spread the rest.
    const int64_t t = static_cast<int64_t>(ids.size());
    at::Tensor logits = at::full({1, t, vocab}, -1e9, at::kDouble);
    for (int64_t i = 0; i + 1 < t; ++i) {
      const double lp = token_logps[static_cast<size_t>(i)];
      const double rest = std::log((1 - std::exp(lp)) / static_cast<double>(vocab - 1));
      logits[0][i].fill_(rest);
      logits[0][i][ids[static_cast<size_t>(i + 1)]] = lp;
    }
    logits[0][t - 1].fill_(0);
    return logits.to(at::kFloat);
  };
  // Sequence: BOS + prompt(3) + completion(2); label of t predicted by position t-1.
  std::vector<int64_t> ids = {1, 5, 6, 7, 8, 9};
  at::Tensor labels = at::tensor({-100, -100, -100, -100, 8, 9}, at::kLong).unsqueeze(0);
  auto lp = [&](double prompt, double completion) {
    return row_logits({prompt, prompt, prompt, completion, completion}, ids, 16);
  };
  auto pc = ComputeCompletionLogps(lp(-1.0, -0.5), labels);
  auto rc = ComputeCompletionLogps(lp(-1.2, -0.6), labels);
  auto pr = ComputeCompletionLogps(lp(-1.0, -0.9), labels);
  auto rr = ComputeCompletionLogps(lp(-1.2, -0.8), labels);
  EXPECT_NEAR(pc.sums.item<double>(), -1.0, 1e-5);
  EXPECT_EQ(pc.counts.item<double>(), 2.0);
  PairLogps l{pc.sums, pr.sums, rc.sums, rr.sums, pc.counts, pr.counts};
  DpoOptions o;
  o.beta = 0.1;
  DpoOutput out = DpoLoss(o, l);
  EXPECT_NEAR(out.losses.item<double>(), 0.673347, 1e-5);
}

TEST(DpoLossTest, PolicyEqualsReferenceGivesLn2) {
  DpoOptions o;
  at::Tensor p = T({-3.0f, -7.5f, -1.25f});
  PairLogps l{p, p * 2, p, p * 2, T({2, 3, 1}), T({4, 3, 2})};
  DpoOutput out = DpoLoss(o, l);
  for (int i = 0; i < 3; ++i) {
    EXPECT_NEAR(out.losses[i].item<double>(), 0.693147, 1e-6);
    EXPECT_EQ(out.chosen_rewards[i].item<double>(), 0.0);
  }
  auto m = DpoMetrics(out, l, at::Tensor(), at::Tensor());
  EXPECT_EQ(m["rewards/margins"], 0.0);
  EXPECT_EQ(m["rewards/accuracies"], 0.0);
}

TEST(DpoLossTest, IpoUsesAveragedLogps) {
  DpoOptions o;
  o.loss_type = DpoLossType::kIpo;
  DpoOutput out = DpoLoss(o, Sums(-2.0, -8.0, -3.0, -7.2, 2, 4));
  EXPECT_NEAR(out.losses.item<double>(), 18.49, 1e-4);
}

TEST(DpoLossTest, ConservativeLabelSmoothing) {
  DpoOptions o;
  o.label_smoothing = 0.1;
  // chosen-minus-rejected log-ratio 2.0
  DpoOutput out = DpoLoss(o, Sums(0.0, 0.0, -2.0, 0.0, 1, 1));
  EXPECT_NEAR(out.losses.item<double>(), 0.618139, 1e-6);
  o.label_smoothing = 0.0;
  EXPECT_NEAR(DpoLoss(o, Sums(0.0, 0.0, -2.0, 0.0, 1, 1)).losses.item<double>(), 0.598139, 1e-6);
  o.label_smoothing = 0.5;
  EXPECT_THAT(ValidateDpoOptions(o), StatusIs(absl::StatusCode::kInvalidArgument));
  o.label_smoothing = 0.49;
  EXPECT_THAT(ValidateDpoOptions(o), IsOk());
}

TEST(DpoLossTest, HingeRobustSimpoSftTerm) {
  DpoOptions o;
  o.loss_type = DpoLossType::kHinge;
  EXPECT_NEAR(DpoLoss(o, Sums(0, 0, -2, 0, 1, 1)).losses.item<double>(), 0.8, 1e-6);
  o.loss_type = DpoLossType::kRobust;
  o.label_smoothing = 0.1;
  // (0.9 * 0.598139 - 0.1 * 0.798139) / 0.8
  EXPECT_NEAR(DpoLoss(o, Sums(0, 0, -2, 0, 1, 1)).losses.item<double>(),
              (0.9 * 0.5981388693 - 0.1 * 0.7981388693) / 0.8, 1e-6);
  o = DpoOptions();
  o.loss_type = DpoLossType::kSimPo;
  o.beta = 2.0;
  o.simpo_gamma = 0.5;
  // avg chosen -1, avg rejected -2: -logsigmoid(2*1 - 0.5)
  EXPECT_NEAR(DpoLoss(o, Sums(-2, -8, 0, 0, 2, 4)).losses.item<double>(),
              std::log1p(std::exp(-1.5)), 1e-6);
  o = DpoOptions();
  o.sft_weight = 0.5;
  // ln 2 + 0.5 * (2 / 2)
  EXPECT_NEAR(DpoLoss(o, Sums(-2, -3, -2, -3, 2, 1)).losses.item<double>(), 0.693147 + 0.5, 1e-6);
}

TEST(TokenLossTest, GradientAccumulationIsMeanOverAllTokens) {
  at::Tensor mb1 = T({4.0f});
  at::Tensor mb2 = T({1.0f, 1.0f, 1.0f});
  const int64_t global = 4;
  const double step = GlobalMeanShare(mb1, global).item<double>() +
                      GlobalMeanShare(mb2, global).item<double>();
  EXPECT_DOUBLE_EQ(step, 1.75);
}

TEST(TokenLossTest, EmptyBatchIsZeroNotNan) {
  at::Tensor logits = at::randn({1, 4, 8});
  at::Tensor labels = at::full({1, 4}, -100, at::kLong);
  TokenNll nll = ComputeTokenNll(logits, labels);
  EXPECT_EQ(nll.tokens, 0);
  at::Tensor loss = GlobalMeanShare(nll.nll, nll.tokens);
  EXPECT_EQ(loss.item<double>(), 0.0);
  EXPECT_FALSE(std::isnan(loss.item<double>()));
}

TEST(TokenLossTest, PackedLossEqualsSumOfSeparateLosses) {
  at::manual_seed(3);
  at::Tensor la = at::randn({1, 3, 10});
  at::Tensor lb = at::randn({1, 5, 10});
  at::Tensor ya = at::tensor({1, 2, 3}, at::kLong).unsqueeze(0);
  at::Tensor yb = at::tensor({4, 5, 6, 7, 8}, at::kLong).unsqueeze(0);
  const double separate = ComputeTokenNll(la, ya).nll.sum().item<double>() +
                          ComputeTokenNll(lb, yb).nll.sum().item<double>();
  // Packed: the boundary label is -100 (data::PackExamples); the model's logits per segment are
  // the same because attention and positions restart.
  at::Tensor lp = at::cat({la, lb}, 1);
  at::Tensor yp = at::tensor({1, 2, 3, -100, 5, 6, 7, 8}, at::kLong).unsqueeze(0);
  TokenNll packed = ComputeTokenNll(lp, yp);
  EXPECT_EQ(packed.tokens, 6);
  EXPECT_NEAR(packed.nll.sum().item<double>(), separate, 1e-5);
}

TEST(RewardLossTest, BradleyTerryAndCentering) {
  at::Tensor c = T({1.0f, 0.0f});
  at::Tensor r = T({0.0f, 1.0f});
  EXPECT_NEAR(BradleyTerryLoss(c, r, 0).item<double>(), (std::log1p(std::exp(-1.0)) + std::log1p(std::exp(1.0))) / 2, 1e-6);
  EXPECT_NEAR(BradleyTerryLoss(c, r, 0.01).item<double>(),
              (std::log1p(std::exp(-1.0)) + std::log1p(std::exp(1.0))) / 2 + 0.01, 1e-6);
  auto m = RewardMetrics(c, r);
  EXPECT_EQ(m["accuracy"], 0.5);
  EXPECT_EQ(m["margin"], 0.0);
  EXPECT_EQ(m["reward/max"], 1.0);
  EXPECT_EQ(m["reward/min"], 0.0);
}

}  // namespace
}  // namespace align::engine::train
