#include "worker/engine/eval/gates.h"

#include <cmath>
#include <cstdlib>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/status_macros.h"

namespace align::engine::eval {

absl::StatusOr<Gate> ParseGate(const std::string& key, const std::string& condition) {
  Gate gate;
  gate.key = std::string(absl::StripAsciiWhitespace(key));
  gate.text = std::string(absl::StripAsciiWhitespace(condition));
  if (gate.key.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("eval gate '", condition, "': empty score name"));
  }
  absl::string_view rest = gate.text;
  struct OpText {
    const char* text;
    GateOp op;
  };
  // Two-character operators first so ">=" is not read as ">".
  static constexpr OpText kOps[] = {{">=", GateOp::kGe}, {"<=", GateOp::kLe}, {"==", GateOp::kEq},
                                    {">", GateOp::kGt},  {"<", GateOp::kLt}};
  bool matched = false;
  for (const auto& o : kOps) {
    if (absl::ConsumePrefix(&rest, o.text)) {
      gate.op = o.op;
      matched = true;
      break;
    }
  }
  double threshold = 0;
  if (!matched || !absl::SimpleAtod(absl::StripAsciiWhitespace(rest), &threshold) ||
      !std::isfinite(threshold)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "eval gate '", gate.key, "': condition '", condition,
        "' is not '<operator> <number>' (operators: >=, >, <=, <, ==), e.g. \">= 0.25\""));
  }
  gate.threshold = threshold;
  return gate;
}

absl::StatusOr<std::vector<Gate>> ParseGates(const std::map<std::string, std::string>& gates) {
  std::vector<Gate> out;
  for (const auto& [key, condition] : gates) {
    ASSIGN_OR_RETURN(Gate g, ParseGate(key, condition));
    out.push_back(std::move(g));
  }
  return out;
}

std::vector<GateResult> EvaluateGates(const std::vector<Gate>& gates, const nlohmann::json& scores) {
  std::vector<GateResult> out;
  for (const Gate& gate : gates) {
    GateResult r;
    r.gate = gate;
    const nlohmann::json* node = &scores;
    for (absl::string_view part : absl::StrSplit(gate.key, '.')) {
      if (!node->is_object()) {
        node = nullptr;
        break;
      }
      auto it = node->find(std::string(part));
      if (it == node->end()) {
        node = nullptr;
        break;
      }
      node = &*it;
    }
    if (node != nullptr && node->is_number()) {
      r.found = true;
      r.value = node->get<double>();
      switch (gate.op) {
        case GateOp::kGe: r.passed = r.value >= gate.threshold; break;
        case GateOp::kGt: r.passed = r.value > gate.threshold; break;
        case GateOp::kLe: r.passed = r.value <= gate.threshold; break;
        case GateOp::kLt: r.passed = r.value < gate.threshold; break;
        case GateOp::kEq: r.passed = std::fabs(r.value - gate.threshold) <= 1e-12; break;
      }
    }
    out.push_back(std::move(r));
  }
  return out;
}

std::string GateReport(const std::vector<GateResult>& results) {
  std::vector<std::string> lines;
  for (const auto& r : results) {
    if (r.passed) continue;
    if (!r.found) {
      lines.push_back(absl::StrCat("gate ", r.gate.key, " ", r.gate.text,
                                   " failed: no such score in the results"));
    } else {
      lines.push_back(absl::StrFormat("gate %s %s failed: value %.4f, threshold %s", r.gate.key,
                                      r.gate.text, r.value, absl::StrCat(r.gate.threshold)));
    }
  }
  return absl::StrJoin(lines, "\n");
}

}  // namespace align::engine::eval
