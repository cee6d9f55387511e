#include "worker/engine/eval/regex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace align::engine::eval {

struct Regex::Code {
  pcre2_code* code = nullptr;
  ~Code() {
    if (code != nullptr) pcre2_code_free(code);
  }
};

absl::StatusOr<Regex> Regex::Compile(const std::string& pattern, Options options) {
  uint32_t flags = PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF;
  if (options.ignore_case) flags |= PCRE2_CASELESS;
  if (options.multiline) flags |= PCRE2_MULTILINE;
  int error = 0;
  PCRE2_SIZE offset = 0;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                   flags, &error, &offset, nullptr);
  if (code == nullptr) {
    PCRE2_UCHAR message[256];
    pcre2_get_error_message(error, message, sizeof(message));
    return absl::InvalidArgumentError(absl::StrCat("regular expression '", pattern,
                                                   "' at offset ", offset, ": ",
                                                   reinterpret_cast<const char*>(message)));
  }
  Regex regex;
  regex.pattern_ = pattern;
  regex.code_ = std::make_shared<Code>();
  regex.code_->code = code;
  return regex;
}

template <typename Fn>
void Regex::ForEachMatch(const std::string& text, Fn fn) const {
  pcre2_match_data* data = pcre2_match_data_create_from_pattern(code_->code, nullptr);
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t pos = 0;
  while (pos <= text.size()) {
    const int rc = pcre2_match(code_->code, subject, text.size(), pos, 0, data, nullptr);
    if (rc < 0) break;
    const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(data);
    const size_t start = ovector[0], end = ovector[1];
    fn(ovector, rc);
    if (end > start) {
      pos = end;
    } else {
      // Empty match: step over one UTF-8 code point, as Python does.
      pos = end + 1;
      while (pos < text.size() && (static_cast<unsigned char>(text[pos]) & 0xC0) == 0x80) ++pos;
    }
  }
  pcre2_match_data_free(data);
}

bool Regex::Search(const std::string& text) const {
  pcre2_match_data* data = pcre2_match_data_create_from_pattern(code_->code, nullptr);
  const int rc = pcre2_match(code_->code, reinterpret_cast<PCRE2_SPTR>(text.data()), text.size(),
                             0, 0, data, nullptr);
  pcre2_match_data_free(data);
  return rc >= 0;
}

std::vector<std::string> Regex::FindAll(const std::string& text) const {
  std::vector<std::string> out;
  ForEachMatch(text, [&](const size_t* ov, int) { out.push_back(text.substr(ov[0], ov[1] - ov[0])); });
  return out;
}

std::vector<std::string> Regex::Split(const std::string& text) const {
  std::vector<std::string> out;
  size_t last = 0;
  ForEachMatch(text, [&](const size_t* ov, int) {
    out.push_back(text.substr(last, ov[0] - last));
    last = ov[1];
  });
  out.push_back(text.substr(last));
  return out;
}

std::string Regex::ReplaceWith(
    const std::string& text,
    const std::function<std::string(const std::vector<std::string>&)>& fn) const {
  std::string out;
  size_t last = 0;
  std::vector<std::string> groups;
  ForEachMatch(text, [&](const size_t* ov, int pairs) {
    groups.assign(10, std::string());
    for (int g = 0; g < pairs && g < 10; ++g) {
      if (ov[2 * g] != PCRE2_UNSET) groups[g] = text.substr(ov[2 * g], ov[2 * g + 1] - ov[2 * g]);
    }
    out.append(text, last, ov[0] - last);
    out += fn(groups);
    last = ov[1];
  });
  out.append(text, last, std::string::npos);
  return out;
}

std::string Regex::ReplaceAll(const std::string& text, const std::string& replacement) const {
  return ReplaceWith(text, [&](const std::vector<std::string>& groups) {
    std::string r;
    for (size_t i = 0; i < replacement.size(); ++i) {
      if (replacement[i] == '\\' && i + 1 < replacement.size() &&
          replacement[i + 1] >= '0' && replacement[i + 1] <= '9') {
        r += groups[replacement[i + 1] - '0'];
        ++i;
      } else {
        r += replacement[i];
      }
    }
    return r;
  });
}

}  // namespace align::engine::eval
