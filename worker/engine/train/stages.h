// Stage entry points for the trainers: a job (stage spec + resolved inputs) -> tokenized data ->
// RunTraining -> the model in Hugging Face layout under <output_dir>/model, announced by an
// `artifact` event. Each returns the final metrics for the `done` event.
#pragma once

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"
#include "worker/engine/core/events.h"
#include "worker/engine/core/job.h"

namespace align::engine::train {

absl::StatusOr<nlohmann::json> RunSftStage(const JobSpec& job, EventSink& events);
absl::StatusOr<nlohmann::json> RunDpoStage(const JobSpec& job, EventSink& events);
absl::StatusOr<nlohmann::json> RunRewardModelStage(const JobSpec& job, EventSink& events);

}  // namespace align::engine::train
