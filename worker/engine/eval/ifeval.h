// IFEval (Zhou et al. 2023, google-research/instruction_following_eval): the 25 verifiable
// instruction checkers, strict and loose, with prompt- and instruction-level accuracy. Follows
// the reference implementation's rules; where it leans on NLTK (sentence and word tokenizers)
// or langdetect, the approximations used are listed in docs/evaluation.md.
#pragma once

#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"

namespace align::engine::eval {

//! One IFEval prompt (a line of input_data.jsonl).
struct IfEvalPrompt {
  int64_t key = 0;
  std::string prompt;
  std::vector<std::string> instruction_ids;
  std::vector<nlohmann::json> kwargs;  // one object per instruction (null values = absent)
};

//! The instruction ids the checkers know (the reference registry's 25).
std::vector<std::string> IfEvalInstructionIds();

//! Whether `response` follows one instruction, exactly as the reference's check_following
//! (an empty or all-whitespace response never follows). InvalidArgument for an unknown id or a
//! missing/ill-typed argument.
absl::StatusOr<bool> CheckInstruction(const std::string& instruction_id,
                                      const nlohmann::json& kwargs, const std::string& response);

//! Per-instruction results for one prompt: strict, and loose (the instruction counts as followed
//! when any of the response, its first line removed, last line removed, both, and those four
//! with asterisks removed follows it).
struct IfEvalOutcome {
  std::vector<bool> strict;
  std::vector<bool> loose;
};
absl::StatusOr<IfEvalOutcome> EvaluateIfEvalPrompt(const IfEvalPrompt& prompt,
                                                   const std::string& response);

struct IfEvalScores {
  double prompt_strict = 0, instruction_strict = 0, prompt_loose = 0, instruction_loose = 0;
  int prompts = 0, instructions = 0;
  //! Strict accuracy per instruction id.
  std::map<std::string, double> per_instruction_strict;
};

//! Scores responses (same order and size as prompts).
absl::StatusOr<IfEvalScores> ScoreIfEval(const std::vector<IfEvalPrompt>& prompts,
                                         const std::vector<std::string>& responses);

//! Reads input_data.jsonl. Errors name the file and line.
absl::StatusOr<std::vector<IfEvalPrompt>> LoadIfEvalPrompts(const std::string& path);
//! Reads a {"prompt", "response"} jsonl into prompt -> response.
absl::StatusOr<std::map<std::string, std::string>> LoadIfEvalResponses(const std::string& path);

//! The reference's split_into_sentences (its regex sentence splitter).
std::vector<std::string> SplitIntoSentences(const std::string& text);

}  // namespace align::engine::eval
