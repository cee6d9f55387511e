#include "worker/engine/eval/scoring.h"

#include "common/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "worker/engine/eval/gates.h"

namespace align::engine::eval {
namespace {

using ::align::testing::StatusIs;
using ::testing::HasSubstr;

TEST(TruthfulQaMc2, IssueCase) {
  ASSERT_OK_AND_ASSIGN(double mc2, TruthfulQaMc2({-2, -3}, {-1, -4}));
  EXPECT_NEAR(mc2, 0.324027, 1e-6);
}

TEST(TruthfulQaMc2, StableForVeryNegativeLogLikelihoods) {
  // exp(-2000) underflows to 0 in a naive sum; the answer only depends on differences.
  ASSERT_OK_AND_ASSIGN(double mc2, TruthfulQaMc2({-2002, -2003}, {-2001, -2004}));
  EXPECT_NEAR(mc2, 0.324027, 1e-6);
}

TEST(TruthfulQaMc2, EmptyListIsAnError) {
  EXPECT_THAT(TruthfulQaMc2({}, {-1}), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(ArgMax, FirstOnTies) {
  EXPECT_EQ(ArgMax({-3, -1, -1, -2}), 1);
  EXPECT_EQ(ArgMax({}), -1);
}

TEST(WinRate, WinsCountOneTiesHalf) {
  // Wins at 0 and 3, a tie at 1, a loss at 2: (1 + 0.5 + 0 + 1) / 4.
  EXPECT_EQ(*WinRate({2.0, 1.0, -3.0, 0.5}, {1.0, 1.0, 0.0, 0.25}), 0.625);
  EXPECT_EQ(*WinRate({1.0, 1.0}, {1.0, 1.0}), 0.5);
  EXPECT_EQ(*WinRate({-1.0}, {1.0}), 0.0);
  EXPECT_FALSE(WinRate({}, {}).ok());        // never a silent 0
  EXPECT_FALSE(WinRate({1.0}, {1.0, 2.0}).ok());
}

TEST(PreferenceAccuracy, PositiveMarginsOnlyTiesAreWrong) {
  EXPECT_EQ(*PreferenceAccuracy({0.3, -0.1, 0.0, 2.0}), 0.5);
  EXPECT_EQ(*PreferenceAccuracy({1e-9}), 1.0);
  EXPECT_FALSE(PreferenceAccuracy({}).ok());
}

TEST(JudgeRating, IssueCases) {
  EXPECT_EQ(ParseJudgeRating("Rating: [[8]]").score, 8.0);
  EXPECT_EQ(ParseJudgeRating("The answer deserves [[7]]... final verdict [[6]]").score, 6.0);
  EXPECT_EQ(ParseJudgeRating("[[10]]").score, 10.0);
  const JudgeRating none = ParseJudgeRating("see reference [1], quality is good");
  EXPECT_FALSE(none.score.has_value());
  EXPECT_THAT(none.error, HasSubstr("no [[rating]]"));
  const JudgeRating high = ParseJudgeRating("[[11]]");
  EXPECT_FALSE(high.score.has_value());
  EXPECT_THAT(high.error, HasSubstr("out of range"));
}

TEST(JudgeRating, DecimalsAndJunk) {
  EXPECT_EQ(ParseJudgeRating("Rating: [[7.5]]").score, 7.5);
  EXPECT_FALSE(ParseJudgeRating("[[0]]").score.has_value());
  EXPECT_FALSE(ParseJudgeRating("[[eight]]").score.has_value());
  EXPECT_FALSE(ParseJudgeRating("[[-3]]").score.has_value());
}

TEST(Gates, ParseOperators) {
  ASSERT_OK_AND_ASSIGN(Gate ge, ParseGate("mmlu.acc", ">= 0.25"));
  EXPECT_EQ(ge.key, "mmlu.acc");
  EXPECT_EQ(ge.op, GateOp::kGe);
  EXPECT_DOUBLE_EQ(ge.threshold, 0.25);
  ASSERT_OK_AND_ASSIGN(Gate gt, ParseGate("a", ">0.5"));
  EXPECT_EQ(gt.op, GateOp::kGt);
  ASSERT_OK_AND_ASSIGN(Gate le, ParseGate("a", "<= 1"));
  EXPECT_EQ(le.op, GateOp::kLe);
  ASSERT_OK_AND_ASSIGN(Gate lt, ParseGate("a", "< 1e-3"));
  EXPECT_EQ(lt.op, GateOp::kLt);
  EXPECT_DOUBLE_EQ(lt.threshold, 1e-3);
  ASSERT_OK_AND_ASSIGN(Gate eq, ParseGate("a", "== 1"));
  EXPECT_EQ(eq.op, GateOp::kEq);
  EXPECT_THAT(ParseGate("a", "about 0.5"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("operators: >=")));
  EXPECT_THAT(ParseGate("a", ">= x"), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(Gates, EvaluateAndReport) {
  const nlohmann::json scores = {{"mmlu", {{"acc", 0.2312}}}, {"winrate_vs_sft", 0.61}};
  ASSERT_OK_AND_ASSIGN(auto gates, ParseGates({{"mmlu.acc", ">= 0.25"},
                                               {"winrate_vs_sft", ">= 0.5"},
                                               {"truthfulqa.mc2", "> 0.3"}}));
  const auto results = EvaluateGates(gates, scores);
  ASSERT_EQ(results.size(), 3u);
  EXPECT_FALSE(results[0].passed);  // mmlu.acc
  EXPECT_FALSE(results[1].passed);  // truthfulqa.mc2 (absent)
  EXPECT_FALSE(results[1].found);
  EXPECT_TRUE(results[2].passed);   // winrate_vs_sft
  EXPECT_EQ(GateReport(results),
            "gate mmlu.acc >= 0.25 failed: value 0.2312, threshold 0.25\n"
            "gate truthfulqa.mc2 > 0.3 failed: no such score in the results");
  EXPECT_EQ(GateReport({results[2]}), "");
}

}  // namespace
}  // namespace align::engine::eval
