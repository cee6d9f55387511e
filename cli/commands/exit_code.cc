#include <cstdio>

#include "cli/commands/commands.h"

namespace align::cli {

int& ExitCode() {
  static int code = 0;
  return code;
}

void PrintError(absl::string_view message) {
  std::fprintf(stderr, "alignctl: error: %.*s\n", static_cast<int>(message.size()), message.data());
  std::fflush(stderr);
}

}  // namespace align::cli
