// Eval gates: thresholds such as {"mmlu.acc": ">= 0.25"} checked against a results object, with
// a readable report of what failed. A gate's key is a dotted path into the results' "scores"
// object ("mmlu.acc" -> scores.mmlu.acc).
#pragma once

#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"

namespace align::engine::eval {

enum class GateOp { kGe, kGt, kLe, kLt, kEq };

struct Gate {
  std::string key;       // "mmlu.acc"
  GateOp op = GateOp::kGe;
  double threshold = 0;
  std::string text;      // the condition as written, e.g. ">= 0.25"
};

//! Parses one gate ("mmlu.acc", ">= 0.25"). Operators: >=, >, <=, <, ==.
absl::StatusOr<Gate> ParseGate(const std::string& key, const std::string& condition);
absl::StatusOr<std::vector<Gate>> ParseGates(const std::map<std::string, std::string>& gates);

struct GateResult {
  Gate gate;
  bool found = false;   // the key names a number in the results
  double value = 0;
  bool passed = false;
};

//! Looks each gate's key up in `scores` and compares. A key that is absent fails the gate.
std::vector<GateResult> EvaluateGates(const std::vector<Gate>& gates, const nlohmann::json& scores);

//! "" when every gate passed, else one line per failed gate:
//! "gate mmlu.acc >= 0.25 failed: value 0.2312" / "... : no such score in the results".
std::string GateReport(const std::vector<GateResult>& results);

}  // namespace align::engine::eval
