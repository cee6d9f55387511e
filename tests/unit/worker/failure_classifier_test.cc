// Failure classification: log rules first (Determined-style), then the engine's error event, then
// exit codes and signals; and loading rules from YAML with clear errors.
#include "worker/supervisor/failure_classifier.h"

#include <signal.h>

#include <fstream>

#include "common/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/worker/test_util.h"

namespace align::worker {
namespace {

using ::align::testing::StatusIs;
using ::testing::HasSubstr;

Classification Classify(FailureInput in) {
  auto c = FailureClassifier::Create(DefaultLogRules());
  EXPECT_TRUE(c.ok());
  return c->Classify(in);
}

TEST(FailureClassifierTest, CudaOutOfMemoryIsAUserError) {
  const Classification c = Classify({.exit = {.exit_code = 1},
                                     .engine_failure_class = "infrastructure",
                                     .log_tail = {"loading", "RuntimeError: CUDA out of memory. "
                                                             "Tried to allocate 20.00 MiB"}});
  EXPECT_EQ(c.failure_class, v1::USER_ERROR);
  EXPECT_EQ(c.reason,
            "exited with code 1; log rule 'cuda-oom' matched: RuntimeError: CUDA out of memory. "
            "Tried to allocate 20.00 MiB");
}

TEST(FailureClassifierTest, EccAndNcclTimeoutsAreInfrastructure) {
  EXPECT_EQ(Classify({.exit = {.signal = SIGABRT},
                      .log_tail = {"[E ProcessGroupNCCL.cpp:828] Watchdog caught collective "
                                   "operation timeout: WorkNCCL(OpType=ALLREDUCE)"}})
                .failure_class,
            v1::INFRASTRUCTURE);
  EXPECT_EQ(Classify({.exit = {.exit_code = 1},
                      .log_tail = {"CUDA error: uncorrectable ECC error encountered"}})
                .failure_class,
            v1::INFRASTRUCTURE);
}

TEST(FailureClassifierTest, ExitCodesAndSignalsWithoutAMatchingRule) {
  EXPECT_EQ(Classify({.exit = {.exit_code = 2}}).failure_class, v1::USER_ERROR);
  EXPECT_EQ(Classify({.exit = {.exit_code = 2}}).reason, "exited with code 2 (bad job or config)");
  EXPECT_EQ(Classify({.exit = {.exit_code = 5}}).failure_class, v1::USER_ERROR);
  EXPECT_EQ(Classify({.exit = {.exit_code = 5}}).reason, "exited with code 5 (evaluation gates not met)");
  EXPECT_EQ(Classify({.exit = {.exit_code = 3}}).failure_class, v1::USER_ERROR);
  EXPECT_EQ(Classify({.exit = {.exit_code = 4}}).failure_class, v1::INFRASTRUCTURE);
  EXPECT_EQ(Classify({.exit = {.exit_code = 1}}).failure_class, v1::USER_ERROR);
  EXPECT_EQ(Classify({.exit = {.signal = SIGSEGV}}).failure_class, v1::USER_ERROR);
  EXPECT_EQ(Classify({.exit = {.signal = SIGSEGV}}).reason, "killed by SIGSEGV");
  EXPECT_EQ(Classify({.exit = {.signal = SIGKILL}}).failure_class, v1::INFRASTRUCTURE);
  EXPECT_EQ(Classify({.exit = {.signal = SIGKILL}}).reason, "killed by SIGKILL");
}

TEST(FailureClassifierTest, TheEngineErrorEventDecidesWhenNoRuleMatches) {
  const Classification c = Classify({.exit = {.exit_code = 1},
                                     .engine_failure_class = "infrastructure",
                                     .engine_message = "cannot reach rank 1"});
  EXPECT_EQ(c.failure_class, v1::INFRASTRUCTURE);
  EXPECT_EQ(c.reason, "exited with code 1: cannot reach rank 1");
}

TEST(FailureClassifierTest, RulesLoadFromYamlInOrder) {
  testing::ScratchDir dir;
  const std::string path = dir.path() + "/rules.yaml";
  std::ofstream(path) << "- {name: flaky-fs, pattern: 'Stale file handle', class: infrastructure}\n"
                         "- {pattern: 'assert', class: user_error}\n";
  ASSERT_OK_AND_ASSIGN(auto rules, LoadLogRules(path));
  ASSERT_EQ(rules.size(), 2u);
  EXPECT_EQ(rules[0].name, "flaky-fs");
  EXPECT_EQ(rules[1].name, "rule-2");
  ASSERT_OK_AND_ASSIGN(auto c, FailureClassifier::Create(rules));
  const Classification out =
      c.Classify({.exit = {.exit_code = 1}, .log_tail = {"open: Stale file handle"}});
  EXPECT_EQ(out.failure_class, v1::INFRASTRUCTURE);
  EXPECT_THAT(out.reason, HasSubstr("log rule 'flaky-fs' matched"));
}

TEST(FailureClassifierTest, BadRulesAreRejectedWithTheirLocation) {
  testing::ScratchDir dir;
  const std::string path = dir.path() + "/rules.yaml";
  std::ofstream(path) << "- {pattern: 'x', class: maybe}\n";
  EXPECT_THAT(LoadLogRules(path),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("rule 1: class 'maybe' is not one of user_error, infrastructure")));
  std::ofstream(path) << "- {pattern: 'x', class: user_error, action: retry}\n";
  EXPECT_THAT(LoadLogRules(path), StatusIs(absl::StatusCode::kInvalidArgument,
                                           HasSubstr("unknown key 'action'")));
  EXPECT_THAT(FailureClassifier::Create({{"broken", "(unclosed", v1::USER_ERROR}}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("log rule 'broken'")));
}

}  // namespace
}  // namespace align::worker
