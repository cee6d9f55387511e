#include "worker/engine/runner/runner.h"

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/version.h"
#include "worker/engine/core/failure.h"
#include "worker/engine/data/fetch.h"
#include "worker/engine/data/sources.h"
#include "worker/engine/eval/eval_stage.h"
#include "worker/engine/model/model.h"
#include "worker/engine/train/stages.h"
#include "worker/engine/train/trainer.h"

namespace align::engine::runner {

absl::StatusOr<nlohmann::json> RunStage(const JobSpec& job, EventSink& events) {
  const std::string& t = job.stage_type;
  if (t == "sft") return train::RunSftStage(job, events);
  if (t == "dpo") return train::RunDpoStage(job, events);
  if (t == "reward_model") return train::RunRewardModelStage(job, events);
  if (t == "preference_format") return data::RunPreferenceFormatStage(job, events);
  if (t == "eval") {
    absl::Status s = eval::RunEvalStage(job, events);
    if (!s.ok()) return s;
    return nlohmann::json::object();
  }
  if (t == "ppo") {
    return absl::UnimplementedError("stage type 'ppo' is not implemented by this align-train");
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "stage.type: '", t, "' is not one of sft, preference_format, reward_model, dpo, eval"));
}

int RunJob(const JobSpec& job, EventSink& events) {
  model::SetComputeThreads(job.threads);
  if (auto warn = CheckBlas()) LOG(WARNING) << *warn;
  nlohmann::json resumed = nullptr;
  if (!job.resume_from.empty()) {
    auto r = train::ResolveResumeCheckpoint(job.resume_from);
    if (r.ok() && r->has_value()) resumed = **r;
  }
  events.Emit("start", {{"stage", job.stage_name}, {"type", job.stage_type}, {"rank", job.rank},
                        {"world_size", job.world_size}, {"resumed_from", resumed},
                        {"engine_version", kEngineVersion}});
  LOG(INFO) << "stage " << job.stage_name << " (" << job.stage_type << ") starting";
  absl::StatusOr<nlohmann::json> result;
  try {
    // Downloads (URL sources, data:// files missing locally) and checksums before the stage reads
    // its data: the stage code then sees local files only.
    JobSpec local = job;
    absl::Status fetched = data::FetchJobData(local, events);
    if (fetched.ok()) {
      result = RunStage(local, events);
    } else {
      result = fetched;
    }
  } catch (const std::exception& e) {
    result = absl::InternalError(absl::StrCat("unexpected error: ", e.what()));
  }
  if (result.ok()) {
    events.Emit("done", {{"status", "succeeded"}, {"metrics", *result}});
    LOG(INFO) << "stage " << job.stage_name << " succeeded";
    return 0;
  }
  const int code = ExitCodeFor(result.status());
  events.Emit("error", {{"message", std::string(result.status().message())},
                        {"failure_class", code == 4 ? "infrastructure" : "user_error"}});
  LOG(ERROR) << "stage " << job.stage_name << " failed: " << result.status();
  return code;
}

std::optional<std::string> ReferenceBlasWarning(const std::string& maps) {
  std::istringstream in(maps);
  std::string line;
  bool reference = false;
  bool fast = false;
  std::string lib;
  while (std::getline(in, line)) {
    const size_t slash = line.find('/');
    if (slash == std::string::npos) continue;
    const std::string path = line.substr(slash);
    if (path.find("openblas") != std::string::npos || path.find("libmkl") != std::string::npos ||
        path.find("blis") != std::string::npos) {
      fast = true;
    } else if (path.find("/blas/libblas.so") != std::string::npos ||
               path.find("/libblas.so") != std::string::npos) {
      reference = true;
      lib = path;
    }
  }
  if (reference && !fast) {
    return absl::StrCat("torch is using the reference BLAS (", lib,
                        "): matrix products run several times slower. Install OpenBLAS "
                        "(apt-get install libopenblas0-pthread) or select it with "
                        "update-alternatives --config libblas.so.3-x86_64-linux-gnu");
  }
  return std::nullopt;
}

std::optional<std::string> CheckBlas() {
  std::ifstream in("/proc/self/maps");
  if (!in) return std::nullopt;
  std::stringstream ss;
  ss << in.rdbuf();
  return ReferenceBlasWarning(ss.str());
}

}  // namespace align::engine::runner
