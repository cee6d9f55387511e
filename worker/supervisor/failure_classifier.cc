#include "worker/supervisor/failure_classifier.h"

#include <signal.h>
#include <string.h>

#include <yaml-cpp/yaml.h>

#include "absl/strings/str_cat.h"

namespace align::worker {
namespace {

// Lines longer than this are cut before matching: std::regex recurses per character.
constexpr size_t kMaxMatchedLine = 2048;

std::string SignalName(int sig) {
  const char* name = sigabbrev_np(sig);
  return name != nullptr ? absl::StrCat("SIG", name) : absl::StrCat("signal ", sig);
}

}  // namespace

std::vector<LogRule> DefaultLogRules() {
  return {
      {"cuda-oom", "CUDA out of memory|CUDA error: out of memory|CUBLAS_STATUS_ALLOC_FAILED",
       v1::USER_ERROR},
      {"host-oom", "std::bad_alloc|Cannot allocate memory", v1::USER_ERROR},
      {"ecc", "uncorrectable ECC error|ECC error", v1::INFRASTRUCTURE},
      {"xid", "NVRM: Xid|GPU has fallen off the bus|CUDA error: unspecified launch failure",
       v1::INFRASTRUCTURE},
      {"nccl-timeout",
       "NCCL.*[Tt]imeout|Watchdog caught collective operation timeout|ncclSystemError|"
       "ncclRemoteError",
       v1::INFRASTRUCTURE},
      {"gloo-peer", "Connection closed by peer|Connection reset by peer", v1::INFRASTRUCTURE},
      {"disk-full", "No space left on device", v1::INFRASTRUCTURE},
  };
}

absl::StatusOr<std::vector<LogRule>> LoadLogRules(const std::string& yaml_path) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(yaml_path);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(yaml_path, ": not readable YAML: ", e.what()));
  }
  if (!root.IsSequence()) {
    return absl::InvalidArgumentError(absl::StrCat(
        yaml_path, ": expected a list of {name, pattern, class} log rules at the top level"));
  }
  std::vector<LogRule> rules;
  for (size_t i = 0; i < root.size(); ++i) {
    const YAML::Node item = root[i];
    const std::string where = absl::StrCat(yaml_path, ": rule ", i + 1);
    if (!item.IsMap() || !item["pattern"] || !item["class"]) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": expected keys pattern and class (and optionally name)"));
    }
    for (const auto& kv : item) {
      const std::string key = kv.first.as<std::string>();
      if (key != "name" && key != "pattern" && key != "class") {
        return absl::InvalidArgumentError(
            absl::StrCat(where, ": unknown key '", key, "' (expected name, pattern, class)"));
      }
    }
    LogRule rule;
    rule.name = item["name"] ? item["name"].as<std::string>() : absl::StrCat("rule-", i + 1);
    rule.pattern = item["pattern"].as<std::string>();
    const std::string cls = item["class"].as<std::string>();
    if (cls == "user_error") {
      rule.failure_class = v1::USER_ERROR;
    } else if (cls == "infrastructure") {
      rule.failure_class = v1::INFRASTRUCTURE;
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          where, ": class '", cls, "' is not one of user_error, infrastructure"));
    }
    rules.push_back(std::move(rule));
  }
  return rules;
}

absl::StatusOr<FailureClassifier> FailureClassifier::Create(std::vector<LogRule> rules) {
  FailureClassifier out;
  for (auto& rule : rules) {
    try {
      std::regex re(rule.pattern, std::regex::ECMAScript | std::regex::optimize);
      out.rules_.push_back(Compiled{std::move(rule), std::move(re)});
    } catch (const std::regex_error& e) {
      return absl::InvalidArgumentError(absl::StrCat("log rule '", rule.name, "': pattern '",
                                                     rule.pattern, "' does not compile: ",
                                                     e.what()));
    }
  }
  return out;
}

Classification FailureClassifier::Classify(const FailureInput& input) const {
  const std::string how =
      input.exit.signal != 0 ? absl::StrCat("killed by ", SignalName(input.exit.signal))
                             : absl::StrCat("exited with code ", input.exit.exit_code);
  // Log rules first: the engine cannot always tell (a CUDA OOM may surface as an abort).
  for (const auto& c : rules_) {
    for (const auto& line : input.log_tail) {
      const std::string_view view(line.data(), std::min(line.size(), kMaxMatchedLine));
      if (std::regex_search(view.begin(), view.end(), c.regex)) {
        return {c.rule.failure_class,
                absl::StrCat(how, "; log rule '", c.rule.name, "' matched: ", std::string(view))};
      }
    }
  }
  const std::string engine_msg =
      input.engine_message.empty() ? "" : absl::StrCat(": ", input.engine_message);
  v1::FailureClass cls = v1::USER_ERROR;
  std::string what;
  if (input.exit.signal != 0) {
    switch (input.exit.signal) {
      // A crash of the program itself: rerunning the same recipe elsewhere crashes the same way.
      case SIGSEGV:
      case SIGABRT:
      case SIGFPE:
      case SIGILL:
      case SIGBUS:
        cls = v1::USER_ERROR;
        break;
      // Killed from outside (kernel OOM killer, an operator, a node shutdown).
      default:
        cls = v1::INFRASTRUCTURE;
    }
  } else if (input.exit.exit_code == 2) {
    what = " (bad job or config)";
  } else if (input.exit.exit_code == 3) {
    what = " (bad data or model input)";
  } else if (input.exit.exit_code == 4) {
    cls = v1::INFRASTRUCTURE;
    what = " (infrastructure)";
  } else if (input.exit.exit_code == 5) {
    what = " (evaluation gates not met)";
  }
  // The engine knows best why it gave up, when it says so.
  if (input.engine_failure_class == "user_error") cls = v1::USER_ERROR;
  if (input.engine_failure_class == "infrastructure") cls = v1::INFRASTRUCTURE;
  return {cls, absl::StrCat(how, what, engine_msg)};
}

}  // namespace align::worker
