#include "cli/commands/commands.h"

namespace align::cli {

void RegisterDataCommands(CLI::App& app) {}

}  // namespace align::cli
