#include "worker/engine/eval/judge.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "common/testing/status_matchers.h"
#include "common/testing/test_data.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "worker/engine/eval/scoring.h"

namespace align::engine::eval {
namespace {

using ::align::testing::DataPath;
using ::align::testing::StatusIs;
using ::testing::HasSubstr;

// A one-request HTTP server on 127.0.0.1 (port chosen by the kernel) that records the request
// and answers with a fixed status and body.
class OneShotServer {
 public:
  OneShotServer(int status, std::string body) : status_(status), body_(std::move(body)) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
    listen(fd_, 1);
    socklen_t len = sizeof(addr);
    getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { Serve(); });
  }
  ~OneShotServer() {
    thread_.join();
    close(fd_);
  }
  int port() const { return port_; }
  // Valid after the client call returned (the server thread has answered by then).
  std::string request() {
    thread_.join();
    thread_ = std::thread([] {});
    return request_;
  }

 private:
  void Serve() {
    const int c = accept(fd_, nullptr, nullptr);
    if (c < 0) return;
    char buf[65536];
    size_t need = std::string::npos;
    while (true) {
      const ssize_t n = read(c, buf, sizeof(buf));
      if (n <= 0) break;
      request_.append(buf, n);
      const size_t head_end = request_.find("\r\n\r\n");
      if (head_end != std::string::npos && need == std::string::npos) {
        const size_t cl = request_.find("Content-Length: ");
        const size_t length = cl == std::string::npos ? 0 : std::stoul(request_.substr(cl + 16));
        need = head_end + 4 + length;
      }
      if (need != std::string::npos && request_.size() >= need) break;
    }
    const std::string reply = "HTTP/1.1 " + std::to_string(status_) + " X\r\nContent-Type: application/json\r\n"
                              "Content-Length: " + std::to_string(body_.size()) + "\r\nConnection: close\r\n\r\n" + body_;
    (void)write(c, reply.data(), reply.size());
    close(c);
  }
  int status_;
  std::string body_;
  int fd_ = -1;
  int port_ = 0;
  std::thread thread_;
  std::string request_;
};

TEST(EndpointJudge, SendsAChatCompletionAndReturnsTheContent) {
  OneShotServer server(200, R"({"choices":[{"message":{"role":"assistant","content":"Good. Rating: [[7.5]]"}}]})");
  setenv("ALIGN_TEST_JUDGE_KEY", "sk-test-123", 1);
  ASSERT_OK_AND_ASSIGN(JudgeFn judge, MakeEndpointJudge({.base_url = "http://127.0.0.1:" + std::to_string(server.port()) + "/v1/",
                                                         .model = "judge-model",
                                                         .api_key_env = "ALIGN_TEST_JUDGE_KEY",
                                                         .timeout_seconds = 30}));
  ASSERT_OK_AND_ASSIGN(std::string text, judge("You are a judge.", "Rate this."));
  EXPECT_EQ(text, "Good. Rating: [[7.5]]");
  EXPECT_EQ(ParseJudgeRating(text).score, 7.5);
  const std::string req = server.request();
  EXPECT_THAT(req, HasSubstr("POST /v1/chat/completions HTTP/1.1"));
  EXPECT_THAT(req, HasSubstr("Authorization: Bearer sk-test-123"));
  const auto body = nlohmann::json::parse(req.substr(req.find("\r\n\r\n") + 4));
  EXPECT_EQ(body["model"], "judge-model");
  EXPECT_EQ(body["temperature"], 0);
  EXPECT_EQ(body["messages"][0]["role"], "system");
  EXPECT_EQ(body["messages"][1]["content"], "Rate this.");
}

TEST(EndpointJudge, HttpErrorIsUnavailableWithTheStatus) {
  OneShotServer server(500, R"({"error":"overloaded"})");
  ASSERT_OK_AND_ASSIGN(JudgeFn judge, MakeEndpointJudge({.base_url = "http://127.0.0.1:" + std::to_string(server.port()) + "/v1",
                                                         .model = "m"}));
  EXPECT_THAT(judge("", "x"), StatusIs(absl::StatusCode::kUnavailable, HasSubstr("HTTP 500")));
  (void)server.request();
}

TEST(EndpointJudge, MissingKeyVariableIsAConfigError) {
  unsetenv("ALIGN_TEST_NO_SUCH_KEY");
  EXPECT_THAT(MakeEndpointJudge({.base_url = "http://127.0.0.1:1/v1", .model = "m", .api_key_env = "ALIGN_TEST_NO_SUCH_KEY"}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("ALIGN_TEST_NO_SUCH_KEY")));
}

TEST(MtBench, QuestionsReferencesAndJudgePrompts) {
  ASSERT_OK_AND_ASSIGN(auto qs, LoadMtBench(DataPath("eval/mt-bench")));
  ASSERT_EQ(qs.size(), 80u);
  int with_reference = 0;
  for (const auto& q : qs) {
    EXPECT_EQ(q.turns.size(), 2u);
    if (MtBenchNeedsReference(q.category)) {
      EXPECT_EQ(q.reference_answers.size(), 2u) << q.id;
      ++with_reference;
    }
  }
  EXPECT_EQ(with_reference, 30);
  EXPECT_EQ(MtBenchTemperature("writing"), 0.7);
  EXPECT_EQ(MtBenchTemperature("math"), 0.0);
  EXPECT_EQ(MtBenchTemperature("stem"), 0.1);
  ASSERT_OK_AND_ASSIGN(auto prompts, LoadJudgePrompts(DataPath("eval/mt-bench")));
  EXPECT_EQ(JudgePromptName("math", 2), "single-math-v1-multi-turn");
  EXPECT_EQ(JudgePromptName("writing", 1), "single-v1");
  const auto& q0 = qs[0];
  ASSERT_OK_AND_ASSIGN(std::string filled, FillJudgePrompt(prompts.at("single-v1"), q0, {"ANSWER ONE {answer}"}, 1));
  EXPECT_THAT(filled, HasSubstr("[Question]\n" + q0.turns[0] + "\n\n[The Start of Assistant's Answer]\nANSWER ONE {answer}\n"));
  EXPECT_THAT(FillJudgePrompt(prompts.at("single-v1-multi-turn"), q0, {"a"}, 2),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace align::engine::eval
