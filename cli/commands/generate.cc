#include "cli/commands/commands.h"

namespace align::cli {

void RegisterGenerateCommand(CLI::App& app) {}

}  // namespace align::cli
