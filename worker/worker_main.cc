// Placeholder entry point; the real one grows in its own issue.
#include <cstdio>

#include "common/version.h"

int main(int argc, char** argv) {
  std::printf("%s %s\n", argv[0], align::kEngineVersion);
  return 0;
}
