// The parts of common/config the planner and the coordinator use directly: stage references,
// dependencies and order, server-side validation of protos, file loading and the shipped recipes.
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "common/config/pipeline_config.h"
#include "common/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"

namespace align::config {
namespace {

using ::align::testing::IsOk;
using ::align::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using align::v1::PipelineSpec;
using align::v1::StageSpec;

std::string RecipePath(const std::string& name) {
  return std::string(ALIGN_SOURCE_DIR) + "/configs/pipelines/" + name;
}

TEST(StageRefs, ParseWholeString) {
  auto ref = ParseStageRef("${stages.sft.outputs.model}");
  ASSERT_TRUE(ref.has_value());
  EXPECT_EQ(ref->stage, "sft");
  EXPECT_EQ(ref->output, "model");
  EXPECT_EQ(ref->ToString(), "${stages.sft.outputs.model}");
  EXPECT_FALSE(ParseStageRef("data://models/stories260K").has_value());
  EXPECT_FALSE(ParseStageRef("${stages.sft.outputs.model}/tokenizer.json").has_value());
  EXPECT_FALSE(ParseStageRef("${stages.sft.model}").has_value());
  EXPECT_FALSE(ParseStageRef("${stages..outputs.model}").has_value());
  EXPECT_EQ(StageOutputRef("prefs", "train"), "${stages.prefs.outputs.train}");
}

TEST(StageRefs, FindAndSubstituteEmbedded) {
  ASSERT_OK_AND_ASSIGN(auto refs, FindStageRefs("${stages.sft.outputs.model}/x/${stages.rm.outputs.model}"));
  ASSERT_EQ(refs.size(), 2u);
  EXPECT_EQ(refs[0].stage, "sft");
  EXPECT_EQ(refs[0].begin, 0u);
  EXPECT_EQ(refs[0].end, 27u);
  EXPECT_EQ(refs[1].stage, "rm");
  EXPECT_THAT(FindStageRefs("${stages.sft.outputs.model"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("malformed reference \"${stages.sft.outputs.model\"")));
  ASSERT_OK_AND_ASSIGN(
      std::string resolved,
      SubstituteStageRefs("${stages.sft.outputs.model}/tokenizer.json",
                          [](const StageRef& r) -> absl::StatusOr<std::string> {
                            return "/artifacts/" + r.stage + "/" + r.output;
                          }));
  EXPECT_EQ(resolved, "/artifacts/sft/model/tokenizer.json");
  EXPECT_THAT(SubstituteStageRefs("${stages.x.outputs.model}",
                                  [](const StageRef&) -> absl::StatusOr<std::string> {
                                    return absl::NotFoundError("no x");
                                  }),
              StatusIs(absl::StatusCode::kNotFound));
}

TEST(StageRefs, OutputsPerType) {
  EXPECT_THAT(StageOutputs(align::v1::SFT), ElementsAre("model"));
  EXPECT_THAT(StageOutputs(align::v1::REWARD_MODEL), ElementsAre("model"));
  EXPECT_THAT(StageOutputs(align::v1::DPO), ElementsAre("model"));
  EXPECT_THAT(StageOutputs(align::v1::PPO), ElementsAre("model"));
  EXPECT_THAT(StageOutputs(align::v1::PREFERENCE_FORMAT), ElementsAre("train", "test"));
  EXPECT_THAT(StageOutputs(align::v1::EVAL), ElementsAre("results"));
  EXPECT_TRUE(StageOutputs(align::v1::STAGE_TYPE_UNSPECIFIED).empty());
  EXPECT_EQ(StageTypeName(align::v1::PREFERENCE_FORMAT), "preference_format");
  EXPECT_EQ(ParseStageType("reward_model"), align::v1::REWARD_MODEL);
  EXPECT_FALSE(ParseStageType("REWARD_MODEL").has_value());
}

TEST(Recipes, ZephyrTinyValidatesAndOrders) {
  ASSERT_OK_AND_ASSIGN(PipelineSpec spec, LoadPipelineFile(RecipePath("zephyr-tiny.yaml")));
  EXPECT_EQ(spec.metadata().name(), "zephyr-tiny");
  ASSERT_EQ(spec.stages_size(), 4);
  const StageSpec& sft = spec.stages(0);
  EXPECT_EQ(sft.model(), "data://models/stories260K");
  EXPECT_EQ(sft.data(0).format(), align::v1::OASST_TREE);
  // The SFT settings that teach the model to end its turn (runner test SftRecipeTeachesEndOfTurn).
  EXPECT_EQ(sft.training().epochs(), 8);
  EXPECT_DOUBLE_EQ(sft.training().learning_rate(), 3e-3);
  EXPECT_EQ(sft.training().batch_size(), 16);
  EXPECT_EQ(sft.training().max_length(), 192);
  EXPECT_EQ(sft.chat_template(), "tokenizer");
  const StageSpec& dpo = spec.stages(2);
  EXPECT_EQ(dpo.model(), "${stages.sft.outputs.model}");
  EXPECT_EQ(dpo.data(0).path(), "${stages.prefs.outputs.train}");
  EXPECT_DOUBLE_EQ(dpo.dpo().beta(), 0.1);
  // The DPO settings that lift training rewards/accuracies well above 0.5 in ~90 s at one thread
  // (docs/training.md "Real-data runs": the recipe's DPO stage).
  EXPECT_EQ(dpo.training().epochs(), 2);
  EXPECT_DOUBLE_EQ(dpo.training().learning_rate(), 1e-3);
  EXPECT_EQ(dpo.training().batch_size(), 8);
  EXPECT_EQ(dpo.training().max_length(), 128);
  EXPECT_EQ(dpo.dpo().max_prompt_length(), 64);
  EXPECT_TRUE(dpo.dpo().precompute_ref_log_probs());
  EXPECT_EQ(spec.stages(1).preference_format().max_pairs(), 512);
  const StageSpec& eval = spec.stages(3);
  EXPECT_EQ(eval.models().at("candidate"), "${stages.dpo.outputs.model}");
  EXPECT_EQ(eval.models().at("baseline"), "${stages.sft.outputs.model}");
  EXPECT_THAT(eval.eval().suites(), ElementsAre("mmlu", "truthfulqa", "preference_accuracy"));
  EXPECT_EQ(eval.eval().limit(), 20);
  // eval names dpo and sft, and reads the prefs test split: all three are dependencies.
  EXPECT_THAT(StageDependencies(eval), ElementsAre("sft", "dpo", "prefs"));
  ASSERT_OK_AND_ASSIGN(std::vector<int> order, TopologicalOrder(spec));
  EXPECT_THAT(order, ElementsAre(0, 1, 2, 3));
  EXPECT_OK(ValidatePipelineSpec(spec));
}

TEST(Recipes, Zephyr7bBetaMirrorsTheHandbook) {
  ASSERT_OK_AND_ASSIGN(PipelineSpec spec, LoadPipelineFile(RecipePath("zephyr-7b-beta.yaml")));
  EXPECT_EQ(spec.defaults().precision(), align::v1::BF16);
  const StageSpec& sft = spec.stages(0);
  EXPECT_DOUBLE_EQ(sft.training().learning_rate(), 2e-5);
  EXPECT_EQ(sft.training().lr_scheduler(), align::v1::COSINE);
  EXPECT_DOUBLE_EQ(sft.training().warmup_ratio(), 0.1);
  EXPECT_EQ(sft.resources().ranks() * sft.training().batch_size() *
                sft.training().gradient_accumulation_steps(),
            128);
  EXPECT_EQ(sft.resources().gpus_per_rank(), 1);
  EXPECT_EQ(sft.data(0).sha256().size(), 64u);
  const StageSpec& dpo = spec.stages(2);
  EXPECT_DOUBLE_EQ(dpo.dpo().beta(), 0.01);
  EXPECT_DOUBLE_EQ(dpo.training().learning_rate(), 5e-7);
  EXPECT_EQ(dpo.resources().ranks() * dpo.training().batch_size() *
                dpo.training().gradient_accumulation_steps(),
            128);
  EXPECT_OK(ValidatePipelineSpec(spec));
}

TEST(Recipes, RoundTripThroughYaml) {
  for (const char* name : {"zephyr-tiny.yaml", "zephyr-7b-beta.yaml"}) {
    ASSERT_OK_AND_ASSIGN(PipelineSpec first, LoadPipelineFile(RecipePath(name)));
    ASSERT_OK_AND_ASSIGN(PipelineSpec second, ParsePipelineYaml(SpecToYaml(first), name));
    EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(first, second)) << name;
  }
}

TEST(LoadPipelineFile, MissingFileIsNotFound) {
  EXPECT_THAT(LoadPipelineFile("/nonexistent/pipeline.yaml"),
              StatusIs(absl::StatusCode::kNotFound, "/nonexistent/pipeline.yaml: no such file"));
}

TEST(LoadPipelineFile, ErrorsNameTheFile) {
  const std::string path = ::testing::TempDir() + "/bad_pipeline.yaml";
  {
    std::ofstream out(path);
    out << "apiVersion: align/v1\nkind: Pipeline\nmetadata: {name: x}\nspec:\n  stages: []\n";
  }
  EXPECT_THAT(LoadPipelineFile(path),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       path + ":5:11: spec.stages: at least one stage is required; expected a list "
                              "of stages"));
  std::remove(path.c_str());
}

TEST(LoadPipelineFile, RefusesFilesOver4MiBBeforeReading) {
  const std::string path = ::testing::TempDir() + "/huge_pipeline.yaml";
  {
    std::ofstream out(path);
    out << std::string(kMaxSpecBytes + 1, '#');
  }
  EXPECT_THAT(LoadPipelineFile(path),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       path + ": file is 4194305 bytes; a pipeline spec may be at most 4194304 "
                              "bytes (4 MiB)"));
  std::remove(path.c_str());
}

TEST(ParsePipelineYaml, ReportsEveryErrorOnePerLine) {
  const std::string yaml = R"(apiVersion: align/v1
kind: Pipeline
metadata: {name: x, priorty: 1}
spec:
  stages:
    - {name: a, type: sft, data: [{path: d.jsonl}], training: {epochs: 0}}
    - {name: a, type: dop}
)";
  EXPECT_THAT(
      ParsePipelineYaml(yaml, "many.yaml"),
      StatusIs(absl::StatusCode::kInvalidArgument,
               "many.yaml:3:21: metadata.priorty: unknown key \"priorty\"; expected one of: name, "
               "labels, priority, description; did you mean priority?\n"
               "many.yaml:7:23: spec.stages[1].type: unknown value \"dop\"; expected one of: sft, "
               "preference_format, reward_model, dpo, ppo, eval; did you mean dpo?\n"
               "many.yaml:7:14: spec.stages[1].name: duplicate stage name \"a\" (also "
               "spec.stages[0]); stage names must be unique\n"
               "many.yaml:6:7: spec.stages[0].model: required for a sft stage; set model on the "
               "stage or in spec.defaults (a path, data://..., or "
               "${stages.<stage>.outputs.model})\n"
               "many.yaml:6:72: spec.stages[0].training.epochs: must be > 0, got 0"));
}

// ---------------------------------------------------------------------------------------------
// Server-side validation of protos that never were YAML.

PipelineSpec GoodProto() {
  PipelineSpec spec;
  spec.mutable_metadata()->set_name("proto");
  spec.mutable_defaults()->set_model("data://models/stories260K");
  StageSpec* sft = spec.add_stages();
  sft->set_name("sft");
  sft->set_type(align::v1::SFT);
  sft->add_data()->set_path("data://datasets/oasst/en_100_tree.jsonl");
  StageSpec* prefs = spec.add_stages();
  prefs->set_name("prefs");
  prefs->set_type(align::v1::PREFERENCE_FORMAT);
  prefs->add_data()->set_path("data://datasets/hh-rlhf/harmless-base-test.jsonl.gz");
  StageSpec* dpo = spec.add_stages();
  dpo->set_name("dpo");
  dpo->set_type(align::v1::DPO);
  dpo->set_model("${stages.sft.outputs.model}");
  dpo->add_data()->set_path("${stages.prefs.outputs.train}");
  return spec;
}

TEST(ValidatePipelineSpec, AcceptsWithAndWithoutDefaults) {
  PipelineSpec spec = GoodProto();
  EXPECT_OK(ValidatePipelineSpec(spec));  // zero fields mean "unset"
  ApplyDefaults(&spec);
  EXPECT_OK(ValidatePipelineSpec(spec));
  EXPECT_EQ(spec.stages(2).resources().ranks(), 1);
  EXPECT_DOUBLE_EQ(spec.stages(2).dpo().beta(), 0.1);
  EXPECT_DOUBLE_EQ(spec.stages(2).training().learning_rate(), 5e-7);
  // Idempotent.
  PipelineSpec again = spec;
  ApplyDefaults(&again);
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(spec, again));
}

TEST(ValidatePipelineSpec, ReportsProtoFieldPaths) {
  PipelineSpec spec = GoodProto();
  spec.mutable_stages(2)->mutable_resources()->set_ranks(-1);
  spec.mutable_stages(2)->mutable_dpo()->set_label_smoothing(0.7);
  spec.mutable_stages(1)->mutable_sft();  // config of the wrong type
  spec.mutable_stages(0)->add_depends_on("dpo");
  EXPECT_THAT(ValidatePipelineSpecErrors(spec).size(), 4u);
  EXPECT_THAT(
      ValidatePipelineSpec(spec),
      StatusIs(absl::StatusCode::kInvalidArgument,
               "stages[1].sft: config is for sft but the stage type is preference_format; "
               "expected config preference_format\n"
               "stages[2].resources.ranks: must be > 0, got -1\n"
               "stages[2].dpo.label_smoothing: must be in [0, 0.5) (conservative DPO flips at most "
               "half the labels), got 0.7\n"
               "stages[0].depends_on: dependency cycle: sft -> dpo -> sft (depends_on and "
               "${stages...} references); expected a DAG"));
}

TEST(ValidatePipelineSpec, RejectsInvalidUtf8AndMissingNames) {
  PipelineSpec spec = GoodProto();
  spec.mutable_metadata()->set_name("bad\xff");
  spec.mutable_stages(1)->set_name("");
  const std::vector<ConfigError> errors = ValidatePipelineSpecErrors(spec);
  ASSERT_GE(errors.size(), 2u);
  EXPECT_EQ(errors[0].ToString(), "metadata.name: invalid UTF-8; expected UTF-8, 1..128 bytes");
  EXPECT_EQ(errors[1].ToString(),
            "stages[1].name: required; expected a stage name matching [a-z0-9][a-z0-9_-]*");
}

TEST(TopologicalOrder, KeepsSpecOrderAndNamesCycles) {
  PipelineSpec spec = GoodProto();
  // dpo first in the list: it must still come after sft and prefs.
  spec.mutable_stages()->SwapElements(0, 2);  // dpo, prefs, sft
  ASSERT_OK_AND_ASSIGN(std::vector<int> order, TopologicalOrder(spec));
  EXPECT_THAT(order, ElementsAre(1, 2, 0));
  spec.mutable_stages(2)->add_depends_on("dpo");
  EXPECT_THAT(TopologicalOrder(spec),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "cycle in stage dependencies: dpo -> sft -> dpo"));
  PipelineSpec unknown = GoodProto();
  unknown.mutable_stages(0)->add_depends_on("nope");
  EXPECT_THAT(TopologicalOrder(unknown),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "stage \"sft\" depends on unknown stage \"nope\""));
}

}  // namespace
}  // namespace align::config
