#include "cli/commands/commands.h"

namespace align::cli {

void RegisterTokenizerCommands(CLI::App& app) {}

}  // namespace align::cli
