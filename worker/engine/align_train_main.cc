// align-train: runs one stage attempt from a job file (see proto/align/v1/job.proto).
#include <cstdio>
#include <cstring>

#include "common/version.h"

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--version") == 0) {
      std::printf("align-train %s\n", align::kEngineVersion);
      return 0;
    }
  }
  std::fprintf(stderr, "usage: align-train --job JOB.json\n");
  return 2;
}
