// alignctl: the command-line client and local tools. Verbs live in cli/commands/.
#include <cstdio>
#include <string>

#include <CLI/CLI.hpp>

#include "cli/commands/commands.h"
#include "common/version.h"
#include "worker/engine/model/blas.h"

int main(int argc, char** argv) {
  // `generate` runs the model in this process: let it use the CPU's fast BLAS kernels.
  if (argc > 1 && std::string(argv[1]) == "generate") {
    bool help = false;
    for (int i = 2; i < argc; ++i) help |= std::string(argv[i]) == "--help" || std::string(argv[i]) == "-h";
    if (!help) align::engine::model::ReexecWithBetterOpenBlasCore(argv, /*announce=*/false);
  }
  CLI::App app{"alignctl: run and inspect LLM alignment pipelines (SFT, DPO, reward models, eval)"};
  app.set_version_flag("--version", std::string("alignctl ") + align::kEngineVersion);
  app.require_subcommand(1);
  align::cli::RegisterValidateCommand(app);
  align::cli::RegisterTokenizerCommands(app);
  align::cli::RegisterGenerateCommand(app);
  align::cli::RegisterDataCommands(app);
  align::cli::RegisterClientCommands(app);
  align::cli::RegisterLocalCommands(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  return align::cli::ExitCode();
}
