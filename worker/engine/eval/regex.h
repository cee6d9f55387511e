// A small PCRE2 wrapper with Python `re` semantics where eval needs them (search, findall,
// split, sub), Unicode-aware (\w, \b, \s and case folding over UTF-8). Internal to eval/.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace align::engine::eval {

class Regex {
 public:
  struct Options {
    bool ignore_case = false;
    bool multiline = false;  // ^ and $ at line boundaries (Python re.MULTILINE)
  };

  //! Compiles `pattern` (UTF-8, Unicode properties on). InvalidArgument names the offset.
  static absl::StatusOr<Regex> Compile(const std::string& pattern, Options options);
  static absl::StatusOr<Regex> Compile(const std::string& pattern) { return Compile(pattern, {}); }

  //! re.search: whether the pattern matches anywhere.
  bool Search(const std::string& text) const;
  //! re.findall without groups: every non-overlapping match, left to right.
  std::vector<std::string> FindAll(const std::string& text) const;
  //! re.split without groups.
  std::vector<std::string> Split(const std::string& text) const;
  //! re.sub: `replacement` may refer to groups as \\1..\\9 (an unmatched group is empty).
  std::string ReplaceAll(const std::string& text, const std::string& replacement) const;
  //! re.sub with a function of the groups (groups[0] is the whole match).
  std::string ReplaceWith(const std::string& text,
                          const std::function<std::string(const std::vector<std::string>&)>& fn) const;

  const std::string& pattern() const { return pattern_; }

 private:
  struct Code;
  // Calls fn(ovector, pairs) for each non-overlapping match the way Python iterates (an empty match
  // advances one code point).
  template <typename Fn>
  void ForEachMatch(const std::string& text, Fn fn) const;

  std::string pattern_;
  std::shared_ptr<Code> code_;
};

}  // namespace align::engine::eval
