// common/ basics: ids, the fake clock, log-level parsing, and the gRPC status round trip.
#include <algorithm>
#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "common/clock.h"
#include "common/grpc_status.h"
#include "common/ids.h"
#include "common/logging.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace align {
namespace {

using ::testing::MatchesRegex;

TEST(Ids, RandomIdsHavePrefixFixedWidthAndSortByTime) {
  RandomIdGenerator ids(/*seed=*/7);
  const absl::Time t0 = absl::FromUnixSeconds(1'700'000'000);
  const std::string a = ids.NewId("p", t0);
  const std::string b = ids.NewId("p", t0 + absl::Milliseconds(1));
  const std::string c = ids.NewId("p", t0 + absl::Hours(24 * 365));
  // "p-" + 9 base32 digits of Unix millis + 8 random base32 digits (Crockford, lower case).
  EXPECT_THAT(a, MatchesRegex("p-[0-9a-hjkmnp-tv-z]{17}"));
  EXPECT_EQ(a.size(), b.size());
  EXPECT_LT(a, b);
  EXPECT_LT(b, c);
  EXPECT_NE(ids.NewId("p", t0), a);  // same millisecond, different random part
}

TEST(Ids, SeededGeneratorsAreDeterministic) {
  RandomIdGenerator x(42), y(42);
  const absl::Time t = absl::FromUnixSeconds(1'700'000'000);
  EXPECT_EQ(x.NewId("a", t), y.NewId("a", t));
}

TEST(Ids, SequentialIds) {
  SequentialIdGenerator ids;
  EXPECT_EQ(ids.NewId("p", absl::Now()), "p-1");
  EXPECT_EQ(ids.NewId("a", absl::Now()), "a-2");
}

TEST(Ids, IncarnationsArePositive) {
  for (int i = 0; i < 100; ++i) EXPECT_GT(NewIncarnation(), 0);
}

TEST(FakeClock, MovesOnlyWhenAdvanced) {
  FakeClock clock(absl::FromUnixSeconds(100));
  EXPECT_EQ(clock.Now(), absl::FromUnixSeconds(100));
  clock.Advance(absl::Seconds(5));
  EXPECT_EQ(clock.Now(), absl::FromUnixSeconds(105));
  clock.SetTime(absl::FromUnixSeconds(1));
  EXPECT_EQ(clock.Now(), absl::FromUnixSeconds(1));
}

TEST(FakeClock, SleepReturnsOnlyWhenAdvancedPastDeadline) {
  FakeClock clock(absl::FromUnixSeconds(0));
  std::atomic<bool> woke{false};
  absl::Time woke_at;
  std::thread sleeper([&] {
    const absl::Time start = clock.Now();
    clock.SleepFor(absl::Seconds(10));
    woke_at = clock.Now();
    EXPECT_GE(woke_at - start, absl::Seconds(10));
    woke = true;
  });
  // The sleeper may start at any point; keep moving time until it wakes (no real sleeping).
  while (!woke.load()) {
    clock.Advance(absl::Seconds(1));
    std::this_thread::yield();
  }
  sleeper.join();
  clock.SleepFor(absl::ZeroDuration());  // already due: returns at once
}

TEST(Logging, ParsesLevels) {
  LogLevel level = LogLevel::kError;
  EXPECT_TRUE(ParseLogLevel("debug", &level));
  EXPECT_EQ(level, LogLevel::kDebug);
  EXPECT_TRUE(ParseLogLevel("info", &level));
  EXPECT_EQ(level, LogLevel::kInfo);
  EXPECT_TRUE(ParseLogLevel("warning", &level));
  EXPECT_EQ(level, LogLevel::kWarning);
  EXPECT_TRUE(ParseLogLevel("error", &level));
  EXPECT_EQ(level, LogLevel::kError);
  EXPECT_FALSE(ParseLogLevel("verbose", &level));
  EXPECT_FALSE(ParseLogLevel("", &level));
  EXPECT_EQ(level, LogLevel::kError);  // unchanged on failure
}

TEST(Logging, ThresholdFiltersAndFormats) {
  const LogLevel saved = MinLogLevel();
  SetMinLogLevel(LogLevel::kWarning);
  EXPECT_EQ(MinLogLevel(), LogLevel::kWarning);
  ::testing::internal::CaptureStderr();
  LOG(INFO) << "hidden";
  LOG(WARNING) << "shown " << 42;
  const std::string out = ::testing::internal::GetCapturedStderr();
  SetMinLogLevel(saved);
  EXPECT_FALSE(absl::StrContains(out, "hidden"));
  EXPECT_THAT(out, MatchesRegex("W[0-9]{8} [0-9:]{8}\\.[0-9]{3} base_test\\.cc:[0-9]+\\] shown 42\n"));
}

TEST(GrpcStatus, RoundTripKeepsCodeAndMessage) {
  for (int code = 0; code <= 16; ++code) {
    const absl::Status s(static_cast<absl::StatusCode>(code), code == 0 ? "" : "what went wrong");
    const grpc::Status g = ToGrpcStatus(s);
    EXPECT_EQ(static_cast<int>(g.error_code()), code);
    EXPECT_EQ(FromGrpcStatus(g), s);
  }
  EXPECT_EQ(ToGrpcStatus(absl::NotFoundError("pipeline p-1")).error_code(),
            grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(FromGrpcStatus(grpc::Status(grpc::StatusCode::UNAVAILABLE, "down")),
            absl::UnavailableError("down"));
}

}  // namespace
}  // namespace align
