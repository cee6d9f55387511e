#include "common/ids.h"

#include <random>

#include "absl/strings/str_cat.h"

namespace align {
namespace {

constexpr char kAlphabet[] = "0123456789abcdefghjkmnpqrstvwxyz";  // Crockford base32, lower case

std::string Base32(uint64_t value, int digits) {
  std::string out(digits, '0');
  for (int i = digits - 1; i >= 0; --i) {
    out[i] = kAlphabet[value & 31];
    value >>= 5;
  }
  return out;
}

uint64_t SplitMix64(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

}  // namespace

RandomIdGenerator::RandomIdGenerator() {
  std::random_device rd;
  state_ = (static_cast<uint64_t>(rd()) << 32) ^ rd();
}

RandomIdGenerator::RandomIdGenerator(uint64_t seed) : state_(seed) {}

std::string RandomIdGenerator::NewId(absl::string_view prefix, absl::Time now) {
  const uint64_t millis = static_cast<uint64_t>(absl::ToUnixMillis(now));
  return absl::StrCat(prefix, "-", Base32(millis, 9), Base32(SplitMix64(state_), 8));
}

std::string SequentialIdGenerator::NewId(absl::string_view prefix, absl::Time) {
  return absl::StrCat(prefix, "-", next_++);
}

int64_t NewIncarnation() {
  std::random_device rd;
  const uint64_t v = (static_cast<uint64_t>(rd()) << 32) ^ rd();
  return static_cast<int64_t>(v >> 1) | 1;
}

}  // namespace align
