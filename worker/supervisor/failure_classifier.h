// Turns how an attempt's ranks ended (exit code, signal, the engine's error event, the log tail)
// into an attempt state and failure class. Log rules work like Determined's log policies: the first
// rule whose regular expression matches a line of the failing rank's log decides the class.
#pragma once

#include <optional>
#include <regex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "align/v1/state.pb.h"
#include "worker/supervisor/process_launcher.h"

namespace align::worker {

struct LogRule {
  std::string name;      // shown in the attempt's reason
  std::string pattern;   // ECMAScript regular expression, matched anywhere in a line
  v1::FailureClass failure_class = v1::USER_ERROR;
};

//! The built-in rules: CUDA/host OOM -> user error; ECC, Xid, NCCL timeouts and lost peers -> infra.
std::vector<LogRule> DefaultLogRules();

//! Loads rules from YAML: a list of {name, pattern, class: user_error|infrastructure}.
absl::StatusOr<std::vector<LogRule>> LoadLogRules(const std::string& yaml_path);

struct FailureInput {
  ExitStatus exit;                          // of the rank that failed first
  std::string engine_failure_class;         // from its `error` event: user_error|infrastructure
  std::string engine_message;               // from its `error` event
  std::vector<std::string> log_tail;        // its last log lines (stdout and stderr)
};

struct Classification {
  v1::FailureClass failure_class = v1::FAILURE_CLASS_UNSPECIFIED;
  std::string reason;
};

class FailureClassifier {
 public:
  //! Fails on a rule whose pattern does not compile, naming the rule.
  static absl::StatusOr<FailureClassifier> Create(std::vector<LogRule> rules);
  //! Classifies a failed (non-zero or signalled) rank.
  Classification Classify(const FailureInput& input) const;

 private:
  struct Compiled {
    LogRule rule;
    std::regex regex;
  };
  std::vector<Compiled> rules_;
};

}  // namespace align::worker
