// The Hugging Face tokenizer.json pipeline: added tokens -> normalizer -> pre-tokenizer -> BPE ->
// post-processor, and the decoder chain. Semantics follow huggingface/tokenizers (Rust) so ids
// match its output exactly; comments point out where a behaviour is deliberately copied.
#include <algorithm>
#include <atomic>
#include <fstream>
#include <queue>
#include <sstream>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/status_macros.h"
#include "worker/engine/tokenizer/backend.h"
#include "worker/engine/tokenizer/regex.h"
#include "worker/engine/tokenizer/unicode_util.h"

#include <utf8proc.h>

namespace align::engine {
namespace {

using nlohmann::json;

constexpr char kGpt2Pattern[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

// ----------------------------------------------------------------------------------------------
// NormStr: a piece of (normalized) text that remembers, per byte, which bytes of the original
// input it came from, so token offsets point into the caller's text (needed for loss masks).
// Alignment is only materialized when a transform changes the text and offsets were requested.
struct NormStr {
  std::string s;
  std::vector<uint32_t> os, oe;  // per byte: original [start, end); empty = identity from base
  uint32_t base = 0;
  bool track = false;

  bool identity() const { return os.empty(); }
  void Materialize() {
    if (!track || !identity()) return;
    os.resize(s.size());
    oe.resize(s.size());
    for (size_t i = 0; i < s.size();) {
      size_t len = std::max<size_t>(1, unicode::SeqLen(static_cast<unsigned char>(s[i])));
      len = std::min(len, s.size() - i);
      for (size_t k = 0; k < len; ++k) {
        os[i + k] = base + static_cast<uint32_t>(i);
        oe[i + k] = base + static_cast<uint32_t>(i + len);
      }
      i += len;
    }
  }
  TokenOffset Range(size_t b, size_t e) const {
    if (identity()) return {base + static_cast<uint32_t>(b), base + static_cast<uint32_t>(e)};
    if (b >= e) {
      uint32_t p = b < os.size() ? os[b] : (os.empty() ? base : oe.back());
      return {p, p};
    }
    uint32_t lo = os[b], hi = oe[b];
    for (size_t i = b; i < e; ++i) {
      lo = std::min(lo, os[i]);
      hi = std::max(hi, oe[i]);
    }
    return {lo, hi};
  }
  NormStr Sub(size_t b, size_t e) const {
    NormStr r;
    r.s = s.substr(b, e - b);
    r.track = track;
    if (identity()) {
      r.base = base + static_cast<uint32_t>(b);
    } else {
      r.os.assign(os.begin() + b, os.begin() + e);
      r.oe.assign(oe.begin() + b, oe.begin() + e);
    }
    return r;
  }
  // Inserts `p` in front, aligned to the first character (as Hugging Face's prepend does).
  void Prepend(const std::string& p) {
    if (s.empty()) return;
    Materialize();
    if (track) {
      os.insert(os.begin(), p.size(), os[0]);
      oe.insert(oe.begin(), p.size(), oe[0]);
    }
    s.insert(0, p);
  }
  // Replaces ranges with new text: each replacement's bytes align to the whole replaced range.
  void ReplaceRanges(const std::vector<std::pair<size_t, size_t>>& ranges, const std::string& with) {
    if (ranges.empty()) return;
    Materialize();
    std::string ns;
    std::vector<uint32_t> nos, noe;
    size_t last = 0;
    for (auto [b, e] : ranges) {
      ns.append(s, last, b - last);
      if (track) {
        nos.insert(nos.end(), os.begin() + last, os.begin() + b);
        noe.insert(noe.end(), oe.begin() + last, oe.begin() + b);
        TokenOffset r = Range(b, e);
        nos.insert(nos.end(), with.size(), r.first);
        noe.insert(noe.end(), with.size(), r.second);
      }
      ns.append(with);
      last = e;
    }
    ns.append(s, last, std::string::npos);
    if (track) {
      nos.insert(nos.end(), os.begin() + last, os.end());
      noe.insert(noe.end(), oe.begin() + last, oe.end());
      os = std::move(nos);
      oe = std::move(noe);
    }
    s = std::move(ns);
  }
  // Replaces the whole text, aligning output clusters to input clusters when lengths allow.
  void SetTransformed(std::string out, const std::vector<std::pair<size_t, size_t>>& in_clusters,
                      const std::vector<size_t>& out_cluster_sizes) {
    if (out == s) return;
    Materialize();
    if (track) {
      std::vector<uint32_t> nos, noe;
      if (in_clusters.size() == out_cluster_sizes.size()) {
        for (size_t c = 0; c < in_clusters.size(); ++c) {
          TokenOffset r = Range(in_clusters[c].first, in_clusters[c].second);
          nos.insert(nos.end(), out_cluster_sizes[c], r.first);
          noe.insert(noe.end(), out_cluster_sizes[c], r.second);
        }
      }
      if (nos.size() != out.size()) {  // coarse fallback: everything maps to the whole range
        TokenOffset r = Range(0, s.size());
        nos.assign(out.size(), r.first);
        noe.assign(out.size(), r.second);
      }
      os = std::move(nos);
      oe = std::move(noe);
    }
    s = std::move(out);
  }
};

std::vector<std::pair<size_t, size_t>> FindLiteral(absl::string_view s, absl::string_view pat) {
  std::vector<std::pair<size_t, size_t>> out;
  if (pat.empty()) return out;
  for (size_t p = s.find(pat); p != absl::string_view::npos; p = s.find(pat, p + pat.size())) {
    out.emplace_back(p, p + pat.size());
  }
  return out;
}

// A literal or regex pattern ({"String": ...} or {"Regex": ...}).
struct Pattern {
  std::string literal;
  std::unique_ptr<Regex> regex;
  std::vector<std::pair<size_t, size_t>> Find(absl::string_view s) const {
    return regex ? regex->FindAll(s) : FindLiteral(s, literal);
  }
};

absl::StatusOr<Pattern> ParsePattern(const json& j, const std::string& where) {
  Pattern p;
  if (j.is_object() && j.contains("String") && j["String"].is_string()) {
    p.literal = j["String"].get<std::string>();
  } else if (j.is_object() && j.contains("Regex") && j["Regex"].is_string()) {
    auto r = Regex::Compile(j["Regex"].get<std::string>());
    if (!r.ok()) return absl::InvalidArgumentError(absl::StrCat(where, ": ", r.status().message()));
    p.regex = std::move(r).value();
  } else if (j.is_string()) {
    p.literal = j.get<std::string>();
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": pattern must be {\"String\": ...} or {\"Regex\": ...}"));
  }
  return p;
}

// ----------------------------------------------------------------------------------------------
// Normalizers.
struct Normalizer {
  enum class Kind { kNfc, kNfkc, kNfd, kNfkd, kPrepend, kReplace, kLowercase, kStrip, kSequence };
  Kind kind;
  std::string text;      // Prepend's prefix / Replace's content
  Pattern pattern;       // Replace
  bool strip_left = false, strip_right = false;
  std::vector<Normalizer> children;

  void Apply(NormStr* n) const {
    switch (kind) {
      case Kind::kSequence:
        for (const auto& c : children) c.Apply(n);
        return;
      case Kind::kPrepend:
        n->Prepend(text);
        return;
      case Kind::kReplace:
        n->ReplaceRanges(pattern.Find(n->s), text);
        return;
      case Kind::kStrip: {
        size_t b = 0, e = n->s.size();
        if (strip_left) {
          while (b < e) {
            size_t p = b;
            if (!unicode::IsWhitespace(unicode::DecodeOne(n->s, &p))) break;
            b = p;
          }
        }
        if (strip_right) {
          while (e > b) {
            size_t p = e - 1;
            while (p > b && (static_cast<unsigned char>(n->s[p]) & 0xC0) == 0x80) --p;
            size_t q = p;
            if (!unicode::IsWhitespace(unicode::DecodeOne(n->s, &q))) break;
            e = p;
          }
        }
        if (b != 0 || e != n->s.size()) *n = n->Sub(b, e);
        return;
      }
      case Kind::kLowercase: {
        std::string out;
        std::vector<std::pair<size_t, size_t>> in;
        std::vector<size_t> sizes;
        for (size_t i = 0; i < n->s.size();) {
          size_t b = i;
          char32_t cp = unicode::DecodeOne(n->s, &i);
          size_t before = out.size();
          unicode::Append(&out, static_cast<char32_t>(utf8proc_tolower(static_cast<int32_t>(cp))));
          in.emplace_back(b, i);
          sizes.push_back(out.size() - before);
        }
        n->SetTransformed(std::move(out), in, sizes);
        return;
      }
      default:
        ApplyUnicode(n);
        return;
    }
  }

  void ApplyUnicode(NormStr* n) const {
    unicode::NormalForm form = kind == Kind::kNfc    ? unicode::NormalForm::kNFC
                               : kind == Kind::kNfkc ? unicode::NormalForm::kNFKC
                               : kind == Kind::kNfd  ? unicode::NormalForm::kNFD
                                                     : unicode::NormalForm::kNFKD;
    std::string whole = unicode::Normalize(n->s, form);
    if (whole == n->s) return;
    if (!n->track) {
      n->s = std::move(whole);
      return;
    }
    // Align per cluster (a starter plus its combining marks): normalize each cluster alone.
    std::vector<std::pair<size_t, size_t>> in;
    std::vector<size_t> sizes;
    std::string joined;
    for (size_t i = 0; i < n->s.size();) {
      size_t b = i;
      unicode::DecodeOne(n->s, &i);
      while (i < n->s.size()) {
        size_t p = i;
        char32_t cp = unicode::DecodeOne(n->s, &p);
        if (utf8proc_get_property(static_cast<int32_t>(cp))->combining_class == 0) break;
        i = p;
      }
      std::string part = unicode::Normalize(absl::string_view(n->s).substr(b, i - b), form);
      in.emplace_back(b, i);
      sizes.push_back(part.size());
      joined += part;
    }
    if (joined != whole) {
      in.clear();
      sizes.clear();
    }
    n->SetTransformed(std::move(whole), in, sizes);
  }
};

absl::Status Unsupported(const std::string& source, const std::string& what, const std::string& type,
                         const std::string& supported) {
  return absl::UnimplementedError(absl::StrCat(source, ": ", what, " type '", type,
                                               "' is not supported; supported: ", supported));
}

absl::StatusOr<Normalizer> ParseNormalizer(const json& j, const std::string& source) {
  static const char kSupported[] = "NFC, NFKC, NFD, NFKD, Prepend, Replace, Lowercase, Strip, Sequence";
  std::string type = j.value("type", "");
  Normalizer n;
  if (type == "NFC") n.kind = Normalizer::Kind::kNfc;
  else if (type == "NFKC") n.kind = Normalizer::Kind::kNfkc;
  else if (type == "NFD") n.kind = Normalizer::Kind::kNfd;
  else if (type == "NFKD") n.kind = Normalizer::Kind::kNfkd;
  else if (type == "Lowercase") n.kind = Normalizer::Kind::kLowercase;
  else if (type == "Prepend") {
    n.kind = Normalizer::Kind::kPrepend;
    n.text = j.value("prepend", "");
  } else if (type == "Replace") {
    n.kind = Normalizer::Kind::kReplace;
    ASSIGN_OR_RETURN(n.pattern, ParsePattern(j.value("pattern", json()), source + ": normalizer Replace"));
    n.text = j.value("content", "");
  } else if (type == "Strip") {
    n.kind = Normalizer::Kind::kStrip;
    n.strip_left = j.value("strip_left", true);
    n.strip_right = j.value("strip_right", true);
  } else if (type == "Sequence") {
    n.kind = Normalizer::Kind::kSequence;
    for (const auto& c : j.value("normalizers", json::array())) {
      ASSIGN_OR_RETURN(Normalizer child, ParseNormalizer(c, source));
      n.children.push_back(std::move(child));
    }
  } else {
    return Unsupported(source, "normalizer", type, kSupported);
  }
  return n;
}

// ----------------------------------------------------------------------------------------------
// Pre-tokenizers: each turns a list of pieces into a finer list of pieces.
enum class SplitBehavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

// Hugging Face's NormalizedString::split: matches -> pieces according to the behaviour.
void SplitPiece(const NormStr& piece, const std::vector<std::pair<size_t, size_t>>& found,
                SplitBehavior behavior, bool invert, std::vector<NormStr>* out) {
  std::vector<std::pair<std::pair<size_t, size_t>, bool>> segs;
  size_t last = 0;
  for (auto [b, e] : found) {
    if (b > last) segs.push_back({{last, b}, false});
    segs.push_back({{b, e}, true});
    last = e;
  }
  if (last < piece.s.size()) segs.push_back({{last, piece.s.size()}, false});
  if (invert) {
    for (auto& s : segs) s.second = !s.second;
  }
  std::vector<std::pair<size_t, size_t>> ranges;
  switch (behavior) {
    case SplitBehavior::kIsolated:
      for (auto& s : segs) ranges.push_back(s.first);
      break;
    case SplitBehavior::kRemoved:
      for (auto& s : segs) {
        if (!s.second) ranges.push_back(s.first);
      }
      break;
    case SplitBehavior::kMergedWithPrevious: {
      bool prev = false;
      for (auto& s : segs) {
        if (s.second && !prev && !ranges.empty()) ranges.back().second = s.first.second;
        else ranges.push_back(s.first);
        prev = s.second;
      }
      break;
    }
    case SplitBehavior::kMergedWithNext: {
      bool prev = false;
      for (auto it = segs.rbegin(); it != segs.rend(); ++it) {
        if (it->second && !prev && !ranges.empty()) ranges.back().first = it->first.first;
        else ranges.push_back(it->first);
        prev = it->second;
      }
      std::reverse(ranges.begin(), ranges.end());
      break;
    }
    case SplitBehavior::kContiguous: {
      bool prev = false;
      for (auto& s : segs) {
        if (s.second == prev && !ranges.empty()) ranges.back().second = s.first.second;
        else ranges.push_back(s.first);
        prev = s.second;
      }
      break;
    }
  }
  for (auto [b, e] : ranges) {
    if (e > b) out->push_back(piece.Sub(b, e));
  }
}

struct PreTokenizer {
  enum class Kind { kByteLevel, kSplit, kMetaspace, kDigits, kWhitespaceSplit, kSequence };
  Kind kind;
  bool add_prefix_space = false;
  std::unique_ptr<Regex> regex;    // ByteLevel (use_regex) or Split
  Pattern pattern;                 // Split
  SplitBehavior behavior = SplitBehavior::kIsolated;
  bool invert = false;
  std::string replacement = "\xE2\x96\x81";  // Metaspace
  enum class Prepend { kAlways, kFirst, kNever } prepend = Prepend::kAlways;
  bool split = true;               // Metaspace
  bool individual_digits = false;  // Digits
  std::vector<PreTokenizer> children;

  // `first` is true for the text before any added token (Metaspace prepend_scheme "first").
  void Apply(std::vector<NormStr>* pieces, bool first) const {
    if (kind == Kind::kSequence) {
      for (const auto& c : children) c.Apply(pieces, first);
      return;
    }
    std::vector<NormStr> out;
    out.reserve(pieces->size() * 2);
    for (size_t i = 0; i < pieces->size(); ++i) {
      NormStr& p = (*pieces)[i];
      switch (kind) {
        case Kind::kByteLevel:
          if (add_prefix_space && !p.s.empty() && p.s[0] != ' ') p.Prepend(" ");
          if (regex) SplitPiece(p, regex->FindAll(p.s), SplitBehavior::kIsolated, false, &out);
          else out.push_back(std::move(p));
          break;
        case Kind::kSplit:
          SplitPiece(p, pattern.Find(p.s), behavior, invert, &out);
          break;
        case Kind::kMetaspace: {
          p.ReplaceRanges(FindLiteral(p.s, " "), replacement);
          bool want = prepend == Prepend::kAlways || (prepend == Prepend::kFirst && first && i == 0);
          if (want && p.s.compare(0, replacement.size(), replacement) != 0) p.Prepend(replacement);
          if (split) SplitPiece(p, FindLiteral(p.s, replacement), SplitBehavior::kMergedWithNext, false, &out);
          else out.push_back(std::move(p));
          break;
        }
        case Kind::kDigits: {
          std::vector<std::pair<size_t, size_t>> found;
          for (size_t k = 0; k < p.s.size();) {
            size_t b = k;
            char32_t cp = unicode::DecodeOne(p.s, &k);
            utf8proc_category_t c = utf8proc_category(static_cast<int32_t>(cp));
            if (c == UTF8PROC_CATEGORY_ND || c == UTF8PROC_CATEGORY_NL || c == UTF8PROC_CATEGORY_NO) {
              if (!individual_digits && !found.empty() && found.back().second == b) found.back().second = k;
              else found.emplace_back(b, k);
            }
          }
          SplitPiece(p, found, SplitBehavior::kIsolated, false, &out);
          break;
        }
        case Kind::kWhitespaceSplit: {
          std::vector<std::pair<size_t, size_t>> found;
          for (size_t k = 0; k < p.s.size();) {
            size_t b = k;
            char32_t cp = unicode::DecodeOne(p.s, &k);
            if (unicode::IsWhitespace(cp)) {
              if (!found.empty() && found.back().second == b) found.back().second = k;
              else found.emplace_back(b, k);
            }
          }
          SplitPiece(p, found, SplitBehavior::kRemoved, false, &out);
          break;
        }
        case Kind::kSequence:
          break;
      }
    }
    *pieces = std::move(out);
  }
  bool HasByteLevel() const {
    if (kind == Kind::kByteLevel) return true;
    for (const auto& c : children) {
      if (c.HasByteLevel()) return true;
    }
    return false;
  }
};

absl::StatusOr<PreTokenizer> ParsePreTokenizer(const json& j, const std::string& source) {
  static const char kSupported[] = "ByteLevel, Split, Metaspace, Digits, WhitespaceSplit, Sequence";
  std::string type = j.value("type", "");
  PreTokenizer p;
  if (type == "ByteLevel") {
    p.kind = PreTokenizer::Kind::kByteLevel;
    p.add_prefix_space = j.value("add_prefix_space", false);
    if (j.value("use_regex", true)) {
      ASSIGN_OR_RETURN(p.regex, Regex::Compile(kGpt2Pattern));
    }
  } else if (type == "Split") {
    p.kind = PreTokenizer::Kind::kSplit;
    ASSIGN_OR_RETURN(p.pattern, ParsePattern(j.value("pattern", json()), source + ": pre_tokenizer Split"));
    std::string b = j.value("behavior", "Isolated");
    if (b == "Removed") p.behavior = SplitBehavior::kRemoved;
    else if (b == "Isolated") p.behavior = SplitBehavior::kIsolated;
    else if (b == "MergedWithPrevious") p.behavior = SplitBehavior::kMergedWithPrevious;
    else if (b == "MergedWithNext") p.behavior = SplitBehavior::kMergedWithNext;
    else if (b == "Contiguous") p.behavior = SplitBehavior::kContiguous;
    else return absl::InvalidArgumentError(absl::StrCat(source, ": Split behavior '", b, "' is unknown"));
    p.invert = j.value("invert", false);
  } else if (type == "Metaspace") {
    p.kind = PreTokenizer::Kind::kMetaspace;
    p.replacement = j.value("replacement", std::string("\xE2\x96\x81"));
    p.split = j.value("split", true);
    if (j.contains("prepend_scheme") && j["prepend_scheme"].is_string()) {
      std::string s = j["prepend_scheme"];
      p.prepend = s == "first" ? PreTokenizer::Prepend::kFirst
                  : s == "never" ? PreTokenizer::Prepend::kNever
                                 : PreTokenizer::Prepend::kAlways;
    } else {
      p.prepend = j.value("add_prefix_space", true) ? PreTokenizer::Prepend::kAlways
                                                    : PreTokenizer::Prepend::kNever;
    }
  } else if (type == "Digits") {
    p.kind = PreTokenizer::Kind::kDigits;
    p.individual_digits = j.value("individual_digits", false);
  } else if (type == "WhitespaceSplit") {
    p.kind = PreTokenizer::Kind::kWhitespaceSplit;
  } else if (type == "Sequence") {
    p.kind = PreTokenizer::Kind::kSequence;
    for (const auto& c : j.value("pretokenizers", json::array())) {
      ASSIGN_OR_RETURN(PreTokenizer child, ParsePreTokenizer(c, source));
      p.children.push_back(std::move(child));
    }
  } else {
    return Unsupported(source, "pre_tokenizer", type, kSupported);
  }
  return p;
}

// ----------------------------------------------------------------------------------------------
// Decoders: a chain over token strings, joined at the end.
struct Decoder {
  enum class Kind { kByteLevel, kMetaspace, kReplace, kByteFallback, kFuse, kStrip, kSequence };
  Kind kind;
  Pattern pattern;
  std::string content;
  int start = 0, stop = 0;
  std::string replacement = "\xE2\x96\x81";
  bool prepend = true;  // Metaspace: drop the replacement in the first token
  std::vector<Decoder> children;

  void Apply(std::vector<std::string>* toks) const {
    switch (kind) {
      case Kind::kSequence:
        for (const auto& c : children) c.Apply(toks);
        return;
      case Kind::kByteLevel: {
        std::string bytes, tmp;
        for (const auto& t : *toks) {
          if (unicode::ByteLevelToBytes(t, &tmp)) bytes += tmp;
          else bytes += t;  // a token outside the byte map keeps its own UTF-8 (added tokens)
        }
        *toks = {unicode::Lossy(bytes)};
        return;
      }
      case Kind::kMetaspace:
        for (size_t i = 0; i < toks->size(); ++i) {
          std::string& t = (*toks)[i];
          std::string out;
          for (size_t p = 0; p < t.size();) {
            if (t.compare(p, replacement.size(), replacement) == 0) {
              if (!(i == 0 && prepend)) out.push_back(' ');
              p += replacement.size();
            } else {
              out.push_back(t[p++]);
            }
          }
          t = std::move(out);
        }
        return;
      case Kind::kReplace:
        for (auto& t : *toks) {
          auto found = pattern.Find(t);
          if (found.empty()) continue;
          std::string out;
          size_t last = 0;
          for (auto [b, e] : found) {
            out.append(t, last, b - last);
            out += content;
            last = e;
          }
          out.append(t, last, std::string::npos);
          t = std::move(out);
        }
        return;
      case Kind::kByteFallback: {
        std::vector<std::string> out;
        std::string pending;
        size_t pending_count = 0;
        auto flush = [&] {
          if (pending_count == 0) return;
          if (unicode::IsValid(pending)) {
            out.push_back(pending);
          } else {
            // Hugging Face emits one U+FFFD per byte token when the bytes are not valid UTF-8.
            for (size_t k = 0; k < pending_count; ++k) out.push_back("\xEF\xBF\xBD");
          }
          pending.clear();
          pending_count = 0;
        };
        for (auto& t : *toks) {
          if (t.size() == 6 && t.compare(0, 3, "<0x") == 0 && t[5] == '>' && std::isxdigit(t[3]) &&
              std::isxdigit(t[4])) {
            pending.push_back(static_cast<char>(std::stoi(t.substr(3, 2), nullptr, 16)));
            ++pending_count;
          } else {
            flush();
            out.push_back(std::move(t));
          }
        }
        flush();
        *toks = std::move(out);
        return;
      }
      case Kind::kFuse:
        *toks = {absl::StrJoin(*toks, "")};
        return;
      case Kind::kStrip:
        for (auto& t : *toks) {
          size_t b = 0, e = t.size();
          for (int k = 0; k < start && b < e && t.compare(b, content.size(), content) == 0; ++k) {
            b += content.size();
          }
          for (int k = 0; k < stop && e >= b + content.size() &&
                          t.compare(e - content.size(), content.size(), content) == 0;
               ++k) {
            e -= content.size();
          }
          t = t.substr(b, e - b);
        }
        return;
    }
  }
};

absl::StatusOr<Decoder> ParseDecoder(const json& j, const std::string& source) {
  static const char kSupported[] = "ByteLevel, Metaspace, Replace, ByteFallback, Fuse, Strip, Sequence";
  std::string type = j.value("type", "");
  Decoder d;
  if (type == "ByteLevel") d.kind = Decoder::Kind::kByteLevel;
  else if (type == "ByteFallback") d.kind = Decoder::Kind::kByteFallback;
  else if (type == "Fuse") d.kind = Decoder::Kind::kFuse;
  else if (type == "Metaspace") {
    d.kind = Decoder::Kind::kMetaspace;
    d.replacement = j.value("replacement", std::string("\xE2\x96\x81"));
    if (j.contains("prepend_scheme") && j["prepend_scheme"].is_string()) {
      d.prepend = j["prepend_scheme"].get<std::string>() != "never";
    } else {
      d.prepend = j.value("add_prefix_space", true);
    }
  } else if (type == "Replace") {
    d.kind = Decoder::Kind::kReplace;
    ASSIGN_OR_RETURN(d.pattern, ParsePattern(j.value("pattern", json()), source + ": decoder Replace"));
    d.content = j.value("content", "");
  } else if (type == "Strip") {
    d.kind = Decoder::Kind::kStrip;
    d.content = j.value("content", " ");
    d.start = j.value("start", 0);
    d.stop = j.value("stop", 0);
  } else if (type == "Sequence") {
    d.kind = Decoder::Kind::kSequence;
    for (const auto& c : j.value("decoders", json::array())) {
      ASSIGN_OR_RETURN(Decoder child, ParseDecoder(c, source));
      d.children.push_back(std::move(child));
    }
  } else {
    return Unsupported(source, "decoder", type, kSupported);
  }
  return d;
}

// ----------------------------------------------------------------------------------------------
// BPE model.
struct CachedWord {
  std::vector<int32_t> ids;
  std::vector<uint32_t> lens;  // bytes of the word each token covers
};

std::atomic<uint64_t> g_next_model_serial{1};

class BpeModel {
 public:
  absl::flat_hash_map<std::string, int32_t> vocab;  // raw bytes (byte-level) or token string
  std::vector<std::string> id_to_token;             // the vocabulary's own spelling
  absl::flat_hash_map<uint64_t, std::pair<int32_t, int32_t>> merges;  // (a,b) -> (rank, new id)
  bool byte_level = false;
  std::array<int32_t, 256> byte_ids{};      // byte-level: byte -> id of its character
  std::array<int32_t, 256> fallback_ids{};  // byte_fallback: byte -> id of <0xXX>
  bool byte_fallback = false, fuse_unk = false, ignore_merges = false;
  std::optional<int32_t> unk_id;
  uint64_t serial = g_next_model_serial.fetch_add(1);

  static uint64_t Key(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }

  void EncodeWord(absl::string_view w, CachedWord* out) const {
    out->ids.clear();
    out->lens.clear();
    if (w.empty()) return;
    if (ignore_merges) {
      auto it = vocab.find(w);
      if (it != vocab.end()) {
        out->ids.push_back(it->second);
        out->lens.push_back(static_cast<uint32_t>(w.size()));
        return;
      }
    }
    struct Sym {
      int32_t id;
      int32_t prev, next;
      uint32_t len;
    };
    std::vector<Sym> sym;
    sym.reserve(w.size());
    auto add = [&](int32_t id, uint32_t len) {
      int32_t n = static_cast<int32_t>(sym.size());
      sym.push_back({id, n - 1, -1, len});
      if (n > 0) sym[n - 1].next = n;
    };
    if (byte_level) {
      for (unsigned char c : w) add(byte_ids[c], 1);
    } else {
      std::optional<std::pair<int32_t, uint32_t>> unk;  // pending (fused) unknown
      for (size_t i = 0; i < w.size();) {
        size_t len = std::min(std::max<size_t>(1, unicode::SeqLen(static_cast<unsigned char>(w[i]))),
                              w.size() - i);
        absl::string_view ch = w.substr(i, len);
        i += len;
        auto it = vocab.find(ch);
        if (it != vocab.end()) {
          if (unk) {
            add(unk->first, unk->second);
            unk.reset();
          }
          add(it->second, static_cast<uint32_t>(len));
          continue;
        }
        if (byte_fallback) {
          bool all = true;
          for (unsigned char c : ch) all = all && fallback_ids[c] >= 0;
          if (all) {
            if (unk) {
              add(unk->first, unk->second);
              unk.reset();
            }
            for (unsigned char c : ch) add(fallback_ids[c], 1);
            continue;
          }
        }
        if (unk_id) {
          if (unk && fuse_unk) {
            unk->second += static_cast<uint32_t>(len);
          } else {
            if (unk) add(unk->first, unk->second);
            unk = std::make_pair(*unk_id, static_cast<uint32_t>(len));
          }
        }
      }
      if (unk) add(unk->first, unk->second);
    }
    // Merge by rank, leftmost first on ties (huggingface/tokenizers word.rs merge_all).
    struct Merge {
      int32_t rank;
      int32_t pos;
      int32_t new_id;
      bool operator>(const Merge& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
    };
    std::priority_queue<Merge, std::vector<Merge>, std::greater<Merge>> queue;
    for (size_t i = 0; i + 1 < sym.size(); ++i) {
      auto it = merges.find(Key(sym[i].id, sym[i + 1].id));
      if (it != merges.end()) queue.push({it->second.first, static_cast<int32_t>(i), it->second.second});
    }
    while (!queue.empty()) {
      Merge top = queue.top();
      queue.pop();
      Sym& cur = sym[top.pos];
      if (cur.len == 0 || cur.next < 0) continue;
      Sym& right = sym[cur.next];
      auto it = merges.find(Key(cur.id, right.id));
      if (it == merges.end() || it->second.second != top.new_id) continue;
      cur.id = top.new_id;
      cur.len += right.len;
      right.len = 0;
      int32_t after = right.next;
      cur.next = after;
      if (after >= 0) sym[after].prev = top.pos;
      if (cur.prev >= 0) {
        auto p = merges.find(Key(sym[cur.prev].id, cur.id));
        if (p != merges.end()) queue.push({p->second.first, cur.prev, p->second.second});
      }
      if (after >= 0) {
        auto n = merges.find(Key(cur.id, sym[after].id));
        if (n != merges.end()) queue.push({n->second.first, top.pos, n->second.second});
      }
    }
    for (int32_t i = sym.empty() ? -1 : 0; i >= 0; i = sym[i].next) {
      out->ids.push_back(sym[i].id);
      out->lens.push_back(sym[i].len);
    }
  }

  // Cached per thread (no locks on the hot path); bounded so long runs do not grow memory.
  const CachedWord& EncodeCached(absl::string_view w, CachedWord* scratch) const {
    if (w.size() > 128) {
      EncodeWord(w, scratch);
      return *scratch;
    }
    thread_local absl::flat_hash_map<uint64_t, absl::flat_hash_map<std::string, CachedWord>> caches;
    auto& cache = caches[serial];
    auto it = cache.find(w);
    if (it != cache.end()) return it->second;
    if (cache.size() > 100000) cache.clear();
    CachedWord word;
    EncodeWord(w, &word);
    return cache.emplace(std::string(w), std::move(word)).first->second;
  }
};

absl::Status ParseBpe(const json& m, const std::string& source, bool byte_level, BpeModel* model) {
  std::string type = m.value("type", "BPE");
  if (type != "BPE") {
    return Unsupported(source, "model", type, "BPE");
  }
  if (!m.contains("vocab") || !m["vocab"].is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": model.vocab must be an object of token -> id"));
  }
  if (m.contains("continuing_subword_prefix") && m["continuing_subword_prefix"].is_string() &&
      !m["continuing_subword_prefix"].get<std::string>().empty()) {
    return absl::UnimplementedError(absl::StrCat(source, ": BPE continuing_subword_prefix is not supported"));
  }
  if (m.contains("end_of_word_suffix") && m["end_of_word_suffix"].is_string() &&
      !m["end_of_word_suffix"].get<std::string>().empty()) {
    return absl::UnimplementedError(absl::StrCat(source, ": BPE end_of_word_suffix is not supported"));
  }
  model->byte_level = byte_level;
  model->byte_fallback = m.value("byte_fallback", false);
  model->fuse_unk = m.value("fuse_unk", false);
  model->ignore_merges = m.value("ignore_merges", false);
  const json& vocab = m["vocab"];
  int32_t max_id = -1;
  for (auto it = vocab.begin(); it != vocab.end(); ++it) max_id = std::max(max_id, it.value().get<int32_t>());
  model->id_to_token.assign(max_id + 1, "");
  model->vocab.reserve(vocab.size());
  std::string raw;
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    int32_t id = it.value().get<int32_t>();
    const std::string& tok = it.key();
    model->id_to_token[id] = tok;
    if (byte_level && unicode::ByteLevelToBytes(tok, &raw)) model->vocab[raw] = id;
    else model->vocab[tok] = id;
  }
  model->byte_ids.fill(-1);
  model->fallback_ids.fill(-1);
  for (int b = 0; b < 256; ++b) {
    if (byte_level) {
      auto it = model->vocab.find(std::string(1, static_cast<char>(b)));
      if (it != model->vocab.end()) model->byte_ids[b] = it->second;
    }
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    auto it = vocab.find(name);
    if (it != vocab.end()) model->fallback_ids[b] = it.value().get<int32_t>();
  }
  if (byte_level) {
    for (int b = 0; b < 256; ++b) {
      if (model->byte_ids[b] < 0) {
        return absl::InvalidArgumentError(absl::StrCat(
            source, ": byte-level vocabulary lacks the token for byte ", b, "; the file is incomplete"));
      }
    }
  }
  if (m.contains("unk_token") && m["unk_token"].is_string()) {
    auto it = vocab.find(m["unk_token"].get<std::string>());
    if (it != vocab.end()) model->unk_id = it.value().get<int32_t>();
  }
  const json& merges = m.value("merges", json::array());
  model->merges.reserve(merges.size());
  std::string a, b;
  int32_t rank = 0;
  for (const auto& mg : merges) {
    if (mg.is_string()) {
      const std::string& s = mg.get_ref<const std::string&>();
      size_t sp = s.find(' ', 1);  // the first piece may itself start with a space-like char
      if (sp == std::string::npos) {
        return absl::InvalidArgumentError(absl::StrCat(source, ": merge ", rank, " '", s, "' is not 'a b'"));
      }
      a = s.substr(0, sp);
      b = s.substr(sp + 1);
    } else if (mg.is_array() && mg.size() == 2) {
      a = mg[0].get<std::string>();
      b = mg[1].get<std::string>();
    } else {
      return absl::InvalidArgumentError(absl::StrCat(source, ": merge ", rank, " must be \"a b\" or [a, b]"));
    }
    auto ia = vocab.find(a), ib = vocab.find(b), ic = vocab.find(a + b);
    if (ia == vocab.end() || ib == vocab.end() || ic == vocab.end()) {
      return absl::InvalidArgumentError(absl::StrCat(source, ": merge ", rank, " (", a, " ", b,
                                                     ") uses a token missing from the vocabulary"));
    }
    model->merges.emplace(BpeModel::Key(ia.value().get<int32_t>(), ib.value().get<int32_t>()),
                          std::make_pair(rank, ic.value().get<int32_t>()));
    ++rank;
  }
  return absl::OkStatus();
}

// ----------------------------------------------------------------------------------------------
// Added tokens, matched leftmost-longest before the model runs (Aho-Corasick in Rust; a byte trie
// here, which gives the same matches).
struct AddedToken {
  std::string content;
  int32_t id = 0;
  bool special = false, lstrip = false, rstrip = false, normalized = false, single_word = false;
};

class AddedMatcher {
 public:
  void Add(const AddedToken* tok) {
    if (tok->content.empty()) return;
    if (nodes_.empty()) nodes_.emplace_back();
    int32_t n = 0;
    for (unsigned char c : tok->content) {
      auto it = nodes_[n].next.find(c);
      if (it == nodes_[n].next.end()) {
        nodes_.emplace_back();
        int32_t child = static_cast<int32_t>(nodes_.size() - 1);
        nodes_[n].next.emplace(c, child);
        n = child;
      } else {
        n = it->second;
      }
    }
    nodes_[n].token = tok;
    first_[static_cast<unsigned char>(tok->content[0])] = true;
  }
  bool empty() const { return nodes_.empty(); }

  struct Match {
    size_t begin, end;
    const AddedToken* token;
  };
  std::vector<Match> FindAll(absl::string_view s) const {
    std::vector<Match> out;
    if (nodes_.empty()) return out;
    for (size_t i = 0; i < s.size();) {
      if (!first_[static_cast<unsigned char>(s[i])]) {
        ++i;
        continue;
      }
      int32_t n = 0;
      const AddedToken* best = nullptr;
      size_t best_end = 0;
      for (size_t j = i; j < s.size(); ++j) {
        auto it = nodes_[n].next.find(static_cast<unsigned char>(s[j]));
        if (it == nodes_[n].next.end()) break;
        n = it->second;
        if (nodes_[n].token) {
          best = nodes_[n].token;
          best_end = j + 1;
        }
      }
      if (best && (!best->single_word || SingleWordOk(s, i, best_end))) {
        out.push_back({i, best_end, best});
        i = best_end;
      } else {
        ++i;
      }
    }
    return out;
  }

 private:
  static bool SingleWordOk(absl::string_view s, size_t b, size_t e) {
    if (b > 0) {
      size_t p = b - 1;
      while (p > 0 && (static_cast<unsigned char>(s[p]) & 0xC0) == 0x80) --p;
      size_t q = p;
      if (unicode::IsAlnum(unicode::DecodeOne(s, &q))) return false;
    }
    if (e < s.size()) {
      size_t q = e;
      if (unicode::IsAlnum(unicode::DecodeOne(s, &q))) return false;
    }
    return true;
  }
  struct Node {
    absl::flat_hash_map<unsigned char, int32_t> next;
    const AddedToken* token = nullptr;
  };
  std::vector<Node> nodes_;
  std::array<bool, 256> first_{};
};

// ----------------------------------------------------------------------------------------------
class HfBackend final : public TokenizerBackend {
 public:
  std::string source;
  BpeModel model;
  std::optional<Normalizer> normalizer;
  std::optional<PreTokenizer> pre_tokenizer;
  std::optional<Decoder> decoder;
  std::vector<int32_t> prefix, suffix;  // post-processor ids around a single sequence
  std::vector<std::unique_ptr<AddedToken>> added;
  absl::flat_hash_map<std::string, int32_t> added_by_content;
  absl::flat_hash_map<int32_t, const AddedToken*> added_by_id;
  AddedMatcher raw_matcher, normalized_matcher;

  void Encode(absl::string_view input, bool add_special, std::vector<int32_t>* ids,
              std::vector<TokenOffset>* offsets) const override {
    std::string repaired;
    absl::string_view text = input;
    if (!unicode::IsValid(text)) {  // the pipeline (and PCRE2 in UTF mode) needs valid UTF-8
      repaired = unicode::LossyPerByte(text);
      text = repaired;
    }
    auto emit = [&](int32_t id, TokenOffset off) {
      ids->push_back(id);
      if (offsets) offsets->push_back(off);
    };
    if (add_special) {
      for (int32_t id : prefix) emit(id, {0, 0});
    }
    bool first = true;
    size_t last = 0;
    auto run = [&](size_t b, size_t e) {
      if (e > b) EncodeSegment(text, b, e, first, ids, offsets);
      first = false;
    };
    for (const auto& m : raw_matcher.FindAll(text)) {
      auto [b, e] = Widen(text, m.begin, m.end, *m.token, last);
      run(last, b);
      emit(m.token->id, {static_cast<uint32_t>(b), static_cast<uint32_t>(e)});
      last = e;
    }
    run(last, text.size());
    if (add_special) {
      uint32_t end = static_cast<uint32_t>(text.size());
      for (int32_t id : suffix) emit(id, {end, end});
    }
  }

  // lstrip/rstrip widen a match over the whitespace around it.
  static std::pair<size_t, size_t> Widen(absl::string_view s, size_t b, size_t e, const AddedToken& t,
                                         size_t floor) {
    if (t.lstrip) {
      while (b > floor) {
        size_t p = b - 1;
        while (p > floor && (static_cast<unsigned char>(s[p]) & 0xC0) == 0x80) --p;
        size_t q = p;
        if (!unicode::IsWhitespace(unicode::DecodeOne(s, &q))) break;
        b = p;
      }
    }
    if (t.rstrip) {
      while (e < s.size()) {
        size_t q = e;
        if (!unicode::IsWhitespace(unicode::DecodeOne(s, &q))) break;
        e = q;
      }
    }
    return {b, e};
  }

  void EncodeSegment(absl::string_view text, size_t b, size_t e, bool first, std::vector<int32_t>* ids,
                     std::vector<TokenOffset>* offsets) const {
    NormStr n;
    n.s.assign(text.data() + b, e - b);
    n.base = static_cast<uint32_t>(b);
    n.track = offsets != nullptr;
    if (normalizer) normalizer->Apply(&n);
    if (normalized_matcher.empty()) {
      EncodeNormalized(std::move(n), first, ids, offsets);
      return;
    }
    size_t last = 0;
    bool seg_first = first;
    for (const auto& m : normalized_matcher.FindAll(n.s)) {
      auto [mb, me] = Widen(n.s, m.begin, m.end, *m.token, last);
      if (mb > last) EncodeNormalized(n.Sub(last, mb), seg_first, ids, offsets);
      seg_first = false;
      ids->push_back(m.token->id);
      if (offsets) offsets->push_back(n.Range(mb, me));
      last = me;
    }
    if (last < n.s.size()) EncodeNormalized(n.Sub(last, n.s.size()), seg_first, ids, offsets);
  }

  void EncodeNormalized(NormStr n, bool first, std::vector<int32_t>* ids,
                        std::vector<TokenOffset>* offsets) const {
    std::vector<NormStr> pieces;
    pieces.push_back(std::move(n));
    if (pre_tokenizer) pre_tokenizer->Apply(&pieces, first);
    CachedWord scratch;
    for (const NormStr& p : pieces) {
      const CachedWord& w = model.EncodeCached(p.s, &scratch);
      ids->insert(ids->end(), w.ids.begin(), w.ids.end());
      if (offsets) {
        size_t pos = 0;
        for (uint32_t len : w.lens) {
          offsets->push_back(p.Range(pos, pos + len));
          pos += len;
        }
      }
    }
  }

  std::string Decode(const std::vector<int32_t>& ids, bool skip_special) const override {
    std::vector<std::string> toks;
    toks.reserve(ids.size());
    for (int32_t id : ids) {
      auto a = added_by_id.find(id);
      if (a != added_by_id.end()) {
        if (skip_special && a->second->special) continue;
        toks.push_back(a->second->content);
        continue;
      }
      if (id >= 0 && static_cast<size_t>(id) < model.id_to_token.size() && !model.id_to_token[id].empty()) {
        toks.push_back(model.id_to_token[id]);
      }
    }
    if (!decoder) return absl::StrJoin(toks, " ");
    decoder->Apply(&toks);
    return absl::StrJoin(toks, "");
  }

  std::optional<std::string> IdToToken(int32_t id) const override {
    auto a = added_by_id.find(id);
    if (a != added_by_id.end()) return a->second->content;
    if (id >= 0 && static_cast<size_t>(id) < model.id_to_token.size() && !model.id_to_token[id].empty()) {
      return model.id_to_token[id];
    }
    return std::nullopt;
  }
  std::optional<int32_t> TokenToId(absl::string_view token) const override {
    auto a = added_by_content.find(token);
    if (a != added_by_content.end()) return a->second;
    if (model.byte_level) {
      std::string raw;
      if (unicode::ByteLevelToBytes(token, &raw)) {
        auto it = model.vocab.find(raw);
        if (it != model.vocab.end()) return it->second;
      }
    }
    auto it = model.vocab.find(token);
    if (it != model.vocab.end()) return it->second;
    return std::nullopt;
  }
  int32_t VocabSize() const override {
    int32_t n = static_cast<int32_t>(model.id_to_token.size());
    for (const auto& a : added) n = std::max(n, a->id + 1);
    return n;
  }
  bool IsSpecial(int32_t id) const override {
    auto a = added_by_id.find(id);
    return a != added_by_id.end() && a->second->special;
  }
  std::vector<int32_t> SpecialPrefix() const override { return prefix; }
  std::vector<int32_t> SpecialSuffix() const override { return suffix; }
};

absl::Status ParsePostProcessor(const json& j, const std::string& source, HfBackend* b) {
  static const char kSupported[] = "TemplateProcessing, ByteLevel, Sequence";
  std::string type = j.value("type", "");
  if (type == "ByteLevel") return absl::OkStatus();  // only trims offsets
  if (type == "Sequence") {
    for (const auto& c : j.value("processors", json::array())) RETURN_IF_ERROR(ParsePostProcessor(c, source, b));
    return absl::OkStatus();
  }
  if (type != "TemplateProcessing") return Unsupported(source, "post_processor", type, kSupported);
  const json& specials = j.value("special_tokens", json::object());
  bool seen_sequence = false;
  for (const auto& piece : j.value("single", json::array())) {
    if (piece.contains("Sequence")) {
      seen_sequence = true;
      continue;
    }
    if (!piece.contains("SpecialToken")) {
      return absl::InvalidArgumentError(absl::StrCat(source, ": TemplateProcessing piece must be Sequence or SpecialToken"));
    }
    std::string name = piece["SpecialToken"].value("id", "");
    if (!specials.contains(name)) {
      return absl::InvalidArgumentError(
          absl::StrCat(source, ": TemplateProcessing uses special token '", name, "' missing from special_tokens"));
    }
    for (const auto& id : specials[name].value("ids", json::array())) {
      (seen_sequence ? b->suffix : b->prefix).push_back(id.get<int32_t>());
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<TokenizerBackend>> MakeHfBackend(const json& j, const std::string& source) {
  auto b = std::make_unique<HfBackend>();
  b->source = source;
  try {
    if (!j.is_object() || !j.contains("model")) {
      return absl::InvalidArgumentError(absl::StrCat(source, ": not a tokenizer.json (no \"model\" object)"));
    }
    if (j.contains("normalizer") && !j["normalizer"].is_null()) {
      ASSIGN_OR_RETURN(b->normalizer, ParseNormalizer(j["normalizer"], source));
    }
    if (j.contains("pre_tokenizer") && !j["pre_tokenizer"].is_null()) {
      ASSIGN_OR_RETURN(b->pre_tokenizer, ParsePreTokenizer(j["pre_tokenizer"], source));
    }
    if (j.contains("decoder") && !j["decoder"].is_null()) {
      ASSIGN_OR_RETURN(b->decoder, ParseDecoder(j["decoder"], source));
    }
    if (j.contains("post_processor") && !j["post_processor"].is_null()) {
      RETURN_IF_ERROR(ParsePostProcessor(j["post_processor"], source, b.get()));
    }
    bool byte_level = b->pre_tokenizer && b->pre_tokenizer->HasByteLevel();
    RETURN_IF_ERROR(ParseBpe(j["model"], source, byte_level, &b->model));
    for (const auto& a : j.value("added_tokens", json::array())) {
      auto t = std::make_unique<AddedToken>();
      t->content = a.value("content", "");
      t->id = a.value("id", -1);
      t->special = a.value("special", false);
      t->lstrip = a.value("lstrip", false);
      t->rstrip = a.value("rstrip", false);
      t->normalized = a.value("normalized", !t->special);
      t->single_word = a.value("single_word", false);
      if (t->content.empty() || t->id < 0) {
        return absl::InvalidArgumentError(absl::StrCat(source, ": added token needs content and id"));
      }
      b->added_by_content[t->content] = t->id;
      b->added_by_id[t->id] = t.get();
      b->added.push_back(std::move(t));
    }
    for (const auto& t : b->added) {
      // Without a normalizer the normalized text is the raw text: match everything in one pass.
      if (t->normalized && b->normalizer) b->normalized_matcher.Add(t.get());
      else b->raw_matcher.Add(t.get());
    }
  } catch (const json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": malformed tokenizer.json: ", e.what()));
  }
  return std::unique_ptr<TokenizerBackend>(std::move(b));
}

absl::StatusOr<std::unique_ptr<TokenizerBackend>> MakeGpt2Backend(const std::string& vocab_path,
                                                                  const std::string& merges_path) {
  std::ifstream vf(vocab_path);
  if (!vf) return absl::NotFoundError(absl::StrCat("cannot open ", vocab_path));
  json vocab = json::parse(vf, nullptr, false);
  if (vocab.is_discarded() || !vocab.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(vocab_path, ": expected a JSON object of token -> id"));
  }
  std::ifstream mf(merges_path);
  if (!mf) return absl::NotFoundError(absl::StrCat("cannot open ", merges_path));
  json merges = json::array();
  std::string line;
  while (std::getline(mf, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || absl::StartsWith(line, "#version")) continue;
    merges.push_back(line);
  }
  json tok = {
      {"normalizer", nullptr},
      {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
      {"post_processor", {{"type", "ByteLevel"}}},
      {"decoder", {{"type", "ByteLevel"}}},
      {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", merges}}},
      {"added_tokens", json::array()}};
  if (vocab.contains("<|endoftext|>")) {
    tok["added_tokens"].push_back({{"id", vocab["<|endoftext|>"]}, {"content", "<|endoftext|>"},
                                   {"special", true}, {"normalized", true}});
  }
  return MakeHfBackend(tok, vocab_path);
}

}  // namespace align::engine
