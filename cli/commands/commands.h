// Each verb group of alignctl registers itself on the CLI11 app. One file per group, owned by the
// component that implements it; alignctl_main.cc only wires them together.
#pragma once

#include <CLI/CLI.hpp>

#include "absl/strings/string_view.h"

namespace align::cli {

//! Set by the verb's callback: alignctl's exit code.
int& ExitCode();

//! Writes "alignctl: error: MESSAGE" on stderr: every verb's one-line failure (docs/cli.md).
void PrintError(absl::string_view message);

void RegisterValidateCommand(CLI::App& app);   // validate (pipeline spec)
void RegisterTokenizerCommands(CLI::App& app); // tokenize, template render|mask
void RegisterGenerateCommand(CLI::App& app);   // generate
void RegisterDataCommands(CLI::App& app);      // data preview
void RegisterClientCommands(CLI::App& app);    // submit, get, list, watch, logs, cancel, retry, workers, report
void RegisterLocalCommands(CLI::App& app);     // run (local mode)

}  // namespace align::cli
