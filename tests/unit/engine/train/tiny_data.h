#pragma once

// A tiny random Llama and seeded synthetic SFT rows / preference pairs over its 32-token
// vocabulary, shared by the trainer tests (resume, DPO invariants) and the data-parallel tests,
// which compare runs of the same data.

#include <cstdint>
#include <random>
#include <vector>

#include "worker/engine/data/batching.h"
#include "worker/engine/model/model.h"

namespace align::engine::train::testing {

// Two layers, hidden 16, vocab 32; bos 1, eos 2; tokens 3..31 are content.
inline model::ModelConfig TinyConfig() {
  model::ModelConfig c;
  c.hidden_size = 16;
  c.intermediate_size = 32;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 2;
  c.num_key_value_heads = 1;
  c.head_dim = 8;
  c.vocab_size = 32;
  c.max_position_embeddings = 64;
  c.rms_norm_eps = 1e-5;
  c.tie_word_embeddings = true;
  c.bos_token_id = 1;
  c.eos_token_ids = {2};
  return c;
}

// `n` rows of 6-11 tokens: bos, two untrained tokens, trained content, trained eos.
inline std::vector<data::PackedRow> SftRows(int n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<data::PackedRow> rows;
  for (int i = 0; i < n; ++i) {
    data::TokenizedExample ex;
    const int len = 5 + static_cast<int>(rng() % 6);
    ex.ids.push_back(1);
    ex.mask.push_back(0);
    for (int t = 1; t < len; ++t) {
      ex.ids.push_back(3 + static_cast<int32_t>(rng() % 29));
      ex.mask.push_back(t > 2 ? 1 : 0);
    }
    ex.ids.push_back(2);
    ex.mask.push_back(1);
    rows.push_back(data::ToRow(ex));
  }
  return rows;
}

// `n` pairs: a bos-led prompt of 3-5 tokens, eos-ended completions of 3-5 (chosen) and 2-5
// (rejected) tokens.
inline std::vector<data::TokenizedPair> Pairs(int n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  auto seq = [&](int len) {
    std::vector<int32_t> v;
    for (int t = 0; t < len; ++t) v.push_back(3 + static_cast<int32_t>(rng() % 29));
    return v;
  };
  std::vector<data::TokenizedPair> pairs;
  for (int i = 0; i < n; ++i) {
    data::TokenizedPair p;
    p.prompt = seq(2 + static_cast<int>(rng() % 3));
    p.prompt.insert(p.prompt.begin(), 1);
    p.chosen = seq(2 + static_cast<int>(rng() % 3));
    p.chosen.push_back(2);
    p.rejected = seq(1 + static_cast<int>(rng() % 4));
    p.rejected.push_back(2);
    pairs.push_back(p);
  }
  return pairs;
}

}  // namespace align::engine::train::testing
