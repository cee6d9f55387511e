#include "worker/engine/eval/mt_bench.h"

#include <algorithm>
#include <chrono>
#include <set>
#include <thread>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "worker/engine/data/jsonl.h"

namespace align::engine::eval {

const std::vector<std::string>& MtBenchCategories() {
  static const auto* c = new std::vector<std::string>{
      "writing", "roleplay", "reasoning", "math", "coding", "extraction", "stem", "humanities"};
  return *c;
}

absl::StatusOr<std::vector<MtBenchQuestion>> SelectMtBenchQuestions(
    const std::vector<MtBenchQuestion>& all, const std::vector<std::string>& categories,
    int64_t limit) {
  const std::set<std::string> wanted(categories.begin(), categories.end());
  std::set<std::string> present;
  for (const auto& q : all) present.insert(q.category);
  for (const auto& c : wanted) {
    if (!present.count(c)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "stage.config.mt_bench_categories: no MT-Bench question has category '", c,
          "'; expected some of: ", absl::StrJoin(present, ", ")));
    }
  }
  std::vector<MtBenchQuestion> out;
  std::map<std::string, int64_t> taken;
  for (const auto& q : all) {
    if (!wanted.empty() && !wanted.count(q.category)) continue;
    if (limit > 0 && taken[q.category] >= limit) continue;
    ++taken[q.category];
    out.push_back(q);
  }
  return out;
}

BatchJudgeFn SequentialJudge(JudgeFn judge, int attempts, double retry_delay_seconds) {
  return [judge = std::move(judge), attempts, retry_delay_seconds](
             const std::vector<std::pair<std::string, std::string>>& prompts)
             -> absl::StatusOr<std::vector<std::string>> {
    std::vector<std::string> out;
    out.reserve(prompts.size());
    for (const auto& [system, user] : prompts) {
      double delay = retry_delay_seconds;
      absl::StatusOr<std::string> text = judge(system, user);
      for (int attempt = 1; attempt < attempts && absl::IsUnavailable(text.status()); ++attempt) {
        std::this_thread::sleep_for(std::chrono::duration<double>(delay));
        delay *= 2;
        text = judge(system, user);
      }
      if (!text.ok()) return text.status();
      out.push_back(*std::move(text));
    }
    return out;
  };
}

absl::StatusOr<MtBenchResult> RunMtBench(const std::vector<MtBenchQuestion>& questions,
                                         const std::map<std::string, JudgePrompt>& prompts,
                                         const ChatGenerateFn& generate, const BatchJudgeFn& judge) {
  MtBenchResult result;
  for (const auto& q : questions) {
    if (q.turns.size() < 2) {
      return absl::InvalidArgumentError(absl::StrCat("MT-Bench question ", q.id, ": expected 2 turns, found ",
                                                     q.turns.size()));
    }
    MtBenchItem item;
    item.question_id = q.id;
    item.category = q.category;
    item.temperature = MtBenchTemperature(q.category);
    item.turns.resize(2);
    result.items.push_back(std::move(item));
  }
  // Questions grouped by temperature: one generation call per (turn, temperature).
  std::map<double, std::vector<size_t>> by_temperature;
  for (size_t i = 0; i < questions.size(); ++i) by_temperature[result.items[i].temperature].push_back(i);

  for (int turn = 1; turn <= 2; ++turn) {
    for (const auto& [temperature, indices] : by_temperature) {
      std::vector<nlohmann::json> conversations;
      for (size_t i : indices) {
        const MtBenchQuestion& q = questions[i];
        nlohmann::json messages = nlohmann::json::array({{{"role", "user"}, {"content", q.turns[0]}}});
        if (turn == 2) {
          messages.push_back({{"role", "assistant"}, {"content", result.items[i].turns[0].answer}});
          messages.push_back({{"role", "user"}, {"content", q.turns[1]}});
        }
        conversations.push_back(std::move(messages));
      }
      ASSIGN_OR_RETURN(std::vector<std::string> answers, generate(conversations, temperature));
      if (answers.size() != indices.size()) {
        return absl::InternalError(absl::StrCat("MT-Bench: the generator returned ", answers.size(),
                                                " answers for ", indices.size(), " conversations"));
      }
      for (size_t k = 0; k < indices.size(); ++k) result.items[indices[k]].turns[turn - 1].answer = answers[k];
    }
  }

  std::vector<std::pair<std::string, std::string>> judge_inputs;
  for (size_t i = 0; i < questions.size(); ++i) {
    MtBenchItem& item = result.items[i];
    const std::vector<std::string> answers = {item.turns[0].answer, item.turns[1].answer};
    for (int turn = 1; turn <= 2; ++turn) {
      const std::string name = JudgePromptName(item.category, turn);
      auto p = prompts.find(name);
      if (p == prompts.end()) {
        return absl::InvalidArgumentError(absl::StrCat("MT-Bench judge prompts: '", name,
                                                       "' is missing from judge_prompts.jsonl"));
      }
      ASSIGN_OR_RETURN(std::string user, FillJudgePrompt(p->second, questions[i], answers, turn));
      item.turns[turn - 1].judge_prompt = name;
      judge_inputs.emplace_back(p->second.system_prompt, std::move(user));
    }
  }
  ASSIGN_OR_RETURN(std::vector<std::string> judgments, judge(judge_inputs));
  if (judgments.size() != judge_inputs.size()) {
    return absl::InternalError(absl::StrCat("MT-Bench: the judge returned ", judgments.size(),
                                            " judgments for ", judge_inputs.size(), " prompts"));
  }
  for (size_t i = 0; i < result.items.size(); ++i) {
    for (int t = 0; t < 2; ++t) {
      MtBenchTurn& turn = result.items[i].turns[t];
      turn.judgment = judgments[2 * i + t];
      turn.rating = ParseJudgeRating(turn.judgment);
    }
  }
  return result;
}

namespace {

struct Tally {
  double sum = 0;
  int64_t rated = 0;
  int64_t failures = 0;
  void Add(const JudgeRating& r) {
    if (r.score.has_value()) {
      sum += *r.score;
      ++rated;
    } else {
      ++failures;
    }
  }
  nlohmann::json Mean() const { return rated == 0 ? nlohmann::json(nullptr) : nlohmann::json(sum / rated); }
};

}  // namespace

nlohmann::json MtBenchResult::ToJson() const {
  Tally all, turns[2];
  std::map<std::string, Tally> categories;
  for (const auto& item : items) {
    for (int t = 0; t < static_cast<int>(item.turns.size()) && t < 2; ++t) {
      all.Add(item.turns[t].rating);
      turns[t].Add(item.turns[t].rating);
      categories[item.category].Add(item.turns[t].rating);
    }
  }
  nlohmann::json cats = nlohmann::json::object();
  for (const auto& [name, tally] : categories) {
    cats[name] = {{"score", tally.Mean()}, {"rated", tally.rated}, {"parse_failures", tally.failures}};
  }
  return {{"score", all.Mean()},
          {"turn_1", turns[0].Mean()},
          {"turn_2", turns[1].Mean()},
          {"questions", items.size()},
          {"judged", all.rated + all.failures},
          {"rated", all.rated},
          {"parse_failures", all.failures},
          {"parse_failures_turn_1", turns[0].failures},
          {"parse_failures_turn_2", turns[1].failures},
          {"categories", cats}};
}

std::string MtBenchResult::ToJsonl() const {
  std::string out;
  for (const auto& item : items) {
    nlohmann::json turns = nlohmann::json::array();
    for (const auto& t : item.turns) {
      nlohmann::json j = {{"answer", t.answer}, {"judge_prompt", t.judge_prompt}, {"judgment", t.judgment}};
      if (t.rating.score.has_value()) {
        j["rating"] = *t.rating.score;
      } else {
        j["rating"] = nullptr;
        j["parse_error"] = t.rating.error;
      }
      turns.push_back(std::move(j));
    }
    out += nlohmann::json{{"question_id", item.question_id}, {"category", item.category},
                          {"temperature", item.temperature}, {"turns", turns}}
               .dump();
    out += "\n";
  }
  return out;
}

absl::StatusOr<std::string> SingleJudgePromptsSha256(const std::map<std::string, JudgePrompt>& prompts) {
  nlohmann::json used = nlohmann::json::array();
  for (const std::string name : {"single-math-v1", "single-math-v1-multi-turn", "single-v1", "single-v1-multi-turn"}) {
    auto it = prompts.find(name);
    if (it == prompts.end()) {
      return absl::InvalidArgumentError(absl::StrCat("MT-Bench judge prompts: '", name,
                                                     "' is missing from judge_prompts.jsonl"));
    }
    used.push_back({{"name", name}, {"system_prompt", it->second.system_prompt},
                    {"prompt_template", it->second.prompt_template}});
  }
  return data::Sha256Hex(used.dump());
}

}  // namespace align::engine::eval
