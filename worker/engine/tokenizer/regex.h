// PCRE2 (UTF + UCP, JIT-compiled) for the tokenizer's Split pre-tokenizer and Replace
// normalizer/decoder: the GPT-2/Llama-3 split regexes need Unicode classes (\p{L}, \p{N}) and
// lookahead, which std::regex lacks. Immutable after Compile; FindAll is thread-safe.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace align::engine {

class Regex {
 public:
  //! Compiles `pattern` (UTF-8). An invalid pattern is InvalidArgument with PCRE2's message.
  static absl::StatusOr<std::unique_ptr<Regex>> Compile(const std::string& pattern);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  //! Every non-overlapping match [begin, end) in `text`, left to right. `text` must be valid UTF-8.
  std::vector<std::pair<size_t, size_t>> FindAll(absl::string_view text) const;

 private:
  Regex() = default;
  void* code_ = nullptr;  // pcre2_code_8*
  bool jit_ = false;
};

}  // namespace align::engine
