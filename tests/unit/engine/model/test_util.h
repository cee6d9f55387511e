// Shared helpers for the model tests: temp dirs, golden ids, tiny random configs.
#pragma once

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/testing/test_data.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "worker/engine/model/config.h"

namespace align::engine::model::testutil {

//! A fresh empty directory under the gtest temp dir, unique per test and process.
inline std::string FreshDir(const std::string& name) {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::filesystem::path p = std::filesystem::path(::testing::TempDir()) /
                            absl::StrCat("align_model_", ::getpid(), "_", info->name(), "_", name);
  std::filesystem::remove_all(p);
  std::filesystem::create_directories(p);
  return p.string();
}

inline std::string StoriesDir() { return align::testing::DataPath("models/stories260K"); }

inline nlohmann::json ReadJson(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return nlohmann::json::parse(ss.str());
}

struct GoldenRun {
  std::vector<int32_t> prompt_ids;
  std::vector<int32_t> generated_ids;
};

inline std::vector<GoldenRun> StoriesGolden() {
  nlohmann::json j = ReadJson(align::testing::DataPath("goldens/stories260K_greedy.json"));
  std::vector<GoldenRun> out;
  for (const auto& r : j["runs"]) {
    out.push_back({r["prompt_ids"].get<std::vector<int32_t>>(),
                   r["generated_ids"].get<std::vector<int32_t>>()});
  }
  return out;
}

//! A tiny config of the given family (hidden 32, 2 layers, GQA 4/2, vocab 64).
inline ModelConfig TinyConfig(ModelFamily family) {
  const char* arch = family == ModelFamily::kLlama     ? "LlamaForCausalLM"
                     : family == ModelFamily::kMistral ? "MistralForCausalLM"
                     : family == ModelFamily::kQwen2   ? "Qwen2ForCausalLM"
                                                       : "Qwen3ForCausalLM";
  nlohmann::json j = {{"architectures", {arch}},
                      {"hidden_size", 32},
                      {"intermediate_size", 48},
                      {"num_hidden_layers", 2},
                      {"num_attention_heads", 4},
                      {"num_key_value_heads", 2},
                      {"vocab_size", 64},
                      {"max_position_embeddings", 128},
                      {"rms_norm_eps", 1e-6},
                      {"bos_token_id", 1},
                      {"eos_token_id", 2},
                      {"torch_dtype", "float32"}};
  if (family == ModelFamily::kLlama) {
    j["rope_theta"] = 500000.0;
    j["rope_scaling"] = {{"rope_type", "llama3"},
                         {"factor", 8.0},
                         {"low_freq_factor", 1.0},
                         {"high_freq_factor", 4.0},
                         {"original_max_position_embeddings", 32}};
    j["tie_word_embeddings"] = false;
  } else if (family == ModelFamily::kMistral) {
    j["sliding_window"] = 4;
  } else if (family == ModelFamily::kQwen2) {
    j["tie_word_embeddings"] = true;
  } else {
    j["head_dim"] = 16;  // Qwen3 decouples head_dim from hidden_size / heads
    j["tie_word_embeddings"] = true;
  }
  auto c = ParseModelConfig(j.dump(), "tiny-config.json");
  EXPECT_TRUE(c.ok()) << c.status();
  return *c;
}

}  // namespace align::engine::model::testutil
