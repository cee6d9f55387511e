#include "worker/engine/data/mixer.h"

namespace align::engine::data {

std::vector<int64_t> SeededPermutation(int64_t n, uint64_t seed) {
  std::vector<int64_t> p(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) p[static_cast<size_t>(i)] = i;
  std::mt19937_64 rng(seed);
  for (int64_t i = n - 1; i > 0; --i) {
    // Modulo bias is irrelevant at dataset sizes; what matters is that every platform agrees.
    const int64_t j = static_cast<int64_t>(rng() % static_cast<uint64_t>(i + 1));
    std::swap(p[static_cast<size_t>(i)], p[static_cast<size_t>(j)]);
  }
  return p;
}

int64_t WeightedCount(int64_t n, double weight) {
  if (n <= 0 || weight <= 0) return 0;
  return static_cast<int64_t>(std::llround(weight * static_cast<double>(n)));
}

std::vector<int64_t> WeightedIndices(int64_t n, double weight, uint64_t seed) {
  const int64_t want = WeightedCount(n, weight);
  std::vector<int64_t> out;
  out.reserve(static_cast<size_t>(want));
  const int64_t whole = n > 0 ? want / n : 0;
  for (int64_t c = 0; c < whole; ++c) {
    for (int64_t i = 0; i < n; ++i) out.push_back(i);
  }
  const int64_t rest = want - whole * n;
  if (rest > 0) {
    std::vector<int64_t> perm = SeededPermutation(n, seed);
    perm.resize(static_cast<size_t>(rest));
    std::sort(perm.begin(), perm.end());  // keep file order among the sampled rows
    out.insert(out.end(), perm.begin(), perm.end());
  }
  return out;
}

int64_t HeldOutCount(int64_t n, double fraction) {
  if (fraction <= 0 || n < 2) return 0;
  int64_t k = static_cast<int64_t>(std::llround(fraction * static_cast<double>(n)));
  k = std::max<int64_t>(k, 1);
  return std::min<int64_t>(k, n - 1);
}

}  // namespace align::engine::data
