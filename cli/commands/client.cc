#include "cli/commands/commands.h"

namespace align::cli {

void RegisterClientCommands(CLI::App& app) {}

}  // namespace align::cli
