// The pipeline spec: YAML (apiVersion: align/v1, kind: Pipeline) -> align.v1.PipelineSpec with
// strict validation, the defaults, stage-output references and the implied DAG, and the normalized
// YAML / JSON forms. Used by alignctl (validate, submit, run) and the coordinator (planner, server
// side validation). docs/pipeline-spec.md documents every field.
#pragma once

#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "align/v1/pipeline.pb.h"

namespace align::config {

//! Files larger than this are refused before parsing.
inline constexpr size_t kMaxSpecBytes = 4 << 20;
//! YAML nodes counted with aliases expanded; above this the file is refused (alias bombs).
inline constexpr int kMaxYamlNodes = 100000;

//! One problem in a spec. `source` is the file name (or the `--set k=v` argument that caused it);
//! line and column are 1-based, 0 when unknown (a proto that did not come from YAML).
struct ConfigError {
  std::string source;
  int line = 0;
  int column = 0;
  std::string field_path;  // YAML path, e.g. "spec.stages[2].config.beta"; proto path from
                           // ValidatePipelineSpec, e.g. "stages[2].resources.ranks"
  std::string message;     // "what is wrong; expected ...; did you mean X?"

  //! "file:line:col: field.path: message" (parts that are unknown are left out).
  std::string ToString() const;
};

//! InvalidArgument with every error's ToString(), one per line; OK when `errors` is empty.
absl::Status ErrorsToStatus(const std::vector<ConfigError>& errors);

//! Parses, validates and normalizes (ApplyDefaults) a YAML spec. `source_name` names the text in
//! messages (usually the file path). `set_overrides` are "path=value" strings as given to
//! `--set` (e.g. "stages.dpo.config.beta=0.05": the stage is named after `stages.`), applied on
//! the YAML before conversion and validated the same way. Errors: InvalidArgument listing ALL
//! problems, one per line.
absl::StatusOr<align::v1::PipelineSpec> ParsePipelineYaml(
    absl::string_view yaml_text, absl::string_view source_name,
    const std::vector<std::string>& set_overrides = {});

//! As ParsePipelineYaml, with the errors as structured values. On success returns an empty vector
//! and fills *spec (normalized); on failure *spec is unspecified.
std::vector<ConfigError> ParsePipelineYamlWithErrors(absl::string_view yaml_text,
                                                     absl::string_view source_name,
                                                     const std::vector<std::string>& set_overrides,
                                                     align::v1::PipelineSpec* spec);

//! Reads `path` (NotFound if missing; InvalidArgument if larger than kMaxSpecBytes) and parses it.
absl::StatusOr<align::v1::PipelineSpec> LoadPipelineFile(
    const std::string& path, const std::vector<std::string>& set_overrides = {});

//! Server-side validation of a spec that did not come from YAML (or that a client may have
//! altered): the same semantic rules as the YAML parser, with proto field paths such as
//! "stages[2].resources.ranks". Zero scalars mean "unset" (defaults apply), so it accepts specs
//! with or without defaults applied.
absl::Status ValidatePipelineSpec(const align::v1::PipelineSpec& spec);
std::vector<ConfigError> ValidatePipelineSpecErrors(const align::v1::PipelineSpec& spec);

//! Fills every unset field with its default (all defaults live in defaults.cc). Stages inherit
//! model, tokenizer and chat_template from spec.defaults. Idempotent.
void ApplyDefaults(align::v1::PipelineSpec* spec);

// ---------------------------------------------------------------------------------------------
// Stage-output references: "${stages.<name>.outputs.<output>}".

struct StageRef {
  std::string stage;
  std::string output;
  size_t begin = 0;  // byte range of "${...}" inside the string it was found in
  size_t end = 0;
  //! "${stages.<stage>.outputs.<output>}"
  std::string ToString() const;
};

//! "${stages.<stage>.outputs.<output>}".
std::string StageOutputRef(absl::string_view stage, absl::string_view output);

//! The reference when the WHOLE string is one "${stages.X.outputs.Y}", else nullopt.
std::optional<StageRef> ParseStageRef(absl::string_view text);

//! Every reference inside `text` (a string may embed them, e.g. "${stages.sft.outputs.model}/x").
//! InvalidArgument when a "${" does not form a well-formed stage reference.
absl::StatusOr<std::vector<StageRef>> FindStageRefs(absl::string_view text);

//! Replaces every reference in `text` by resolve(ref).
absl::StatusOr<std::string> SubstituteStageRefs(
    absl::string_view text,
    const std::function<absl::StatusOr<std::string>(const StageRef&)>& resolve);

//! The outputs a stage of this type produces: sft/reward_model/dpo/ppo -> {"model"};
//! preference_format -> {"train", "test"}; eval -> {"results"}; unspecified -> {}.
const std::vector<std::string>& StageOutputs(align::v1::StageType type);

//! A string field of a stage that may hold references, with its proto field path relative to the
//! stage ("model", "models[candidate]", "data[0].path", "dpo.reference_model", ...).
struct StageRefField {
  std::string path;
  const std::string* value;
};
//! Every string field of `stage` that may reference another stage's outputs.
std::vector<StageRefField> StageReferenceFields(const align::v1::StageSpec& stage);

//! Names of the stages `stage` depends on: depends_on plus every stage its references name,
//! without duplicates, in first-mention order.
std::vector<std::string> StageDependencies(const align::v1::StageSpec& stage);

//! Stage indices in an order where every stage comes after its dependencies; ties keep spec
//! order. InvalidArgument naming the cycle ("a -> b -> a") or an unknown stage.
absl::StatusOr<std::vector<int>> TopologicalOrder(const align::v1::PipelineSpec& spec);

// ---------------------------------------------------------------------------------------------
// Names and output forms.

//! Lower-case YAML spelling of enum values: "sft", "preference_format", "dpo", ...
std::string StageTypeName(align::v1::StageType type);
std::optional<align::v1::StageType> ParseStageType(absl::string_view name);

//! The spec as YAML in the same schema the parser reads (apiVersion/kind/metadata/spec); parsing
//! the result gives back an equal proto.
std::string SpecToYaml(const align::v1::PipelineSpec& spec);

//! The spec as JSON in the same schema as SpecToYaml (JSON is YAML: the parser reads it back).
absl::StatusOr<std::string> SpecToJson(const align::v1::PipelineSpec& spec);

}  // namespace align::config
