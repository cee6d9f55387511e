#include "worker/engine/eval/judge.h"

#include <cstdlib>
#include <fstream>
#include <memory>

#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "common/status_macros.h"

#ifdef ALIGN_HAVE_CURL
#include <curl/curl.h>
#endif

namespace align::engine::eval {
namespace {

absl::StatusOr<std::vector<nlohmann::json>> ReadJsonl(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open '", path, "'"));
  std::vector<nlohmann::json> out;
  std::string line;
  int lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object()) {
      return absl::InvalidArgumentError(absl::StrCat(path, ":", lineno, ": expected one JSON object per line"));
    }
    out.push_back(std::move(j));
  }
  return out;
}

}  // namespace

absl::StatusOr<std::vector<MtBenchQuestion>> LoadMtBench(const std::string& dir) {
  ASSIGN_OR_RETURN(auto qs, ReadJsonl(dir + "/question.jsonl"));
  ASSIGN_OR_RETURN(auto refs, ReadJsonl(dir + "/reference_answer_gpt-4.jsonl"));
  std::map<int64_t, std::vector<std::string>> ref_by_id;
  for (const auto& r : refs) {
    if (!r.contains("question_id") || !r.contains("choices") || r["choices"].empty()) continue;
    std::vector<std::string> turns;
    for (const auto& t : r["choices"][0].value("turns", nlohmann::json::array())) turns.push_back(t.get<std::string>());
    ref_by_id[r["question_id"].get<int64_t>()] = turns;
  }
  std::vector<MtBenchQuestion> out;
  for (size_t i = 0; i < qs.size(); ++i) {
    const auto& q = qs[i];
    if (!q.contains("question_id") || !q.contains("category") || !q.contains("turns") ||
        !q["turns"].is_array() || q["turns"].empty()) {
      return absl::InvalidArgumentError(absl::StrCat(dir, "/question.jsonl:", i + 1,
                                                     ": expected question_id, category and turns"));
    }
    MtBenchQuestion m;
    m.id = q["question_id"].get<int64_t>();
    m.category = q["category"].get<std::string>();
    for (const auto& t : q["turns"]) m.turns.push_back(t.get<std::string>());
    if (auto it = ref_by_id.find(m.id); it != ref_by_id.end()) m.reference_answers = it->second;
    out.push_back(std::move(m));
  }
  return out;
}

absl::StatusOr<std::map<std::string, JudgePrompt>> LoadJudgePrompts(const std::string& dir) {
  ASSIGN_OR_RETURN(auto rows, ReadJsonl(dir + "/judge_prompts.jsonl"));
  std::map<std::string, JudgePrompt> out;
  for (const auto& r : rows) {
    JudgePrompt p;
    p.name = r.value("name", "");
    p.system_prompt = r.value("system_prompt", "");
    p.prompt_template = r.value("prompt_template", "");
    out[p.name] = std::move(p);
  }
  return out;
}

double MtBenchTemperature(const std::string& category) {
  static const auto* t = new std::map<std::string, double>{
      {"writing", 0.7}, {"roleplay", 0.7}, {"extraction", 0.0}, {"math", 0.0},
      {"coding", 0.0},  {"reasoning", 0.0}, {"stem", 0.1},     {"humanities", 0.1},
      {"arena-hard-200", 0.0}};
  auto it = t->find(category);
  return it == t->end() ? 0.7 : it->second;
}

bool MtBenchNeedsReference(const std::string& category) {
  return category == "math" || category == "reasoning" || category == "coding";
}

std::string JudgePromptName(const std::string& category, int turn) {
  std::string name = MtBenchNeedsReference(category) ? "single-math-v1" : "single-v1";
  if (turn == 2) name += "-multi-turn";
  return name;
}

absl::StatusOr<std::string> FillJudgePrompt(const JudgePrompt& prompt, const MtBenchQuestion& q,
                                            const std::vector<std::string>& answers, int turn) {
  if (turn < 1 || turn > 2 || static_cast<int>(q.turns.size()) < turn ||
      static_cast<int>(answers.size()) < turn) {
    return absl::InvalidArgumentError(absl::StrCat("MT-Bench question ", q.id, ": no turn ", turn));
  }
  const bool ref = MtBenchNeedsReference(q.category);
  if (ref && static_cast<int>(q.reference_answers.size()) < turn) {
    return absl::InvalidArgumentError(absl::StrCat("MT-Bench question ", q.id, " (", q.category,
                                                   "): reference answer for turn ", turn, " is missing"));
  }
  std::vector<std::pair<std::string, std::string>> vars;
  if (turn == 1) {
    vars = {{"{question}", q.turns[0]}, {"{answer}", answers[0]}};
    if (ref) vars.push_back({"{ref_answer_1}", q.reference_answers[0]});
  } else {
    vars = {{"{question_1}", q.turns[0]}, {"{question_2}", q.turns[1]},
            {"{answer_1}", answers[0]},   {"{answer_2}", answers[1]}};
    if (ref) {
      vars.push_back({"{ref_answer_1}", q.reference_answers[0]});
      vars.push_back({"{ref_answer_2}", q.reference_answers[1]});
    }
  }
  // One pass, so text inside an answer that looks like a placeholder is left alone.
  return absl::StrReplaceAll(prompt.prompt_template, vars);
}

std::string EndpointJudgeIdentity(const EndpointJudgeOptions& options) {
  return absl::StrCat("endpoint:", options.base_url, "#", options.model);
}

#ifdef ALIGN_HAVE_CURL
namespace {
size_t Append(char* data, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(data, size * n);
  return size * n;
}
}  // namespace

absl::StatusOr<JudgeFn> MakeEndpointJudge(const EndpointJudgeOptions& options) {
  if (options.base_url.empty() || options.model.empty()) {
    return absl::InvalidArgumentError(
        "judge.endpoint and judge.endpoint_model are both required for an endpoint judge");
  }
  std::string key;
  if (!options.api_key_env.empty()) {
    const char* v = std::getenv(options.api_key_env.c_str());
    if (v == nullptr || *v == '\0') {
      return absl::InvalidArgumentError(absl::StrCat("judge.api_key_env: environment variable ",
                                                     options.api_key_env, " is not set"));
    }
    key = v;
  }
  std::string url = options.base_url;
  while (!url.empty() && url.back() == '/') url.pop_back();
  url += "/chat/completions";
  return JudgeFn([url, key, options](const std::string& system,
                                     const std::string& user) -> absl::StatusOr<std::string> {
    nlohmann::json messages = nlohmann::json::array();
    if (!system.empty()) messages.push_back({{"role", "system"}, {"content", system}});
    messages.push_back({{"role", "user"}, {"content", user}});
    const std::string body = nlohmann::json{{"model", options.model}, {"messages", messages},
                                            {"temperature", 0}, {"max_tokens", options.max_tokens}}
                                 .dump();
    std::unique_ptr<CURL, void (*)(CURL*)> curl(curl_easy_init(), curl_easy_cleanup);
    if (!curl) return absl::InternalError("curl_easy_init failed");
    curl_slist* headers = curl_slist_append(nullptr, "Content-Type: application/json");
    if (!key.empty()) headers = curl_slist_append(headers, ("Authorization: Bearer " + key).c_str());
    std::string response;
    curl_easy_setopt(curl.get(), CURLOPT_URL, url.c_str());
    curl_easy_setopt(curl.get(), CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl.get(), CURLOPT_POSTFIELDS, body.c_str());
    curl_easy_setopt(curl.get(), CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
    curl_easy_setopt(curl.get(), CURLOPT_WRITEFUNCTION, Append);
    curl_easy_setopt(curl.get(), CURLOPT_WRITEDATA, &response);
    curl_easy_setopt(curl.get(), CURLOPT_TIMEOUT_MS, static_cast<long>(options.timeout_seconds * 1000));
    curl_easy_setopt(curl.get(), CURLOPT_NOSIGNAL, 1L);
    const CURLcode rc = curl_easy_perform(curl.get());
    long status = 0;
    curl_easy_getinfo(curl.get(), CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(headers);
    if (rc != CURLE_OK) {
      return absl::UnavailableError(absl::StrCat("judge endpoint ", url, ": ", curl_easy_strerror(rc)));
    }
    if (status < 200 || status >= 300) {
      return absl::UnavailableError(absl::StrCat("judge endpoint ", url, ": HTTP ", status, ": ",
                                                 response.substr(0, 300)));
    }
    auto j = nlohmann::json::parse(response, nullptr, false);
    if (j.is_discarded() || !j.contains("choices") || !j["choices"].is_array() || j["choices"].empty() ||
        !j["choices"][0].contains("message") || !j["choices"][0]["message"].contains("content") ||
        !j["choices"][0]["message"]["content"].is_string()) {
      return absl::UnavailableError(absl::StrCat("judge endpoint ", url,
                                                 ": expected {\"choices\": [{\"message\": {\"content\": ...}}]}, got ",
                                                 response.substr(0, 300)));
    }
    return j["choices"][0]["message"]["content"].get<std::string>();
  });
}
#else
absl::StatusOr<JudgeFn> MakeEndpointJudge(const EndpointJudgeOptions&) {
  return absl::UnimplementedError("this align-train was built without libcurl: no endpoint judge");
}
#endif

}  // namespace align::engine::eval
