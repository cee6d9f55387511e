// Dataset mixing with weights, seeded shuffling and the held-out split. Generic over the row type
// so SFT examples, preference pairs and raw JSON rows share one policy (docs/training.md).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <utility>
#include <vector>

namespace align::engine::data {

//! A deterministic permutation of [0, n) from `seed` (std::mt19937_64 + Fisher-Yates written out,
//! because std::shuffle's algorithm is implementation-defined and checkpoints must replay it).
std::vector<int64_t> SeededPermutation(int64_t n, uint64_t seed);

//! How many rows a source of `n` rows contributes at `weight`: round(weight * n). A weight below 1
//! subsamples, above 1 repeats rows (whole copies first, then a seeded sample of the rest).
int64_t WeightedCount(int64_t n, double weight);

//! Indices (into the source) a weighted source contributes, chosen deterministically from `seed`.
std::vector<int64_t> WeightedIndices(int64_t n, double weight, uint64_t seed);

//! Mixes sources by weight and shuffles the result with `seed`.
template <typename T>
std::vector<T> MixSources(const std::vector<std::vector<T>>& sources,
                          const std::vector<double>& weights, uint64_t seed) {
  std::vector<T> all;
  for (size_t s = 0; s < sources.size(); ++s) {
    const double w = s < weights.size() ? weights[s] : 1.0;
    for (int64_t i : WeightedIndices(static_cast<int64_t>(sources[s].size()), w, seed + 7919 * s)) {
      all.push_back(sources[s][static_cast<size_t>(i)]);
    }
  }
  std::vector<T> out;
  out.reserve(all.size());
  for (int64_t i : SeededPermutation(static_cast<int64_t>(all.size()), seed)) {
    out.push_back(std::move(all[static_cast<size_t>(i)]));
  }
  return out;
}

//! Rows held out for evaluation: round(fraction * n), at least 1 when fraction > 0 and n >= 2,
//! never all of them.
int64_t HeldOutCount(int64_t n, double fraction);

//! Splits already-shuffled rows: the last HeldOutCount rows are the test split.
template <typename T>
std::pair<std::vector<T>, std::vector<T>> SplitHeldOut(std::vector<T> rows, double fraction) {
  const int64_t k = HeldOutCount(static_cast<int64_t>(rows.size()), fraction);
  std::vector<T> test(std::make_move_iterator(rows.end() - k), std::make_move_iterator(rows.end()));
  rows.resize(rows.size() - static_cast<size_t>(k));
  return {std::move(rows), std::move(test)};
}

}  // namespace align::engine::data
