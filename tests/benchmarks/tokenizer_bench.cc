// Encode throughput of the engine's tokenizer on the 4,624 hh-rlhf transcripts with the Llama-3
// tokenizer, side by side in ONE run with Hugging Face's Rust tokenizers (npm `tokenizers`) and the
// JS port (npm `@huggingface/tokenizers`) under node, single-threaded; plus EncodeBatch scaling.
// Usage: tokenizer_bench [--rounds N] [--node-dir DIR] [--tokenizer DIR]
//   DIR for node comes from tests/benchmarks/reference/tokenizer_setup.sh (skipped when absent).
// Prints MB/s, tokens/s and the ratios; results go in docs/performance.md.
#include <zlib.h>

#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/testing/test_data.h"
#include "worker/engine/tokenizer/tokenizer.h"

namespace {

using Clock = std::chrono::steady_clock;

std::vector<std::string> LoadTexts() {
  std::string data;
  gzFile f = gzopen(align::testing::DataPath("datasets/hh-rlhf/harmless-base-test.jsonl.gz").c_str(), "rb");
  if (f == nullptr) return {};
  char buf[1 << 16];
  int n;
  while ((n = gzread(f, buf, sizeof(buf))) > 0) data.append(buf, n);
  gzclose(f);
  std::vector<std::string> texts;
  std::stringstream ss(data);
  std::string line;
  while (std::getline(ss, line)) {
    if (line.empty()) continue;
    auto j = nlohmann::json::parse(line);
    texts.push_back(j["chosen"]);
    texts.push_back(j["rejected"]);
  }
  return texts;
}

double CpuSeconds() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

struct Result {
  std::string name;
  double seconds = 0;
  size_t bytes = 0, tokens = 0;
  double cpu_seconds = 0;  // process CPU time: robust on a machine shared with other builds
  double mbps() const { return bytes / seconds / 1e6; }
  double tps() const { return tokens / seconds; }
};

void Print(const Result& r, const Result* base) {
  std::printf("%-54s wall: %7.2f MB/s %10.0f tok/s", r.name.c_str(), r.mbps(), r.tps());
  if (r.cpu_seconds > 0) std::printf(" | cpu: %7.2f MB/s %10.0f tok/s", r.bytes / r.cpu_seconds / 1e6, r.tokens / r.cpu_seconds);
  if (base) {
    std::printf("  align %.2fx (wall)", base->tps() / r.tps());
    if (r.cpu_seconds > 0 && base->cpu_seconds > 0) std::printf(", %.2fx (cpu)", r.cpu_seconds / base->cpu_seconds);
  }
  std::printf("  [%zu tokens]\n", r.tokens);
}

}  // namespace

int main(int argc, char** argv) {
  int rounds = 3;
  std::string node_dir = "build/node-bench";
  std::string tok_dir = align::testing::DataPath("tokenizers/llama3");
  for (int i = 1; i < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--rounds" && i + 1 < argc) rounds = std::atoi(argv[i + 1]);
    else if (a == "--node-dir" && i + 1 < argc) node_dir = argv[i + 1];
    else if (a == "--tokenizer" && i + 1 < argc) tok_dir = argv[i + 1];
    else {
      const bool help = a == "--help" || a == "-h";
      std::fprintf(help ? stdout : stderr,
                   "usage: tokenizer_bench [--rounds N] [--node-dir DIR] [--tokenizer DIR]\n"
                   "Encode throughput on the hh-rlhf transcripts next to HF tokenizers (Rust, npm) and\n"
                   "tokenizers.js under node (DIR from tests/benchmarks/reference/tokenizer_setup.sh;\n"
                   "skipped when absent), plus EncodeBatch scaling with 2 threads.\n");
      return help ? 0 : 2;
    }
  }
  auto tok = align::engine::Tokenizer::Load(tok_dir);
  if (!tok.ok()) {
    std::cerr << tok.status() << "\n";
    return 1;
  }
  std::vector<std::string> texts = LoadTexts();
  size_t bytes = 0;
  for (const auto& t : texts) bytes += t.size();
  std::printf("texts: %zu hh-rlhf transcripts, %.2f MB; tokenizer %s; best of %d rounds after a warm-up\n",
              texts.size(), bytes / 1e6, tok_dir.c_str(), rounds);

  // Single thread.
  Result single{"align (C++, 1 thread)", 1e30, bytes, 0, 1e30};
  for (int r = 0; r <= rounds; ++r) {
    auto t0 = Clock::now();
    double c0 = CpuSeconds();
    size_t n = 0;
    for (const auto& t : texts) n += (*tok)->Encode(t, false).size();
    double s = std::chrono::duration<double>(Clock::now() - t0).count();
    double c = CpuSeconds() - c0;
    if (r > 0) {  // round 0 warms the word cache
      single.seconds = std::min(single.seconds, s);
      single.cpu_seconds = std::min(single.cpu_seconds, c);
    }
    single.tokens = n;
  }
  // Batch scaling.
  std::vector<Result> batch;
  for (int threads : {1, 2}) {
    Result b{"align EncodeBatch, " + std::to_string(threads) + " thread(s)", 1e30, bytes, 0};
    for (int r = 0; r <= rounds; ++r) {
      auto t0 = Clock::now();
      auto out = (*tok)->EncodeBatch(texts, false, threads);
      double s = std::chrono::duration<double>(Clock::now() - t0).count();
      size_t n = 0;
      for (const auto& v : out) n += v.size();
      if (r > 0) b.seconds = std::min(b.seconds, s);
      b.tokens = n;
    }
    batch.push_back(b);
  }

  // Node references, same texts, same run.
  std::vector<Result> refs;
  std::string texts_path = "/tmp/align_tokenizer_bench_texts.json";
  {
    std::ofstream f(texts_path);
    f << nlohmann::json(texts).dump();
  }
  std::string script = node_dir + "/tokenizer_bench.mjs";
  if (std::ifstream(script).good()) {
    std::string cmd = "cd '" + node_dir + "' && RAYON_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false node tokenizer_bench.mjs '" +
                      tok_dir + "' '" + texts_path + "' " + std::to_string(rounds);
    FILE* p = popen(cmd.c_str(), "r");
    char line[4096];
    while (p && std::fgets(line, sizeof(line), p)) {
      auto j = nlohmann::json::parse(line, nullptr, false);
      if (j.is_discarded()) continue;
      refs.push_back({j["name"], j["seconds"], j["bytes"], j["tokens"], j.value("cpu_seconds", 0.0)});
    }
    if (p) pclose(p);
  } else {
    std::printf("(node reference not installed: run tests/benchmarks/reference/tokenizer_setup.sh %s)\n",
                node_dir.c_str());
  }

  std::printf("\nencode throughput, single-threaded:\n");
  Print(single, nullptr);
  for (const auto& r : refs) {
    Print(r, &single);
    if (r.tokens != single.tokens) std::printf("  WARNING: token count differs from align's\n");
  }
  std::printf("\nEncodeBatch scaling:\n");
  for (const auto& b : batch) Print(b, nullptr);
  if (batch.size() == 2) std::printf("2 threads / 1 thread (wall): %.2fx\n", batch[1].tps() / batch[0].tps());
  return 0;
}
