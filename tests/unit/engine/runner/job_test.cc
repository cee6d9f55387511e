// ParseJob against the TrainJob schema: a misspelt key or a value of the wrong type is a bad job
// (exit 2) naming the field, never a silent default; what the worker writes still loads.
#include "worker/engine/core/job.h"

#include <filesystem>

#include "common/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "worker/engine/core/failure.h"

namespace align::engine {
namespace {

namespace fs = std::filesystem;
using ::align::testing::StatusIs;
using ::testing::HasSubstr;

// An SFT job.json as align-worker wrote it (paths shortened): proto3 JSON, original field names,
// int64 values as strings.
constexpr char kWorkerJob[] = R"({
 "pipeline_id": "p-1m90ym511dkd1ma0q",
 "attempt_id": "a-1m90ym519e0sznpwe",
 "stage": {
  "name": "sft",
  "type": "SFT",
  "model": "data://models/stories260K",
  "data": [
   {"path": "data://datasets/oasst/en_100_tree.jsonl", "format": "OASST_TREE", "weight": 1,
    "on_bad_line": "FAIL", "language": "en"}
  ],
  "resources": {"ranks": 1, "cpus_per_rank": 1},
  "retry": {"max_infra_retries": 3, "backoff_initial_seconds": 5, "backoff_max_seconds": 300},
  "training": {
   "learning_rate": 0.003, "epochs": 8, "batch_size": 16, "gradient_accumulation_steps": 1,
   "max_length": 192, "lr_scheduler": "COSINE", "warmup_ratio": 0.05, "adam_beta1": 0.9,
   "adam_beta2": 0.999, "adam_epsilon": 1e-08, "max_grad_norm": 1, "save_total_limit": 2,
   "logging_steps": "1", "eval_fraction": 0.1, "truncation_side": "LEFT"
  },
  "chat_template": "tokenizer",
  "sft": {"loss_on": "ASSISTANT"}
 },
 "defaults": {"model": "data://models/stories260K", "chat_template": "tokenizer", "seed": "42",
              "precision": "FP32"},
 "inputs": {"model": "data://models/stories260K", "data/0": "data://datasets/oasst/en_100_tree.jsonl"},
 "output_dir": "/tmp/out/sft/",
 "work_dir": "/tmp/out/.work/sft/",
 "events_path": "/tmp/attempt/rank-0.events.jsonl",
 "data_dir": "/work/shared/data",
 "threads": 1
})";

nlohmann::json WorkerJob() { return nlohmann::json::parse(kWorkerJob); }

absl::StatusOr<JobSpec> Parse(const nlohmann::json& j) { return ParseJob(j.dump(), "job.json"); }

//! The message ParseJob gives for `j`, which must fail as a bad job (exit code 2).
std::string Error(const nlohmann::json& j) {
  auto job = Parse(j);
  EXPECT_THAT(job.status(), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(ExitCodeFor(job.status()), 2);
  return std::string(job.status().message());
}

TEST(JobTest, WorkerJobLoads) {
  ASSERT_OK_AND_ASSIGN(JobSpec job, Parse(WorkerJob()));
  EXPECT_EQ(job.stage_type, "sft");
  EXPECT_EQ(job.TrainingNumber("learning_rate", 0), 0.003);
  EXPECT_EQ(job.TrainingNumber("epochs", 1), 8);
  EXPECT_EQ(job.TrainingNumber("logging_steps", 0), 1);
  EXPECT_EQ(job.Seed(), 42u);
  EXPECT_EQ(job.threads, 1);
}

TEST(JobTest, UnknownTrainingKeyIsAnErrorWithSuggestion) {
  nlohmann::json j = WorkerJob();
  auto& t = j["stage"]["training"];
  t["learning_rat"] = t["learning_rate"];
  t.erase("learning_rate");
  EXPECT_EQ(Error(j), "job.json: stage.training.learning_rat: unknown field; did you mean learning_rate?");
}

TEST(JobTest, StringForIntegerIsAnError) {
  nlohmann::json j = WorkerJob();
  j["stage"]["training"]["epochs"] = "eight";
  EXPECT_EQ(Error(j), "job.json: stage.training.epochs: expected an integer, got \"eight\"");
}

TEST(JobTest, NegativeCountIsAnError) {
  nlohmann::json j = WorkerJob();
  j["stage"]["training"]["batch_size"] = -3;
  EXPECT_EQ(Error(j), "job.json: stage.training.batch_size: must be > 0, got -3");
  j = WorkerJob();
  j["stage"]["training"]["max_steps"] = "-1";
  EXPECT_EQ(Error(j), "job.json: stage.training.max_steps: must be >= 0, got \"-1\"");
}

TEST(JobTest, FractionForIntegerIsAnError) {
  nlohmann::json j = WorkerJob();
  j["stage"]["training"]["epochs"] = 1.5;
  EXPECT_EQ(Error(j), "job.json: stage.training.epochs: expected an integer, got 1.5");
  j["stage"]["training"]["epochs"] = "1.5";
  EXPECT_EQ(Error(j), "job.json: stage.training.epochs: expected an integer, got \"1.5\"");
}

TEST(JobTest, Int64AsStringIsAccepted) {
  nlohmann::json j = WorkerJob();
  j["stage"]["training"]["max_steps"] = "42";
  j["stage"]["data"][0]["max_examples"] = "9007199254740993";  // > 2^53: read as an integer
  j["stage"]["training"]["epochs"] = 2.0;                       // protobuf accepts integral numbers
  ASSERT_OK_AND_ASSIGN(JobSpec job, Parse(j));
  EXPECT_EQ(job.TrainingNumber("max_steps", 0), 42);
  EXPECT_EQ(job.TrainingNumber("epochs", 1), 2);
}

TEST(JobTest, UnknownKeyInDataEntryIsAnError) {
  nlohmann::json j = WorkerJob();
  j["stage"]["data"][0]["formt"] = "TEXT";
  EXPECT_EQ(Error(j), "job.json: stage.data[0].formt: unknown field; did you mean format?");
}

TEST(JobTest, UnknownKeysAtEveryLevel) {
  nlohmann::json j = WorkerJob();
  j["event_path"] = "/tmp/e.jsonl";
  EXPECT_EQ(Error(j), "job.json: event_path: unknown field; did you mean events_path?");
  j = WorkerJob();
  j["stage"]["sft"]["packng"] = true;
  EXPECT_EQ(Error(j), "job.json: stage.sft.packng: unknown field; did you mean packing?");
  j = WorkerJob();
  j["defaults"]["colour"] = "blue";
  EXPECT_EQ(Error(j), "job.json: defaults.colour: unknown field; Defaults (proto/align/v1/pipeline.proto) "
                      "has: model, tokenizer, chat_template, seed, precision, output_dir");
  // proto3 JSON's lowerCamelCase spelling: the worker never writes it and the engine does not read it.
  j = WorkerJob();
  j["stage"]["training"]["maxGradNorm"] = 0.5;
  EXPECT_EQ(Error(j), "job.json: stage.training.maxGradNorm: unknown field; did you mean max_grad_norm? "
                      "(job files use the proto field names)");
}

TEST(JobTest, OtherWrongTypes) {
  nlohmann::json j = WorkerJob();
  j["stage"]["training"]["max_length"] = 3000000000LL;
  EXPECT_EQ(Error(j), "job.json: stage.training.max_length: expected a 32-bit integer, got 3000000000");
  j = WorkerJob();
  j["stage"]["training"]["learning_rate"] = "fast";
  EXPECT_EQ(Error(j), "job.json: stage.training.learning_rate: expected a number, got \"fast\"");
  j = WorkerJob();
  j["stage"]["sft"]["packing"] = "yes";
  EXPECT_EQ(Error(j), "job.json: stage.sft.packing: expected true or false, got \"yes\"");
  j = WorkerJob();
  j["stage"]["training"]["truncation_side"] = "LFET";
  EXPECT_EQ(Error(j), "job.json: stage.training.truncation_side: expected one of "
                      "TRUNCATION_SIDE_UNSPECIFIED, RIGHT, LEFT, got \"LFET\"; did you mean LEFT?");
  j = WorkerJob();
  j["stage"]["data"] = {{"path", "x.jsonl"}};  // an object, not a list of them
  EXPECT_THAT(Error(j), HasSubstr("job.json: stage.data: expected a list, got "));
  j = WorkerJob();
  j["inputs"]["model"] = 7;
  EXPECT_EQ(Error(j), "job.json: inputs[\"model\"]: expected a string, got 7");
}

TEST(JobTest, ConfigBlockOfAnotherStageTypeIsAnError) {
  nlohmann::json j = WorkerJob();
  j["stage"]["dpo"] = {{"beta", 0.1}};
  EXPECT_EQ(Error(j), "job.json: stage.dpo: stage.type is sft, which reads its settings from "
                      "stage.sft; move them there or set stage.type to DPO");
}

TEST(JobTest, NullIsTheDefaultAndLowerCaseEnumsPass) {
  nlohmann::json j = WorkerJob();
  j["stage"]["training"]["epochs"] = nullptr;
  j["stage"]["training"]["lr_scheduler"] = "cosine";
  ASSERT_OK_AND_ASSIGN(JobSpec job, Parse(j));
  EXPECT_EQ(job.TrainingNumber("epochs", 1), 1);
  EXPECT_FALSE(job.stage["training"].contains("epochs"));
}

// Every job file the worker wrote in this checkout (alignctl runs leave them under .align) loads.
TEST(JobTest, RealWorkerJobsLoad) {
  const fs::path attempts = fs::path(ALIGN_SOURCE_DIR) / ".align/work/attempts";
  if (!fs::is_directory(attempts)) GTEST_SKIP() << "no " << attempts << " (run a pipeline first)";
  int loaded = 0;
  for (const auto& entry : fs::recursive_directory_iterator(attempts)) {
    const std::string name = entry.path().filename().string();
    if (name != "job.json" && !(name.size() > 9 && name.substr(name.size() - 9) == ".job.json")) continue;
    EXPECT_OK(LoadJobFile(entry.path().string()).status()) << entry.path();
    ++loaded;
  }
  if (loaded == 0) GTEST_SKIP() << "no job.json under " << attempts;
}

}  // namespace
}  // namespace align::engine
