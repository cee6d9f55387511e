// Where tests find ../shared/data: $ALIGN_DATA_DIR, else the path CMake baked in.
#pragma once

#include <cstdlib>
#include <string>

namespace align::testing {

//! The real-data root (models/, tokenizers/, datasets/, eval/, goldens/, test-vectors/).
inline std::string DataDir() {
  if (const char* env = std::getenv("ALIGN_DATA_DIR"); env != nullptr && *env != '\0') return env;
#ifdef ALIGN_TEST_DATA_DIR
  return ALIGN_TEST_DATA_DIR;
#else
  return "../shared/data";
#endif
}

//! DataDir() + "/" + relative.
inline std::string DataPath(const std::string& relative) { return DataDir() + "/" + relative; }

}  // namespace align::testing
