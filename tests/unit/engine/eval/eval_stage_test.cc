#include "worker/engine/eval/eval_stage.h"

#include <filesystem>
#include <fstream>
#include <map>

#include "common/eval_scores.h"
#include "common/testing/status_matchers.h"
#include "common/testing/test_data.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "worker/engine/core/failure.h"
#include "worker/engine/eval/loglik.h"
#include "worker/engine/model/model.h"
#include "worker/engine/tokenizer/tokenizer.h"

namespace align::engine::eval {
namespace {

namespace fs = std::filesystem;
using ::align::testing::DataDir;
using ::align::testing::DataPath;
using ::align::testing::StatusIs;
using ::testing::HasSubstr;

class Stories : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    model::SetComputeThreads(1);  // CI shares 2 cores; more threads only contend
    auto tok = Tokenizer::Load(DataPath("models/stories260K"));
    ASSERT_TRUE(tok.ok()) << tok.status();
    tokenizer_ = std::move(*tok).release();
    auto lm = model::CausalLM::Load(DataPath("models/stories260K"), {});
    ASSERT_TRUE(lm.ok()) << lm.status();
    model_ = std::move(*lm).release();
  }
  static Tokenizer* tokenizer_;
  static model::CausalLM* model_;
};
// Every number under results.json "scores" must be a path the spec validator accepts as a gate
// (common/eval_scores.h), or a gate on it would be refused before the pipeline runs.
void ExpectGateable(const nlohmann::json& node, const std::string& prefix, const EvalScoreContext& c) {
  for (const auto& [key, value] : node.items()) {
    const std::string path = prefix.empty() ? key : prefix + "." + key;
    if (value.is_object()) {
      ExpectGateable(value, path, c);
    } else if (value.is_number()) {
      EXPECT_OK(CheckEvalScorePath(path, c)) << path;
    }
  }
}

Tokenizer* Stories::tokenizer_ = nullptr;
model::CausalLM* Stories::model_ = nullptr;

TEST_F(Stories, EncodePairMovesTrailingSpaceAndSplitsAtTheContextBoundary) {
  const EncodedPair p = EncodePair(*tokenizer_, {"Once upon a time ", "there was"});
  std::vector<int32_t> whole = tokenizer_->Encode("Once upon a time there was", true);
  std::vector<int32_t> joined = p.context;
  joined.insert(joined.end(), p.continuation.begin(), p.continuation.end());
  EXPECT_EQ(joined, whole);
  EXPECT_EQ(p.context, tokenizer_->Encode("Once upon a time", true));
  ASSERT_FALSE(p.continuation.empty());
  // The moved space is inside the first continuation piece ("▁there"), never a lone "▁".
  EXPECT_EQ(tokenizer_->IdToToken(p.continuation[0]).value_or(""), "\xe2\x96\x81there");
  EXPECT_EQ(tokenizer_->Decode(p.continuation, true), "there was");
  EXPECT_EQ(p.context.front(), 1);  // BOS
}

TEST_F(Stories, LoglikMatchesAManualForwardAndIgnoresBatchSize) {
  const std::vector<LoglikRequest> reqs = {
      {"Once upon a time", " there was a girl"}, {"Answer:", " A"}, {"Answer:", " B"},
      {"The cat sat on the", " mat."}, {"Lily and Tom went to the park. They", " played"}};
  ASSERT_OK_AND_ASSIGN(auto one, ScoreLoglik(*model_, *tokenizer_, reqs, {.batch_size = 1}));
  ASSERT_OK_AND_ASSIGN(auto three, ScoreLoglik(*model_, *tokenizer_, reqs, {.batch_size = 3}));
  ASSERT_OK_AND_ASSIGN(auto all, ScoreLoglik(*model_, *tokenizer_, reqs, {.batch_size = 16}));
  for (size_t i = 0; i < reqs.size(); ++i) {
    EXPECT_LT(one[i].loglik, 0.0);
    EXPECT_NEAR(one[i].loglik, three[i].loglik, 1e-4) << i;
    EXPECT_NEAR(one[i].loglik, all[i].loglik, 1e-4) << i;
    EXPECT_EQ(one[i].greedy, all[i].greedy) << i;
  }
  // Manual: log-softmax over one unpadded forward pass of the whole sequence.
  const EncodedPair p = EncodePair(*tokenizer_, reqs[0]);
  std::vector<int64_t> ids(p.context.begin(), p.context.end());
  ids.insert(ids.end(), p.continuation.begin(), p.continuation.end());
  at::Tensor input = at::tensor(ids, at::kLong).unsqueeze(0);
  at::Tensor logp = at::log_softmax(model_->Forward(input), -1);
  double manual = 0;
  for (size_t k = 0; k < p.continuation.size(); ++k) {
    const int64_t pos = static_cast<int64_t>(p.context.size() + k);
    manual += logp[0][pos - 1][ids[pos]].item<double>();
  }
  EXPECT_NEAR(one[0].loglik, manual, 1e-4);
}

// Requests with the same input (context + continuation minus its last token) share one forward
// row: " A"/" B" after the same context, and one text split at two places. Scores equal those of
// one row per request.
TEST_F(Stories, SharedInputsScoreLikeSeparateRows) {
  const std::vector<LoglikRequest> reqs = {
      {"Question: who?\nAnswer:", " A"}, {"Question: who?\nAnswer:", " B"}, {"Once upon a", " time there"},
      {"Question: who?\nAnswer:", " C"}, {"Once upon a time", " there"},     {"Lily was", " happy."}};
  EXPECT_EQ(EncodePair(*tokenizer_, reqs[2]).context.size() + EncodePair(*tokenizer_, reqs[2]).continuation.size(),
            EncodePair(*tokenizer_, reqs[4]).context.size() + EncodePair(*tokenizer_, reqs[4]).continuation.size());
  ASSERT_OK_AND_ASSIGN(auto shared, ScoreLoglik(*model_, *tokenizer_, reqs, {.batch_size = 2}));
  ASSERT_OK_AND_ASSIGN(auto separate, ScoreLoglik(*model_, *tokenizer_, reqs, {.batch_size = 2, .share_inputs = false}));
  ASSERT_OK_AND_ASSIGN(auto single, ScoreLoglik(*model_, *tokenizer_, {reqs[4]}, {.batch_size = 1}));
  for (size_t i = 0; i < reqs.size(); ++i) {
    EXPECT_NEAR(shared[i].loglik, separate[i].loglik, 1e-4) << i;
    EXPECT_EQ(shared[i].greedy, separate[i].greedy) << i;
  }
  EXPECT_NEAR(shared[4].loglik, single[0].loglik, 1e-4);
  // Different answers after one context get different scores (not one row's score copied).
  EXPECT_NE(shared[0].loglik, shared[1].loglik);
  EXPECT_NE(shared[2].loglik, shared[4].loglik);
}

nlohmann::json ReadJson(const std::string& path) {
  std::ifstream in(path);
  return nlohmann::json::parse(in);
}

JobSpec EvalJob(const std::string& out_dir, nlohmann::json config) {
  JobSpec job;
  job.stage_name = "eval";
  job.stage_type = "eval";
  job.stage = {{"name", "eval"}, {"eval", std::move(config)}};
  job.inputs["model"] = DataPath("models/stories260K");
  job.data_dir = DataDir();
  job.output_dir = out_dir;
  return job;
}

// The end-to-end stage on stories260K: MMLU (2 subjects, 4 questions each, 1 shot) and
// TruthfulQA (4 questions). stories260K knows only children's stories, so near-chance scores
// are the honest result; the test pins the bookkeeping and the reproducibility record.
TEST(EvalStage, RunsOnStories260KAndWritesTheRecord) {
  model::SetComputeThreads(1);
  const std::string out = ::testing::TempDir() + "/eval_stage_ok";
  fs::remove_all(out);
  JobSpec job = EvalJob(out, {{"suites", {"mmlu", "truthfulqa"}},
                              {"mmlu_shots", 1},
                              {"mmlu_subjects", {"abstract_algebra", "anatomy"}},
                              {"limit", "4"},
                              {"batch_size", 8},
                              {"gates", {{"mmlu.acc", ">= 0"}}}});
  RecordingEventSink events;
  ASSERT_OK(RunEvalStage(job, events));
  const nlohmann::json r = ReadJson(out + "/results.json");
  ExpectGateable(r["scores"], "", {{"mmlu", "truthfulqa"}, {"model"}});
  const auto& mmlu = r["scores"]["mmlu"];
  EXPECT_EQ(mmlu["questions"], 8);
  EXPECT_EQ(mmlu["subjects"]["abstract_algebra"]["questions"], 4);
  EXPECT_GE(mmlu["acc"].get<double>(), 0.0);
  EXPECT_LE(mmlu["acc"].get<double>(), 1.0);
  std::printf("stories260K: mmlu.acc %.4f  truthfulqa.mc1 %.4f mc2 %.4f\n", mmlu["acc"].get<double>(),
              r["scores"]["truthfulqa"]["mc1"].get<double>(), r["scores"]["truthfulqa"]["mc2"].get<double>());
  EXPECT_EQ(r["scores"]["truthfulqa"]["questions"], 4);
  const double mc2 = r["scores"]["truthfulqa"]["mc2"].get<double>();
  EXPECT_GT(mc2, 0.0);
  EXPECT_LT(mc2, 1.0);
  const auto& rec = r["records"]["mmlu"];
  EXPECT_EQ(rec["shots"], 1);
  EXPECT_EQ(rec["dataset_files"][0]["sha256"],
            "4be89c0fb1d2419722e88880f6da3da95750367185ecd36f6492a6f74785cf64");
  EXPECT_EQ(rec["template_sha256"].get<std::string>().size(), 64u);
  EXPECT_FALSE(rec["engine_version"].get<std::string>().empty());
  EXPECT_EQ(r["records"]["truthfulqa"]["dataset_files"][0]["sha256"],
            "99d6ae7755e3b435eade956068c9de7c0c474770344237aeb66b56519ba4b697");
  EXPECT_EQ(r["records"]["truthfulqa"]["shots"], 6);
  EXPECT_TRUE(r["gates"][0]["passed"].get<bool>());
  // Each suite reports its progress; the last report of a suite says all its rows are done.
  std::map<std::string, nlohmann::json> last_progress;
  for (const auto& e : events.events) {
    if (e["event"] == "progress") last_progress[e["suite"].get<std::string>()] = e;
  }
  ASSERT_EQ(last_progress.size(), 2u);
  // 8 questions x 2 forward rows: stories260K spells " B" as one token and " A", " C", " D" as
  // "▁" + letter, so B's input is the context and the other three share context + "▁".
  EXPECT_EQ(last_progress["mmlu"]["done"], 16);
  EXPECT_EQ(last_progress["mmlu"]["total"], 16);
  EXPECT_EQ(last_progress["truthfulqa"]["done"], last_progress["truthfulqa"]["total"]);
  EXPECT_EQ(last_progress["truthfulqa"]["phase"], "eval");
  bool artifact = false;
  for (const auto& e : events.events) {
    if (e["event"] == "artifact" && e["name"] == "results") {
      artifact = true;
      EXPECT_EQ(e["path"], out + "/results.json");
    }
  }
  EXPECT_TRUE(artifact);
}

TEST(EvalStage, FailedGateFailsTheStageWithAReport) {
  const std::string out = ::testing::TempDir() + "/eval_stage_gate";
  fs::remove_all(out);
  JobSpec job = EvalJob(out, {{"suites", {"mmlu"}},
                              {"mmlu_shots", 0},
                              {"mmlu_subjects", {"anatomy"}},
                              {"limit", 2},
                              {"gates", {{"mmlu.acc", ">= 0.99"}, {"winrate_vs_sft", ">= 0.5"}}}});
  RecordingEventSink events;
  const absl::Status s = RunEvalStage(job, events);
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kFailedPrecondition,
                          HasSubstr("gate mmlu.acc >= 0.99 failed: value ")));
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("; gate winrate_vs_sft >= 0.5 failed: no such score in the results"));
  // One line (it is the stage's reason in tables), and its own exit code: the run worked, the
  // model did not pass.
  EXPECT_THAT(std::string(s.message()),
              ::testing::StartsWith("stage 'eval': eval gates failed: gate mmlu.acc >= 0.99 failed"));
  EXPECT_EQ(std::string(s.message()).find('\n'), std::string::npos);
  EXPECT_EQ(ExitCodeFor(s), 5);
  // The results are written even when a gate fails: they explain the failure.
  const nlohmann::json r = ReadJson(out + "/results.json");
  EXPECT_EQ(r["scores"]["mmlu"]["questions"], 2);
  EXPECT_FALSE(r["gates"][0]["passed"].get<bool>());
}

// Hand-made pairs whose answer stories260K knows: a story continuation against letter salad.
// Three pairs prefer the story, the fourth prefers the salad, so the accuracy is exactly 3/4.
std::string WritePairs(const std::string& dir) {
  fs::create_directories(dir);
  const std::string path = dir + "/pairs.jsonl";
  std::ofstream out(path);
  out << nlohmann::json{{"prompt", "Once upon a time, there was a little girl named Lily. She liked to"},
                        {"chosen", " play with her toys."}, {"rejected", " qzx vkp wrrj ftt."}}.dump() << "\n"
      << nlohmann::json{{"prompt", "Tom and his mom went to the"}, {"chosen", " park."},
                        {"rejected", " xkqj zzv."}}.dump() << "\n"
      << nlohmann::json{{"prompt", "The dog was very happy. He wagged his"}, {"chosen", " tail."},
                        {"rejected", " qqxz jvk."}}.dump() << "\n"
      << nlohmann::json{{"prompt", "Lily saw a big"}, {"chosen", " jjqx vzkw."}, {"rejected", " dog."}}.dump() << "\n";
  return path;
}

TEST(EvalStage, PreferenceAccuracyOnHandMadePairs) {
  model::SetComputeThreads(1);
  const std::string out = ::testing::TempDir() + "/eval_stage_pa";
  fs::remove_all(out);
  JobSpec job = EvalJob(out, {{"suites", {"preference_accuracy"}}, {"batch_size", 3}});
  job.inputs.erase("model");
  job.inputs["candidate"] = DataPath("models/stories260K");
  // The same weights as the baseline: the policy/reference log-ratios are identical, so no
  // pair has a positive implicit-reward margin (a tie counts as wrong): exactly 0.
  job.inputs["baseline"] = DataPath("models/stories260K");
  job.stage["data"] = {{{"path", WritePairs(out + "/data")}, {"format", "preference"}}};
  RecordingEventSink events;
  ASSERT_OK(RunEvalStage(job, events));
  const nlohmann::json r = ReadJson(out + "/results.json");
  ExpectGateable(r["scores"], "", {{"preference_accuracy"}, {"baseline", "candidate"}});
  const auto& pa = r["scores"]["preference_accuracy"];
  EXPECT_EQ(pa["candidate"], 0.75);
  EXPECT_EQ(pa["baseline"], 0.75);
  EXPECT_EQ(pa["implicit_reward"], 0.0);
  EXPECT_EQ(pa["pairs"], 4);
  EXPECT_EQ(r["records"]["preference_accuracy"]["dataset_files"][0]["path"], out + "/data/pairs.jsonl");
}

TEST(EvalStage, WinRateAgainstTheSameModelIsAllTies) {
  model::SetComputeThreads(1);
  const std::string out = ::testing::TempDir() + "/eval_stage_winrate";
  fs::remove_all(out);
  // Candidate and baseline are the same weights, so their greedy answers and rewards are equal:
  // every prompt is a tie, the win rate exactly 1/2. The reward model is judge.model (stories260K
  // with a new, seeded scalar head); the judge is not compared as a baseline.
  JobSpec job = EvalJob(out, {{"suites", {"winrate"}}, {"limit", 3}, {"max_new_tokens", 8},
                              {"judge", {{"model", DataPath("models/stories260K")}}}});
  job.inputs.erase("model");
  job.inputs["candidate"] = DataPath("models/stories260K");
  job.inputs["sft"] = DataPath("models/stories260K");
  job.inputs["judge_model"] = DataPath("models/stories260K");
  job.stage["data"] = {{{"path", WritePairs(out + "/data")}, {"format", "preference"}}};
  RecordingEventSink events;
  ASSERT_OK(RunEvalStage(job, events));
  const nlohmann::json r = ReadJson(out + "/results.json");
  EXPECT_EQ(r["scores"]["winrate_vs_sft"], 0.5);
  ExpectGateable(r["scores"], "", {{"winrate"}, {"candidate", "sft"}});
  EXPECT_FALSE(r["scores"].contains("winrate_vs_judge_model"));
  EXPECT_FALSE(r["models"].contains("judge_model"));
  EXPECT_EQ(r["records"]["winrate"]["reward_model"], DataPath("models/stories260K"));
  EXPECT_EQ(r["records"]["winrate"]["generation"]["max_new_tokens"], 8);

  // Without another model there is nothing to compare.
  job.inputs.erase("sft");
  EXPECT_THAT(RunEvalStage(job, events),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("compares the candidate with other models")));
}

TEST(EvalStage, BadConfigIsAClearError) {
  RecordingEventSink events;
  EXPECT_THAT(RunEvalStage(EvalJob("/nonexistent", {{"suites", {"mmlu", "bogus"}}}), events),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("unknown suite 'bogus'")));
  EXPECT_THAT(RunEvalStage(EvalJob("/nonexistent", {{"suites", {"mmlu"}}, {"gates", {{"mmlu.acc", "big"}}}}), events),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("mmlu.acc")));
  EXPECT_THAT(RunEvalStage(EvalJob("/nonexistent", nlohmann::json::object()), events),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("config.suites is empty")));
}

}  // namespace
}  // namespace align::engine::eval
