// The score paths an eval stage writes, as the spec validator checks gates against them. The
// engine side of the contract is EvalStage.EveryWrittenScoreIsAGateablePath (eval_test).
#include "common/eval_scores.h"

#include <gtest/gtest.h>

namespace align {
namespace {

std::string Check(const std::string& path, EvalScoreContext context) {
  absl::Status st = CheckEvalScorePath(path, context);
  return st.ok() ? "ok" : std::string(st.message());
}

TEST(EvalScorePaths, AcceptsWhatTheEngineWrites) {
  const EvalScoreContext c{{"mmlu", "truthfulqa", "ifeval", "preference_accuracy", "winrate", "mt_bench"},
                           {"baseline", "candidate", "reward_model"}};
  for (const char* path :
       {"mmlu.acc", "mmlu.questions", "mmlu.subjects.anatomy.acc", "mmlu.categories.stem.questions",
        "truthfulqa.mc1", "truthfulqa.mc2", "ifeval.prompt_strict", "ifeval.instruction_loose",
        "preference_accuracy.candidate", "preference_accuracy.baseline",
        "preference_accuracy.implicit_reward", "preference_accuracy.pairs", "winrate_vs_baseline",
        "mt_bench.score", "mt_bench.turn_2", "mt_bench.parse_failures",
        "mt_bench.categories.math.score"}) {
    EXPECT_EQ(Check(path, c), "ok") << path;
  }
}

TEST(EvalScorePaths, RefusesWithWhatIsExpected) {
  const EvalScoreContext c{{"mmlu", "preference_accuracy", "winrate"}, {"candidate", "sft", "reward_model"}};
  EXPECT_EQ(Check("mmlu.acc.candidate", c),
            "no score \"mmlu.acc.candidate\": mmlu.acc is a single number; drop \".candidate\"");
  EXPECT_EQ(Check("preference_accuracy.acc.candidate", c),
            "no score \"preference_accuracy.acc.candidate\": preference_accuracy has pairs, candidate");
  EXPECT_EQ(Check("winrate_vs_sft", c), "ok");
  EXPECT_EQ(Check("winrate_vs_baseline", c),
            "no score \"winrate_vs_baseline\": winrate has winrate_vs_sft");
  EXPECT_EQ(Check("truthfulqa.mc2", c),
            "no score \"truthfulqa.mc2\": a score path starts with a suite this stage runs: mmlu, "
            "preference_accuracy, winrate_vs_<model>");
  EXPECT_EQ(Check("mmlu.subjects.anatomy", c),
            "no score \"mmlu.subjects.anatomy\": expected mmlu.subjects.<name>.<acc|questions>");
  EXPECT_EQ(Check("mmlu", c),
            "no score \"mmlu\": mmlu is a group; expected one of its scores: acc, questions, "
            "subjects.<name>.<leaf>, categories.<name>.<leaf>");
  EXPECT_EQ(Check("mmlu.categories.STEM.acc", c),
            "no score \"mmlu.categories.STEM.acc\": mmlu.categories has stem, humanities, "
            "social_sciences, other; did you mean stem?");
  EXPECT_EQ(Check("mmlu..acc", c), "no score \"mmlu..acc\": expected a dotted score path such as mmlu.acc");
}

TEST(EvalScorePaths, MtBenchCategoriesAreKnown) {
  const EvalScoreContext c{{"mt_bench"}, {}};
  EXPECT_EQ(Check("mt_bench.categories.maths.score", c),
            "no score \"mt_bench.categories.maths.score\": mt_bench.categories has writing, roleplay, "
            "reasoning, math, coding, extraction, stem, humanities; did you mean math?");
  EXPECT_EQ(Check("mt_bench.categories.math.turn_1", c),
            "no score \"mt_bench.categories.math.turn_1\": mt_bench.categories.math has score, rated, "
            "parse_failures");
}

TEST(EvalScorePaths, WinrateNeedsAnotherModel) {
  EXPECT_EQ(Check("winrate_vs_sft", {{"winrate"}, {"candidate", "reward_model"}}),
            "no score \"winrate_vs_sft\": winrate compares the candidate with the stage's other "
            "models, and this stage has none");
}

}  // namespace
}  // namespace align
