// How a stage failure is classified for align-train's exit code (docs/events.md): bad job or
// config (2), bad data or model input (3), infrastructure (4), evaluation gates not met (5). Code that knows an error comes from
// user-supplied data or model files marks it with MarkInputError; the runner maps the rest by code.
#pragma once

#include "absl/status/status.h"
#include "absl/strings/cord.h"

namespace align::engine {

inline constexpr char kFailurePayloadUrl[] = "align.dev/failure";

//! Marks `s` as caused by bad data or model input (exit code 3).
inline absl::Status MarkInputError(absl::Status s) {
  if (!s.ok()) s.SetPayload(kFailurePayloadUrl, absl::Cord("input"));
  return s;
}

//! Marks `s` as an eval stage whose scores missed its gates (exit code 5): the run worked, the
//! model did not pass.
inline absl::Status MarkGateFailure(absl::Status s) {
  if (!s.ok()) s.SetPayload(kFailurePayloadUrl, absl::Cord("gates"));
  return s;
}

//! 0 ok; 5 gate failures; 3 marked input errors and NotFound/DataLoss on inputs; 2 config errors
//! (InvalidArgument, FailedPrecondition, OutOfRange, Unimplemented); 4 everything else.
inline int ExitCodeFor(const absl::Status& s) {
  if (s.ok()) return 0;
  if (auto p = s.GetPayload(kFailurePayloadUrl); p.has_value() && *p == "input") return 3;
  if (auto p = s.GetPayload(kFailurePayloadUrl); p.has_value() && *p == "gates") return 5;
  switch (s.code()) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kOutOfRange:
    case absl::StatusCode::kUnimplemented:
      return 2;
    case absl::StatusCode::kNotFound:
      return 3;
    default:
      return 4;
  }
}

}  // namespace align::engine
