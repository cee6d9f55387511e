// gmock matchers for absl::Status / absl::StatusOr: IsOk(), StatusIs(code[, message matcher]),
// and ASSERT_OK_AND_ASSIGN. For tests only.
#pragma once

#include <ostream>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace align::testing {

inline const absl::Status& GetStatus(const absl::Status& s) { return s; }
template <typename T>
const absl::Status& GetStatus(const absl::StatusOr<T>& s) { return s.status(); }

MATCHER(IsOk, "is OK") {
  const absl::Status& s = ::align::testing::GetStatus(arg);
  if (!s.ok()) *result_listener << "status is " << s;
  return s.ok();
}

MATCHER_P(StatusIs, code, "has code " + std::string(absl::StatusCodeToString(code))) {
  const absl::Status& s = ::align::testing::GetStatus(arg);
  *result_listener << "status is " << s;
  return s.code() == code;
}

MATCHER_P2(StatusIs, code, message_matcher,
           "has code " + std::string(absl::StatusCodeToString(code)) + " and a matching message") {
  const absl::Status& s = ::align::testing::GetStatus(arg);
  *result_listener << "status is " << s;
  return s.code() == code &&
         ::testing::Matches(::testing::Matcher<std::string>(message_matcher))(
             std::string(s.message()));
}

}  // namespace align::testing

#define ALIGN_ASSERT_OK_AND_ASSIGN_IMPL_(tmp, lhs, rexpr)      \
  auto tmp = (rexpr);                                          \
  ASSERT_TRUE(tmp.ok()) << "status: " << tmp.status();         \
  lhs = std::move(tmp).value()
#define ALIGN_TCAT_INNER_(a, b) a##b
#define ALIGN_TCAT_(a, b) ALIGN_TCAT_INNER_(a, b)
//! `ASSERT_OK_AND_ASSIGN(auto x, Foo());` fails the test on a non-OK status.
#define ASSERT_OK_AND_ASSIGN(lhs, rexpr) \
  ALIGN_ASSERT_OK_AND_ASSIGN_IMPL_(ALIGN_TCAT_(_align_t_, __LINE__), lhs, rexpr)
#define EXPECT_OK(expr) EXPECT_THAT((expr), ::align::testing::IsOk())
#define ASSERT_OK(expr) ASSERT_THAT((expr), ::align::testing::IsOk())
