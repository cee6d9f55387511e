#include "cli/commands/commands.h"

namespace align::cli {

void RegisterValidateCommand(CLI::App& app) {}

}  // namespace align::cli
