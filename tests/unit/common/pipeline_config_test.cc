// The YAML pipeline spec: good inputs, defaults, overrides, round trips, and many bad inputs,
// each checked for the exact "file:line:col: field.path: message" it must produce.
#include "common/config/pipeline_config.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
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
using ::testing::Not;
using align::v1::PipelineSpec;

// Line numbers matter: the bad-input cases below point into this text.
constexpr char kGood[] = R"(apiVersion: align/v1
kind: Pipeline
metadata:
  name: test
spec:
  defaults:
    model: data://models/stories260K
  stages:
    - name: sft
      type: sft
      data: [{path: data://datasets/oasst/en_100_tree.jsonl, format: oasst_tree}]
      training: {learning_rate: 1e-5, epochs: 1}
    - name: prefs
      type: preference_format
      data: [{path: data://datasets/hh-rlhf/harmless-base-test.jsonl.gz, format: hh_rlhf}]
    - name: dpo
      type: dpo
      model: ${stages.sft.outputs.model}
      data: [{path: "${stages.prefs.outputs.train}"}]
      training: {learning_rate: "5e-7"}
      config: {beta: 0.1}
      resources: {ranks: 1}
)";

// kGood with `from` (which must occur exactly once) replaced by `to`.
std::string Edit(const std::string& from, const std::string& to) {
  const std::string base = kGood;
  const size_t at = base.find(from);
  EXPECT_NE(at, std::string::npos) << "test bug: \"" << from << "\" is not in kGood";
  EXPECT_EQ(base.find(from, at + 1), std::string::npos) << "test bug: \"" << from << "\" twice";
  if (at == std::string::npos) return base;
  return base.substr(0, at) + to + base.substr(at + from.size());
}

// kGood up to its stage list, followed by `tail`.
std::string Truncated(const std::string& tail) {
  const std::string base = kGood;
  return base.substr(0, base.find("  stages:")) + tail;
}

// Each level repeats the previous one ten times: 10^6 nodes from a few hundred bytes.
constexpr char kAliasBomb[] = R"(x-bomb:
  a: &a [x, x, x, x, x, x, x, x, x, x]
  b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]
  c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]
  d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]
  e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]
  f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]
)";

// kGood plus an eval stage (lines 23-28) whose config ends with `config_tail`.
std::string WithEval(const std::string& config_tail) {
  return std::string(kGood) + R"(    - name: eval
      type: eval
      models: {candidate: "${stages.dpo.outputs.model}"}
      config:
        suites: [mmlu, preference_accuracy]
)" + config_tail;
}

std::vector<std::string> ErrorLines(const std::string& yaml,
                                    const std::vector<std::string>& sets = {}) {
  PipelineSpec spec;
  std::vector<std::string> lines;
  for (const ConfigError& e : ParsePipelineYamlWithErrors(yaml, "p.yaml", sets, &spec)) {
    lines.push_back(e.ToString());
  }
  return lines;
}

// ---------------------------------------------------------------------------------------------
// Good inputs.

TEST(PipelineYaml, GoodSpecParsesWithDefaults) {
  ASSERT_OK_AND_ASSIGN(PipelineSpec spec, ParsePipelineYaml(kGood, "p.yaml"));
  EXPECT_EQ(spec.api_version(), "align/v1");
  EXPECT_EQ(spec.metadata().name(), "test");
  ASSERT_EQ(spec.stages_size(), 3);
  const auto& sft = spec.stages(0);
  EXPECT_EQ(sft.type(), align::v1::SFT);
  EXPECT_DOUBLE_EQ(sft.training().learning_rate(), 1e-5);  // plain 1e-5 is a float
  EXPECT_EQ(sft.data(0).format(), align::v1::OASST_TREE);
  EXPECT_EQ(sft.model(), "data://models/stories260K");      // inherited from spec.defaults
  const auto& dpo = spec.stages(2);
  EXPECT_DOUBLE_EQ(dpo.training().learning_rate(), 5e-7);  // quoted "5e-7" is a float too
  EXPECT_EQ(dpo.model(), "${stages.sft.outputs.model}");
  EXPECT_DOUBLE_EQ(dpo.dpo().beta(), 0.1);
  EXPECT_EQ(dpo.dpo().loss_type(), align::v1::SIGMOID);
}

TEST(PipelineYaml, DefaultsAreApplied) {
  ASSERT_OK_AND_ASSIGN(PipelineSpec spec, ParsePipelineYaml(kGood, "p.yaml"));
  EXPECT_EQ(spec.defaults().seed(), 42u);
  EXPECT_EQ(spec.defaults().precision(), align::v1::FP32);
  EXPECT_EQ(spec.defaults().chat_template(), "tokenizer");
  const auto& sft = spec.stages(0);
  EXPECT_EQ(sft.resources().ranks(), 1);
  EXPECT_EQ(sft.resources().gpus_per_rank(), 0);
  EXPECT_EQ(sft.resources().cpus_per_rank(), 1);
  EXPECT_EQ(sft.retry().max_infra_retries(), 3);
  EXPECT_EQ(sft.retry().max_user_retries(), 0);
  EXPECT_DOUBLE_EQ(sft.retry().backoff_initial_seconds(), 5);
  EXPECT_DOUBLE_EQ(sft.retry().backoff_max_seconds(), 300);
  EXPECT_EQ(sft.training().epochs(), 1);
  EXPECT_EQ(sft.training().batch_size(), 8);
  EXPECT_EQ(sft.training().gradient_accumulation_steps(), 1);
  EXPECT_EQ(sft.training().max_length(), 512);
  EXPECT_EQ(sft.training().lr_scheduler(), align::v1::LINEAR);
  EXPECT_DOUBLE_EQ(sft.training().adam_beta1(), 0.9);
  EXPECT_DOUBLE_EQ(sft.training().adam_beta2(), 0.999);
  EXPECT_DOUBLE_EQ(sft.training().adam_epsilon(), 1e-8);
  EXPECT_DOUBLE_EQ(sft.training().max_grad_norm(), 1.0);
  EXPECT_EQ(sft.training().save_total_limit(), 2);
  EXPECT_EQ(sft.training().logging_steps(), 1);
  EXPECT_DOUBLE_EQ(sft.training().eval_fraction(), 0.05);
  EXPECT_EQ(sft.training().truncation_side(), align::v1::RIGHT);
  EXPECT_EQ(sft.sft().loss_on(), align::v1::ASSISTANT);
  EXPECT_DOUBLE_EQ(sft.data(0).weight(), 1.0);
  EXPECT_EQ(sft.data(0).on_bad_line(), align::v1::FAIL);
  const auto& prefs = spec.stages(1);
  EXPECT_FALSE(prefs.has_training());  // preference_format does not train
  EXPECT_EQ(prefs.model(), "");        // and needs no model
  EXPECT_DOUBLE_EQ(prefs.preference_format().test_fraction(), 0.1);
  EXPECT_TRUE(prefs.preference_format().drop_identical());
  // The DPO learning rate the user wrote wins over the per-type default (5e-7 either way), and
  // an SFT stage without one gets 2e-5.
  ASSERT_OK_AND_ASSIGN(PipelineSpec no_lr,
                       ParsePipelineYaml(Edit("{learning_rate: 1e-5, epochs: 1}", "{epochs: 1}"),
                                         "p.yaml"));
  EXPECT_DOUBLE_EQ(no_lr.stages(0).training().learning_rate(), 2e-5);
}

TEST(PipelineYaml, ExplicitZeroIsKeptWhereItMeansSomething) {
  ASSERT_OK_AND_ASSIGN(
      PipelineSpec spec,
      ParsePipelineYaml(Edit("{learning_rate: 1e-5, epochs: 1}",
                             "{learning_rate: 1e-5, max_grad_norm: 0, eval_fraction: 0}"),
                        "p.yaml", {"defaults.seed=0", "stages.dpo.retry.max_infra_retries=0"}));
  EXPECT_TRUE(spec.stages(0).training().has_max_grad_norm());
  EXPECT_DOUBLE_EQ(spec.stages(0).training().max_grad_norm(), 0);  // 0 disables clipping
  EXPECT_DOUBLE_EQ(spec.stages(0).training().eval_fraction(), 0);
  EXPECT_EQ(spec.defaults().seed(), 0u);
  EXPECT_EQ(spec.stages(2).retry().max_infra_retries(), 0);
  // ApplyDefaults again (as the coordinator does) keeps them.
  PipelineSpec again = spec;
  ApplyDefaults(&again);
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(spec, again));
}

TEST(PipelineYaml, Utf8NameIsAccepted) {
  ASSERT_OK_AND_ASSIGN(PipelineSpec spec,
                       ParsePipelineYaml(Edit("name: test", "name: 実験-ü-✓"), "p.yaml"));
  EXPECT_EQ(spec.metadata().name(), "実験-ü-✓");
  // And it survives YAML and JSON output.
  EXPECT_THAT(SpecToYaml(spec), HasSubstr("実験-ü-✓"));
  ASSERT_OK_AND_ASSIGN(std::string json, SpecToJson(spec));
  EXPECT_THAT(json, HasSubstr("実験-ü-✓"));
}

TEST(PipelineYaml, RoundTripYamlProtoYamlProto) {
  ASSERT_OK_AND_ASSIGN(PipelineSpec first, ParsePipelineYaml(kGood, "p.yaml"));
  const std::string yaml = SpecToYaml(first);
  ASSERT_OK_AND_ASSIGN(PipelineSpec second, ParsePipelineYaml(yaml, "normalized.yaml"));
  std::string diff;
  google::protobuf::util::MessageDifferencer differencer;
  differencer.ReportDifferencesToString(&diff);
  EXPECT_TRUE(differencer.Compare(first, second)) << diff << "\n" << yaml;
  EXPECT_EQ(SpecToYaml(second), yaml);
}

TEST(PipelineYaml, JsonIsTheSpecSchemaAndReadsBack) {
  ASSERT_OK_AND_ASSIGN(PipelineSpec spec, ParsePipelineYaml(kGood, "p.yaml"));
  ASSERT_OK_AND_ASSIGN(std::string json, SpecToJson(spec));
  EXPECT_THAT(json, HasSubstr("\"learning_rate\": 1e-05"));
  EXPECT_THAT(json, HasSubstr("\"type\": \"dpo\""));
  EXPECT_THAT(json, HasSubstr("\"apiVersion\": \"align/v1\""));
  EXPECT_THAT(json, HasSubstr("\"beta\": 0.1"));
  // `validate -o json` output is a valid spec: it parses back to the same proto.
  ASSERT_OK_AND_ASSIGN(PipelineSpec back, ParsePipelineYaml(json, "normalized.json"));
  std::string diff;
  google::protobuf::util::MessageDifferencer differencer;
  differencer.ReportDifferencesToString(&diff);
  EXPECT_TRUE(differencer.Compare(spec, back)) << diff << "\n" << json;
}

// ---------------------------------------------------------------------------------------------
// Overrides.

TEST(PipelineYaml, OverridesApplyByStageName) {
  ASSERT_OK_AND_ASSIGN(
      PipelineSpec spec,
      ParsePipelineYaml(kGood, "p.yaml",
                        {"stages.dpo.config.beta=0.05", "stages.sft.training.learning_rate=5e-7",
                         "stages.prefs.resources.ranks=2", "metadata.name=renamed",
                         "defaults.seed=7", "stages.dpo.config.loss_type=ipo",
                         "stages.dpo.depends_on=[sft, prefs]"}));
  EXPECT_DOUBLE_EQ(spec.stages(2).dpo().beta(), 0.05);
  EXPECT_EQ(spec.stages(2).dpo().loss_type(), align::v1::IPO);
  EXPECT_DOUBLE_EQ(spec.stages(0).training().learning_rate(), 5e-7);
  EXPECT_EQ(spec.stages(1).resources().ranks(), 2);  // the block did not exist: created
  EXPECT_EQ(spec.metadata().name(), "renamed");
  EXPECT_EQ(spec.defaults().seed(), 7u);
  EXPECT_THAT(spec.stages(2).depends_on(), ElementsAre("sft", "prefs"));
}

TEST(PipelineYaml, OverridesTakeYamlValuesAndCreateElements) {
  ASSERT_OK_AND_ASSIGN(
      PipelineSpec spec,
      ParsePipelineYaml(kGood, "p.yaml",
                        {"metadata.labels.team=research",
                         "stages.sft.data.1.path=data://datasets/oasst/en_100_message.jsonl",
                         "stages.sft.data.0.max_examples=10",
                         "spec.stages.dpo.config={beta: 0.2, label_smoothing: 0.1}",
                         "stages.dpo.training.max_length=\"128\""}));
  EXPECT_EQ(spec.metadata().labels().at("team"), "research");
  ASSERT_EQ(spec.stages(0).data_size(), 2);  // index == size appends
  EXPECT_EQ(spec.stages(0).data(1).path(), "data://datasets/oasst/en_100_message.jsonl");
  EXPECT_EQ(spec.stages(0).data(0).max_examples(), 10);
  EXPECT_DOUBLE_EQ(spec.stages(2).dpo().beta(), 0.2);
  EXPECT_DOUBLE_EQ(spec.stages(2).dpo().label_smoothing(), 0.1);
  EXPECT_EQ(spec.stages(2).training().max_length(), 128);
  EXPECT_THAT(ErrorLines(kGood, {"stages.sft.data.5.path=x"}),
              ElementsAre("--set stages.sft.data.5.path=x: stages.sft.data.5.path: \"5\" is not an "
                          "index of spec.stages[0].data (it has 1 elements)"));
}

TEST(PipelineYaml, AliasesWorkAndOverridesThroughThemAreRefused) {
  const std::string yaml =
      Edit("      resources: {ranks: 1}\n", "      resources: *r\n") +
      "x-unused: 0\n";
  const std::string with_anchor =
      absl::StrReplaceAll(yaml, {{"training: {learning_rate: 1e-5, epochs: 1}",
                                  "training: {learning_rate: 1e-5, epochs: 1}\n      "
                                  "resources: &r {ranks: 2}"},
                                 {"x-unused: 0\n", ""}});
  ASSERT_OK_AND_ASSIGN(PipelineSpec spec, ParsePipelineYaml(with_anchor, "p.yaml"));
  EXPECT_EQ(spec.stages(0).resources().ranks(), 2);
  EXPECT_EQ(spec.stages(2).resources().ranks(), 2);  // *r
  EXPECT_THAT(ErrorLines(with_anchor, {"stages.dpo.resources.ranks=4"}),
              ElementsAre("--set stages.dpo.resources.ranks=4: stages.dpo.resources.ranks: "
                          "spec.stages[2].resources is shared through a YAML alias (&anchor / "
                          "*alias), so --set would change every copy; edit the file instead"));
  // Not through the alias: fine.
  ASSERT_OK_AND_ASSIGN(PipelineSpec other,
                       ParsePipelineYaml(with_anchor, "p.yaml", {"stages.dpo.config.beta=0.3"}));
  EXPECT_DOUBLE_EQ(other.stages(2).dpo().beta(), 0.3);
}

TEST(PipelineYaml, MutatedInputsNeverCrash) {
  // Every truncation and a sweep of byte substitutions: each must parse or fail cleanly.
  const std::string base = kGood;
  int failures = 0;
  for (size_t n = 0; n < base.size(); ++n) {
    PipelineSpec spec;
    failures += ParsePipelineYamlWithErrors(base.substr(0, n), "p.yaml", {}, &spec).empty() ? 0 : 1;
  }
  for (size_t i = 0; i < base.size(); i += 3) {
    for (char c : {':', '[', '{', '&', '*', '-', '"', '\n', '\xff'}) {
      std::string mutated = base;
      mutated[i] = c;
      PipelineSpec spec;
      (void)ParsePipelineYamlWithErrors(mutated, "p.yaml", {}, &spec);
    }
  }
  EXPECT_GT(failures, 0);
}

TEST(PipelineYaml, OverrideErrorsNameTheSetArgument) {
  EXPECT_THAT(ErrorLines(kGood, {"stages.dpo.config.beta=abc"}),
              ElementsAre("--set stages.dpo.config.beta=abc: spec.stages[2].config.beta: not a "
                          "number; expected a number (e.g. 0.1 or 1e-5), got \"abc\""));
  EXPECT_THAT(ErrorLines(kGood, {"stages.dpo.config.betta=0.1"}),
              ElementsAre(HasSubstr("--set stages.dpo.config.betta=0.1: "
                                    "spec.stages[2].config.betta: unknown key \"betta\"")));
  EXPECT_THAT(ErrorLines(kGood, {"stages.dop.config.beta=0.1"}),
              ElementsAre("--set stages.dop.config.beta=0.1: stages.dop.config.beta: no stage "
                          "named \"dop\"; expected one of: sft, prefs, dpo; did you mean dpo?"));
  EXPECT_THAT(ErrorLines(kGood, {"stages.dpo.config.beta=-1"}),
              ElementsAre(HasSubstr("--set stages.dpo.config.beta=-1: spec.stages[2].config.beta: "
                                    "must be > 0, got -1")));
  EXPECT_THAT(ErrorLines(kGood, {"stages.dpo.retyr.max_infra_retries=1"}),
              ElementsAre(HasSubstr("--set stages.dpo.retyr.max_infra_retries=1: "
                                    "spec.stages[2].retyr: unknown key \"retyr\"")));
  EXPECT_THAT(ErrorLines(kGood, {"beta"}),
              ElementsAre("--set beta: expected path=value, e.g. --set stages.dpo.config.beta=0.05"));
  EXPECT_THAT(ErrorLines(kGood, {"stagse.dpo.config.beta=1"}),
              ElementsAre(HasSubstr("--set stagse.dpo.config.beta=1: stagse.dpo.config.beta: "
                                    "unknown path \"stagse\"")));
}

// ---------------------------------------------------------------------------------------------
// Bad inputs: each names the exact position and field path.

struct BadCase {
  const char* name;
  std::string yaml;
  std::string expected;  // one full error line, or its beginning
};

class BadInput : public ::testing::TestWithParam<BadCase> {};

TEST_P(BadInput, ReportsFieldPath) {
  const BadCase& c = GetParam();
  const std::vector<std::string> lines = ErrorLines(c.yaml);
  ASSERT_FALSE(lines.empty()) << c.name;
  bool found = false;
  for (const std::string& line : lines) found |= line.rfind(c.expected, 0) == 0;
  EXPECT_TRUE(found) << c.name << ": expected a line starting with\n  " << c.expected
                     << "\ngot:\n  " << absl::StrJoin(lines, "\n  ");
}

std::vector<BadCase> BadCases() {
  return {
      // Unknown keys at every depth, with the nearest valid key.
      {"unknown_top_level_key", Edit("metadata:\n", "metdata:\n"),
       "p.yaml:3:1: metdata: unknown key \"metdata\"; expected one of: apiVersion, kind, metadata, "
       "spec; did you mean metadata?"},
      {"unknown_metadata_key", Edit("name: test", "nmae: test"),
       "p.yaml:4:3: metadata.nmae: unknown key \"nmae\"; expected one of: name, labels, priority, "
       "description; did you mean name?"},
      {"unknown_spec_key", Edit("  stages:\n", "  stage:\n"),
       "p.yaml:8:3: spec.stage: unknown key \"stage\"; expected one of: defaults, stages; did you "
       "mean stages?"},
      {"unknown_defaults_key", Edit("    model: data://", "    modle: data://"),
       "p.yaml:7:5: spec.defaults.modle: unknown key \"modle\"; expected one of: model, tokenizer, "
       "chat_template, seed, precision, output_dir; did you mean model?"},
      {"unknown_stage_key", Edit("      config: {beta: 0.1}\n", "      dependson: [sft]\n"),
       "p.yaml:21:7: spec.stages[2].dependson: unknown key \"dependson\"; expected one of: "},
      {"unknown_training_key", Edit("{learning_rate: 1e-5, epochs: 1}", "{learnig_rate: 1e-5}"),
       "p.yaml:12:18: spec.stages[0].training.learnig_rate: unknown key \"learnig_rate\"; "
       "expected one of: learning_rate, "},
      {"unknown_config_key", Edit("{beta: 0.1}", "{betta: 0.1}"),
       "p.yaml:21:16: spec.stages[2].config.betta: unknown key \"betta\"; expected one of: beta, "
       "loss_type, label_smoothing, sft_weight, precompute_ref_log_probs, reference_model, "
       "simpo_gamma, max_prompt_length; did you mean beta?"},
      {"unknown_data_key", Edit("format: hh_rlhf", "fromat: hh_rlhf"),
       "p.yaml:15:74: spec.stages[1].data[0].fromat: unknown key \"fromat\"; expected one of: "
       "path, format, weight, sha256, max_examples, on_bad_line, language, split; did you mean "
       "format?"},
      {"unknown_resources_key", Edit("{ranks: 1}", "{rank: 1}"),
       "p.yaml:22:19: spec.stages[2].resources.rank: unknown key \"rank\"; expected one of: "
       "ranks, gpus_per_rank, cpu_only_allowed, cpus_per_rank, memory_mb, node_selector; did you "
       "mean ranks?"},
      {"training_key_in_config", Edit("{beta: 0.1}", "{beta: 0.1, learning_rate: 1e-5}"),
       "p.yaml:21:27: spec.stages[2].config.learning_rate: unknown key \"learning_rate\"; "
       "learning_rate is a training setting; it belongs under the stage's training: block, not "
       "config:"},
      {"config_key_in_training",
       Edit("training: {learning_rate: \"5e-7\"}", "training: {learning_rate: \"5e-7\", beta: 0.1}"),
       "p.yaml:20:41: spec.stages[2].training.beta: unknown key \"beta\"; beta is a dpo setting; "
       "it belongs under the stage's config: block, not training:"},
      {"training_key_on_stage", Edit("      config: {beta: 0.1}\n", "      epochs: 3\n"),
       "p.yaml:21:7: spec.stages[2].epochs: unknown key \"epochs\"; epochs belongs under "
       "training: (stage.training.epochs)"},
      {"merge_key", Edit("      resources: {ranks: 1}\n", "      resources: {<<: {ranks: 1}}\n"),
       "p.yaml:22:19: spec.stages[2].resources.<<: unknown key \"<<\"; YAML merge keys are not "
       "supported"},
      // Wrong types.
      {"int_given_text", Edit("epochs: 1}", "epochs: two}"),
       "p.yaml:12:47: spec.stages[0].training.epochs: not an integer; expected an integer, got "
       "\"two\""},
      {"int_rejects_fraction", Edit("epochs: 1}", "epochs: 1.5}"),
       "p.yaml:12:47: spec.stages[0].training.epochs: not an integer; expected an integer, got "
       "\"1.5\""},
      {"float_given_list", Edit("{beta: 0.1}", "{beta: [0.1]}"),
       "p.yaml:21:22: spec.stages[2].config.beta: wrong type; expected a number (e.g. 0.1 or "
       "1e-5), got a list"},
      {"float_given_null", Edit("{beta: 0.1}", "{beta: }"),
       "p.yaml:21:22: spec.stages[2].config.beta: missing value; expected a number"},
      {"bool_only_true_false", Edit("{beta: 0.1}", "{beta: 0.1, precompute_ref_log_probs: yes}"),
       "p.yaml:21:53: spec.stages[2].config.precompute_ref_log_probs: wrong type; expected true "
       "or false, got \"yes\""},
      {"int32_overflow", Edit("{ranks: 1}", "{ranks: 99999999999}"),
       "p.yaml:22:26: spec.stages[2].resources.ranks: out of range for int32; expected an "
       "integer, got \"99999999999\""},
      {"uint64_negative", Edit("    model: data://models/stories260K\n",
                               "    model: data://models/stories260K\n    seed: -1\n"),
       "p.yaml:8:11: spec.defaults.seed: negative value; expected a non-negative integer, got "
       "\"-1\""},
      {"float_infinite", Edit("{beta: 0.1}", "{beta: inf}"),
       "p.yaml:21:22: spec.stages[2].config.beta: not a finite number"},
      {"stages_not_a_list", Truncated("  stages:\n    sft: {type: sft}\n"),
       "p.yaml:9:5: spec.stages: expected a list of stages (each \"- name: ...\"); got a mapping"},
      {"list_given_scalar", Edit("      resources: {ranks: 1}\n", "      depends_on: sft\n"),
       "p.yaml:22:19: spec.stages[2].depends_on: expected a list of strings (e.g. [a, b]); got "
       "\"sft\""},
      // Enums.
      {"bad_enum_value", Edit("format: hh_rlhf", "format: hh-rlhf"),
       "p.yaml:15:82: spec.stages[1].data[0].format: unknown value \"hh-rlhf\"; expected one of: "
       "text, messages, prompt_completion, preference, implicit_preference, hh_rlhf, oasst_tree, "
       "ultrafeedback; did you mean hh_rlhf?"},
      {"bad_stage_type", Edit("type: dpo", "type: dop"),
       "p.yaml:17:13: spec.stages[2].type: unknown value \"dop\"; expected one of: sft, "
       "preference_format, reward_model, dpo, ppo, eval; did you mean dpo?"},
      // Required fields and structure.
      {"empty_stage_list", Truncated("  stages: []\n"),
       "p.yaml:8:11: spec.stages: at least one stage is required; expected a list of stages"},
      {"missing_stages", Truncated(""),
       "p.yaml:6:3: spec.stages: at least one stage is required"},
      {"missing_metadata_name", Edit("  name: test\n", "  description: x\n"),
       "p.yaml:4:3: metadata.name: required; expected the pipeline's name (UTF-8, 1..128 bytes)"},
      {"missing_stage_name", Edit("    - name: prefs\n      type: preference_format\n",
                                  "    - type: preference_format\n"),
       "p.yaml:13:7: spec.stages[1].name: required; expected a stage name"},
      {"missing_stage_type", Edit("      type: preference_format\n", ""),
       "p.yaml:13:7: spec.stages[1].type: required; expected one of: sft, preference_format"},
      {"missing_api_version", Edit("apiVersion: align/v1\n", ""),
       "p.yaml:1:1: apiVersion: required; expected apiVersion: align/v1"},
      {"wrong_api_version", Edit("apiVersion: align/v1", "apiVersion: align/v2"),
       "p.yaml:1:13: apiVersion: unsupported API version \"align/v2\"; expected align/v1"},
      {"duplicate_stage_names", Edit("- name: prefs", "- name: sft"),
       "p.yaml:13:13: spec.stages[1].name: duplicate stage name \"sft\" (also spec.stages[0]); "
       "stage names must be unique"},
      {"stage_name_charset", Edit("- name: prefs", "- name: Prefs Stage"),
       "p.yaml:13:13: spec.stages[1].name: invalid stage name \"Prefs Stage\"; expected 1..63 "
       "characters from [a-z0-9_-]"},
      {"duplicate_key", Edit("      config: {beta: 0.1}\n", "      config: {beta: 0.1, beta: 0.2}\n"),
       "p.yaml:21:27: spec.stages[2].config.beta: duplicate key \"beta\" (first at line 21); each "
       "key may appear once"},
      // Dependencies and references.
      {"depends_on_cycle", Edit("      type: sft\n", "      type: sft\n      depends_on: [dpo]\n"),
       "p.yaml:11:19: spec.stages[0].depends_on: dependency cycle: sft -> dpo -> sft"},
      {"depends_on_unknown", Edit("      config: {beta: 0.1}\n", "      depends_on: [sfft]\n"),
       "p.yaml:21:20: spec.stages[2].depends_on[0]: unknown stage \"sfft\"; expected one of: sft, "
       "prefs, dpo; did you mean sft?"},
      {"depends_on_self", Edit("      config: {beta: 0.1}\n", "      depends_on: [dpo]\n"),
       "p.yaml:21:20: spec.stages[2].depends_on[0]: stage \"dpo\" cannot depend on itself"},
      {"reference_to_unknown_stage", Edit("${stages.sft.outputs.model}", "${stages.sfx.outputs.model}"),
       "p.yaml:18:14: spec.stages[2].model: reference ${stages.sfx.outputs.model} names unknown "
       "stage \"sfx\"; expected one of: sft, prefs, dpo; did you mean sft?"},
      {"reference_to_missing_output",
       Edit("${stages.prefs.outputs.train}", "${stages.prefs.outputs.model}"),
       "p.yaml:19:21: spec.stages[2].data[0].path: reference ${stages.prefs.outputs.model}: stage "
       "\"prefs\" (preference_format) has no output \"model\"; expected one of: train, test"},
      {"reference_model_from_data_stage",
       Edit("${stages.sft.outputs.model}", "${stages.prefs.outputs.train}"),
       "p.yaml:18:14: spec.stages[2].model: reference ${stages.prefs.outputs.train} is not a "
       "model; expected ${stages.<stage>.outputs.model}"},
      {"malformed_reference", Edit("${stages.sft.outputs.model}", "${stages.sft.model}"),
       "p.yaml:18:14: spec.stages[2].model: malformed reference \"${stages.sft.model}\"; expected "
       "${stages.<stage>.outputs.<output>}"},
      // Numbers out of range.
      {"zero_ranks", Edit("{ranks: 1}", "{ranks: 0}"),
       "p.yaml:22:26: spec.stages[2].resources.ranks: must be > 0, got 0"},
      {"negative_ranks", Edit("{ranks: 1}", "{ranks: -2}"),
       "p.yaml:22:26: spec.stages[2].resources.ranks: must be > 0, got -2"},
      {"negative_gpus", Edit("{ranks: 1}", "{ranks: 1, gpus_per_rank: -1}"),
       "p.yaml:22:44: spec.stages[2].resources.gpus_per_rank: must be >= 0, got -1"},
      {"zero_batch_size", Edit("{learning_rate: \"5e-7\"}", "{learning_rate: \"5e-7\", batch_size: 0}"),
       "p.yaml:20:53: spec.stages[2].training.batch_size: must be > 0, got 0"},
      {"negative_learning_rate", Edit("{learning_rate: 1e-5, epochs: 1}", "{learning_rate: -1e-5}"),
       "p.yaml:12:33: spec.stages[0].training.learning_rate: must be > 0, got -1e-05"},
      {"zero_beta", Edit("{beta: 0.1}", "{beta: 0}"),
       "p.yaml:21:22: spec.stages[2].config.beta: must be > 0, got 0"},
      {"label_smoothing_half", Edit("{beta: 0.1}", "{beta: 0.1, label_smoothing: 0.5}"),
       "p.yaml:21:44: spec.stages[2].config.label_smoothing: must be in [0, 0.5) (conservative "
       "DPO flips at most half the labels), got 0.5"},
      {"warmup_ratio_one", Edit("{learning_rate: 1e-5, epochs: 1}", "{warmup_ratio: 1.0}"),
       "p.yaml:12:32: spec.stages[0].training.warmup_ratio: must be in [0, 1), got 1"},
      // Data sources.
      {"url_without_sha256",
       Edit("data://datasets/oasst/en_100_tree.jsonl", "https://example.com/x.jsonl"),
       "p.yaml:11:14: spec.stages[0].data[0].sha256: required for a URL (downloads are verified); "
       "expected 64 hex digits"},
      {"short_sha256", Edit("format: oasst_tree}", "format: oasst_tree, sha256: abc123}"),
       "p.yaml:11:90: spec.stages[0].data[0].sha256: expected 64 lower-case hex digits, got "
       "\"abc123\" (6 characters)"},
      {"training_on_non_training_stage",
       Edit("      type: preference_format\n", "      type: preference_format\n      training: {epochs: 1}\n"),
       "p.yaml:15:17: spec.stages[1].training: a preference_format stage does not train"},
      {"sft_without_data", Edit("      data: [{path: data://datasets/oasst/en_100_tree.jsonl, format: oasst_tree}]\n", ""),
       "p.yaml:9:7: spec.stages[0].data: a sft stage needs at least one data source"},
      // Eval stages.
      {"gate_bad_operator", WithEval("        gates: {mmlu.acc: \">> 0.25\"}\n"),
       "p.yaml:28:27: spec.stages[3].config.gates[mmlu.acc]: bad gate \">> 0.25\"; expected an "
       "operator (>=, >, <=, <, ==) and a number, e.g. \">= 0.25\""},
      {"gate_missing_number", WithEval("        gates: {mmlu.acc: \">=\"}\n"),
       "p.yaml:28:27: spec.stages[3].config.gates[mmlu.acc]: bad gate \">=\""},
      {"gate_on_suite_not_run", WithEval("        gates: {truthfulqa.mc2: \">= 0.3\"}\n"),
       "p.yaml:28:33: spec.stages[3].config.gates[truthfulqa.mc2]: no score \"truthfulqa.mc2\": a "
       "score path starts with a suite this stage runs: mmlu, preference_accuracy"},
      {"gate_on_unwritten_score", WithEval("        gates: {mmlu.accs: \">= 0.3\"}\n"),
       "p.yaml:28:28: spec.stages[3].config.gates[mmlu.accs]: no score \"mmlu.accs\": mmlu has "
       "acc, questions, subjects.<name>.<leaf>, categories.<name>.<leaf>; did you mean acc?"},
      {"unknown_suite", WithEval("        mmlu_shots: 3\n").replace(
           WithEval("").find("preference_accuracy"), 19, "truthfulq"),
       "p.yaml:27:24: spec.stages[3].config.suites[1]: unknown suite \"truthfulq\"; expected one "
       "of: mmlu, truthfulqa, mt_bench, ifeval, preference_accuracy, winrate; did you mean "
       "truthfulqa?"},
      {"mmlu_shots_too_many", WithEval("        mmlu_shots: 6\n"),
       "p.yaml:28:21: spec.stages[3].config.mmlu_shots: must be in 0..5"},
      {"mt_bench_without_judge", WithEval("        judge: {}\n").replace(
           WithEval("").find("preference_accuracy"), 19, "mt_bench"),
       "p.yaml:28:16: spec.stages[3].config.judge: mt_bench needs a judge; expected judge.model"},
      {"winrate_without_reward_model", WithEval("        judge: {endpoint: \"http://127.0.0.1:8000/v1\", endpoint_model: m}\n").replace(
           WithEval("").find("preference_accuracy"), 19, "winrate"),
       "p.yaml:28:16: spec.stages[3].config.judge: winrate needs a reward model to score answers"},
      {"judge_model_and_endpoint", WithEval("        judge: {model: /m, endpoint: \"http://h/v1\", endpoint_model: m}\n"),
       "p.yaml:28:16: spec.stages[3].config.judge: set judge.model or judge.endpoint, not both"},
      {"mt_bench_unknown_category", WithEval("        mt_bench_categories: [writing, maths]\n"),
       "p.yaml:28:40: spec.stages[3].config.mt_bench_categories[1]: unknown MT-Bench category "
       "\"maths\"; expected one of: writing, roleplay, reasoning, math, coding, extraction, stem, "
       "humanities; did you mean math?"},
      // Encoding, size and bombs.
      {"invalid_utf8_in_name", Edit("name: test", "name: te\xff\xfest"),
       "p.yaml:4:9: metadata.name: invalid UTF-8 (byte 0xff at offset 2); expected UTF-8 text"},
      {"invalid_utf8_in_comment", Edit("kind: Pipeline\n", "kind: Pipeline  # \xc3\x28\n"),
       "p.yaml:2:19: invalid UTF-8 (byte 0xc3); the file must be UTF-8"},
      {"yaml_syntax_error", Edit("{ranks: 1}", "{ranks: 1"),
       "p.yaml:23:1: YAML syntax error: "},
      {"two_documents", std::string(kGood) + "---\n" + kGood,
       "p.yaml: expected one YAML document, found 2 (separated by ---)"},
      {"huge_file", std::string(kGood) + "# " + std::string(kMaxSpecBytes, 'x') + "\n",
       absl::StrCat("p.yaml: file is ", sizeof(kGood) - 1 + 3 + kMaxSpecBytes,
                    " bytes; a pipeline spec may be at most 4194304 bytes (4 MiB)")},
      {"alias_bomb", std::string(kGood) + kAliasBomb,
       "p.yaml: the document expands to more than 100000 nodes (aliases expanded)"},
      {"long_flat_list", std::string(kGood) + "x: [" + [] {
         std::string items;
         for (int i = 0; i < 150000; ++i) items += "x,";
         return items;
       }() + "x]\n",
       "p.yaml: the document expands to more than 100000 nodes (aliases expanded)"},
      {"deep_nesting", std::string(kGood) + "x: " + std::string(3000, '[') + std::string(3000, ']') + "\n",
       "p.yaml: the document nests deeper than 100 levels; a pipeline spec is far shallower"},
      {"not_a_mapping", "- a\n- b\n",
       "p.yaml:1:1: expected a mapping with apiVersion, kind, metadata and spec; got a list"},
      {"empty_document", "# nothing here\n",
       "p.yaml: empty document; expected a pipeline spec"},
  };
}

INSTANTIATE_TEST_SUITE_P(Spec, BadInput, ::testing::ValuesIn(BadCases()),
                         [](const ::testing::TestParamInfo<BadCase>& info) {
                           return std::string(info.param.name);
                         });

}  // namespace
}  // namespace align::config
