#ifndef ALIGN_COMMON_EVAL_SCORES_H_
#define ALIGN_COMMON_EVAL_SCORES_H_

// The score paths an eval stage writes into results.json "scores" (worker/engine/eval), so that a
// pipeline spec's gates can be checked when it is validated, long before the eval stage runs: a
// gate on a path the engine never writes would otherwise fail only at the end of the pipeline.
// The engine's tests hold every path it writes against this list (eval_stage_test).

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace align {

// The eval suites, in the order the docs list them.
const std::vector<std::string>& EvalSuiteNames();

// The MT-Bench question categories.
const std::vector<std::string>& MtBenchCategories();

// What a stage evaluates: its suites and the names of its models (the keys of `models`; a stage
// with only `model:` has the single name "model").
struct EvalScoreContext {
  std::vector<std::string> suites;
  std::vector<std::string> model_names;
};

// OK when `path` (dotted, e.g. "mmlu.acc", "preference_accuracy.candidate",
// "winrate_vs_baseline", "mt_bench.categories.math.score") is a numeric score the stage writes;
// else InvalidArgument saying what is expected (with a did-you-mean where one is close).
absl::Status CheckEvalScorePath(absl::string_view path, const EvalScoreContext& context);

}  // namespace align

#endif  // ALIGN_COMMON_EVAL_SCORES_H_
