#ifndef ALIGN_COMMON_SUGGEST_H_
#define ALIGN_COMMON_SUGGEST_H_

// "Did you mean ...?" suggestions for error messages (spec fields, enum values, suites, score
// paths). Abseil only, so the engine can use it too.

#include <cstddef>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace align {

// Levenshtein distance.
size_t EditDistance(absl::string_view a, absl::string_view b);
// The candidate nearest to `word` when it is close enough to be a likely typo, else "".
std::string NearestMatch(absl::string_view word, const std::vector<std::string>& candidates);
// "; did you mean X?" or "".
std::string DidYouMean(absl::string_view word, const std::vector<std::string>& candidates);

}  // namespace align

#endif  // ALIGN_COMMON_SUGGEST_H_
