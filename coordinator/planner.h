// Planner: turns a submitted spec into the stage DAG the coordinator runs, computes stage cache
// keys, and builds the TrainJob of an attempt (references resolved to the producing stages'
// artifact paths). Pure functions over protos; no store, no clock.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "align/v1/job.pb.h"
#include "align/v1/pipeline.pb.h"
#include "align/v1/state.pb.h"

namespace align::coordinator {

struct PlannedStage {
  int index = 0;                      // position in the spec
  std::vector<std::string> depends_on;  // depends_on plus every referenced stage
};

//! Validates the spec (server side: the same rules as the YAML parser), applies defaults in
//! place, and returns one entry per stage in spec order. InvalidArgument lists every problem.
absl::StatusOr<std::vector<PlannedStage>> PlanPipeline(v1::PipelineSpec* spec);

//! Outputs of finished stages by stage name: output name -> artifact.
using StageOutputsByName = std::map<std::string, std::map<std::string, v1::Artifact>>;

//! A filesystem path for an artifact uri ("file:///x" -> "/x"; other forms unchanged).
std::string ArtifactPath(const v1::Artifact& artifact);

//! The stage cache key: a SHA-256 over the stage spec (name and retry/resources left out, the
//! references replaced by the content hashes of the artifacts they name), the pipeline defaults
//! that reach the engine, and the engine version. Equal keys mean equal work.
absl::StatusOr<std::string> StageCacheKey(const v1::StageSpec& stage, const v1::Defaults& defaults,
                                          const StageOutputsByName& upstream,
                                          const std::string& engine_version);

//! Lower-case hex SHA-256 of bytes.
std::string Sha256Hex(const std::string& bytes);

struct JobContext {
  std::string pipeline_id;
  std::string attempt_id;
  std::string artifact_root;  // the coordinator's --artifact-root
  std::string data_dir;       // the coordinator's --data-dir
  std::string resume_from;    // the stage's newest checkpoint, empty = fresh
  int threads = 0;
};

//! <artifact root>/<pipeline id>/<stage>/ (or <defaults.output_dir>/<stage>/ when the spec set it).
std::string StageOutputDir(const JobContext& ctx, const v1::PipelineSpec& spec,
                           const std::string& stage);

//! The attempt's job file: the stage with references resolved, the inputs map
//! ("model", "reference_model", "reward_model", "tokenizer", "data/<i>", and for eval the named
//! models), output/work dirs and the resume point. FailedPrecondition when a referenced output
//! does not exist (the producing stage did not report it).
absl::StatusOr<v1::TrainJob> BuildTrainJob(const JobContext& ctx, const v1::PipelineSpec& spec,
                                           const v1::StageSpec& stage,
                                           const StageOutputsByName& upstream);

}  // namespace align::coordinator
