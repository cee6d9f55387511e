// Error formatting, suggestions, UTF-8 checks and small parsers shared by the spec code.
#include <algorithm>
#include <charconv>
#include <cmath>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/config/internal.h"
#include "common/eval_scores.h"
#include "common/config/pipeline_config.h"

namespace align::config {

std::string ConfigError::ToString() const {
  std::string out;
  if (!source.empty()) {
    out = source;
    if (line > 0) absl::StrAppend(&out, ":", line, ":", column);
    out += ": ";
  }
  if (!field_path.empty()) absl::StrAppend(&out, field_path, ": ");
  out += message;
  return out;
}

absl::Status ErrorsToStatus(const std::vector<ConfigError>& errors) {
  if (errors.empty()) return absl::OkStatus();
  std::vector<std::string> lines;
  lines.reserve(errors.size());
  for (const ConfigError& e : errors) lines.push_back(e.ToString());
  return absl::InvalidArgumentError(absl::StrJoin(lines, "\n"));
}

namespace internal {

bool IsValidUtf8(absl::string_view text, size_t* bad_offset) {
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  size_t i = 0;
  while (i < n) {
    const unsigned char c = s[i];
    size_t len = 0;
    uint32_t cp = 0;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      len = 2;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4;
      cp = c & 0x07;
    } else {
      if (bad_offset != nullptr) *bad_offset = i;
      return false;
    }
    bool ok = i + len <= n;
    for (size_t k = 1; ok && k < len; ++k) {
      if ((s[i + k] & 0xC0) != 0x80) ok = false;
      cp = (cp << 6) | (s[i + k] & 0x3F);
    }
    static constexpr uint32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
    if (ok && (cp < kMin[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))) ok = false;
    if (!ok) {
      if (bad_offset != nullptr) *bad_offset = i;
      return false;
    }
    i += len;
  }
  return true;
}

std::string EnumYamlName(const google::protobuf::EnumValueDescriptor* value) {
  return absl::AsciiStrToLower(value->name());
}

std::vector<std::string> EnumYamlNames(const google::protobuf::EnumDescriptor* type) {
  std::vector<std::string> names;
  for (int i = 0; i < type->value_count(); ++i) {
    if (type->value(i)->number() == 0) continue;  // *_UNSPECIFIED: "not set", never written
    names.push_back(EnumYamlName(type->value(i)));
  }
  return names;
}

const std::vector<std::string>& EvalSuites() { return EvalSuiteNames(); }

bool IsUrl(absl::string_view text) {
  return absl::StartsWith(text, "http://") || absl::StartsWith(text, "https://");
}

bool ParseGate(absl::string_view text, std::string* op, double* threshold) {
  op->clear();
  absl::string_view t = absl::StripAsciiWhitespace(text);
  for (absl::string_view candidate : {">=", "<=", "==", ">", "<"}) {
    if (absl::StartsWith(t, candidate)) {
      *op = std::string(candidate);
      t.remove_prefix(candidate.size());
      break;
    }
  }
  if (op->empty()) return false;
  t = absl::StripAsciiWhitespace(t);
  if (t.empty()) return false;
  if (t.front() == '+') t.remove_prefix(1);
  const char* end = t.data() + t.size();
  auto [ptr, ec] = std::from_chars(t.data(), end, *threshold);
  return ec == std::errc() && ptr == end && std::isfinite(*threshold);
}

}  // namespace internal
}  // namespace align::config
