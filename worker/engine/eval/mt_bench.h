// MT-Bench judged generation (FastChat's gen_model_answer + gen_judgment "single" mode + its
// show_result averages), with the answering model and the judge injected, so the loop is tested
// without a model or a network. The eval stage wires a CausalLM and an endpoint or engine judge in.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"
#include "worker/engine/eval/judge.h"
#include "worker/engine/eval/scoring.h"

namespace align::engine::eval {

//! The eight MT-Bench categories, in question-file order.
const std::vector<std::string>& MtBenchCategories();

//! The questions to run: those in `categories` (all when empty), in file order, at most `limit`
//! per category (0 = all; as MMLU's limit is per subject, so a small limit still covers every
//! category). InvalidArgument naming the category when one has no questions.
absl::StatusOr<std::vector<MtBenchQuestion>> SelectMtBenchQuestions(
    const std::vector<MtBenchQuestion>& all, const std::vector<std::string>& categories,
    int64_t limit);

//! Answers each conversation (OpenAI-style messages, ending with a user message) at
//! `temperature` (0 = greedy); one answer per conversation, in order.
using ChatGenerateFn = std::function<absl::StatusOr<std::vector<std::string>>(
    const std::vector<nlohmann::json>& conversations, double temperature)>;
//! Judges (system prompt, user prompt) pairs; one judgment text per pair, in order.
using BatchJudgeFn = std::function<absl::StatusOr<std::vector<std::string>>(
    const std::vector<std::pair<std::string, std::string>>& prompts)>;

//! A per-call judge as a batch judge: calls it in order; a call failing with Unavailable is
//! retried up to `attempts` times in all, waiting `retry_delay_seconds` (doubled each retry).
BatchJudgeFn SequentialJudge(JudgeFn judge, int attempts = 3, double retry_delay_seconds = 1.0);

struct MtBenchTurn {
  std::string answer;
  std::string judge_prompt;  // the judge prompt's name, e.g. "single-math-v1-multi-turn"
  std::string judgment;
  JudgeRating rating;        // rating.score unset = a parse failure (counted, excluded)
};

struct MtBenchItem {
  int64_t question_id = 0;
  std::string category;
  double temperature = 0;
  std::vector<MtBenchTurn> turns;  // 2
};

struct MtBenchResult {
  std::vector<MtBenchItem> items;
  //! The scores: {"score": mean of all rated turns, "turn_1", "turn_2", "questions", "judged",
  //! "rated", "parse_failures", "categories": {<c>: {"score", "rated", "parse_failures"}}}.
  //! A mean over nothing rated is null (never 0), so a gate on it fails.
  nlohmann::json ToJson() const;
  //! One JSON object per question: id, category, temperature, and per turn the answer, judge
  //! prompt name, judgment, rating (or the parse error).
  std::string ToJsonl() const;
};

//! FastChat's single-answer grading: turn 1 of every question is answered (grouped by the
//! category's temperature), then turn 2 with turn 1's answer in the conversation; each turn is
//! graded with JudgePromptName(category, turn) (reference answers for math/reasoning/coding,
//! the multi-turn prompt for turn 2) and its rating parsed with ParseJudgeRating. Errors: a
//! judge prompt missing from `prompts`, a missing reference answer, the generator's or judge's
//! errors, or a count mismatch.
absl::StatusOr<MtBenchResult> RunMtBench(const std::vector<MtBenchQuestion>& questions,
                                         const std::map<std::string, JudgePrompt>& prompts,
                                         const ChatGenerateFn& generate, const BatchJudgeFn& judge);

//! SHA-256 of the single-answer judge prompts (name, system prompt, template of single-v1,
//! single-math-v1 and their -multi-turn forms, in name order): the judge prompt's identity.
absl::StatusOr<std::string> SingleJudgePromptsSha256(const std::map<std::string, JudgePrompt>& prompts);

}  // namespace align::engine::eval
