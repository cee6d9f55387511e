// fake-align-train: stands in for align-train in worker tests. It reads the job file like the real
// engine (events_path, output_dir), emits docs/events.md progress events, and then misbehaves as
// told: `--mode M` (or, without --mode, the job's stage name, so one pipeline can hold several
// behaviours). Modes:
//   succeed      steps, a checkpoint, a model artifact, done; exit 0
//   exit3        an error event (user_error) and exit code 3
//   exit4        an error event (infrastructure) and exit code 4
//   oom          prints a CUDA out-of-memory error; exit 1
//   ecc          prints an uncorrectable ECC error; exit 1
//   segv         dies by SIGSEGV
//   ignore_term  ignores SIGTERM and runs until SIGKILLed
//   run          steps until it is signalled (default SIGTERM handling)
//   fork_child   forks a child that ignores SIGTERM and outlives it; the parent succeeds
//   hang         a few steps, then no more events (sleeps until killed)
//   rank1_exit3  rank 1 fails like exit3; every other rank runs until signalled
//   gate         a few steps, waits for the file --gate names to exist, then succeeds
// --steps N (3), --step-ms MS (5), --pid-file F (fork_child writes the child's pid there).
#include <signal.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

namespace {

std::string g_events_path;

double Now() {
  timeval tv;
  gettimeofday(&tv, nullptr);
  return tv.tv_sec + tv.tv_usec / 1e6;
}

void Emit(nlohmann::json ev) {
  ev["time"] = Now();
  const std::string line = ev.dump() + "\n";
  if (g_events_path.empty()) {
    std::fputs(line.c_str(), stdout);
    std::fflush(stdout);
    return;
  }
  std::FILE* f = std::fopen(g_events_path.c_str(), "a");
  if (f == nullptr) return;
  std::fputs(line.c_str(), f);
  std::fclose(f);
}

void SleepMs(int ms) { usleep(static_cast<useconds_t>(ms) * 1000); }

void Steps(int from, int n, int total, int step_ms) {
  for (int i = from; i < from + n; ++i) {
    SleepMs(step_ms);
    Emit({{"event", "step"},
          {"step", i},
          {"total_steps", total},
          {"epoch", i / static_cast<double>(total)},
          {"metrics",
           {{"loss", 2.0 / i},
            {"learning_rate", 1e-3},
            {"rewards/margins", 0.25 * i},
            {"rewards/accuracies", 0.75}}},
          {"tokens_per_second", 1000.0},
          {"step_seconds", step_ms / 1000.0}});
    std::fprintf(stderr, "step %d/%d loss %.4f\n", i, total, 2.0 / i);
  }
}

[[noreturn]] void SleepForever() {
  for (;;) pause();
}

}  // namespace

int main(int argc, char** argv) {
  std::string job_path, mode, gate, pid_file;
  int steps = 3, step_ms = 5;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (a == "--job") job_path = next();
    else if (a == "--mode") mode = next();
    else if (a == "--gate") gate = next();
    else if (a == "--pid-file") pid_file = next();
    else if (a == "--steps") steps = std::atoi(next().c_str());
    else if (a == "--step-ms") step_ms = std::atoi(next().c_str());
  }
  std::ifstream in(job_path);
  if (!in) {
    std::fprintf(stderr, "fake-align-train: cannot read job file '%s'\n", job_path.c_str());
    return 2;
  }
  std::stringstream text;
  text << in.rdbuf();
  const nlohmann::json job = nlohmann::json::parse(text.str(), nullptr, false);
  if (!job.is_object()) {
    std::fprintf(stderr, "fake-align-train: %s is not JSON\n", job_path.c_str());
    return 2;
  }
  g_events_path = job.value("events_path", "");
  const std::string output_dir = job.value("output_dir", "");
  const std::string stage = job.contains("stage") ? job["stage"].value("name", "") : "";
  if (mode.empty()) mode = stage;
  // The environment the worker set, for tests to check.
  for (const char* var : {"RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
                          "CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS", "ALIGN_DATA_DIR"}) {
    const char* v = std::getenv(var);
    std::printf("env %s=%s\n", var, v == nullptr ? "<unset>" : v);
  }
  std::fflush(stdout);
  const int rank = std::getenv("RANK") ? std::atoi(std::getenv("RANK")) : 0;
  Emit({{"event", "start"}, {"stage", stage}, {"type", "sft"}, {"rank", rank},
        {"world_size", 1}, {"resumed_from", nullptr}, {"engine_version", "fake"}});
  Emit({{"event", "phase"}, {"phase", "train"}, {"message", "training"}});

  if (mode == "rank1_exit3") mode = rank == 1 ? "exit3" : "run";
  if (mode == "ignore_term") signal(SIGTERM, SIG_IGN);
  if (mode == "run") {
    for (int i = 1;; ++i) Steps(i, 1, 1000000, step_ms);
  }
  Steps(1, steps, steps, step_ms);
  if (mode == "ignore_term" || mode == "hang") SleepForever();
  if (mode == "exit3") {
    Emit({{"event", "error"}, {"message", "data line 7: expected a 'messages' list"},
          {"failure_class", "user_error"}});
    std::fprintf(stderr, "error: data line 7: expected a 'messages' list\n");
    return 3;
  }
  if (mode == "exit4") {
    Emit({{"event", "error"}, {"message", "cannot write checkpoint: I/O error"},
          {"failure_class", "infrastructure"}});
    return 4;
  }
  if (mode == "oom") {
    std::fprintf(stderr,
                 "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 79.35 GiB "
                 "total capacity)\n");
    return 1;
  }
  if (mode == "ecc") {
    std::fprintf(stderr, "CUDA error: uncorrectable ECC error encountered\n");
    return 1;
  }
  if (mode == "segv") {
    std::fflush(nullptr);
    signal(SIGSEGV, SIG_DFL);
    raise(SIGSEGV);
  }
  if (mode == "fork_child") {
    const pid_t child = fork();
    if (child == 0) {
      signal(SIGTERM, SIG_IGN);
      SleepForever();
    }
    if (!pid_file.empty()) {
      std::ofstream(pid_file + ".tmp") << child << "\n";
      std::rename((pid_file + ".tmp").c_str(), pid_file.c_str());
    }
  }
  if (mode == "gate") {
    struct stat st;
    while (stat(gate.c_str(), &st) != 0) SleepMs(10);
    Steps(steps + 1, 1, steps + 1, step_ms);
  }
  // Outputs, like the engine: a checkpoint directory and the model artifact.
  std::string model_path = output_dir + "/model";
  if (!output_dir.empty()) {
    mkdir(output_dir.c_str(), 0755);
    mkdir(model_path.c_str(), 0755);
    std::ofstream(model_path + "/model.safetensors") << "fake weights";
  }
  Emit({{"event", "checkpoint"}, {"step", steps}, {"path", output_dir + "/checkpoint-" + std::to_string(steps)}});
  Emit({{"event", "artifact"},
        {"name", "model"},
        {"path", model_path},
        {"kind", "model"},
        {"sha256", "6b2c1f0e9d6a8e4f5b3c2a1d0e9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f"},
        {"size_bytes", 12}});
  Emit({{"event", "done"}, {"status", "succeeded"}, {"metrics", {{"loss", 0.5}}}});
  std::printf("done\n");
  return 0;
}
