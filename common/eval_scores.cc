#include "common/eval_scores.h"

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/suggest.h"

namespace align {
namespace {

bool Contains(const std::vector<std::string>& v, absl::string_view s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

absl::Status Unknown(absl::string_view path, absl::string_view word, absl::string_view where,
                     const std::vector<std::string>& expected) {
  return absl::InvalidArgumentError(absl::StrCat(
      "no score \"", path, "\": ", where, " has ", absl::StrJoin(expected, ", "),
      DidYouMean(word, expected)));
}

// A group of named entries (MMLU subjects, MT-Bench categories) each holding `leaves`:
// parts = [suite, group, name, leaf].
absl::Status CheckGroup(absl::string_view path, const std::vector<std::string>& parts,
                        const std::vector<std::string>& names,
                        const std::vector<std::string>& leaves) {
  const std::string where = absl::StrCat(parts[0], ".", parts[1]);
  if (parts.size() != 4) {
    return absl::InvalidArgumentError(absl::StrCat(
        "no score \"", path, "\": expected ", where, ".<name>.<", absl::StrJoin(leaves, "|"), ">"));
  }
  if (!names.empty() && !Contains(names, parts[2])) return Unknown(path, parts[2], where, names);
  if (!Contains(leaves, parts[3])) {
    return Unknown(path, parts[3], absl::StrCat(where, ".", parts[2]), leaves);
  }
  return absl::OkStatus();
}

// Checks parts[1..] of a suite's path against its flat leaves and its groups.
absl::Status CheckSuite(absl::string_view path, const std::vector<std::string>& parts,
                        const std::vector<std::string>& leaves,
                        const std::vector<std::string>& group_names,
                        const std::vector<std::string>& group_entries,
                        const std::vector<std::string>& group_leaves) {
  std::vector<std::string> expected = leaves;
  for (const std::string& g : group_names) expected.push_back(absl::StrCat(g, ".<name>.<leaf>"));
  if (parts.size() < 2) {
    return absl::InvalidArgumentError(absl::StrCat("no score \"", path, "\": ", parts[0],
                                                   " is a group; expected one of its scores: ",
                                                   absl::StrJoin(expected, ", ")));
  }
  if (Contains(group_names, parts[1])) {
    return CheckGroup(path, parts, group_entries, group_leaves);
  }
  if (Contains(leaves, parts[1])) {
    if (parts.size() == 2) return absl::OkStatus();
    return absl::InvalidArgumentError(absl::StrCat(
        "no score \"", path, "\": ", parts[0], ".", parts[1], " is a single number; drop \".",
        absl::StrJoin(parts.begin() + 2, parts.end(), "."), "\""));
  }
  std::vector<std::string> words = leaves;
  words.insert(words.end(), group_names.begin(), group_names.end());
  return absl::InvalidArgumentError(absl::StrCat("no score \"", path, "\": ", parts[0], " has ",
                                                 absl::StrJoin(expected, ", "),
                                                 DidYouMean(parts[1], words)));
}

}  // namespace

const std::vector<std::string>& EvalSuiteNames() {
  static const auto* suites = new std::vector<std::string>{
      "mmlu", "truthfulqa", "mt_bench", "ifeval", "preference_accuracy", "winrate"};
  return *suites;
}

const std::vector<std::string>& MtBenchCategories() {
  static const auto* categories = new std::vector<std::string>{
      "writing", "roleplay", "reasoning", "math", "coding", "extraction", "stem", "humanities"};
  return *categories;
}

absl::Status CheckEvalScorePath(absl::string_view path, const EvalScoreContext& context) {
  const std::vector<std::string> parts = absl::StrSplit(path, '.');
  for (const std::string& p : parts) {
    if (p.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("no score \"", path, "\": expected a dotted score path such as mmlu.acc"));
    }
  }
  std::vector<std::string> models = context.model_names;
  if (models.empty()) models.push_back("model");
  const std::string primary = Contains(models, "candidate") ? "candidate" : "model";
  const auto runs = [&](absl::string_view suite) { return Contains(context.suites, suite); };

  const std::string& head = parts[0];
  if (absl::StartsWith(head, "winrate_vs_") && runs("winrate")) {
    std::vector<std::string> others;
    for (const std::string& m : models) {
      if (m != primary && m != "reward_model") others.push_back(absl::StrCat("winrate_vs_", m));
    }
    if (parts.size() == 1 && Contains(others, head)) return absl::OkStatus();
    if (others.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "no score \"", path, "\": winrate compares the ", primary,
          " with the stage's other models, and this stage has none"));
    }
    return Unknown(path, head, "winrate", others);
  }
  if (!runs(head)) {
    std::vector<std::string> heads;
    for (const std::string& s : context.suites) {
      heads.push_back(s == "winrate" ? "winrate_vs_<model>" : s);
    }
    return absl::InvalidArgumentError(absl::StrCat(
        "no score \"", path, "\": a score path starts with a suite this stage runs: ",
        absl::StrJoin(heads, ", "), DidYouMean(head, context.suites)));
  }
  if (head == "mmlu") {
    if (parts.size() > 1 && parts[1] == "categories") {
      return CheckSuite(path, parts, {}, {"categories"},
                        {"stem", "humanities", "social_sciences", "other"}, {"acc", "questions"});
    }
    return CheckSuite(path, parts, {"acc", "questions"}, {"subjects", "categories"}, {},
                      {"acc", "questions"});
  }
  if (head == "truthfulqa") return CheckSuite(path, parts, {"mc1", "mc2", "questions"}, {}, {}, {});
  if (head == "ifeval") {
    return CheckSuite(path, parts,
                      {"prompt_strict", "instruction_strict", "prompt_loose", "instruction_loose",
                       "prompts", "instructions"},
                      {}, {}, {});
  }
  if (head == "preference_accuracy") {
    std::vector<std::string> leaves = {"pairs"};
    for (const char* role : {"candidate", "model", "baseline"}) {
      if (Contains(models, role)) leaves.push_back(role);
    }
    if (Contains(models, "baseline") && (Contains(models, "candidate") || Contains(models, "model"))) {
      leaves.push_back("implicit_reward");
    }
    return CheckSuite(path, parts, leaves, {}, {}, {});
  }
  if (head == "mt_bench") {
    return CheckSuite(path, parts,
                      {"score", "turn_1", "turn_2", "questions", "judged", "rated", "parse_failures",
                       "parse_failures_turn_1", "parse_failures_turn_2", "answers_truncated",
                       "judge_prompts_truncated"},
                      {"categories"}, MtBenchCategories(), {"score", "rated", "parse_failures"});
  }
  // winrate's scores are winrate_vs_<model>, handled above.
  return absl::InvalidArgumentError(absl::StrCat("no score \"", path, "\": winrate writes ",
                                                 "winrate_vs_<model> for each model it compares"));
}

}  // namespace align
