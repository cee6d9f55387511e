#include "worker/engine/eval/mt_bench.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <functional>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "common/eval_scores.h"
#include "common/testing/status_matchers.h"
#include "common/testing/test_data.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "worker/engine/core/events.h"
#include "worker/engine/core/job.h"
#include "worker/engine/eval/eval_stage.h"
#include "worker/engine/model/model.h"

namespace align::engine::eval {
namespace {

namespace fs = std::filesystem;
using ::align::testing::DataDir;
using ::align::testing::DataPath;
using ::align::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kQuestionSha[] = "119565adbab82227089cefdb44c8d7e2cf04dc0a0ec233634c82e7d4e2a944f7";
constexpr char kReferenceSha[] = "f957a5bc977badb66885ec970e6cd08527845780313f0995764260e5777b9b3f";
constexpr char kJudgePromptsSha[] = "fd283293406d024f44c174b094ef48031d0687a4682fd3a56b29b138f80281b6";

// The four judgments both the fake judge and the canned HTTP server give, in judging order
// (writing question 81 turn 1, turn 2, then math question 111 turn 1, turn 2). The third has no
// rating: a parse failure, counted and excluded.
const std::vector<std::string> kJudgments = {"Helpful and vivid. Rating: [[8]]", "Rating: [[7.5]]",
                                             "I cannot rate this answer.", "Wrong area. Rating: [[5]]"};
// Means over the rated turns only: (8 + 7.5 + 5) / 3 overall, turn 1 = 8, turn 2 = (7.5 + 5) / 2.
constexpr double kScore = 20.5 / 3;

std::vector<MtBenchQuestion> WritingAndMath() {
  auto all = LoadMtBench(DataPath("eval/mt-bench"));
  EXPECT_TRUE(all.ok()) << all.status();
  auto picked = SelectMtBenchQuestions(*all, {"writing", "math"}, 1);
  EXPECT_TRUE(picked.ok()) << picked.status();
  return *picked;
}

void ExpectKnownScores(const nlohmann::json& s) {
  EXPECT_DOUBLE_EQ(s["score"].get<double>(), kScore);
  EXPECT_DOUBLE_EQ(s["turn_1"].get<double>(), 8.0);
  EXPECT_DOUBLE_EQ(s["turn_2"].get<double>(), 6.25);
  EXPECT_EQ(s["questions"], 2);
  EXPECT_EQ(s["judged"], 4);
  EXPECT_EQ(s["rated"], 3);
  EXPECT_EQ(s["parse_failures"], 1);
  EXPECT_EQ(s["parse_failures_turn_1"], 1);
  EXPECT_EQ(s["parse_failures_turn_2"], 0);
  EXPECT_DOUBLE_EQ(s["categories"]["writing"]["score"].get<double>(), 7.75);
  EXPECT_EQ(s["categories"]["writing"]["rated"], 2);
  EXPECT_DOUBLE_EQ(s["categories"]["math"]["score"].get<double>(), 5.0);
  EXPECT_EQ(s["categories"]["math"]["parse_failures"], 1);
}

TEST(MtBenchSelect, LimitIsPerCategoryInFileOrder) {
  ASSERT_OK_AND_ASSIGN(auto all, LoadMtBench(DataPath("eval/mt-bench")));
  const std::vector<MtBenchQuestion> picked = WritingAndMath();
  ASSERT_EQ(picked.size(), 2u);
  EXPECT_EQ(picked[0].id, 81);
  EXPECT_EQ(picked[0].category, "writing");
  EXPECT_EQ(picked[1].id, 111);
  EXPECT_EQ(picked[1].category, "math");
  ASSERT_OK_AND_ASSIGN(auto one_each, SelectMtBenchQuestions(all, {}, 1));
  EXPECT_EQ(one_each.size(), 8u);
  ASSERT_OK_AND_ASSIGN(auto every, SelectMtBenchQuestions(all, {}, 0));
  EXPECT_EQ(every.size(), 80u);
  EXPECT_THAT(SelectMtBenchQuestions(all, {"maths"}, 0),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("'maths'")));
}

// The loop with a fake answerer and judge: which conversations are answered at which
// temperature, which judge prompt each turn gets, and the averages.
TEST(MtBenchRun, TwoTurnsCategoryTemperaturesJudgePromptsAndMeans) {
  const std::vector<MtBenchQuestion> qs = WritingAndMath();
  ASSERT_OK_AND_ASSIGN(auto prompts, LoadJudgePrompts(DataPath("eval/mt-bench")));
  struct Call {
    nlohmann::json conversations;
    double temperature;
  };
  std::vector<Call> calls;
  ChatGenerateFn generate = [&](const std::vector<nlohmann::json>& conversations, double temperature)
      -> absl::StatusOr<std::vector<std::string>> {
    calls.push_back({conversations, temperature});
    std::vector<std::string> out;
    for (const auto& c : conversations) {
      out.push_back("ANSWER " + std::to_string(c.size()) + " to " + c.back()["content"].get<std::string>().substr(0, 12));
    }
    return out;
  };
  std::vector<std::pair<std::string, std::string>> judged;
  BatchJudgeFn judge = [&](const std::vector<std::pair<std::string, std::string>>& p)
      -> absl::StatusOr<std::vector<std::string>> {
    judged = p;
    return kJudgments;
  };
  ASSERT_OK_AND_ASSIGN(MtBenchResult r, RunMtBench(qs, prompts, generate, judge));

  // Turn 1 then turn 2, each grouped by temperature in increasing order: math (0.0), writing (0.7).
  ASSERT_EQ(calls.size(), 4u);
  EXPECT_EQ(calls[0].temperature, 0.0);
  EXPECT_EQ(calls[1].temperature, 0.7);
  EXPECT_EQ(calls[0].conversations[0].size(), 1u);
  EXPECT_EQ(calls[0].conversations[0][0]["content"], qs[1].turns[0]);
  EXPECT_EQ(calls[1].conversations[0][0]["content"], qs[0].turns[0]);
  // Turn 2 sees turn 1's answer.
  const nlohmann::json& second = calls[3].conversations[0];
  ASSERT_EQ(second.size(), 3u);
  EXPECT_EQ(second[1]["role"], "assistant");
  EXPECT_EQ(second[1]["content"], r.items[0].turns[0].answer);
  EXPECT_EQ(second[2]["content"], qs[0].turns[1]);
  EXPECT_EQ(r.items[0].turns[0].answer, "ANSWER 1 to " + qs[0].turns[0].substr(0, 12));
  EXPECT_EQ(r.items[0].temperature, 0.7);
  EXPECT_EQ(r.items[1].temperature, 0.0);

  // Judge prompts: single-v1 for writing, single-math-v1 (with the reference) for math, the
  // multi-turn forms for turn 2.
  ASSERT_EQ(judged.size(), 4u);
  EXPECT_EQ(r.items[0].turns[0].judge_prompt, "single-v1");
  EXPECT_EQ(r.items[0].turns[1].judge_prompt, "single-v1-multi-turn");
  EXPECT_EQ(r.items[1].turns[0].judge_prompt, "single-math-v1");
  EXPECT_EQ(r.items[1].turns[1].judge_prompt, "single-math-v1-multi-turn");
  EXPECT_EQ(judged[0].first, "You are a helpful assistant.");
  EXPECT_THAT(judged[1].second, HasSubstr("### Assistant A:\n" + r.items[0].turns[0].answer + "\n\n### User:\n" + qs[0].turns[1]));
  EXPECT_THAT(judged[2].second, HasSubstr("[The Start of Reference Answer]\n" + qs[1].reference_answers[0]));
  EXPECT_THAT(judged[3].second, HasSubstr("### Reference answer:\n" + qs[1].reference_answers[1]));
  EXPECT_THAT(judged[0].second, Not(HasSubstr("Reference")));

  ExpectKnownScores(r.ToJson());
  EXPECT_FALSE(r.items[1].turns[0].rating.score.has_value());
  const std::string jsonl = r.ToJsonl();
  EXPECT_THAT(jsonl, HasSubstr("\"parse_error\":\"no [[rating]] found\""));
  EXPECT_EQ(std::count(jsonl.begin(), jsonl.end(), '\n'), 2);
}

TEST(MtBenchRun, NothingRatedIsNullNeverZero) {
  const std::vector<MtBenchQuestion> qs = WritingAndMath();
  ASSERT_OK_AND_ASSIGN(auto prompts, LoadJudgePrompts(DataPath("eval/mt-bench")));
  ChatGenerateFn generate = [](const std::vector<nlohmann::json>& c, double) {
    return absl::StatusOr<std::vector<std::string>>(std::vector<std::string>(c.size(), "x"));
  };
  BatchJudgeFn judge = [](const std::vector<std::pair<std::string, std::string>>& p) {
    return absl::StatusOr<std::vector<std::string>>(std::vector<std::string>(p.size(), "[[eleven]] [[0]]"));
  };
  ASSERT_OK_AND_ASSIGN(MtBenchResult r, RunMtBench(qs, prompts, generate, judge));
  const nlohmann::json s = r.ToJson();
  EXPECT_TRUE(s["score"].is_null());
  EXPECT_TRUE(s["turn_1"].is_null());
  EXPECT_TRUE(s["categories"]["math"]["score"].is_null());
  EXPECT_EQ(s["parse_failures"], 4);
  EXPECT_EQ(s["rated"], 0);
  EXPECT_EQ(r.items[0].turns[0].rating.error, "rating 0 out of range 1..10");
}

TEST(MtBenchRun, JudgeAndGeneratorErrorsFailTheRun) {
  const std::vector<MtBenchQuestion> qs = WritingAndMath();
  ASSERT_OK_AND_ASSIGN(auto prompts, LoadJudgePrompts(DataPath("eval/mt-bench")));
  ChatGenerateFn generate = [](const std::vector<nlohmann::json>& c, double) {
    return absl::StatusOr<std::vector<std::string>>(std::vector<std::string>(c.size(), "x"));
  };
  BatchJudgeFn down = [](const std::vector<std::pair<std::string, std::string>>&) {
    return absl::StatusOr<std::vector<std::string>>(absl::UnavailableError("judge endpoint: HTTP 503"));
  };
  EXPECT_THAT(RunMtBench(qs, prompts, generate, down), StatusIs(absl::StatusCode::kUnavailable));
  auto no_math = prompts;
  no_math.erase("single-math-v1");
  BatchJudgeFn judge = [](const std::vector<std::pair<std::string, std::string>>& p) {
    return absl::StatusOr<std::vector<std::string>>(std::vector<std::string>(p.size(), "[[5]]"));
  };
  EXPECT_THAT(RunMtBench(qs, no_math, generate, judge),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("'single-math-v1' is missing")));
  EXPECT_THAT(SingleJudgePromptsSha256(no_math), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(SequentialJudge, RetriesUnavailableOnly) {
  int calls = 0;
  JudgeFn flaky = [&](const std::string&, const std::string& user) -> absl::StatusOr<std::string> {
    if (++calls <= 2) return absl::UnavailableError("busy");
    return "Rating: [[" + user + "]]";
  };
  ASSERT_OK_AND_ASSIGN(auto out, SequentialJudge(flaky, 3, 0.0)({{"", "4"}, {"", "6"}}));
  EXPECT_EQ(out, (std::vector<std::string>{"Rating: [[4]]", "Rating: [[6]]"}));
  EXPECT_EQ(calls, 4);
  calls = 0;
  EXPECT_THAT(SequentialJudge(flaky, 2, 0.0)({{"", "4"}}), StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_EQ(calls, 2);
  int bad_calls = 0;
  JudgeFn bad = [&](const std::string&, const std::string&) -> absl::StatusOr<std::string> {
    ++bad_calls;
    return absl::InvalidArgumentError("bad request");
  };
  EXPECT_THAT(SequentialJudge(bad, 3, 0.0)({{"", "x"}}), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(bad_calls, 1);
}

// An HTTP/1.1 server on 127.0.0.1 answering each request with the next canned chat completion
// (its content from `contents`), recording the requests.
class CannedChatServer {
 public:
  explicit CannedChatServer(std::vector<std::string> contents) : contents_(std::move(contents)) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
    listen(fd_, 8);
    socklen_t len = sizeof(addr);
    getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { Serve(); });
  }
  ~CannedChatServer() {
    shutdown(fd_, SHUT_RDWR);  // unblocks accept() when fewer requests came than expected
    if (thread_.joinable()) thread_.join();
    close(fd_);
  }
  std::string base_url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/v1"; }
  // The requests served; call after the client is done.
  const std::vector<std::string>& requests() {
    if (thread_.joinable()) thread_.join();
    return requests_;
  }

 private:
  void Serve() {
    for (const std::string& content : contents_) {
      const int c = accept(fd_, nullptr, nullptr);
      if (c < 0) return;
      std::string request;
      char buf[65536];
      size_t need = std::string::npos;
      while (true) {
        const ssize_t n = read(c, buf, sizeof(buf));
        if (n <= 0) break;
        request.append(buf, n);
        const size_t head_end = request.find("\r\n\r\n");
        if (head_end != std::string::npos && need == std::string::npos) {
          const size_t cl = request.find("Content-Length: ");
          need = head_end + 4 + (cl == std::string::npos ? 0 : std::stoul(request.substr(cl + 16)));
        }
        if (need != std::string::npos && request.size() >= need) break;
      }
      requests_.push_back(request);
      const std::string body =
          nlohmann::json{{"choices", {{{"message", {{"role", "assistant"}, {"content", content}}}}}}}.dump();
      const std::string reply = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " +
                                std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
      (void)write(c, reply.data(), reply.size());
      close(c);
    }
  }
  std::vector<std::string> contents_;
  int fd_ = -1;
  int port_ = 0;
  std::thread thread_;
  std::vector<std::string> requests_;
};

nlohmann::json ReadJson(const std::string& path) {
  std::ifstream in(path);
  return nlohmann::json::parse(in);
}

std::string ReadText(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

JobSpec MtBenchJob(const std::string& out_dir, nlohmann::json config) {
  JobSpec job;
  job.stage_name = "eval";
  job.stage_type = "eval";
  job.stage = {{"name", "eval"}, {"eval", std::move(config)}};
  job.inputs["candidate"] = DataPath("models/stories260K");
  job.data_dir = DataDir();
  job.output_dir = out_dir;
  return job;
}

// The stage end to end with stories260K answering and an OpenAI-compatible judge on 127.0.0.1.
TEST(MtBenchStage, EndpointJudgeScoresAndRecord) {
  model::SetComputeThreads(1);
  CannedChatServer server(kJudgments);
  setenv("ALIGN_TEST_MT_BENCH_KEY", "sk-secret-4242", 1);
  const std::string out = ::testing::TempDir() + "/mt_bench_endpoint";
  fs::remove_all(out);
  JobSpec job = MtBenchJob(out, {{"suites", {"mt_bench"}},
                                 {"mt_bench_categories", {"writing", "math"}},
                                 {"limit", 1},
                                 {"max_new_tokens", 16},
                                 {"judge", {{"endpoint", server.base_url()},
                                            {"endpoint_model", "judge-model"},
                                            {"api_key_env", "ALIGN_TEST_MT_BENCH_KEY"},
                                            {"timeout_seconds", 30}}},
                                 {"gates", {{"mt_bench.score", ">= 6.5"}}}});
  RecordingEventSink events;
  ASSERT_OK(RunEvalStage(job, events));
  const std::vector<std::string>& requests = server.requests();
  ASSERT_EQ(requests.size(), 4u);

  const nlohmann::json r = ReadJson(out + "/results.json");
  ExpectKnownScores(r["scores"]["mt_bench"]);
  EXPECT_EQ(r["scores"]["mt_bench"]["judge_prompts_truncated"], 0);
  // Every number written is a path the spec validator accepts as a gate (common/eval_scores.h).
  std::function<void(const nlohmann::json&, const std::string&)> gateable =
      [&](const nlohmann::json& node, const std::string& prefix) {
        for (const auto& [key, value] : node.items()) {
          const std::string path = prefix.empty() ? key : prefix + "." + key;
          if (value.is_object()) gateable(value, path);
          if (value.is_number()) {
            EXPECT_OK(CheckEvalScorePath(path, {{"mt_bench"}, {"model"}})) << path;
          }
        }
      };
  gateable(r["scores"], "");
  EXPECT_TRUE(r["gates"][0]["passed"].get<bool>());
  const nlohmann::json& rec = r["records"]["mt_bench"];
  EXPECT_EQ(rec["dataset_files"][0]["sha256"], kQuestionSha);
  EXPECT_EQ(rec["dataset_files"][1]["sha256"], kReferenceSha);
  EXPECT_EQ(rec["dataset_files"][2]["sha256"], kJudgePromptsSha);
  EXPECT_EQ(rec["judge"]["identity"], "endpoint:" + server.base_url() + "#judge-model");
  EXPECT_EQ(rec["judge"]["api_key_env"], "ALIGN_TEST_MT_BENCH_KEY");
  EXPECT_EQ(rec["judge"]["prompt_sha256"], "03fa56eb64d69beeb87e025a332678f703e9f7c07579ab66c2f274f58cefdca2");
  EXPECT_EQ(rec["template_sha256"].get<std::string>().size(), 64u);
  EXPECT_FALSE(rec["engine_version"].get<std::string>().empty());
  EXPECT_EQ(rec["generation"]["temperatures"]["writing"], 0.7);
  EXPECT_EQ(rec["generation"]["temperatures"]["math"], 0.0);
  EXPECT_EQ(rec["generation"]["max_new_tokens"], 16);

  // Each judgment is one chat completion at temperature 0 with the key; turn 2's prompt carries
  // the answer stories260K gave to turn 1 (from the per-question file).
  const std::string detail = ReadText(out + "/mt_bench.jsonl");
  const nlohmann::json first = nlohmann::json::parse(detail.substr(0, detail.find('\n')));
  EXPECT_EQ(first["question_id"], 81);
  const std::string answer_1 = first["turns"][0]["answer"].get<std::string>();
  for (const std::string& req : requests) {
    EXPECT_THAT(req, HasSubstr("POST /v1/chat/completions HTTP/1.1"));
    EXPECT_THAT(req, HasSubstr("Authorization: Bearer sk-secret-4242"));
  }
  const auto body = [&](int i) { return nlohmann::json::parse(requests[i].substr(requests[i].find("\r\n\r\n") + 4)); };
  EXPECT_EQ(body(0)["model"], "judge-model");
  EXPECT_EQ(body(0)["temperature"], 0);
  EXPECT_THAT(body(1)["messages"][1]["content"].get<std::string>(),
              HasSubstr("### Assistant A:\n" + answer_1 + "\n\n### User:\n"));
  EXPECT_THAT(body(2)["messages"][1]["content"].get<std::string>(), HasSubstr("[The Start of Reference Answer]"));
  // The key itself is stored nowhere.
  EXPECT_THAT(ReadText(out + "/results.json"), Not(HasSubstr("sk-secret-4242")));
  EXPECT_THAT(detail, Not(HasSubstr("sk-secret-4242")));
  for (const auto& e : events.events) EXPECT_THAT(e.dump(), Not(HasSubstr("sk-secret-4242")));
}

// stories260K as its own judge: it cannot write "[[n]]", so every judgment is a parse failure,
// counted and excluded; the score is null (not 0) and a gate on it fails.
TEST(MtBenchStage, EngineModelJudgeParseFailuresAreCountedNotZero) {
  model::SetComputeThreads(1);
  const std::string out = ::testing::TempDir() + "/mt_bench_model_judge";
  fs::remove_all(out);
  JobSpec job = MtBenchJob(out, {{"suites", {"mt_bench"}},
                                 {"mt_bench_categories", {"writing", "reasoning"}},
                                 {"limit", 1},
                                 {"max_new_tokens", 8},
                                 {"judge", {{"model", "data://models/stories260K"}, {"max_tokens", 12}}},
                                 {"gates", {{"mt_bench.score", ">= 1"}}}});
  RecordingEventSink events;
  const absl::Status s = RunEvalStage(job, events);
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kFailedPrecondition,
                          HasSubstr("gate mt_bench.score >= 1 failed: no such score")));
  const nlohmann::json r = ReadJson(out + "/results.json");
  const nlohmann::json& m = r["scores"]["mt_bench"];
  EXPECT_EQ(m["questions"], 2);
  EXPECT_EQ(m["judged"], 4);
  EXPECT_EQ(m["rated"], 0);
  EXPECT_EQ(m["parse_failures"], 4);
  EXPECT_TRUE(m["score"].is_null());
  EXPECT_TRUE(m["turn_2"].is_null());
  EXPECT_TRUE(m["categories"]["reasoning"]["score"].is_null());
  // The judge prompts (FastChat's instructions plus question and answer) exceed stories260K's
  // 512-token context minus the judgment's 12: every one is cut from the left.
  EXPECT_EQ(m["judge_prompts_truncated"], 4);
  const nlohmann::json& judge = r["records"]["mt_bench"]["judge"];
  EXPECT_EQ(judge["identity"], "model:" + DataPath("models/stories260K"));
  EXPECT_EQ(judge["model_sha256"].get<std::string>().size(), 64u);
  EXPECT_EQ(judge["max_tokens"], 12);
  EXPECT_EQ(judge["temperature"], 0.0);
  const std::string detail = ReadText(out + "/mt_bench.jsonl");
  EXPECT_THAT(detail, HasSubstr("\"parse_error\":\"no [[rating]] found\""));
}

TEST(MtBenchStage, MissingJudgeSettingsAreConfigErrors) {
  RecordingEventSink events;
  EXPECT_THAT(RunEvalStage(MtBenchJob("/nonexistent", {{"suites", {"mt_bench"}}}), events),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("suite mt_bench needs a judge")));
  EXPECT_THAT(RunEvalStage(MtBenchJob("/nonexistent", {{"suites", {"mt_bench"}},
                                                       {"judge", {{"endpoint", "http://127.0.0.1:1/v1"}}}}),
                           events),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("judge.endpoint_model: required")));
  EXPECT_THAT(RunEvalStage(MtBenchJob("/nonexistent", {{"suites", {"mt_bench"}},
                                                       {"judge", {{"model", "/m"}, {"endpoint", "http://h/v1"},
                                                                  {"endpoint_model", "x"}}}}),
                           events),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not both")));
  unsetenv("ALIGN_TEST_NO_SUCH_KEY");
  EXPECT_THAT(RunEvalStage(MtBenchJob(::testing::TempDir() + "/mt_bench_nokey",
                                      {{"suites", {"mt_bench"}}, {"limit", 1},
                                       {"judge", {{"endpoint", "http://127.0.0.1:1/v1"}, {"endpoint_model", "x"},
                                                  {"api_key_env", "ALIGN_TEST_NO_SUCH_KEY"}}}}),
                           events),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("ALIGN_TEST_NO_SUCH_KEY is not set")));
}

}  // namespace
}  // namespace align::engine::eval
