// The `eval` stage: scores models on benchmark suites (MMLU, TruthfulQA, IFEval, MT-Bench,
// preference accuracy, reward-model win rate), writes results.json with a reproducibility record
// for every score, and fails the stage when a configured gate fails. Called by the engine runner
// for stage type "eval"; configuration is EvalConfig (proto/align/v1/pipeline.proto) via job.Config().
#pragma once

#include "absl/status/status.h"
#include "worker/engine/core/events.h"
#include "worker/engine/core/job.h"

namespace align::engine::eval {

//! Runs the eval stage described by `job`, writing `<output_dir>/results.json` and emitting an
//! `artifact` event for it. Returns FailedPrecondition with a readable gate report (gate, value,
//! threshold) when a gate fails, InvalidArgument for a bad config or input.
absl::Status RunEvalStage(const JobSpec& job, EventSink& events);

}  // namespace align::engine::eval
