// Model benchmark (not a test): generation tokens/s on stories260K at batch 1 and 32, and a
// forward+backward step's tokens/s on a ~34M-parameter random Llama, each side by side with the
// PyTorch eager reference (reference/model_reference.py, Debian python3-torch) run in the same
// process tree with the same thread count. Prints a table with C++/Python ratios.
//
//   build-model/bin/model_bench [--threads=1] [--clock=cpu|wall] [--reps=3] [--new_tokens=200]
//       [--train_batch=2] [--train_seq=128] [--train_steps=3] [--python=/usr/bin/python3]
#include <time.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "nlohmann/json.hpp"
#include "worker/engine/model/blas.h"
#include "worker/engine/model/generate.h"
#include "worker/engine/model/model.h"

namespace m = align::engine::model;

namespace {

std::string Flag(int argc, char** argv, const std::string& name, const std::string& def) {
  const std::string prefix = "--" + name + "=";
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind(prefix, 0) == 0) return a.substr(prefix.size());
  }
  return def;
}

// The machine may be shared: by default time is this process's CPU time (all threads), which
// other processes' load does not inflate; --clock=wall measures elapsed time instead.
bool g_wall_clock = false;

double Now() {
  if (g_wall_clock) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
  }
  timespec ts{};
  ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

}  // namespace

int main(int argc, char** argv) {
  // As align-train does; the PyTorch reference inherits the setting, so both sides use the
  // same BLAS kernels.
  align::engine::model::ReexecWithBetterOpenBlasCore(argv);
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--help" || a == "-h" || a.rfind("--", 0) != 0 || a.find('=') == std::string::npos) {
      std::fprintf(a == "--help" || a == "-h" ? stdout : stderr,
                   "usage: model_bench [--threads=1] [--clock=cpu|wall] [--reps=3] [--new_tokens=200]\n"
                   "                   [--train_batch=2] [--train_seq=128] [--train_steps=3] "
                   "[--python=/usr/bin/python3]\n"
                   "Generation and forward+backward tokens/s of the engine next to the PyTorch eager\n"
                   "reference (tests/benchmarks/reference/model_reference.py) in the same run.\n");
      return a == "--help" || a == "-h" ? 0 : 2;
    }
  }
  const int threads = std::stoi(Flag(argc, argv, "threads", "1"));
  const std::string clock_name = Flag(argc, argv, "clock", "cpu");
  g_wall_clock = clock_name == "wall";
  const int reps = std::stoi(Flag(argc, argv, "reps", "3"));
  const int new_tokens = std::stoi(Flag(argc, argv, "new_tokens", "200"));
  const int train_batch = std::stoi(Flag(argc, argv, "train_batch", "2"));
  const int train_seq = std::stoi(Flag(argc, argv, "train_seq", "128"));
  const int train_steps = std::stoi(Flag(argc, argv, "train_steps", "3"));
  const std::string python = Flag(argc, argv, "python", "/usr/bin/python3");
  const char* data_env = std::getenv("ALIGN_DATA_DIR");
  const std::string model_dir =
      Flag(argc, argv, "model", absl::StrCat(data_env ? data_env : ALIGN_TEST_DATA_DIR, "/models/stories260K"));
  m::SetComputeThreads(threads);

  auto loaded = m::CausalLM::Load(model_dir, {});
  if (!loaded.ok()) {
    std::cerr << loaded.status() << "\n";
    return 1;
  }
  const m::CausalLM& model = **loaded;
  const std::vector<int32_t> prompt = {1, 403, 407, 261, 378};

  const std::string script =
      std::string(ALIGN_SOURCE_DIR) + "/tests/benchmarks/reference/model_reference.py";
  const std::string train_spec = "512,1376,8,8,8192";
  // Runs the reference for one case; the machine may be shared, so the C++ and Python runs of a
  // case alternate round by round and each side keeps its best round.
  auto python_case = [&](const std::string& args) -> nlohmann::json {
    // OpenBLAS's own pool is capped as SetComputeThreads caps the engine's.
    const std::string cmd = absl::StrCat("OPENBLAS_NUM_THREADS=", threads, " ", python, " ", script, " --model ", model_dir,
                                         " --threads ", threads, " --clock ", clock_name, " --new-tokens ", new_tokens,
                                         " --train ", train_spec, " ", args);
    std::string out;
    if (FILE* p = ::popen(cmd.c_str(), "r")) {
      char buf[4096];
      size_t n;
      while ((n = std::fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
      if (::pclose(p) != 0) out.clear();
    }
    nlohmann::json j = nlohmann::json::parse(out, nullptr, false);
    if (j.is_discarded()) {
      std::cerr << "the PyTorch reference failed; command: " << cmd << "\n";
      std::exit(1);
    }
    return j;
  };

  struct Row {
    std::string name;
    double cpp = 0, py = 0;
  };
  std::vector<Row> rows;
  std::string torch_version;
  for (int batch : {1, 32}) {
    std::vector<std::vector<int32_t>> prompts(batch, prompt);
    m::GenerateOptions o;
    o.max_new_tokens = new_tokens;
    o.use_default_eos = false;
    double best_cpp = 1e30, best_py = 1e30;
    (void)m::Generate(model, prompts, o);  // warm-up
    for (int r = 0; r < reps; ++r) {
      const double t0 = Now();
      auto res = m::Generate(model, prompts, o);
      const double t1 = Now();
      if (!res.ok()) {
        std::cerr << res.status() << "\n";
        return 1;
      }
      best_cpp = std::min(best_cpp, t1 - t0);
      nlohmann::json py = python_case(absl::StrCat("--gen-batches ", batch, " --reps 2 --skip-train"));
      torch_version = py["torch"].get<std::string>();
      best_py = std::min(best_py, batch * new_tokens /
                                      py["generate"][std::to_string(batch)]["tokens_per_s"].get<double>());
    }
    rows.push_back({absl::StrCat("generate stories260K greedy, batch ", batch, ", ", new_tokens,
                                 " new"),
                    batch * new_tokens / best_cpp, batch * new_tokens / best_py});
  }

  // ~34M parameters: hidden 512, 8 layers, 8 heads (no GQA), intermediate 1376, vocab 8192.
  auto config = m::ParseModelConfig(R"({"architectures":["LlamaForCausalLM"],"hidden_size":512,
      "intermediate_size":1376,"num_hidden_layers":8,"num_attention_heads":8,
      "num_key_value_heads":8,"vocab_size":8192,"rms_norm_eps":1e-6})");
  m::LoadOptions lo;
  lo.trainable = true;
  auto big = m::CausalLM::FromConfig(*config, 0, lo);
  if (!big.ok()) {
    std::cerr << big.status() << "\n";
    return 1;
  }
  at::Tensor ids = at::randint(0, 8192, {train_batch, train_seq}, at::kLong);
  auto step = [&] {
    for (auto& p : (*big)->Parameters()) p.mutable_grad() = at::Tensor();
    const double t0 = Now();
    at::Tensor logits = (*big)->Forward(ids);
    at::Tensor loss = -m::TokenLogProbs(logits, ids).narrow(1, 1, train_seq - 1).mean();
    loss.backward();
    return Now() - t0;
  };
  step();  // warm-up
  double best_train = 1e30, best_train_py = 1e30;
  const int64_t params = (*big)->NumParameters();
  for (int r = 0; r < train_steps; ++r) {
    best_train = std::min(best_train, step());
    nlohmann::json py = python_case(absl::StrCat("--gen-batches '' --train-batch ", train_batch,
                                                 " --train-seq ", train_seq, " --train-steps 1"));
    best_train_py = std::min(best_train_py,
                             train_batch * train_seq / py["train"]["tokens_per_s"].get<double>());
  }
  rows.push_back({absl::StrCat("fwd+bwd ", params / 1000000, "M Llama, ", train_batch, "x",
                               train_seq, " tokens"),
                  train_batch * train_seq / best_train, train_batch * train_seq / best_train_py});

  std::cout << absl::StrFormat(
      "model_bench: threads=%d, %s clock, best of %d alternating rounds, LibTorch (C++) vs "
      "PyTorch %s eager\n",
      threads, clock_name, reps, torch_version);
  std::cout << absl::StrFormat("%-44s %12s %12s %8s\n", "case", "C++ tok/s", "Python tok/s",
                               "C++/Py");
  for (const Row& r : rows) {
    std::cout << absl::StrFormat("%-44s %12.1f %12.1f %7.2fx\n", r.name, r.cpp, r.py, r.cpp / r.py);
  }
  return 0;
}
