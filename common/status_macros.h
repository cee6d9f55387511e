// RETURN_IF_ERROR / ASSIGN_OR_RETURN for absl::Status and absl::StatusOr. Header-only, no deps
// beyond Abseil, so the engine can use it too.
#pragma once

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace align::internal {
inline absl::Status AsStatus(absl::Status s) { return s; }
template <typename T>
absl::Status AsStatus(const absl::StatusOr<T>& s) { return s.status(); }
}  // namespace align::internal

#define ALIGN_CONCAT_INNER_(a, b) a##b
#define ALIGN_CONCAT_(a, b) ALIGN_CONCAT_INNER_(a, b)

//! Returns the status from the enclosing function when `expr` is not OK.
#define RETURN_IF_ERROR(expr)                                               \
  do {                                                                      \
    ::absl::Status _align_status = ::align::internal::AsStatus((expr));     \
    if (!_align_status.ok()) return _align_status;                          \
  } while (0)

#define ALIGN_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, rexpr) \
  auto tmp = (rexpr);                                 \
  if (!tmp.ok()) return tmp.status();                 \
  lhs = std::move(tmp).value()

//! `ASSIGN_OR_RETURN(auto x, Foo());` declares x from an OK StatusOr or returns its status.
#define ASSIGN_OR_RETURN(lhs, rexpr) \
  ALIGN_ASSIGN_OR_RETURN_IMPL_(ALIGN_CONCAT_(_align_statusor_, __LINE__), lhs, rexpr)
