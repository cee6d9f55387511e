// Identifiers: random, URL-safe, sortable by creation time ("p-" + base32 millis + random).
#pragma once

#include <cstdint>
#include <string>
#include "absl/strings/string_view.h"

#include "absl/time/time.h"

namespace align {

class IdGenerator {
 public:
  virtual ~IdGenerator() = default;
  //! A new id with the given prefix ("p", "a", ...), e.g. "p-01hq3v7k2m-x8f3k2".
  virtual std::string NewId(absl::string_view prefix, absl::Time now) = 0;
};

//! Time-ordered ids with 40 bits of randomness from a seeded or random engine.
class RandomIdGenerator final : public IdGenerator {
 public:
  RandomIdGenerator();  // seeded from std::random_device
  explicit RandomIdGenerator(uint64_t seed);
  std::string NewId(absl::string_view prefix, absl::Time now) override;

 private:
  uint64_t state_;
};

//! Deterministic ids "prefix-1", "prefix-2", ... for tests.
class SequentialIdGenerator final : public IdGenerator {
 public:
  std::string NewId(absl::string_view prefix, absl::Time now) override;

 private:
  uint64_t next_ = 1;
};

//! A random 63-bit positive number for worker incarnations.
int64_t NewIncarnation();

}  // namespace align
