#include "cli/commands/commands.h"

namespace align::cli {

void RegisterLocalCommands(CLI::App& app) {}

}  // namespace align::cli
