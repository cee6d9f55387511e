// SFT and DPO training-step throughput (tokens/s) of the engine next to a PyTorch eager reference
// of the same step (tests/benchmarks/reference/train_reference.py: same model, batch, sequence
// length and threads), measured in one run. Run from the repository root. Models: stories260K
// (small) and a random 4-layer 256-wide Llama (medium). `train_bench --help` lists the options.
#include <time.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <string>

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <nlohmann/json.hpp>

#include "worker/engine/model/blas.h"
#include "worker/engine/data/batching.h"
#include "worker/engine/model/memory.h"
#include "worker/engine/model/model.h"
#include "worker/engine/train/losses.h"
#include "worker/engine/train/optim.h"
#include "worker/engine/train/trainer.h"

namespace {

using namespace align::engine;

struct Args {
  int threads = 1;
  int64_t batch = 8;
  int64_t seq = 128;
  int steps = 5;
  bool wall = false;  // --clock wall: elapsed time; default cpu: this process's CPU time
  bool heap = true;   // --memory heap (default, as align-train) or mmap (glibc's default)
};

constexpr char kUsage[] =
    "Usage: train_bench [--threads N] [--batch B] [--seq T] [--steps S] [--clock cpu|wall]\n"
    "                   [--memory heap|mmap] [--reference PATH]\n"
    "Times one SFT step and one DPO step of the engine and of the PyTorch eager reference\n"
    "(tests/benchmarks/reference/train_reference.py, run with /usr/bin/python3 and Debian's\n"
    "python3-torch) on the same model, batch, sequence length and threads; prints tokens/s\n"
    "and the engine/PyTorch ratio per model and step. Run from the repository root.\n"
    "  --threads N     torch intra-op threads on both sides (default 1)\n"
    "  --batch B       rows per SFT step; a DPO step has 2B rows (default 8)\n"
    "  --seq T         tokens per row (default 128)\n"
    "  --steps S       timed steps after one warm-up; the best is kept (default 5)\n"
    "  --clock C       cpu (default): process CPU time, which other processes' load does not\n"
    "                  inflate (use with --threads 1); wall: elapsed time, for an idle machine\n"
    "  --memory M      heap (default): freed tensor memory stays in the heap, as align-train\n"
    "                  runs (model/memory.h); mmap: glibc's default, large temporaries mapped\n"
    "                  and unmapped per allocation (the Python reference always runs so)\n"
    "  --reference P   the Python reference script (default: the path above)\n";

double Seconds(bool wall) {
  if (wall) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
  }
  timespec ts{};
  ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

at::Tensor Labels(const at::Tensor& ids) {
  at::Tensor labels = ids.clone();
  labels.narrow(1, 0, ids.size(1) / 2).fill_(-100);
  return labels;
}

double Best(int steps, bool wall, const std::function<void()>& fn) {
  fn();  // warm-up
  double best = 1e30;
  for (int i = 0; i < steps; ++i) {
    const double t0 = Seconds(wall);
    fn();
    best = std::min(best, Seconds(wall) - t0);
  }
  return best;
}

nlohmann::json Bench(model::CausalLM& policy, const Args& a) {
  const int64_t vocab = policy.config().vocab_size;
  auto ref = policy.Clone();
  policy.SetTrainable(true);
  train::AdamW opt(policy.NamedParameters(), {});
  auto params = policy.Parameters();
  at::manual_seed(1);
  at::Tensor ids = at::randint(3, vocab, {a.batch, a.seq}, at::kLong);
  at::Tensor labels = Labels(ids);
  nlohmann::json out;
  const double sft = Best(a.steps, a.wall, [&] {
    opt.ZeroGrad();
    at::Tensor logits = policy.Forward(ids);
    train::TokenNll nll = train::ComputeTokenNll(logits, labels);
    train::GlobalMeanShare(nll.nll, nll.tokens).backward();
    train::ClipGradNorm(params, 1.0);
    opt.Step(1e-4);
  });
  out["sft_tokens_per_s"] = static_cast<double>(a.batch * a.seq) / sft;
  at::Tensor ids2 = at::randint(3, vocab, {2 * a.batch, a.seq}, at::kLong);
  at::Tensor labels2 = Labels(ids2);
  train::DpoOptions o;
  const double dpo = Best(a.steps, a.wall, [&] {
    opt.ZeroGrad();
    train::CompletionLogps lp = train::ComputeCompletionLogps(policy.Forward(ids2), labels2);
    train::CompletionLogps rl;
    {
      at::NoGradGuard no_grad;
      rl = train::ComputeCompletionLogps(ref->Forward(ids2), labels2);
    }
    train::PairLogps l{lp.sums.narrow(0, 0, a.batch), lp.sums.narrow(0, a.batch, a.batch),
                       rl.sums.narrow(0, 0, a.batch), rl.sums.narrow(0, a.batch, a.batch),
                       lp.counts.narrow(0, 0, a.batch), lp.counts.narrow(0, a.batch, a.batch)};
    train::DpoLoss(o, l).losses.mean().backward();
    train::ClipGradNorm(params, 1.0);
    opt.Step(1e-4);
  });
  out["dpo_tokens_per_s"] = static_cast<double>(2 * a.batch * a.seq) / dpo;
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  // As align-train does; the PyTorch reference inherits the setting, so both sides use the
  // same BLAS kernels.
  align::engine::model::ReexecWithBetterOpenBlasCore(argv);
  Args a;
  // Run from the repository root, or pass --reference PATH.
  std::string reference = "tests/benchmarks/reference/train_reference.py";
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--help" || flag == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    }
    if (i + 1 >= argc) {
      std::fprintf(stderr, "train_bench: %s needs a value\n%s", flag.c_str(), kUsage);
      return 2;
    }
    const char* v = argv[++i];
    if (flag == "--threads") {
      a.threads = std::atoi(v);
    } else if (flag == "--batch") {
      a.batch = std::atoll(v);
    } else if (flag == "--seq") {
      a.seq = std::atoll(v);
    } else if (flag == "--steps") {
      a.steps = std::atoi(v);
    } else if (flag == "--clock" && (!std::strcmp(v, "cpu") || !std::strcmp(v, "wall"))) {
      a.wall = !std::strcmp(v, "wall");
    } else if (flag == "--memory" && (!std::strcmp(v, "heap") || !std::strcmp(v, "mmap"))) {
      a.heap = !std::strcmp(v, "heap");
    } else if (flag == "--reference") {
      reference = v;
    } else {
      std::fprintf(stderr, "train_bench: unknown option or value: %s %s\n%s", flag.c_str(), v, kUsage);
      return 2;
    }
  }
  if (a.threads < 1 || a.batch < 1 || a.seq < 2 || a.steps < 1) {
    std::fprintf(stderr, "train_bench: --threads, --batch and --steps must be >= 1, --seq >= 2\n");
    return 2;
  }
  model::SetComputeThreads(a.threads);
  if (a.heap) model::KeepFreedTensorMemoryInHeap();
  const char* env = std::getenv("ALIGN_DATA_DIR");
  const std::string data = env && *env ? env : ALIGN_TEST_DATA_DIR;
  const std::string model_dir = data + "/models/stories260K";
  auto small = model::CausalLM::Load(model_dir, {});
  if (!small.ok()) {
    std::fprintf(stderr, "%s\n", small.status().ToString().c_str());
    return 1;
  }
  model::ModelConfig mc;
  mc.hidden_size = 256;
  mc.intermediate_size = 688;
  mc.num_hidden_layers = 4;
  mc.num_attention_heads = 8;
  mc.num_key_value_heads = 8;
  mc.head_dim = 32;
  mc.vocab_size = 2048;
  mc.rms_norm_eps = 1e-6;
  mc.max_position_embeddings = 1024;
  auto medium = model::CausalLM::FromConfig(mc, 0);
  if (!medium.ok()) {
    std::fprintf(stderr, "%s\n", medium.status().ToString().c_str());
    return 1;
  }
  nlohmann::json ours = {{"small", Bench(**small, a)}, {"medium", Bench(**medium, a)}};

  // OpenBLAS keeps its own thread pool, which torch.set_num_threads does not size: cap it as
  // SetComputeThreads does for the engine, so both sides get the same CPUs.
  const std::string cmd = "OPENBLAS_NUM_THREADS=" + std::to_string(a.threads) + " /usr/bin/python3 " + reference + " --model " + model_dir +
                          " --threads " + std::to_string(a.threads) + " --batch " +
                          std::to_string(a.batch) + " --seq " + std::to_string(a.seq) +
                          " --steps " + std::to_string(a.steps) +
                          " --clock " + (a.wall ? "wall" : "cpu");
  nlohmann::json ref;
  if (FILE* p = popen(cmd.c_str(), "r")) {
    std::string text;
    char buf[4096];
    while (size_t n = fread(buf, 1, sizeof(buf), p)) text.append(buf, n);
    pclose(p);
    ref = nlohmann::json::parse(text, nullptr, false);
  }
  std::printf("train_bench: threads %d, batch %lld, seq %lld (DPO: %lld rows), best of %d steps, %s clock, %s memory\n",
              a.threads, static_cast<long long>(a.batch), static_cast<long long>(a.seq),
              static_cast<long long>(2 * a.batch), a.steps, a.wall ? "wall" : "cpu",
              a.heap ? "heap" : "mmap");
  std::printf("%-8s %-4s %14s %14s %8s\n", "model", "step", "engine tok/s", "pytorch tok/s", "ratio");
  for (const char* m : {"small", "medium"}) {
    for (const char* s : {"sft", "dpo"}) {
      const std::string key = std::string(s) + "_tokens_per_s";
      const double e = ours[m][key].get<double>();
      const double r = ref.is_object() && ref.contains(m) ? ref[m][key].get<double>() : 0.0;
      std::printf("%-8s %-4s %14.0f %14.0f %8s\n", m, s, e, r,
                  r > 0 ? (std::to_string(e / r).substr(0, 5) + "x").c_str() : "n/a");
    }
  }
  if (!ref.is_object()) std::printf("(reference failed to run: %s)\n", cmd.c_str());
  return 0;
}
