// align-train's core: a job file -> the stage it names (sft, preference_format, reward_model,
// dpo, eval) with start/done/error events and the exit code of docs/events.md.
#pragma once

#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"
#include "worker/engine/core/events.h"
#include "worker/engine/core/job.h"

namespace align::engine::runner {

//! Runs the stage; returns its final metrics.
absl::StatusOr<nlohmann::json> RunStage(const JobSpec& job, EventSink& events);

//! Emits start, runs the stage, emits done or error; returns the process exit code.
int RunJob(const JobSpec& job, EventSink& events);

//! A warning when the BLAS library mapped into this process is Debian's reference BLAS (slow;
//! install libopenblas0 so update-alternatives picks OpenBLAS); nullopt otherwise. `maps` is
//! /proc/self/maps text (a parameter for tests).
std::optional<std::string> ReferenceBlasWarning(const std::string& maps);
//! Reads /proc/self/maps and calls the above.
std::optional<std::string> CheckBlas();

}  // namespace align::engine::runner
