#include "coordinator/planner.h"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include <openssl/sha.h>

#include <functional>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/config/pipeline_config.h"
#include "common/status_macros.h"

namespace align::coordinator {
namespace {

std::string JoinPath(absl::string_view a, absl::string_view b) {
  if (a.empty()) return std::string(b);
  if (absl::EndsWith(a, "/")) return absl::StrCat(a, b);
  return absl::StrCat(a, "/", b);
}

// Every reference field of `stage` rewritten by `resolve`.
absl::Status ResolveStage(
    v1::StageSpec* stage,
    const std::function<absl::StatusOr<std::string>(const config::StageRef&)>& resolve) {
  for (const config::StageRefField& f : config::StageReferenceFields(*stage)) {
    ASSIGN_OR_RETURN(std::string value, config::SubstituteStageRefs(*f.value, resolve));
    // The pointers point into *stage, which we own mutably.
    *const_cast<std::string*>(f.value) = std::move(value);
  }
  return absl::OkStatus();
}

absl::StatusOr<const v1::Artifact*> FindOutput(const StageOutputsByName& upstream,
                                               const config::StageRef& ref) {
  auto st = upstream.find(ref.stage);
  if (st == upstream.end()) {
    return absl::FailedPreconditionError(
        absl::StrCat(ref.ToString(), ": stage '", ref.stage, "' has not produced its outputs yet"));
  }
  auto out = st->second.find(ref.output);
  if (out == st->second.end()) {
    return absl::FailedPreconditionError(absl::StrCat(
        ref.ToString(), ": stage '", ref.stage, "' finished without reporting an output named '",
        ref.output, "'"));
  }
  return &out->second;
}

}  // namespace

absl::StatusOr<std::vector<PlannedStage>> PlanPipeline(v1::PipelineSpec* spec) {
  RETURN_IF_ERROR(config::ValidatePipelineSpec(*spec));
  config::ApplyDefaults(spec);
  RETURN_IF_ERROR(config::ValidatePipelineSpec(*spec));
  ASSIGN_OR_RETURN(std::vector<int> order, config::TopologicalOrder(*spec));
  (void)order;  // validation already refused cycles; the order is implied by depends_on
  std::vector<PlannedStage> out;
  for (int i = 0; i < spec->stages_size(); ++i) {
    PlannedStage p;
    p.index = i;
    p.depends_on = config::StageDependencies(spec->stages(i));
    out.push_back(std::move(p));
  }
  return out;
}

std::string ArtifactPath(const v1::Artifact& artifact) {
  absl::string_view uri = artifact.uri();
  if (absl::ConsumePrefix(&uri, "file://")) return std::string(uri);
  return std::string(uri);
}

std::string Sha256Hex(const std::string& bytes) {
  unsigned char md[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), md);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(2 * SHA256_DIGEST_LENGTH);
  for (unsigned char c : md) {
    out.push_back(kHex[c >> 4]);
    out.push_back(kHex[c & 15]);
  }
  return out;
}

absl::StatusOr<std::string> StageCacheKey(const v1::StageSpec& stage, const v1::Defaults& defaults,
                                          const StageOutputsByName& upstream,
                                          const std::string& engine_version) {
  v1::StageSpec s = stage;
  s.clear_name();
  s.clear_depends_on();
  s.clear_resources();  // where it runs does not change what it computes
  s.clear_retry();
  s.clear_timeout_seconds();
  RETURN_IF_ERROR(ResolveStage(&s, [&](const config::StageRef& ref) -> absl::StatusOr<std::string> {
    ASSIGN_OR_RETURN(const v1::Artifact* a, FindOutput(upstream, ref));
    // Content, not location: an identical upstream output gives an identical key.
    return absl::StrCat("sha256:", a->sha256().empty() ? ArtifactPath(*a) : a->sha256());
  }));
  v1::Defaults d = defaults;
  d.clear_output_dir();
  std::string bytes;
  {
    std::string spec_bytes, defaults_bytes;
    // Deterministic serialization: map fields in key order, so equal specs hash equal.
    {
      google::protobuf::io::StringOutputStream os(&spec_bytes);
      google::protobuf::io::CodedOutputStream cos(&os);
      cos.SetSerializationDeterministic(true);
      s.SerializeToCodedStream(&cos);
    }
    {
      google::protobuf::io::StringOutputStream os(&defaults_bytes);
      google::protobuf::io::CodedOutputStream cos(&os);
      cos.SetSerializationDeterministic(true);
      d.SerializeToCodedStream(&cos);
    }
    bytes = absl::StrCat("align-stage-cache-v1\n", engine_version, "\n", spec_bytes.size(), ":",
                         spec_bytes, defaults_bytes);
  }
  return Sha256Hex(bytes);
}

std::string StageOutputDir(const JobContext& ctx, const v1::PipelineSpec& spec,
                           const std::string& stage) {
  const std::string root = spec.defaults().output_dir().empty()
                               ? JoinPath(ctx.artifact_root, ctx.pipeline_id)
                               : spec.defaults().output_dir();
  return JoinPath(root, stage) + "/";
}

absl::StatusOr<v1::TrainJob> BuildTrainJob(const JobContext& ctx, const v1::PipelineSpec& spec,
                                           const v1::StageSpec& stage,
                                           const StageOutputsByName& upstream) {
  v1::TrainJob job;
  job.set_pipeline_id(ctx.pipeline_id);
  job.set_attempt_id(ctx.attempt_id);
  v1::StageSpec* s = job.mutable_stage();
  *s = stage;
  RETURN_IF_ERROR(ResolveStage(s, [&](const config::StageRef& ref) -> absl::StatusOr<std::string> {
    ASSIGN_OR_RETURN(const v1::Artifact* a, FindOutput(upstream, ref));
    return ArtifactPath(*a);
  }));
  *job.mutable_defaults() = spec.defaults();
  auto& inputs = *job.mutable_inputs();
  if (!s->model().empty()) inputs["model"] = s->model();
  if (!s->tokenizer().empty()) inputs["tokenizer"] = s->tokenizer();
  for (const auto& [name, path] : s->models()) inputs[name] = path;
  for (int i = 0; i < s->data_size(); ++i) inputs[absl::StrCat("data/", i)] = s->data(i).path();
  if (s->has_dpo()) {
    inputs["reference_model"] =
        s->dpo().reference_model().empty() ? s->model() : s->dpo().reference_model();
  }
  if (s->has_ppo() && !s->ppo().reward_model().empty()) {
    inputs["reward_model"] = s->ppo().reward_model();
  }
  if (s->has_eval() && !s->eval().judge().model().empty()) {
    inputs["judge_model"] = s->eval().judge().model();
  }
  const std::string out = StageOutputDir(ctx, spec, stage.name());
  job.set_output_dir(out);
  const std::string root = spec.defaults().output_dir().empty()
                               ? JoinPath(ctx.artifact_root, ctx.pipeline_id)
                               : spec.defaults().output_dir();
  job.set_work_dir(JoinPath(root, absl::StrCat(".work/", stage.name())) + "/");
  job.set_resume_from(ctx.resume_from);
  job.set_data_dir(ctx.data_dir);
  job.set_threads(ctx.threads);
  return job;
}

}  // namespace align::coordinator
