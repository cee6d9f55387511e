#include "worker/engine/eval/eval_stage.h"

#include "absl/status/status.h"

namespace align::engine::eval {

absl::Status RunEvalStage(const JobSpec& job, EventSink& events) {
  (void)events;
  return absl::UnimplementedError("eval stage '" + job.stage_name + "': not implemented yet");
}

}  // namespace align::engine::eval
