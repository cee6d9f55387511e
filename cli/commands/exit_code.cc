#include "cli/commands/commands.h"

namespace align::cli {
int& ExitCode() {
  static int code = 0;
  return code;
}
}  // namespace align::cli
