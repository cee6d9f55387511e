// Judged generation (MT-Bench, FastChat's single-answer grading): the questions, GPT-4 reference
// answers and judge prompts from eval/mt-bench, the per-category sampling temperatures FastChat
// uses, and judges: an OpenAI-compatible chat-completions endpoint (libcurl) or any function.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace align::engine::eval {

struct MtBenchQuestion {
  int64_t id = 0;
  std::string category;
  std::vector<std::string> turns;              // 2
  std::vector<std::string> reference_answers;  // 2 for math/reasoning/coding, else empty
};

struct JudgePrompt {
  std::string name;  // "single-v1", "single-math-v1-multi-turn", ...
  std::string system_prompt;
  std::string prompt_template;
};

//! Reads question.jsonl and reference_answer_gpt-4.jsonl from `dir`.
absl::StatusOr<std::vector<MtBenchQuestion>> LoadMtBench(const std::string& dir);
//! Reads judge_prompts.jsonl from `dir`, by name.
absl::StatusOr<std::map<std::string, JudgePrompt>> LoadJudgePrompts(const std::string& dir);

//! FastChat's sampling temperature for a category (writing/roleplay 0.7, stem/humanities 0.1,
//! extraction/math/coding/reasoning 0.0; 0.7 for others).
double MtBenchTemperature(const std::string& category);
//! Whether the category is graded against the reference answer (math, reasoning, coding).
bool MtBenchNeedsReference(const std::string& category);

//! The judge prompt name for a turn: single-v1 / single-math-v1, "-multi-turn" for turn 2.
std::string JudgePromptName(const std::string& category, int turn);
//! Fills the template's {question}, {answer}, {ref_answer_1}, {question_1}, {answer_1}, ... for
//! `turn` (1 or 2) of `q` given the model's answers.
absl::StatusOr<std::string> FillJudgePrompt(const JudgePrompt& prompt, const MtBenchQuestion& q,
                                            const std::vector<std::string>& answers, int turn);

//! A judge: (system prompt, user prompt) -> the judge's text.
using JudgeFn = std::function<absl::StatusOr<std::string>(const std::string&, const std::string&)>;

struct EndpointJudgeOptions {
  std::string base_url;     // "http://127.0.0.1:8000/v1"; /chat/completions is appended
  std::string model;        // the endpoint's model name
  std::string api_key_env;  // environment variable with the key; empty = no Authorization header
  double timeout_seconds = 120;
  int max_tokens = 2048;
};

//! A judge that calls an OpenAI-compatible chat-completions endpoint at temperature 0.
//! Unavailable (with the HTTP status and a body excerpt) when the call fails.
absl::StatusOr<JudgeFn> MakeEndpointJudge(const EndpointJudgeOptions& options);

//! Identity of a judge for the reproducibility record: "endpoint:<url>#<model>" or "model:<path>".
std::string EndpointJudgeIdentity(const EndpointJudgeOptions& options);

}  // namespace align::engine::eval
