#include "worker/engine/tokenizer/unicode_util.h"

#include <utf8proc.h>

#include <cstdlib>
#include <memory>

namespace align::engine::unicode {

size_t ValidSeqLen(absl::string_view s, size_t pos) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  size_t n = s.size();
  unsigned char b = p[pos];
  if (b < 0x80) return 1;
  auto cont = [&](size_t i) { return i < n && (p[i] & 0xC0) == 0x80; };
  if (b >= 0xC2 && b <= 0xDF) return cont(pos + 1) ? 2 : 0;
  if (b >= 0xE0 && b <= 0xEF) {
    if (pos + 1 >= n) return 0;
    unsigned char c1 = p[pos + 1];
    if (b == 0xE0 && (c1 < 0xA0 || c1 > 0xBF)) return 0;
    if (b == 0xED && (c1 < 0x80 || c1 > 0x9F)) return 0;
    if (!cont(pos + 1) || !cont(pos + 2)) return 0;
    return 3;
  }
  if (b >= 0xF0 && b <= 0xF4) {
    if (pos + 1 >= n) return 0;
    unsigned char c1 = p[pos + 1];
    if (b == 0xF0 && (c1 < 0x90 || c1 > 0xBF)) return 0;
    if (b == 0xF4 && (c1 < 0x80 || c1 > 0x8F)) return 0;
    if (!cont(pos + 1) || !cont(pos + 2) || !cont(pos + 3)) return 0;
    return 4;
  }
  return 0;
}

char32_t DecodeOne(absl::string_view s, size_t* pos) {
  size_t len = ValidSeqLen(s, *pos);
  const auto* p = reinterpret_cast<const unsigned char*>(s.data()) + *pos;
  if (len == 0) {
    *pos += 1;
    return 0xFFFD;
  }
  *pos += len;
  switch (len) {
    case 1: return p[0];
    case 2: return ((p[0] & 0x1F) << 6) | (p[1] & 0x3F);
    case 3: return ((p[0] & 0x0F) << 12) | ((p[1] & 0x3F) << 6) | (p[2] & 0x3F);
    default:
      return ((p[0] & 0x07) << 18) | ((p[1] & 0x3F) << 12) | ((p[2] & 0x3F) << 6) | (p[3] & 0x3F);
  }
}

void Append(std::string* out, char32_t cp) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

bool IsValid(absl::string_view s) {
  for (size_t i = 0; i < s.size();) {
    size_t len = ValidSeqLen(s, i);
    if (len == 0) return false;
    i += len;
  }
  return true;
}

std::string Lossy(absl::string_view s) {
  std::string out;
  out.reserve(s.size());
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  size_t n = s.size();
  for (size_t i = 0; i < n;) {
    size_t len = ValidSeqLen(s, i);
    if (len > 0) {
      out.append(s.data() + i, len);
      i += len;
      continue;
    }
    // Maximal subpart: a valid lead byte followed by as many valid continuation bytes as fit.
    unsigned char b = p[i];
    size_t need = 0;
    unsigned char lo = 0x80, hi = 0xBF;
    if (b >= 0xC2 && b <= 0xDF) need = 1;
    else if (b >= 0xE0 && b <= 0xEF) {
      need = 2;
      if (b == 0xE0) lo = 0xA0;
      if (b == 0xED) hi = 0x9F;
    } else if (b >= 0xF0 && b <= 0xF4) {
      need = 3;
      if (b == 0xF0) lo = 0x90;
      if (b == 0xF4) hi = 0x8F;
    }
    size_t j = i + 1;
    for (size_t k = 0; k < need && j < n; ++k, ++j) {
      unsigned char c = p[j];
      if (k == 0 ? (c < lo || c > hi) : (c & 0xC0) != 0x80) break;
    }
    out.append("\xEF\xBF\xBD");
    i = j;
  }
  return out;
}

std::string LossyPerByte(absl::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size();) {
    size_t len = ValidSeqLen(s, i);
    if (len == 0) {
      out.append("\xEF\xBF\xBD");
      ++i;
    } else {
      out.append(s.data() + i, len);
      i += len;
    }
  }
  return out;
}

std::string Normalize(absl::string_view s, NormalForm form) {
  bool ascii = true;
  for (unsigned char c : s) {
    if (c >= 0x80) {
      ascii = false;
      break;
    }
  }
  if (ascii) return std::string(s);  // ASCII is invariant under every normal form
  int options = UTF8PROC_STABLE;
  switch (form) {
    case NormalForm::kNFC: options |= UTF8PROC_COMPOSE; break;
    case NormalForm::kNFKC: options |= UTF8PROC_COMPOSE | UTF8PROC_COMPAT; break;
    case NormalForm::kNFD: options |= UTF8PROC_DECOMPOSE; break;
    case NormalForm::kNFKD: options |= UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT; break;
  }
  utf8proc_uint8_t* out = nullptr;
  utf8proc_ssize_t n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(s.data()),
                                    static_cast<utf8proc_ssize_t>(s.size()), &out,
                                    static_cast<utf8proc_option_t>(options));
  if (n < 0) {
    std::free(out);
    return std::string(s);
  }
  std::string result(reinterpret_cast<const char*>(out), static_cast<size_t>(n));
  std::free(out);
  return result;
}

const std::array<char32_t, 256>& ByteToUnicode() {
  static const std::array<char32_t, 256> table = [] {
    std::array<char32_t, 256> t{};
    std::array<bool, 256> direct{};
    for (int b = '!'; b <= '~'; ++b) direct[b] = true;
    for (int b = 0xA1; b <= 0xAC; ++b) direct[b] = true;
    for (int b = 0xAE; b <= 0xFF; ++b) direct[b] = true;
    int n = 0;
    for (int b = 0; b < 256; ++b) {
      if (direct[b]) {
        t[b] = static_cast<char32_t>(b);
      } else {
        t[b] = static_cast<char32_t>(256 + n++);
      }
    }
    return t;
  }();
  return table;
}

int UnicodeToByte(char32_t cp) {
  static const std::array<int16_t, 512> inverse = [] {
    std::array<int16_t, 512> inv;
    inv.fill(-1);
    const auto& t = ByteToUnicode();
    for (int b = 0; b < 256; ++b) inv[t[b]] = static_cast<int16_t>(b);
    return inv;
  }();
  return cp < 512 ? inverse[cp] : -1;
}

std::string BytesToByteLevel(absl::string_view bytes) {
  std::string out;
  const auto& t = ByteToUnicode();
  for (unsigned char b : bytes) Append(&out, t[b]);
  return out;
}

bool ByteLevelToBytes(absl::string_view s, std::string* out) {
  out->clear();
  for (size_t i = 0; i < s.size();) {
    char32_t cp = DecodeOne(s, &i);
    int b = UnicodeToByte(cp);
    if (b < 0) return false;
    out->push_back(static_cast<char>(b));
  }
  return true;
}

bool IsWhitespace(char32_t cp) {
  switch (cp) {
    case 0x09: case 0x0A: case 0x0B: case 0x0C: case 0x0D: case 0x20: case 0x85: case 0xA0:
    case 0x1680: case 0x2028: case 0x2029: case 0x202F: case 0x205F: case 0x3000:
      return true;
    default:
      return cp >= 0x2000 && cp <= 0x200A;
  }
}

bool IsAlnum(char32_t cp) {
  if (cp < 0x80) return (cp >= '0' && cp <= '9') || (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z');
  utf8proc_category_t c = utf8proc_category(static_cast<utf8proc_int32_t>(cp));
  return (c >= UTF8PROC_CATEGORY_LU && c <= UTF8PROC_CATEGORY_LO) ||
         (c >= UTF8PROC_CATEGORY_ND && c <= UTF8PROC_CATEGORY_NO);
}

}  // namespace align::engine::unicode
