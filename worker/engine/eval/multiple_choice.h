// Multiple-choice suites scored by log-likelihood, built the way lm-evaluation-harness builds
// them so numbers compare with published ones: MMLU (hendrycks/test CSVs, k-shot from dev) and
// TruthfulQA MC1/MC2 (the CSV's best/correct/incorrect answers, the 6-example QA primer).
// Scoring goes through a LoglikFn, so the suites are tested without a model.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"

namespace align::engine::eval {

//! One log-likelihood question: log p(continuation | context).
struct LoglikRequest {
  std::string context;
  std::string continuation;
};
struct LoglikResult {
  double loglik = 0;
  bool greedy = false;  // every continuation token was the argmax
};
//! Scores many requests (results in request order).
using LoglikFn =
    std::function<absl::StatusOr<std::vector<LoglikResult>>(const std::vector<LoglikRequest>&)>;

// ---- MMLU ----

struct MmluQuestion {
  std::string subject;  // "abstract_algebra"
  std::string question;
  std::vector<std::string> choices;  // 4
  int answer = 0;                    // 0..3
};

//! Reads <mmlu_dir>/<split>/<subject>_<split>.csv (headerless question,A,B,C,D,answer).
absl::StatusOr<std::vector<MmluQuestion>> LoadMmluSubject(const std::string& mmlu_dir,
                                                          const std::string& subject,
                                                          const std::string& split);
//! The subjects present in <mmlu_dir>/test, sorted.
absl::StatusOr<std::vector<std::string>> MmluSubjects(const std::string& mmlu_dir);
//! categories.json: subject -> category key (stem, humanities, social_sciences, other: the
//! file's names as lm-evaluation-harness writes its MMLU groups).
absl::StatusOr<std::map<std::string, std::string>> LoadMmluCategories(const std::string& mmlu_dir);

//! "question\nA. ..\nB. ..\nC. ..\nD. ..\nAnswer:" (question stripped, as lm-eval does).
std::string MmluQuestionText(const MmluQuestion& q);
//! The full context: subject header, `shots` dev examples ("... Answer: B"), the question.
std::string MmluContext(const std::string& subject, const std::vector<MmluQuestion>& dev,
                        int shots, const MmluQuestion& question);
//! The continuations " A", " B", " C", " D".
const std::vector<std::string>& MmluContinuations();

struct MmluOptions {
  int shots = 5;
  std::vector<std::string> subjects;  // empty = all
  int64_t limit = 0;                  // questions per subject; 0 = all
};

struct MmluScores {
  double acc = 0;  // size-weighted mean over the questions scored
  int64_t questions = 0;
  std::map<std::string, std::pair<int64_t, int64_t>> subjects;    // correct, total
  std::map<std::string, std::pair<int64_t, int64_t>> categories;  // correct, total
  std::vector<std::string> files;  // test and dev CSVs read (for the reproducibility record)
  std::string template_text;       // the prompt template (hashed into the record)
  nlohmann::json ToJson() const;
};

absl::StatusOr<MmluScores> RunMmlu(const std::string& mmlu_dir, const MmluOptions& options,
                                   const LoglikFn& loglik);

// ---- TruthfulQA ----

struct TruthfulQaQuestion {
  std::string question;
  std::string best;
  std::vector<std::string> correct;    // MC2 true answers (best included)
  std::vector<std::string> incorrect;  // false answers
};

//! Reads TruthfulQA.csv (Type,Category,Question,Best Answer,Correct Answers,Incorrect Answers,
//! Source). Answers are split on ';' and closed with a period, as the original repo does.
absl::StatusOr<std::vector<TruthfulQaQuestion>> LoadTruthfulQa(const std::string& csv_path);

//! The 6-example QA primer followed by "\n\nQ: <question>\nA:".
std::string TruthfulQaContext(const std::string& question);
const std::string& TruthfulQaPrimer();

struct TruthfulQaScores {
  double mc1 = 0, mc2 = 0;
  int64_t questions = 0;
  nlohmann::json ToJson() const;
};

absl::StatusOr<TruthfulQaScores> RunTruthfulQa(const std::vector<TruthfulQaQuestion>& questions,
                                               int64_t limit, const LoglikFn& loglik);

}  // namespace align::engine::eval
