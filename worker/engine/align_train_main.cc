// align-train: runs one stage attempt from a job file (see proto/align/v1/job.proto).

#include <cstdio>
#include <cstring>
#include <string>

#include "common/logging.h"
#include "common/version.h"
#include "worker/engine/core/events.h"
#include "worker/engine/core/failure.h"
#include "worker/engine/core/job.h"
#include "worker/engine/model/blas.h"
#include "worker/engine/model/memory.h"
#include "worker/engine/runner/runner.h"

namespace {

constexpr char kUsage[] =
    "usage: align-train --job JOB.json\n"
    "\n"
    "Runs one pipeline stage (sft, preference_format, reward_model, dpo, eval) from a job file\n"
    "(proto/align/v1/job.proto TrainJob as proto3 JSON). Progress events go to the job's\n"
    "events_path as JSON lines (stdout when empty); logs go to stderr.\n"
    "\n"
    "  --job PATH   the job file\n"
    "  --help       this text\n"
    "  --version    print the engine version\n"
    "\n"
    "Exit codes: 0 success, 2 bad job or config, 3 bad data or model input, 4 infrastructure,\n"
    "5 evaluation gates not met.\n";

}  // namespace

int main(int argc, char** argv) {
  std::string job_path;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--version") == 0) {
      std::printf("align-train %s\n", align::kEngineVersion);
      return 0;
    }
    if (std::strcmp(argv[i], "--help") == 0 || std::strcmp(argv[i], "-h") == 0) {
      std::fputs(kUsage, stdout);
      return 0;
    }
    if (std::strcmp(argv[i], "--job") == 0 && i + 1 < argc) {
      job_path = argv[++i];
    } else if (std::strncmp(argv[i], "--job=", 6) == 0) {
      job_path = argv[i] + 6;
    } else {
      std::fprintf(stderr, "align-train: unknown argument '%s'\n\n%s", argv[i], kUsage);
      return 2;
    }
  }
  if (job_path.empty()) {
    std::fputs(kUsage, stderr);
    return 2;
  }
  align::engine::model::ReexecWithBetterOpenBlasCore(argv);
  align::engine::model::KeepFreedTensorMemoryInHeap();
  auto job = align::engine::LoadJobFile(job_path);
  if (!job.ok()) {
    LOG(ERROR) << job.status();
    return 2;
  }
  auto sink = align::engine::JsonLinesEventSink::Open(job->events_path);
  if (!sink.ok()) {
    LOG(ERROR) << sink.status();
    return 4;
  }
  return align::engine::runner::RunJob(*job, **sink);
}
