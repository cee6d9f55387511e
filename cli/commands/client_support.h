// Pieces of the client verbs that local mode (`alignctl run`) and tests reuse: error printing,
// report writing and the completion script.
#pragma once

#include <string>
#include <utility>

#include <CLI/CLI.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "cli/coordinator_client.h"

namespace align::cli {

//! Prints "alignctl: error: <message>" (one line) to stderr and sets the exit code to 1.
void Fail(const absl::Status& status);

//! Fetches status, metrics and eval results of `pipeline` and writes the HTML report and the
//! Markdown summary. Empty paths choose report-<name>.html and the same path with .md.
//! Returns (html path, markdown path).
absl::StatusOr<std::pair<std::string, std::string>> WriteReport(CoordinatorClient& client,
                                                                const std::string& pipeline,
                                                                const std::string& html_path,
                                                                const std::string& md_path);

//! A bash (or zsh, through bashcompinit) completion script for every verb and flag of `root`.
std::string CompletionScript(CLI::App& root, const std::string& shell);

}  // namespace align::cli
