// Shared helpers for the tokenizer tests: real-data file readers and tokenizers loaded once per
// test binary (the 128k-vocabulary ones take a while to parse).
#pragma once

#include <zlib.h>

#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/testing/test_data.h"
#include "worker/engine/tokenizer/tokenizer.h"

namespace align::engine::testing {

inline std::string ReadFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

inline std::vector<nlohmann::json> ReadJsonLines(const std::string& path) {
  std::vector<nlohmann::json> out;
  std::ifstream f(path);
  std::string line;
  while (std::getline(f, line)) {
    if (!line.empty()) out.push_back(nlohmann::json::parse(line));
  }
  return out;
}

inline std::string ReadGzip(const std::string& path) {
  std::string out;
  gzFile f = gzopen(path.c_str(), "rb");
  if (f == nullptr) return out;
  char buf[1 << 16];
  int n;
  while ((n = gzread(f, buf, sizeof(buf))) > 0) out.append(buf, n);
  gzclose(f);
  return out;
}

//! The hh-rlhf chosen/rejected transcripts (first `limit` rows; 0 = all).
inline std::vector<std::string> HhRlhfTexts(size_t limit) {
  std::vector<std::string> texts;
  std::stringstream ss(ReadGzip(align::testing::DataPath("datasets/hh-rlhf/harmless-base-test.jsonl.gz")));
  std::string line;
  while (std::getline(ss, line) && (limit == 0 || texts.size() < 2 * limit)) {
    if (line.empty()) continue;
    auto j = nlohmann::json::parse(line);
    texts.push_back(j["chosen"].get<std::string>());
    texts.push_back(j["rejected"].get<std::string>());
  }
  return texts;
}

//! Tokenizers by data-relative path, loaded once and shared by every test.
inline const Tokenizer& SharedTokenizer(const std::string& relative) {
  static std::mutex mu;
  static std::map<std::string, std::unique_ptr<Tokenizer>> cache;
  std::lock_guard<std::mutex> lock(mu);
  auto& slot = cache[relative];
  if (!slot) {
    auto t = Tokenizer::Load(align::testing::DataPath(relative));
    if (!t.ok()) {
      ADD_FAILURE() << "loading " << relative << ": " << t.status();
      std::abort();
    }
    slot = std::move(t).value();
  }
  return *slot;
}

}  // namespace align::engine::testing
