#include "worker/engine/runner/runner.h"

#include <filesystem>
#include <fstream>

#include "common/testing/status_matchers.h"
#include "common/testing/test_data.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "worker/engine/core/failure.h"
#include "worker/engine/data/jsonl.h"

namespace align::engine::runner {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

TEST(BlasTest, WarnsOnReferenceBlasOnly) {
  const std::string ref =
      "7f00-7f10 r-xp 0 08:01 1 /usr/lib/x86_64-linux-gnu/blas/libblas.so.3.11.0\n";
  const std::string open =
      "7f00-7f10 r-xp 0 08:01 1 /usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3\n";
  auto w = ReferenceBlasWarning(ref);
  ASSERT_TRUE(w.has_value());
  EXPECT_THAT(*w, HasSubstr("OpenBLAS"));
  EXPECT_FALSE(ReferenceBlasWarning(open).has_value());
  EXPECT_FALSE(ReferenceBlasWarning("").has_value());
}

TEST(ExitCodeTest, Classes) {
  EXPECT_EQ(ExitCodeFor(absl::OkStatus()), 0);
  EXPECT_EQ(ExitCodeFor(absl::InvalidArgumentError("x")), 2);
  EXPECT_EQ(ExitCodeFor(MarkInputError(absl::InvalidArgumentError("bad line"))), 3);
  EXPECT_EQ(ExitCodeFor(absl::UnavailableError("disk")), 4);
  EXPECT_EQ(ExitCodeFor(MarkGateFailure(absl::FailedPreconditionError("gates"))), 5);
}

class RunnerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "/runner_test_" + std::to_string(::getpid());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  JobSpec Job(nlohmann::json stage, const std::string& seed = "7") {
    nlohmann::json j = {{"stage", stage}, {"output_dir", dir_ + "/out"}, {"work_dir", dir_ + "/work"},
                        {"data_dir", ::align::testing::DataDir()}, {"defaults", {{"seed", seed}}}};
    auto job = ParseJob(j.dump(), "job.json");
    EXPECT_OK(job.status());
    return *job;
  }
  std::string dir_;
};

TEST_F(RunnerTest, PreferenceFormatWritesSplitsReportAndArtifacts) {
  JobSpec job = Job({{"name", "prefs"},
                     {"type", "PREFERENCE_FORMAT"},
                     {"data", {{{"path", "data://datasets/hh-rlhf/harmless-base-test.jsonl.gz"},
                                {"format", "HH_RLHF"}, {"max_examples", "200"}},
                               {{"path", "data://datasets/oasst/en_100_tree.jsonl"},
                                {"format", "OASST_TREE"}, {"language", "en"}, {"max_examples", "10"}}}},
                     {"preference_format", {{"test_fraction", 0.1}}}});
  RecordingEventSink events;
  ASSERT_EQ(RunJob(job, events), 0);
  ASSERT_OK_AND_ASSIGN(auto train, data::ReadJsonlRows(dir_ + "/out/train.jsonl", data::OnBadLine::kFail));
  ASSERT_OK_AND_ASSIGN(auto test, data::ReadJsonlRows(dir_ + "/out/test.jsonl", data::OnBadLine::kFail));
  std::ifstream in(dir_ + "/out/report.json");
  nlohmann::json report = nlohmann::json::parse(in);
  const int64_t kept = report["kept"].get<int64_t>();
  EXPECT_EQ(static_cast<int64_t>(train.size() + test.size()), kept);
  EXPECT_EQ(static_cast<int64_t>(test.size()), std::llround(0.1 * static_cast<double>(kept)));
  EXPECT_EQ(report["sources"][0]["kept"].get<int64_t>() +
                (report["sources"][0]["dropped"].contains("empty_completion")
                     ? report["sources"][0]["dropped"]["empty_completion"].get<int64_t>() : 0) +
                (report["sources"][0]["dropped"].contains("identical")
                     ? report["sources"][0]["dropped"]["identical"].get<int64_t>() : 0),
            200);
  EXPECT_TRUE(train[0]["prompt"].is_array());
  int artifacts = 0;
  for (const auto& e : events.events) {
    if (e["event"] == "artifact") {
      ++artifacts;
      EXPECT_EQ(e["sha256"].get<std::string>().size(), 64u);
    }
  }
  EXPECT_EQ(artifacts, 3);
  EXPECT_EQ(events.events.front()["event"], "start");
  EXPECT_EQ(events.events.back()["event"], "done");
}

TEST_F(RunnerTest, ErrorsMapToExitCodes) {
  RecordingEventSink events;
  JobSpec bad_type = Job({{"name", "x"}, {"type", "FROBNICATE"}});
  EXPECT_EQ(RunJob(bad_type, events), 2);
  EXPECT_EQ(events.events.back()["event"], "error");
  EXPECT_EQ(events.events.back()["failure_class"], "user_error");
  JobSpec missing = Job({{"name", "x"}, {"type", "PREFERENCE_FORMAT"},
                         {"data", {{{"path", dir_ + "/nope.jsonl"}}}}});
  EXPECT_EQ(RunJob(missing, events), 3);
  {
    std::ofstream(dir_ + "/bad.jsonl") << "{\"chosen\": \"\\n\\nHuman: a\\n\\nAssistant: b\", "
                                          "\"rejected\": \"\\n\\nHuman: a\\n\\nAssistant: c\"}\nnot json\n";
  }
  JobSpec bad_line = Job({{"name", "x"}, {"type", "PREFERENCE_FORMAT"},
                          {"data", {{{"path", dir_ + "/bad.jsonl"}}}}});
  EXPECT_EQ(RunJob(bad_line, events), 3);
  EXPECT_THAT(events.events.back()["message"].get<std::string>(), HasSubstr("bad.jsonl:2"));
  JobSpec skip = Job({{"name", "x"}, {"type", "PREFERENCE_FORMAT"},
                      {"data", {{{"path", dir_ + "/bad.jsonl"}, {"on_bad_line", "SKIP"}}}}});
  EXPECT_EQ(RunJob(skip, events), 0);
  JobSpec smoothing = Job({{"name", "x"}, {"type", "DPO"}, {"model", "data://models/stories260K"},
                           {"dpo", {{"label_smoothing", 0.5}}},
                           {"data", {{{"path", dir_ + "/bad.jsonl"}}}}});
  EXPECT_EQ(RunJob(smoothing, events), 2);
  EXPECT_THAT(events.events.back()["message"].get<std::string>(), HasSubstr("label_smoothing"));
}


// Real data, a few steps: the whole SFT path (OASST trees -> zephyr template -> masks -> loop ->
// checkpoint -> model artifact). Larger runs are in docs/training.md.
TEST_F(RunnerTest, SftOnOasstWithZephyrRunsAndSavesModel) {
  JobSpec job = Job({{"name", "sft"},
                     {"type", "SFT"},
                     {"model", "data://models/stories260K"},
                     {"chat_template", "zephyr"},
                     {"data", {{{"path", "data://datasets/oasst/en_100_tree.jsonl"},
                                {"format", "OASST_TREE"}, {"language", "en"}, {"max_examples", "12"}}}},
                     {"training", {{"learning_rate", 1e-3}, {"max_steps", "3"}, {"batch_size", 2},
                                   {"max_length", 160}, {"eval_fraction", 0.25}, {"save_steps", "2"}}}});
  job.threads = 1;
  RecordingEventSink events;
  ASSERT_EQ(RunJob(job, events), 0) << events.events.back().dump();
  int steps = 0, checkpoints = 0;
  nlohmann::json done;
  for (const auto& e : events.events) {
    if (e["event"] == "step") {
      ++steps;
      EXPECT_GT(e["tokens_per_second"].get<double>(), 0);
    }
    checkpoints += e["event"] == "checkpoint";
    if (e["event"] == "done") done = e;
  }
  EXPECT_EQ(steps, 3);
  EXPECT_EQ(checkpoints, 2);  // step 2 and the end
  EXPECT_TRUE(fs::exists(dir_ + "/out/model/model.safetensors"));
  EXPECT_TRUE(fs::exists(dir_ + "/out/model/tokenizer.json"));
  EXPECT_TRUE(done["metrics"].contains("eval/loss"));
  EXPECT_EQ(done["metrics"]["data"]["kept"], 12);
}

// The recipe's SFT stage (configs/pipelines/zephyr-tiny.yaml, seed 42: keep the two in step) on
// the real data. A fresh stories260K never ends its turn with </s> (the token was never trained);
// after SFT, greedy generation on the 10 held-out OpenAssistant prompts ends the turn with </s>
// within 128 new tokens on at least half of them (7 of 10 when written; seeds 1 and 7 give 10 of
// 10), and held-out loss falls (3.685 -> 3.194 when written). ~40 s of CPU.
TEST_F(RunnerTest, SftRecipeTeachesEndOfTurn) {
  JobSpec job = Job({{"name", "sft"},
                     {"type", "SFT"},
                     {"model", "data://models/stories260K"},
                     {"chat_template", "tokenizer"},
                     {"data", {{{"path", "data://datasets/oasst/en_100_tree.jsonl"},
                                {"format", "OASST_TREE"}, {"language", "en"}}}},
                     {"training", {{"learning_rate", 3e-3}, {"epochs", 8}, {"batch_size", 16},
                                   {"max_length", 192}, {"truncation_side", "LEFT"},
                                   {"lr_scheduler", "COSINE"}, {"warmup_ratio", 0.05},
                                   {"eval_fraction", 0.1}, {"save_steps", "0"}}},
                     {"sft", {{"loss_on", "ASSISTANT"}}}},
                    "42");
  job.threads = 1;
  RecordingEventSink events;
  ASSERT_EQ(RunJob(job, events), 0) << events.events.back().dump();
  const nlohmann::json& m = events.events.back()["metrics"];
  ASSERT_TRUE(m.contains("eval/eos_rate_before")) << m.dump();
  ASSERT_TRUE(m.contains("eval/eos_rate")) << m.dump();
  EXPECT_EQ(m["data"]["kept"], 100);
  EXPECT_EQ(m["steps"], 48);  // 90 training conversations, batch 16 -> 6 steps x 8 epochs
  EXPECT_EQ(m["eval/eos_rate_before"].get<double>(), 0.0);
  EXPECT_GE(m["eval/eos_rate"].get<double>(), 0.5);
  EXPECT_LT(m["eval/eos_prob_before"].get<double>(), 1e-9);
  EXPECT_GT(m["eval/eos_prob"].get<double>(), 0.1);
  EXPECT_LT(m["eval/loss"].get<double>(), m["eval/loss_before"].get<double>() - 0.3);
}

TEST_F(RunnerTest, DpoOnHhRlhfStartsAtLn2) {
  JobSpec job = Job({{"name", "dpo"},
                     {"type", "DPO"},
                     {"model", "data://models/stories260K"},
                     {"chat_template", "zephyr"},
                     {"data", {{{"path", "data://datasets/hh-rlhf/harmless-base-test.jsonl.gz"},
                                {"format", "HH_RLHF"}, {"max_examples", "12"}}}},
                     {"training", {{"learning_rate", 1e-3}, {"max_steps", "2"}, {"batch_size", 4},
                                   {"max_length", 128}, {"eval_fraction", 0.0}}},
                     {"dpo", {{"beta", 0.1}, {"precompute_ref_log_probs", true}}}});
  job.threads = 1;
  RecordingEventSink events;
  ASSERT_EQ(RunJob(job, events), 0) << events.events.back().dump();
  std::vector<nlohmann::json> steps;
  int cache = 0;
  for (const auto& e : events.events) {
    if (e["event"] == "step") steps.push_back(e);
    if (e["event"] == "artifact" && e["name"] == "reference_logps") ++cache;
  }
  ASSERT_EQ(steps.size(), 2u);
  EXPECT_NEAR(steps[0]["metrics"]["loss"].get<double>(), 0.693147, 1e-6);
  // Policy == reference at step 1, reference log-probs precomputed: exactly zero (the precompute
  // runs the trainer's epoch-0 micro-batches; TrainerTest.DpoStepZeroIsLn2... is the model where
  // other batches would change the last bits).
  EXPECT_EQ(steps[0]["metrics"]["rewards/chosen"].get<double>(), 0.0);
  EXPECT_EQ(steps[0]["metrics"]["rewards/rejected"].get<double>(), 0.0);
  EXPECT_EQ(steps[0]["metrics"]["rewards/margins"].get<double>(), 0.0);
  EXPECT_TRUE(steps[0]["metrics"].contains("logits/chosen"));
  EXPECT_EQ(cache, 1);

  // The cache key covers the micro-batching: the same job reuses the file, another batch size
  // computes (and still starts at exactly zero) into another one.
  auto cache_files = [&] {
    std::vector<std::string> files;
    for (const auto& f : fs::directory_iterator(dir_ + "/work")) {
      if (f.path().filename().string().rfind("ref_logps-", 0) == 0) files.push_back(f.path());
    }
    return files;
  };
  auto reference_phases = [](const RecordingEventSink& ev) {
    int n = 0;
    for (const auto& e : ev.events) n += e["event"] == "phase" && e["phase"] == "reference";
    return n;
  };
  ASSERT_EQ(cache_files().size(), 1u);
  EXPECT_EQ(reference_phases(events), 1);
  fs::remove_all(dir_ + "/out");
  fs::remove_all(dir_ + "/work/checkpoints");
  RecordingEventSink again;
  ASSERT_EQ(RunJob(job, again), 0) << again.events.back().dump();
  EXPECT_EQ(reference_phases(again), 0);
  EXPECT_EQ(cache_files().size(), 1u);
  fs::remove_all(dir_ + "/out");
  fs::remove_all(dir_ + "/work/checkpoints");
  job.stage["training"]["batch_size"] = 3;
  RecordingEventSink other;
  ASSERT_EQ(RunJob(job, other), 0) << other.events.back().dump();
  EXPECT_EQ(reference_phases(other), 1);
  EXPECT_EQ(cache_files().size(), 2u);
  for (const auto& e : other.events) {
    if (e["event"] != "step") continue;
    EXPECT_EQ(e["metrics"]["rewards/margins"].get<double>(), 0.0);
    break;
  }
}
}  // namespace
}  // namespace align::engine::runner
