// MMLU scoring throughput on stories260K (questions per second) and how the log-likelihood batch
// size and shared inputs change it. The reference is batch size 1 with one forward row per
// continuation (no sharing), measured in the same run; each line prints its speedup over it.
// "shared" lines score the four answers " A".." D" of a question from one forward row (their
// inputs are the same tokens), as lm-evaluation-harness's logits cache does.
//
//   build/bin/eval_bench [questions_per_subject=10] [shots=5] [threads=0] [memory=heap|mmap]

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "worker/engine/model/blas.h"
#include "worker/engine/eval/loglik.h"
#include "worker/engine/eval/multiple_choice.h"
#include "worker/engine/model/memory.h"
#include "worker/engine/model/model.h"
#include "worker/engine/tokenizer/tokenizer.h"

namespace {

std::string DataDir() {
  if (const char* env = std::getenv("ALIGN_DATA_DIR"); env != nullptr && *env != '\0') return env;
  return ALIGN_TEST_DATA_DIR;
}

}  // namespace

int main(int argc, char** argv) {
  // As align-train does; the PyTorch reference inherits the setting, so both sides use the
  // same BLAS kernels.
  align::engine::model::ReexecWithBetterOpenBlasCore(argv);
  using namespace align::engine;
  std::setvbuf(stdout, nullptr, _IONBF, 0);  // progress visible even if the run is cut short
  if (argc > 1 && (std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h")) {
    std::printf("usage: eval_bench [questions_per_subject=10] [shots=5] [threads=0] [memory=heap|mmap]\n"
                "MMLU questions/s on stories260K by log-likelihood batch size, with and without shared\n"
                "inputs, each as a ratio to batch 1 unshared measured in the same run.\n"
                "memory: heap keeps freed tensor memory in the heap as align-train does; mmap is glibc's\n"
                "default (large blocks mapped and unmapped per allocation, the page faults show as sys time).\n");
    return 0;
  }
  const int per_subject = argc > 1 ? std::atoi(argv[1]) : 10;
  const int shots = argc > 2 ? std::atoi(argv[2]) : 5;
  const int threads = argc > 3 ? std::atoi(argv[3]) : 0;
  model::SetComputeThreads(threads);
  // heap (default): as align-train does (worker/engine/align_train_main.cc), freed tensor memory
  // stays in the heap; mmap: glibc's default, large blocks mapped and unmapped per allocation.
  const std::string memory = argc > 4 ? argv[4] : "heap";
  if (memory != "heap" && memory != "mmap") {
    std::fprintf(stderr, "eval_bench: memory must be heap or mmap, got '%s'\n", memory.c_str());
    return 2;
  }
  if (memory == "heap") model::KeepFreedTensorMemoryInHeap();
  const std::string dir = DataDir() + "/models/stories260K";
  auto tok = Tokenizer::Load(dir);
  auto lm = model::CausalLM::Load(dir, {});
  if (!tok.ok() || !lm.ok()) {
    std::fprintf(stderr, "cannot load %s: %s %s\n", dir.c_str(), tok.status().ToString().c_str(),
                 lm.status().ToString().c_str());
    return 1;
  }
  eval::MmluOptions options;
  options.shots = shots;
  options.subjects = {"abstract_algebra", "high_school_geography", "philosophy", "virology"};
  options.limit = per_subject;
  std::printf("MMLU on stories260K: %zu subjects x %d questions, %d-shot, 4 continuations each\n",
              options.subjects.size(), per_subject, shots);
  double reference_qps = 0;
  double reference_acc = -1;
  struct Setting {
    int batch;
    bool share;
  };
  for (const Setting s : {Setting{1, false}, Setting{4, false}, Setting{16, false}, Setting{64, false},
                          Setting{1, true}, Setting{4, true}, Setting{16, true}, Setting{64, true}}) {
    const int batch = s.batch;
    const auto fn = eval::MakeLoglikFn(**lm, **tok, {.batch_size = batch, .share_inputs = s.share});
    // One warm-up pass, then the timed one.
    (void)eval::RunMmlu(DataDir() + "/eval/mmlu", options, fn);
    const auto t0 = std::chrono::steady_clock::now();
    auto scores = eval::RunMmlu(DataDir() + "/eval/mmlu", options, fn);
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (!scores.ok()) {
      std::fprintf(stderr, "batch %d: %s\n", batch, scores.status().ToString().c_str());
      return 1;
    }
    const double qps = scores->questions / secs;
    if (batch == 1 && !s.share) {
      reference_qps = qps;
      reference_acc = scores->acc;
    }
    std::printf("batch %3d %-8s: %7.1f questions/s  (%.2fx batch 1 unshared)  acc %.4f%s\n", batch,
                s.share ? "shared" : "unshared", qps, qps / reference_qps, scores->acc,
                scores->acc == reference_acc ? "" : "  ACCURACY DIFFERS FROM THE REFERENCE");
  }
  return 0;
}
