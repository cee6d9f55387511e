// A Jinja2 interpreter for the subset chat templates use, with Python/Jinja2 semantics where
// templates can observe them (truthiness, str() of values, string methods, loop scoping, Undefined).
// Why hand-written: no C++ Jinja2 library is packaged for Debian 12 (see docs/tokenizers.md).
// Internally errors are thrown as JinjaError and turned into absl::Status at the two entry points.
#include "worker/engine/tokenizer/jinja.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <ctime>
#include <functional>
#include <map>
#include <optional>
#include <cstring>
#include <sstream>

#include <utf8proc.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "worker/engine/tokenizer/unicode_util.h"

namespace align::engine::jinja {

struct JinjaError {
  std::string message;
  int line = 0, col = 0;
  bool raised = false;  // from raise_exception(): the message is the template's own
};

[[noreturn]] void Fail(const std::string& msg, int line = 0, int col = 0) { throw JinjaError{msg, line, col, false}; }

// ------------------------------------------------------------------------------------------------
// Values
struct Value;
using Array = std::vector<Value>;
struct Object;
struct Func;
struct Node;

struct Value {
  enum class T { kUndefined, kNone, kBool, kInt, kFloat, kStr, kArray, kObject, kNamespace, kFunc };
  T t = T::kUndefined;
  bool b = false;
  int64_t i = 0;
  double f = 0;
  std::string s;  // string value, or the name of an undefined value (for errors)
  std::shared_ptr<Array> a;
  std::shared_ptr<Object> o;
  std::shared_ptr<Func> fn;

  static Value Undef(std::string hint = "") {
    Value v;
    v.s = std::move(hint);
    return v;
  }
  static Value None() {
    Value v;
    v.t = T::kNone;
    return v;
  }
  static Value Bool(bool x) {
    Value v;
    v.t = T::kBool;
    v.b = x;
    return v;
  }
  static Value Int(int64_t x) {
    Value v;
    v.t = T::kInt;
    v.i = x;
    return v;
  }
  static Value Float(double x) {
    Value v;
    v.t = T::kFloat;
    v.f = x;
    return v;
  }
  static Value Str(std::string x) {
    Value v;
    v.t = T::kStr;
    v.s = std::move(x);
    return v;
  }
  static Value List(Array x) {
    Value v;
    v.t = T::kArray;
    v.a = std::make_shared<Array>(std::move(x));
    return v;
  }
  static Value Dict(std::shared_ptr<Object> o);
  bool undefined() const { return t == T::kUndefined; }
  bool none() const { return t == T::kNone; }
  bool is_str() const { return t == T::kStr; }
  bool is_num() const { return t == T::kInt || t == T::kFloat || t == T::kBool; }
  bool is_mapping() const { return t == T::kObject || t == T::kNamespace; }
  double num() const { return t == T::kFloat ? f : t == T::kBool ? (b ? 1 : 0) : static_cast<double>(i); }
};

struct Object {
  std::vector<std::pair<std::string, Value>> items;
  const Value* Find(const std::string& k) const {
    for (const auto& kv : items) {
      if (kv.first == k) return &kv.second;
    }
    return nullptr;
  }
  void Set(const std::string& k, Value v) {
    for (auto& kv : items) {
      if (kv.first == k) {
        kv.second = std::move(v);
        return;
      }
    }
    items.emplace_back(k, std::move(v));
  }
};

Value Value::Dict(std::shared_ptr<Object> o) {
  Value v;
  v.t = T::kObject;
  v.o = std::move(o);
  return v;
}

struct Args {
  std::vector<Value> pos;
  std::vector<std::pair<std::string, Value>> kw;
  const Value* Get(size_t index, const char* name) const {
    for (const auto& [k, v] : kw) {
      if (k == name) return &v;
    }
    return index < pos.size() ? &pos[index] : nullptr;
  }
};

struct Func {
  std::string name;
  std::function<Value(Args&)> call;
};

Value MakeFunc(std::string name, std::function<Value(Args&)> call) {
  Value v;
  v.t = Value::T::kFunc;
  v.fn = std::make_shared<Func>(Func{std::move(name), std::move(call)});
  return v;
}

Value FromJson(const nlohmann::ordered_json& j) {
  switch (j.type()) {
    case nlohmann::ordered_json::value_t::null: return Value::None();
    case nlohmann::ordered_json::value_t::boolean: return Value::Bool(j.get<bool>());
    case nlohmann::ordered_json::value_t::number_integer:
    case nlohmann::ordered_json::value_t::number_unsigned: return Value::Int(j.get<int64_t>());
    case nlohmann::ordered_json::value_t::number_float: return Value::Float(j.get<double>());
    case nlohmann::ordered_json::value_t::string: return Value::Str(j.get<std::string>());
    case nlohmann::ordered_json::value_t::array: {
      Array a;
      for (const auto& e : j) a.push_back(FromJson(e));
      return Value::List(std::move(a));
    }
    case nlohmann::ordered_json::value_t::object: {
      auto o = std::make_shared<Object>();
      for (auto it = j.begin(); it != j.end(); ++it) o->items.emplace_back(it.key(), FromJson(it.value()));
      return Value::Dict(o);
    }
    default: return Value::Undef();
  }
}

bool Truthy(const Value& v) {
  switch (v.t) {
    case Value::T::kUndefined:
    case Value::T::kNone: return false;
    case Value::T::kBool: return v.b;
    case Value::T::kInt: return v.i != 0;
    case Value::T::kFloat: return v.f != 0;
    case Value::T::kStr: return !v.s.empty();
    case Value::T::kArray: return !v.a->empty();
    case Value::T::kObject: return !v.o->items.empty();
    default: return true;
  }
}

std::string FloatRepr(double d) {
  if (std::isnan(d)) return "nan";
  if (std::isinf(d)) return d > 0 ? "inf" : "-inf";
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof(buf), d);
  std::string s(buf, res.ptr);
  if (s.find_first_of(".en") == std::string::npos) s += ".0";
  return s;
}

std::string PyStrRepr(const std::string& s) {
  bool has_single = s.find('\'') != std::string::npos, has_double = s.find('"') != std::string::npos;
  char q = has_single && !has_double ? '"' : '\'';
  std::string out(1, q);
  for (char c : s) {
    switch (c) {
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\\': out += "\\\\"; break;
      default:
        if (c == q) {
          out += '\\';
          out += c;
        } else {
          out += c;
        }
    }
  }
  out += q;
  return out;
}

std::string Repr(const Value& v);

//! Python str(): what {{ x }} prints.
std::string ToStr(const Value& v) {
  switch (v.t) {
    case Value::T::kUndefined: return "";
    case Value::T::kNone: return "None";
    case Value::T::kBool: return v.b ? "True" : "False";
    case Value::T::kInt: return std::to_string(v.i);
    case Value::T::kFloat: return FloatRepr(v.f);
    case Value::T::kStr: return v.s;
    case Value::T::kFunc: return "<function " + v.fn->name + ">";
    case Value::T::kNamespace: return "<Namespace>";
    default: return Repr(v);
  }
}

std::string Repr(const Value& v) {
  switch (v.t) {
    case Value::T::kStr: return PyStrRepr(v.s);
    case Value::T::kArray: {
      std::string out = "[";
      for (size_t k = 0; k < v.a->size(); ++k) out += (k ? ", " : "") + Repr((*v.a)[k]);
      return out + "]";
    }
    case Value::T::kObject: {
      std::string out = "{";
      for (size_t k = 0; k < v.o->items.size(); ++k) {
        out += (k ? ", " : "") + PyStrRepr(v.o->items[k].first) + ": " + Repr(v.o->items[k].second);
      }
      return out + "}";
    }
    default: return ToStr(v);
  }
}

void JsonEscape(const std::string& s, std::string* out) {
  out->push_back('"');
  for (unsigned char c : s) {
    switch (c) {
      case '"': *out += "\\\""; break;
      case '\\': *out += "\\\\"; break;
      case '\n': *out += "\\n"; break;
      case '\r': *out += "\\r"; break;
      case '\t': *out += "\\t"; break;
      case '\b': *out += "\\b"; break;
      case '\f': *out += "\\f"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04x", c);
          *out += buf;
        } else {
          out->push_back(static_cast<char>(c));
        }
    }
  }
  out->push_back('"');
}

//! Python json.dumps(x, ensure_ascii=False, indent=indent) as Hugging Face's tojson filter does.
void ToJson(const Value& v, int indent, int depth, bool sort_keys, std::string* out) {
  auto newline = [&](int d) {
    if (indent < 0) return;
    out->push_back('\n');
    out->append(static_cast<size_t>(indent * d), ' ');
  };
  const char* item_sep = indent < 0 ? ", " : ",";
  switch (v.t) {
    case Value::T::kUndefined:
    case Value::T::kNone: *out += "null"; return;
    case Value::T::kBool: *out += v.b ? "true" : "false"; return;
    case Value::T::kInt: *out += std::to_string(v.i); return;
    case Value::T::kFloat: *out += FloatRepr(v.f); return;
    case Value::T::kStr: JsonEscape(v.s, out); return;
    case Value::T::kArray:
      if (v.a->empty()) {
        *out += "[]";
        return;
      }
      out->push_back('[');
      for (size_t k = 0; k < v.a->size(); ++k) {
        if (k) *out += item_sep;
        newline(depth + 1);
        ToJson((*v.a)[k], indent, depth + 1, sort_keys, out);
      }
      newline(depth);
      out->push_back(']');
      return;
    case Value::T::kObject:
    case Value::T::kNamespace: {
      if (v.o->items.empty()) {
        *out += "{}";
        return;
      }
      std::vector<const std::pair<std::string, Value>*> items;
      for (const auto& kv : v.o->items) items.push_back(&kv);
      if (sort_keys) std::sort(items.begin(), items.end(), [](auto* x, auto* y) { return x->first < y->first; });
      out->push_back('{');
      for (size_t k = 0; k < items.size(); ++k) {
        if (k) *out += item_sep;
        newline(depth + 1);
        JsonEscape(items[k]->first, out);
        *out += ": ";
        ToJson(items[k]->second, indent, depth + 1, sort_keys, out);
      }
      newline(depth);
      out->push_back('}');
      return;
    }
    case Value::T::kFunc: *out += "null"; return;
  }
}

std::u32string ToU32(const std::string& s) {
  std::u32string out;
  for (size_t p = 0; p < s.size();) out.push_back(unicode::DecodeOne(s, &p));
  return out;
}
std::string FromU32(const std::u32string& s) {
  std::string out;
  for (char32_t c : s) unicode::Append(&out, c);
  return out;
}
bool IsAscii(const std::string& s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return static_cast<unsigned char>(c) < 0x80; });
}
int64_t PyLen(const Value& v) {
  switch (v.t) {
    case Value::T::kStr: return IsAscii(v.s) ? static_cast<int64_t>(v.s.size()) : static_cast<int64_t>(ToU32(v.s).size());
    case Value::T::kArray: return static_cast<int64_t>(v.a->size());
    case Value::T::kObject:
    case Value::T::kNamespace: return static_cast<int64_t>(v.o->items.size());
    case Value::T::kUndefined: return 0;
    default: Fail("object of type '" + std::string(v.is_num() ? "int" : "NoneType") + "' has no len()");
  }
}

bool Equal(const Value& x, const Value& y) {
  if (x.is_num() && y.is_num()) return x.num() == y.num();
  if (x.t != y.t) return false;
  switch (x.t) {
    case Value::T::kUndefined:
    case Value::T::kNone: return true;
    case Value::T::kStr: return x.s == y.s;
    case Value::T::kArray:
      if (x.a->size() != y.a->size()) return false;
      for (size_t k = 0; k < x.a->size(); ++k) {
        if (!Equal((*x.a)[k], (*y.a)[k])) return false;
      }
      return true;
    case Value::T::kObject:
      if (x.o->items.size() != y.o->items.size()) return false;
      for (const auto& [k, v] : x.o->items) {
        const Value* other = y.o->Find(k);
        if (!other || !Equal(v, *other)) return false;
      }
      return true;
    default: return x.o == y.o && x.fn == y.fn;
  }
}

int Compare(const Value& x, const Value& y, int line, int col) {
  if (x.is_num() && y.is_num()) return x.num() < y.num() ? -1 : x.num() > y.num() ? 1 : 0;
  if (x.is_str() && y.is_str()) return x.s < y.s ? -1 : x.s > y.s ? 1 : 0;
  if (x.t == Value::T::kArray && y.t == Value::T::kArray) {
    for (size_t k = 0; k < std::min(x.a->size(), y.a->size()); ++k) {
      int c = Compare((*x.a)[k], (*y.a)[k], line, col);
      if (c) return c;
    }
    return x.a->size() < y.a->size() ? -1 : x.a->size() > y.a->size() ? 1 : 0;
  }
  Fail("'<' not supported between these operand types", line, col);
}

std::vector<Value> Iterate(const Value& v, int line, int col) {
  switch (v.t) {
    case Value::T::kUndefined: return {};
    case Value::T::kArray: return *v.a;
    case Value::T::kObject: {
      std::vector<Value> keys;
      for (const auto& kv : v.o->items) keys.push_back(Value::Str(kv.first));
      return keys;
    }
    case Value::T::kStr: {
      std::vector<Value> chars;
      for (size_t p = 0; p < v.s.size();) {
        size_t b = p;
        unicode::DecodeOne(v.s, &p);
        chars.push_back(Value::Str(v.s.substr(b, p - b)));
      }
      return chars;
    }
    default: Fail("value is not iterable", line, col);
  }
}

// ------------------------------------------------------------------------------------------------
// Lexer
enum class Tk { kText, kVarBegin, kVarEnd, kBlockBegin, kBlockEnd, kName, kString, kInt, kFloat, kOp, kEof };

struct Token {
  Tk type;
  std::string text;
  int line = 1, col = 1;
};

class Lexer {
 public:
  explicit Lexer(const std::string& src) : src_(src) {}

  std::vector<Token> Run() {
    size_t pos = 0;
    bool strip_next = false, trim_next = false;
    while (pos < src_.size()) {
      size_t open = FindOpen(pos);
      std::string text = src_.substr(pos, open - pos);
      if (strip_next) {
        size_t k = 0;
        while (k < text.size() && std::isspace(static_cast<unsigned char>(text[k]))) ++k;
        text.erase(0, k);
      } else if (trim_next && !text.empty() && text[0] == '\n') {
        text.erase(0, 1);
      } else if (trim_next && text.size() >= 2 && text[0] == '\r' && text[1] == '\n') {
        text.erase(0, 2);
      }
      strip_next = trim_next = false;
      if (open >= src_.size()) {
        PushText(text, pos);
        break;
      }
      char kind = src_[open + 1];  // '{', '%', '#'
      size_t after = open + 2;
      char mod = after < src_.size() ? src_[after] : 0;
      if (mod == '-') {
        while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.pop_back();
        ++after;
      } else if (kind != '{' && mod != '+') {
        // lstrip_blocks: whitespace from the start of the line up to a block/comment tag.
        size_t k = open;
        while (k > pos && (src_[k - 1] == ' ' || src_[k - 1] == '\t')) --k;
        if (k == 0 || src_[k - 1] == '\n') {
          size_t n = open - k;
          if (n <= text.size()) text.erase(text.size() - n);
        }
      }
      if (mod == '+') ++after;
      PushText(text, pos);
      if (kind == '#') {
        size_t close = src_.find("#}", after);
        if (close == std::string::npos) Error(open, "unterminated comment");
        if (close > after && src_[close - 1] == '-') strip_next = true;
        else trim_next = true;
        pos = close + 2;
        continue;
      }
      Position(open);
      tokens_.push_back({kind == '{' ? Tk::kVarBegin : Tk::kBlockBegin, "", line_, col_});
      pos = LexTag(after, kind == '{' ? '}' : '%', &strip_next, &trim_next);
      if (kind == '{') trim_next = false;  // trim_blocks applies to block tags only
      if (kind == '%' && IsRawBlock()) pos = LexRaw(pos, &strip_next, &trim_next);
    }
    Position(src_.size());
    tokens_.push_back({Tk::kEof, "", line_, col_});
    return std::move(tokens_);
  }

 private:
  size_t FindOpen(size_t pos) const {
    for (size_t p = src_.find('{', pos); p != std::string::npos; p = src_.find('{', p + 1)) {
      if (p + 1 < src_.size() && (src_[p + 1] == '{' || src_[p + 1] == '%' || src_[p + 1] == '#')) return p;
    }
    return src_.size();
  }
  void PushText(const std::string& text, size_t at) {
    if (text.empty()) return;
    Position(at);
    tokens_.push_back({Tk::kText, text, line_, col_});
  }
  // Line/column of a byte offset (1-based; columns count characters).
  void Position(size_t offset) {
    for (; scan_ < offset && scan_ < src_.size(); ++scan_) {
      unsigned char c = static_cast<unsigned char>(src_[scan_]);
      if (c == '\n') {
        ++line_;
        col_ = 1;
      } else if ((c & 0xC0) != 0x80) {
        ++col_;
      }
    }
  }
  [[noreturn]] void Error(size_t offset, const std::string& msg) {
    Position(offset);
    Fail(msg, line_, col_);
  }
  bool IsRawBlock() const {
    size_t n = tokens_.size();
    return n >= 3 && tokens_[n - 1].type == Tk::kBlockEnd && tokens_[n - 2].type == Tk::kName &&
           tokens_[n - 2].text == "raw" && tokens_[n - 3].type == Tk::kBlockBegin;
  }
  size_t LexRaw(size_t pos, bool* strip_next, bool* trim_next) {
    tokens_.resize(tokens_.size() - 3);
    for (size_t p = src_.find("{%", pos); p != std::string::npos; p = src_.find("{%", p + 2)) {
      size_t q = p + 2;
      if (q < src_.size() && (src_[q] == '-' || src_[q] == '+')) ++q;
      while (q < src_.size() && std::isspace(static_cast<unsigned char>(src_[q]))) ++q;
      if (src_.compare(q, 6, "endraw") != 0) continue;
      size_t close = src_.find("%}", q);
      if (close == std::string::npos) break;
      std::string text = src_.substr(pos, p - pos);
      if (*strip_next) {
        size_t k = 0;
        while (k < text.size() && std::isspace(static_cast<unsigned char>(text[k]))) ++k;
        text.erase(0, k);
      } else if (*trim_next && !text.empty() && text[0] == '\n') {
        text.erase(0, 1);
      }
      if (src_[p + 2] == '-') {
        while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.pop_back();
      }
      PushText(text, pos);
      *strip_next = close > 0 && src_[close - 1] == '-';
      *trim_next = !*strip_next;
      return close + 2;
    }
    Error(pos, "unterminated raw block (missing {% endraw %})");
  }

  size_t LexTag(size_t pos, char close, bool* strip_next, bool* trim_next) {
    static const char* kOps[] = {"**", "//", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%", "~", "<", ">",
                                 "=",  "(",  ")",  "[",  "]",  "{",  "}", ".", ",", ":", "|"};
    while (true) {
      while (pos < src_.size() && std::isspace(static_cast<unsigned char>(src_[pos]))) ++pos;
      if (pos >= src_.size()) Error(pos, close == '}' ? "unexpected end of template, expected '}}'"
                                                      : "unexpected end of template, expected '%}'");
      // Closing delimiter, possibly with a whitespace-control modifier.
      for (char m : {'-', '+', '\0'}) {
        size_t q = pos + (m ? 1 : 0);
        if (m && (pos >= src_.size() || src_[pos] != m)) continue;
        if (q + 1 < src_.size() && src_[q] == close && src_[q + 1] == '}') {
          Position(pos);
          tokens_.push_back({close == '}' ? Tk::kVarEnd : Tk::kBlockEnd, "", line_, col_});
          if (m == '-') *strip_next = true;
          else if (m != '+') *trim_next = true;
          return q + 2;
        }
      }
      Position(pos);
      char c = src_[pos];
      if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
        size_t e = pos;
        while (e < src_.size() && (std::isalnum(static_cast<unsigned char>(src_[e])) || src_[e] == '_')) ++e;
        tokens_.push_back({Tk::kName, src_.substr(pos, e - pos), line_, col_});
        pos = e;
      } else if (std::isdigit(static_cast<unsigned char>(c))) {
        size_t e = pos;
        while (e < src_.size() && (std::isdigit(static_cast<unsigned char>(src_[e])) || src_[e] == '_')) ++e;
        bool is_float = false;
        if (e + 1 < src_.size() && src_[e] == '.' && std::isdigit(static_cast<unsigned char>(src_[e + 1]))) {
          is_float = true;
          ++e;
          while (e < src_.size() && std::isdigit(static_cast<unsigned char>(src_[e]))) ++e;
        }
        if (e < src_.size() && (src_[e] == 'e' || src_[e] == 'E')) {
          size_t k = e + 1;
          if (k < src_.size() && (src_[k] == '+' || src_[k] == '-')) ++k;
          if (k < src_.size() && std::isdigit(static_cast<unsigned char>(src_[k]))) {
            is_float = true;
            e = k;
            while (e < src_.size() && std::isdigit(static_cast<unsigned char>(src_[e]))) ++e;
          }
        }
        std::string num = src_.substr(pos, e - pos);
        num.erase(std::remove(num.begin(), num.end(), '_'), num.end());
        tokens_.push_back({is_float ? Tk::kFloat : Tk::kInt, num, line_, col_});
        pos = e;
      } else if (c == '\'' || c == '"') {
        std::string out;
        size_t e = pos + 1;
        while (true) {
          if (e >= src_.size()) Error(pos, "unterminated string literal");
          char d = src_[e];
          if (d == c) break;
          if (d == '\\' && e + 1 < src_.size()) {
            char x = src_[e + 1];
            e += 2;
            switch (x) {
              case 'n': out += '\n'; break;
              case 't': out += '\t'; break;
              case 'r': out += '\r'; break;
              case '0': out += '\0'; break;
              case '\\': out += '\\'; break;
              case '\'': out += '\''; break;
              case '"': out += '"'; break;
              case 'u':
              case 'x': {
                size_t n = x == 'u' ? 4 : 2;
                if (e + n <= src_.size()) {
                  unicode::Append(&out, static_cast<char32_t>(std::stoul(src_.substr(e, n), nullptr, 16)));
                  e += n;
                }
                break;
              }
              case '\n': break;
              default:
                out += '\\';
                out += x;
            }
            continue;
          }
          out += d;
          ++e;
        }
        tokens_.push_back({Tk::kString, out, line_, col_});
        pos = e + 1;
      } else {
        bool matched = false;
        for (const char* op : kOps) {
          size_t n = std::strlen(op);
          if (src_.compare(pos, n, op) == 0) {
            tokens_.push_back({Tk::kOp, op, line_, col_});
            pos += n;
            matched = true;
            break;
          }
        }
        if (!matched) Error(pos, std::string("unexpected character '") + c + "'");
      }
    }
  }

  const std::string& src_;
  std::vector<Token> tokens_;
  size_t scan_ = 0;
  int line_ = 1, col_ = 1;
};

// ------------------------------------------------------------------------------------------------
// AST
struct Node {
  enum class K {
    // expressions
    kLiteral, kName, kAttr, kItem, kSlice, kCall, kFilter, kTest, kNeg, kPos, kNot, kBinary, kAnd, kOr,
    kCond, kList, kTuple, kDict, kCompare,
    // statements
    kText, kOutput, kIf, kFor, kSet, kSetBlock, kMacro, kGeneration, kBreak, kContinue, kFilterBlock
  };
  K k;
  int line = 0, col = 0;
  Value value;                 // literal
  std::string name;            // name, attribute, filter/test name, operator, set target
  std::vector<std::unique_ptr<Node>> kids;  // operands, args, list items, statement bodies
  std::vector<std::string> kw_names;        // keyword arguments (names of the last kids)
  bool negated = false;
  // statements
  std::vector<std::string> targets;  // for/set targets; macro params
  std::vector<std::unique_ptr<Node>> body, else_body;
  std::vector<std::pair<std::unique_ptr<Node>, std::vector<std::unique_ptr<Node>>>> branches;  // if/elif
  std::unique_ptr<Node> a, b, c;  // misc: for iterable/filter; set value; slice bounds
};
using NodePtr = std::unique_ptr<Node>;
using Body = std::vector<NodePtr>;

}  // namespace align::engine::jinja

namespace align::engine::jinja {

struct Program {
  Body body;
  bool has_generation = false;
};

namespace {

class Parser {
 public:
  explicit Parser(std::vector<Token> tokens, Program* program) : t_(std::move(tokens)), program_(program) {}

  Body ParseTemplate() {
    std::string end;
    Body body = ParseBody({}, &end);
    return body;
  }

 private:
  const Token& Peek(size_t ahead = 0) const { return t_[std::min(p_ + ahead, t_.size() - 1)]; }
  const Token& Next() { return t_[std::min(p_++, t_.size() - 1)]; }
  bool IsOp(const char* op, size_t ahead = 0) const { return Peek(ahead).type == Tk::kOp && Peek(ahead).text == op; }
  bool IsName(const char* n, size_t ahead = 0) const { return Peek(ahead).type == Tk::kName && Peek(ahead).text == n; }
  [[noreturn]] void ErrorAt(const Token& t, const std::string& msg) const { Fail(msg, t.line, t.col); }
  std::string Describe(const Token& t) const {
    switch (t.type) {
      case Tk::kEof: return "end of template";
      case Tk::kVarEnd: return "'}}'";
      case Tk::kBlockEnd: return "'%}'";
      case Tk::kString: return "string '" + t.text + "'";
      default: return "'" + t.text + "'";
    }
  }
  void ExpectOp(const char* op) {
    if (!IsOp(op)) ErrorAt(Peek(), std::string("expected '") + op + "', got " + Describe(Peek()));
    ++p_;
  }
  std::string ExpectName() {
    if (Peek().type != Tk::kName) ErrorAt(Peek(), "expected a name, got " + Describe(Peek()));
    return Next().text;
  }
  void ExpectBlockEnd() {
    if (Peek().type != Tk::kBlockEnd) ErrorAt(Peek(), "expected '%}', got " + Describe(Peek()));
    ++p_;
  }
  NodePtr Make(Node::K k, const Token& at) {
    auto n = std::make_unique<Node>();
    n->k = k;
    n->line = at.line;
    n->col = at.col;
    return n;
  }

  // Parses statements until a block tag whose name is in `stops`; leaves that name in *end (the
  // tag's name has been consumed, the rest of the tag has not).
  Body ParseBody(const std::vector<std::string>& stops, std::string* end) {
    Body body;
    while (true) {
      const Token& tok = Peek();
      if (tok.type == Tk::kEof) {
        if (!stops.empty()) {
          ErrorAt(tok, "unexpected end of template; expected {% " + stops.back() + " %}");
        }
        *end = "";
        return body;
      }
      if (tok.type == Tk::kText) {
        auto n = Make(Node::K::kText, tok);
        n->name = tok.text;
        body.push_back(std::move(n));
        ++p_;
        continue;
      }
      if (tok.type == Tk::kVarBegin) {
        ++p_;
        auto n = Make(Node::K::kOutput, tok);
        n->a = ParseExpr();
        if (Peek().type != Tk::kVarEnd) ErrorAt(Peek(), "expected '}}', got " + Describe(Peek()));
        ++p_;
        body.push_back(std::move(n));
        continue;
      }
      if (tok.type != Tk::kBlockBegin) ErrorAt(tok, "unexpected " + Describe(tok));
      ++p_;
      const Token& name_tok = Peek();
      std::string name = ExpectName();
      if (std::find(stops.begin(), stops.end(), name) != stops.end()) {
        *end = name;
        return body;
      }
      body.push_back(ParseStatement(name, name_tok));
    }
  }

  NodePtr ParseStatement(const std::string& name, const Token& at) {
    if (name == "if") {
      auto n = Make(Node::K::kIf, at);
      NodePtr cond = ParseExpr();
      ExpectBlockEnd();
      while (true) {
        std::string end;
        Body body = ParseBody({"elif", "else", "endif"}, &end);
        n->branches.emplace_back(std::move(cond), std::move(body));
        if (end == "elif") {
          cond = ParseExpr();
          ExpectBlockEnd();
          continue;
        }
        if (end == "else") {
          ExpectBlockEnd();
          std::string end2;
          n->else_body = ParseBody({"endif"}, &end2);
        }
        ExpectBlockEnd();
        return n;
      }
    }
    if (name == "for") {
      auto n = Make(Node::K::kFor, at);
      n->targets.push_back(ExpectName());
      while (IsOp(",")) {
        ++p_;
        n->targets.push_back(ExpectName());
      }
      if (!IsName("in")) ErrorAt(Peek(), "expected 'in' in for loop, got " + Describe(Peek()));
      ++p_;
      n->a = ParseExpr(/*allow_cond=*/false);
      if (IsName("if")) {
        ++p_;
        n->b = ParseExpr(false);
      }
      if (IsName("recursive")) ErrorAt(Peek(), "recursive for loops are not supported");
      ExpectBlockEnd();
      std::string end;
      n->body = ParseBody({"else", "endfor"}, &end);
      if (end == "else") {
        ExpectBlockEnd();
        n->else_body = ParseBody({"endfor"}, &end);
      }
      ExpectBlockEnd();
      return n;
    }
    if (name == "set") {
      std::string target = ExpectName();
      if (IsOp(".")) {
        ++p_;
        target += "." + ExpectName();
      }
      std::vector<std::string> targets = {target};
      while (IsOp(",")) {
        ++p_;
        targets.push_back(ExpectName());
      }
      if (Peek().type == Tk::kBlockEnd && targets.size() == 1) {
        ++p_;
        auto n = Make(Node::K::kSetBlock, at);
        n->targets = targets;
        std::string end;
        n->body = ParseBody({"endset"}, &end);
        ExpectBlockEnd();
        return n;
      }
      auto n = Make(Node::K::kSet, at);
      n->targets = targets;
      ExpectOp("=");
      n->a = ParseTupleOrExpr();
      ExpectBlockEnd();
      return n;
    }
    if (name == "macro") {
      auto n = Make(Node::K::kMacro, at);
      n->name = ExpectName();
      ExpectOp("(");
      while (!IsOp(")")) {
        n->targets.push_back(ExpectName());
        if (IsOp("=")) {
          ++p_;
          n->kids.push_back(ParseExpr());
        } else {
          n->kids.push_back(nullptr);
        }
        if (!IsOp(",")) break;
        ++p_;
      }
      ExpectOp(")");
      ExpectBlockEnd();
      std::string end;
      n->body = ParseBody({"endmacro"}, &end);
      ExpectBlockEnd();
      return n;
    }
    if (name == "generation") {
      auto n = Make(Node::K::kGeneration, at);
      program_->has_generation = true;
      ExpectBlockEnd();
      std::string end;
      n->body = ParseBody({"endgeneration"}, &end);
      ExpectBlockEnd();
      return n;
    }
    if (name == "filter") {
      auto n = Make(Node::K::kFilterBlock, at);
      n->name = ExpectName();
      if (IsOp("(")) ParseCallArgs(n.get());
      ExpectBlockEnd();
      std::string end;
      n->body = ParseBody({"endfilter"}, &end);
      ExpectBlockEnd();
      return n;
    }
    if (name == "break" || name == "continue") {
      auto n = Make(name == "break" ? Node::K::kBreak : Node::K::kContinue, at);
      ExpectBlockEnd();
      return n;
    }
    ErrorAt(at, "unknown statement '" + name + "' (supported: if, for, set, macro, generation, filter, break, "
                "continue, raw)");
  }

  // Expressions (Jinja2 precedence).
  NodePtr ParseTupleOrExpr() {
    const Token& at = Peek();
    NodePtr first = ParseExpr();
    if (!IsOp(",")) return first;
    auto t = Make(Node::K::kTuple, at);
    t->kids.push_back(std::move(first));
    while (IsOp(",")) {
      ++p_;
      t->kids.push_back(ParseExpr());
    }
    return t;
  }

  NodePtr ParseExpr(bool allow_cond = true) {
    NodePtr x = ParseOr();
    if (allow_cond && IsName("if")) {
      const Token& at = Next();
      auto n = Make(Node::K::kCond, at);
      n->b = ParseOr();
      n->a = std::move(x);
      if (IsName("else")) {
        ++p_;
        n->c = ParseExpr();
      }
      return n;
    }
    return x;
  }
  NodePtr ParseOr() {
    NodePtr x = ParseAnd();
    while (IsName("or")) {
      auto n = Make(Node::K::kOr, Next());
      n->kids.push_back(std::move(x));
      n->kids.push_back(ParseAnd());
      x = std::move(n);
    }
    return x;
  }
  NodePtr ParseAnd() {
    NodePtr x = ParseNot();
    while (IsName("and")) {
      auto n = Make(Node::K::kAnd, Next());
      n->kids.push_back(std::move(x));
      n->kids.push_back(ParseNot());
      x = std::move(n);
    }
    return x;
  }
  NodePtr ParseNot() {
    if (IsName("not")) {
      auto n = Make(Node::K::kNot, Next());
      n->kids.push_back(ParseNot());
      return n;
    }
    return ParseCompare();
  }
  NodePtr ParseCompare() {
    NodePtr x = ParseMath1();
    while (true) {
      std::string op;
      const Token& at = Peek();
      if (Peek().type == Tk::kOp &&
          (at.text == "==" || at.text == "!=" || at.text == "<" || at.text == "<=" || at.text == ">" || at.text == ">=")) {
        op = at.text;
        ++p_;
      } else if (IsName("in")) {
        op = "in";
        ++p_;
      } else if (IsName("not") && IsName("in", 1)) {
        op = "not in";
        p_ += 2;
      } else {
        return x;
      }
      auto n = Make(Node::K::kCompare, at);
      n->name = op;
      n->kids.push_back(std::move(x));
      n->kids.push_back(ParseMath1());
      x = std::move(n);
    }
  }
  NodePtr ParseMath1() {
    NodePtr x = ParseConcat();
    while (IsOp("+") || IsOp("-")) {
      auto n = Make(Node::K::kBinary, Peek());
      n->name = Next().text;
      n->kids.push_back(std::move(x));
      n->kids.push_back(ParseConcat());
      x = std::move(n);
    }
    return x;
  }
  NodePtr ParseConcat() {
    NodePtr x = ParseMath2();
    while (IsOp("~")) {
      auto n = Make(Node::K::kBinary, Peek());
      n->name = Next().text;
      n->kids.push_back(std::move(x));
      n->kids.push_back(ParseMath2());
      x = std::move(n);
    }
    return x;
  }
  NodePtr ParseMath2() {
    NodePtr x = ParsePow();
    while (IsOp("*") || IsOp("/") || IsOp("//") || IsOp("%")) {
      auto n = Make(Node::K::kBinary, Peek());
      n->name = Next().text;
      n->kids.push_back(std::move(x));
      n->kids.push_back(ParsePow());
      x = std::move(n);
    }
    return x;
  }
  NodePtr ParsePow() {
    NodePtr x = ParseUnary();
    while (IsOp("**")) {
      auto n = Make(Node::K::kBinary, Peek());
      n->name = Next().text;
      n->kids.push_back(std::move(x));
      n->kids.push_back(ParseUnary());
      x = std::move(n);
    }
    return x;
  }
  NodePtr ParseUnary() {
    if (IsOp("-") || IsOp("+")) {
      Node::K kind = IsOp("-") ? Node::K::kNeg : Node::K::kPos;
      auto n = Make(kind, Next());
      n->kids.push_back(ParseUnary());
      return n;
    }
    NodePtr x = ParsePrimary();
    x = ParsePostfix(std::move(x));
    return ParseFilterExpr(std::move(x));
  }
  NodePtr ParseFilterExpr(NodePtr x) {
    while (true) {
      if (IsOp("|")) {
        auto n = Make(Node::K::kFilter, Next());
        n->name = ExpectName();
        while (IsOp(".")) {  // dotted filter names are not used by templates; keep the last part
          ++p_;
          n->name = ExpectName();
        }
        n->kids.push_back(std::move(x));
        if (IsOp("(")) ParseCallArgs(n.get());
        x = std::move(n);
      } else if (IsName("is")) {
        auto n = Make(Node::K::kTest, Next());
        if (IsName("not")) {
          ++p_;
          n->negated = true;
        }
        n->name = ExpectName();
        n->kids.push_back(std::move(x));
        if (IsOp("(")) {
          ParseCallArgs(n.get());
        } else if (Peek().type == Tk::kString || Peek().type == Tk::kInt || Peek().type == Tk::kFloat ||
                   (Peek().type == Tk::kName && !IsName("and") && !IsName("or") && !IsName("else") &&
                    !IsName("if") && !IsName("is") && !IsName("in") && !IsName("not"))) {
          n->kids.push_back(ParsePostfix(ParsePrimary()));  // `is divisibleby 3`, `is sameas none`
        }
        x = std::move(n);
      } else {
        return x;
      }
    }
  }
  // Parses "(args)" into n->kids (after any already there) and n->kw_names.
  void ParseCallArgs(Node* n) {
    ExpectOp("(");
    while (!IsOp(")")) {
      if (Peek().type == Tk::kName && IsOp("=", 1)) {
        n->kw_names.push_back(Next().text);
        ++p_;
        n->kids.push_back(ParseExpr());
      } else {
        if (!n->kw_names.empty()) ErrorAt(Peek(), "positional argument after keyword argument");
        n->kids.push_back(ParseExpr());
      }
      if (!IsOp(",")) break;
      ++p_;
    }
    ExpectOp(")");
  }
  NodePtr ParsePostfix(NodePtr x) {
    while (true) {
      if (IsOp(".")) {
        const Token& at = Next();
        auto n = Make(Node::K::kAttr, at);
        if (Peek().type == Tk::kInt) {
          n->k = Node::K::kItem;
          auto lit = Make(Node::K::kLiteral, Peek());
          lit->value = Value::Int(std::stoll(Next().text));
          n->kids.push_back(std::move(x));
          n->kids.push_back(std::move(lit));
        } else {
          n->name = ExpectName();
          n->kids.push_back(std::move(x));
        }
        x = std::move(n);
      } else if (IsOp("[")) {
        const Token& at = Next();
        NodePtr start, stop, step;
        bool is_slice = false;
        if (!IsOp(":")) start = ParseExpr();
        if (IsOp(":")) {
          is_slice = true;
          ++p_;
          if (!IsOp(":") && !IsOp("]")) stop = ParseExpr();
          if (IsOp(":")) {
            ++p_;
            if (!IsOp("]")) step = ParseExpr();
          }
        }
        ExpectOp("]");
        auto n = Make(is_slice ? Node::K::kSlice : Node::K::kItem, at);
        n->kids.push_back(std::move(x));
        if (is_slice) {
          n->a = std::move(start);
          n->b = std::move(stop);
          n->c = std::move(step);
        } else {
          if (!start) ErrorAt(at, "empty subscript");
          n->kids.push_back(std::move(start));
        }
        x = std::move(n);
      } else if (IsOp("(")) {
        auto n = Make(Node::K::kCall, Peek());
        n->kids.push_back(std::move(x));
        ParseCallArgs(n.get());
        x = std::move(n);
      } else {
        return x;
      }
    }
  }
  NodePtr ParsePrimary() {
    const Token& tok = Peek();
    switch (tok.type) {
      case Tk::kString: {
        auto n = Make(Node::K::kLiteral, tok);
        std::string s = Next().text;
        while (Peek().type == Tk::kString) s += Next().text;  // adjacent literals concatenate
        n->value = Value::Str(s);
        return n;
      }
      case Tk::kInt: {
        auto n = Make(Node::K::kLiteral, tok);
        n->value = Value::Int(std::stoll(Next().text));
        return n;
      }
      case Tk::kFloat: {
        auto n = Make(Node::K::kLiteral, tok);
        n->value = Value::Float(std::stod(Next().text));
        return n;
      }
      case Tk::kName: {
        std::string name = Next().text;
        auto n = Make(Node::K::kLiteral, tok);
        if (name == "true" || name == "True") n->value = Value::Bool(true);
        else if (name == "false" || name == "False") n->value = Value::Bool(false);
        else if (name == "none" || name == "None") n->value = Value::None();
        else {
          n->k = Node::K::kName;
          n->name = name;
        }
        return n;
      }
      case Tk::kOp:
        if (tok.text == "(") {
          ++p_;
          if (IsOp(")")) {
            ++p_;
            return Make(Node::K::kTuple, tok);
          }
          NodePtr x = ParseExpr();
          if (IsOp(",")) {
            auto t = Make(Node::K::kTuple, tok);
            t->kids.push_back(std::move(x));
            while (IsOp(",")) {
              ++p_;
              if (IsOp(")")) break;
              t->kids.push_back(ParseExpr());
            }
            x = std::move(t);
          }
          ExpectOp(")");
          return x;
        }
        if (tok.text == "[") {
          ++p_;
          auto n = Make(Node::K::kList, tok);
          while (!IsOp("]")) {
            n->kids.push_back(ParseExpr());
            if (!IsOp(",")) break;
            ++p_;
          }
          ExpectOp("]");
          return n;
        }
        if (tok.text == "{") {
          ++p_;
          auto n = Make(Node::K::kDict, tok);
          while (!IsOp("}")) {
            n->kids.push_back(ParseExpr());
            ExpectOp(":");
            n->kids.push_back(ParseExpr());
            if (!IsOp(",")) break;
            ++p_;
          }
          ExpectOp("}");
          return n;
        }
        break;
      default: break;
    }
    ErrorAt(tok, "unexpected " + Describe(tok));
  }

  std::vector<Token> t_;
  size_t p_ = 0;
  Program* program_;
};

// ------------------------------------------------------------------------------------------------
// Evaluator
struct BreakSignal {};
struct ContinueSignal {};

class Renderer {
 public:
  explicit Renderer(const nlohmann::ordered_json& context) {
    frames_.emplace_back();
    auto& globals = frames_.back();
    for (auto it = context.begin(); it != context.end(); ++it) globals[it.key()] = FromJson(it.value());
    globals["raise_exception"] = MakeFunc("raise_exception", [](Args& a) -> Value {
      throw JinjaError{a.pos.empty() ? std::string("raise_exception called") : ToStr(a.pos[0]), 0, 0, true};
    });
    globals["namespace"] = MakeFunc("namespace", [](Args& a) {
      Value v;
      v.t = Value::T::kNamespace;
      v.o = std::make_shared<Object>();
      if (!a.pos.empty() && a.pos[0].t == Value::T::kObject) v.o->items = a.pos[0].o->items;
      for (auto& [k, x] : a.kw) v.o->Set(k, x);
      return v;
    });
    globals["dict"] = MakeFunc("dict", [](Args& a) {
      auto o = std::make_shared<Object>();
      for (auto& [k, x] : a.kw) o->Set(k, x);
      return Value::Dict(o);
    });
    globals["range"] = MakeFunc("range", [](Args& a) {
      int64_t start = 0, stop = 0, step = 1;
      if (a.pos.size() == 1) stop = a.pos[0].i;
      else if (a.pos.size() >= 2) {
        start = a.pos[0].i;
        stop = a.pos[1].i;
        if (a.pos.size() >= 3) step = a.pos[2].i;
      }
      if (step == 0) Fail("range() step must not be zero");
      Array out;
      for (int64_t k = start; step > 0 ? k < stop : k > stop; k += step) {
        out.push_back(Value::Int(k));
        if (out.size() > 1000000) Fail("range() too large");
      }
      return Value::List(std::move(out));
    });
    globals["strftime_now"] = MakeFunc("strftime_now", [](Args& a) {
      std::time_t now = std::time(nullptr);
      std::tm tm{};
      localtime_r(&now, &tm);
      char buf[256];
      std::string fmt = a.pos.empty() ? "%Y-%m-%d" : ToStr(a.pos[0]);
      size_t n = std::strftime(buf, sizeof(buf), fmt.c_str(), &tm);
      return Value::Str(std::string(buf, n));
    });
  }

  RenderResult Run(const Body& body) {
    std::string out;
    out_ = &out;
    Exec(body);
    RenderResult r;
    r.text = std::move(out);
    r.generation_spans = std::move(spans_);
    return r;
  }

 private:
  using Frame = std::map<std::string, Value>;

  void Exec(const Body& body) {
    for (const auto& n : body) ExecOne(*n);
  }

  void ExecOne(const Node& n) {
    switch (n.k) {
      case Node::K::kText: *out_ += n.name; return;
      case Node::K::kOutput: *out_ += ToStr(Eval(*n.a)); return;
      case Node::K::kIf:
        for (const auto& [cond, body] : n.branches) {
          if (Truthy(Eval(*cond))) {
            Exec(body);
            return;
          }
        }
        Exec(n.else_body);
        return;
      case Node::K::kFor: ExecFor(n); return;
      case Node::K::kSet: {
        Value v = Eval(*n.a);
        if (n.targets.size() == 1) {
          Assign(n, n.targets[0], std::move(v));
        } else {
          std::vector<Value> items = Iterate(v, n.line, n.col);
          if (items.size() != n.targets.size()) Fail("wrong number of values to unpack", n.line, n.col);
          for (size_t k = 0; k < items.size(); ++k) Assign(n, n.targets[k], items[k]);
        }
        return;
      }
      case Node::K::kSetBlock: {
        std::string captured;
        std::string* saved = out_;
        out_ = &captured;
        Exec(n.body);
        out_ = saved;
        Assign(n, n.targets[0], Value::Str(captured));
        return;
      }
      case Node::K::kMacro: DefineMacro(n); return;
      case Node::K::kGeneration: {
        size_t begin = out_->size();
        Exec(n.body);
        spans_.push_back({begin, out_->size()});
        return;
      }
      case Node::K::kFilterBlock: {
        std::string captured;
        std::string* saved = out_;
        out_ = &captured;
        Exec(n.body);
        out_ = saved;
        Args args = EvalArgs(n, 0);
        *out_ += ToStr(ApplyFilter(n.name, Value::Str(captured), args, n));
        return;
      }
      case Node::K::kBreak: throw BreakSignal{};
      case Node::K::kContinue: throw ContinueSignal{};
      default: Fail("internal: not a statement", n.line, n.col);
    }
  }

  void Assign(const Node& n, const std::string& target, Value v) {
    size_t dot = target.find('.');
    if (dot == std::string::npos) {
      frames_.back()[target] = std::move(v);
      return;
    }
    Value ns = Lookup(target.substr(0, dot));
    if (ns.t != Value::T::kNamespace) {
      Fail("cannot assign attribute on non-namespace object '" + target.substr(0, dot) + "'", n.line, n.col);
    }
    ns.o->Set(target.substr(dot + 1), std::move(v));
  }

  Value Lookup(const std::string& name) const {
    for (auto it = frames_.rbegin(); it != frames_.rend(); ++it) {
      auto f = it->find(name);
      if (f != it->end()) return f->second;
    }
    return Value::Undef("'" + name + "' is undefined");
  }

  void ExecFor(const Node& n) {
    Value iterable = Eval(*n.a);
    std::vector<Value> items;
    if (iterable.t == Value::T::kObject && n.targets.size() == 2) {
      // `for k, v in d` is not valid Python, but `d.items()` is handled by the method; iterate keys.
      items = Iterate(iterable, n.line, n.col);
    } else {
      items = Iterate(iterable, n.line, n.col);
    }
    if (n.b) {  // loop filter: `for x in xs if cond`
      std::vector<Value> kept;
      for (auto& item : items) {
        frames_.emplace_back();
        Bind(n, item);
        bool keep = Truthy(Eval(*n.b));
        frames_.pop_back();
        if (keep) kept.push_back(std::move(item));
      }
      items = std::move(kept);
    }
    if (items.empty()) {
      Exec(n.else_body);
      return;
    }
    int64_t len = static_cast<int64_t>(items.size());
    for (int64_t k = 0; k < len; ++k) {
      frames_.emplace_back();
      auto loop = std::make_shared<Object>();
      loop->Set("index", Value::Int(k + 1));
      loop->Set("index0", Value::Int(k));
      loop->Set("revindex", Value::Int(len - k));
      loop->Set("revindex0", Value::Int(len - k - 1));
      loop->Set("first", Value::Bool(k == 0));
      loop->Set("last", Value::Bool(k == len - 1));
      loop->Set("length", Value::Int(len));
      loop->Set("previtem", k > 0 ? items[k - 1] : Value::Undef("loop.previtem is undefined"));
      loop->Set("nextitem", k + 1 < len ? items[k + 1] : Value::Undef("loop.nextitem is undefined"));
      loop->Set("cycle", MakeFunc("cycle", [k](Args& a) {
                  return a.pos.empty() ? Value::Undef() : a.pos[static_cast<size_t>(k) % a.pos.size()];
                }));
      Value lv = Value::Dict(loop);
      frames_.back()["loop"] = lv;
      Bind(n, items[k]);
      bool stop = false;
      try {
        Exec(n.body);
      } catch (const BreakSignal&) {
        stop = true;
      } catch (const ContinueSignal&) {
      }
      frames_.pop_back();
      if (stop) break;
    }
  }

  void Bind(const Node& n, const Value& item) {
    if (n.targets.size() == 1) {
      frames_.back()[n.targets[0]] = item;
      return;
    }
    std::vector<Value> parts = Iterate(item, n.line, n.col);
    if (parts.size() != n.targets.size()) Fail("wrong number of values to unpack in for loop", n.line, n.col);
    for (size_t k = 0; k < parts.size(); ++k) frames_.back()[n.targets[k]] = parts[k];
  }

  void DefineMacro(const Node& n) {
    const Node* node = &n;
    Value macro = MakeFunc(n.name, [this, node](Args& a) {
      Frame frame;
      for (size_t k = 0; k < node->targets.size(); ++k) {
        const Value* v = a.Get(k, node->targets[k].c_str());
        if (v) frame[node->targets[k]] = *v;
        else if (node->kids[k]) frame[node->targets[k]] = Eval(*node->kids[k]);
        else frame[node->targets[k]] = Value::Undef("'" + node->targets[k] + "' is undefined");
      }
      // Macros see the globals plus their arguments (Jinja2 scoping), not the caller's locals.
      std::vector<Frame> saved_frames(frames_.begin() + 1, frames_.end());
      frames_.resize(1);
      frames_.push_back(std::move(frame));
      std::string captured;
      std::string* saved_out = out_;
      out_ = &captured;
      try {
        Exec(node->body);
      } catch (...) {
        out_ = saved_out;
        frames_.resize(1);
        frames_.insert(frames_.end(), saved_frames.begin(), saved_frames.end());
        throw;
      }
      out_ = saved_out;
      frames_.resize(1);
      frames_.insert(frames_.end(), saved_frames.begin(), saved_frames.end());
      return Value::Str(captured);
    });
    frames_.back()[n.name] = macro;
  }

  Args EvalArgs(const Node& n, size_t first) {
    Args a;
    size_t nkw = n.kw_names.size();
    size_t npos = n.kids.size() - first - nkw;
    for (size_t k = 0; k < npos; ++k) a.pos.push_back(Eval(*n.kids[first + k]));
    for (size_t k = 0; k < nkw; ++k) a.kw.emplace_back(n.kw_names[k], Eval(*n.kids[first + npos + k]));
    return a;
  }

  [[noreturn]] void UndefinedError(const Value& v, const Node& n) {
    Fail(v.s.empty() ? "value is undefined" : v.s, n.line, n.col);
  }

  Value Eval(const Node& n) {
    switch (n.k) {
      case Node::K::kLiteral: return n.value;
      case Node::K::kName: return Lookup(n.name);
      case Node::K::kAttr: {
        Value obj = Eval(*n.kids[0]);
        if (obj.undefined()) UndefinedError(obj, n);
        return GetAttr(obj, n.name, n);
      }
      case Node::K::kItem: {
        Value obj = Eval(*n.kids[0]);
        if (obj.undefined()) UndefinedError(obj, n);
        Value key = Eval(*n.kids[1]);
        return GetItem(obj, key, n);
      }
      case Node::K::kSlice: return Slice(n);
      case Node::K::kCall: {
        Value callee = Eval(*n.kids[0]);
        if (callee.t != Value::T::kFunc) {
          if (callee.undefined()) UndefinedError(callee, n);
          Fail("value is not callable", n.line, n.col);
        }
        Args a = EvalArgs(n, 1);
        return callee.fn->call(a);
      }
      case Node::K::kFilter: {
        Value x = Eval(*n.kids[0]);
        Args a = EvalArgs(n, 1);
        return ApplyFilter(n.name, std::move(x), a, n);
      }
      case Node::K::kTest: {
        Value x = Eval(*n.kids[0]);
        Args a = EvalArgs(n, 1);
        bool r = ApplyTest(n.name, x, a, n);
        return Value::Bool(n.negated ? !r : r);
      }
      case Node::K::kNeg: {
        Value x = Eval(*n.kids[0]);
        if (x.t == Value::T::kInt) return Value::Int(-x.i);
        if (x.is_num()) return Value::Float(-x.num());
        Fail("bad operand type for unary -", n.line, n.col);
      }
      case Node::K::kPos: return Eval(*n.kids[0]);
      case Node::K::kNot: return Value::Bool(!Truthy(Eval(*n.kids[0])));
      case Node::K::kAnd: {
        Value x = Eval(*n.kids[0]);
        return Truthy(x) ? Eval(*n.kids[1]) : x;
      }
      case Node::K::kOr: {
        Value x = Eval(*n.kids[0]);
        return Truthy(x) ? x : Eval(*n.kids[1]);
      }
      case Node::K::kCond:
        if (Truthy(Eval(*n.b))) return Eval(*n.a);
        return n.c ? Eval(*n.c) : Value::Undef("conditional expression evaluated to undefined");
      case Node::K::kList:
      case Node::K::kTuple: {
        Array items;
        for (const auto& k : n.kids) items.push_back(Eval(*k));
        return Value::List(std::move(items));
      }
      case Node::K::kDict: {
        auto o = std::make_shared<Object>();
        for (size_t k = 0; k + 1 < n.kids.size(); k += 2) o->Set(ToStr(Eval(*n.kids[k])), Eval(*n.kids[k + 1]));
        return Value::Dict(o);
      }
      case Node::K::kCompare: return Value::Bool(CompareOp(n.name, Eval(*n.kids[0]), Eval(*n.kids[1]), n));
      case Node::K::kBinary: return Binary(n.name, Eval(*n.kids[0]), Eval(*n.kids[1]), n);
      default: Fail("internal: not an expression", n.line, n.col);
    }
  }

  bool Contains(const Value& hay, const Value& needle, const Node& n) {
    switch (hay.t) {
      case Value::T::kStr:
        if (!needle.is_str()) Fail("'in <string>' requires string as left operand", n.line, n.col);
        return hay.s.find(needle.s) != std::string::npos;
      case Value::T::kArray:
        return std::any_of(hay.a->begin(), hay.a->end(), [&](const Value& v) { return Equal(v, needle); });
      case Value::T::kObject:
      case Value::T::kNamespace: return needle.is_str() && hay.o->Find(needle.s) != nullptr;
      case Value::T::kUndefined: return false;
      default: Fail("argument of this type is not iterable", n.line, n.col);
    }
  }

  bool CompareOp(const std::string& op, const Value& x, const Value& y, const Node& n) {
    if (op == "==") return Equal(x, y);
    if (op == "!=") return !Equal(x, y);
    if (op == "in") return Contains(y, x, n);
    if (op == "not in") return !Contains(y, x, n);
    int c = Compare(x, y, n.line, n.col);
    if (op == "<") return c < 0;
    if (op == "<=") return c <= 0;
    if (op == ">") return c > 0;
    return c >= 0;
  }

  Value Binary(const std::string& op, const Value& x, const Value& y, const Node& n) {
    if (op == "~") return Value::Str(ToStr(x) + ToStr(y));
    if (x.undefined()) UndefinedError(x, n);
    if (y.undefined()) UndefinedError(y, n);
    if (op == "+") {
      if (x.is_str() && y.is_str()) return Value::Str(x.s + y.s);
      if (x.t == Value::T::kArray && y.t == Value::T::kArray) {
        Array out = *x.a;
        out.insert(out.end(), y.a->begin(), y.a->end());
        return Value::List(std::move(out));
      }
    }
    if (op == "*" && ((x.is_str() && y.t == Value::T::kInt) || (x.t == Value::T::kInt && y.is_str()))) {
      const Value& s = x.is_str() ? x : y;
      int64_t times = x.is_str() ? y.i : x.i;
      std::string out;
      for (int64_t k = 0; k < times; ++k) out += s.s;
      return Value::Str(out);
    }
    if (!x.is_num() || !y.is_num()) {
      Fail("unsupported operand types for " + op + ": '" + TypeName(x) + "' and '" + TypeName(y) + "'", n.line, n.col);
    }
    bool ints = x.t != Value::T::kFloat && y.t != Value::T::kFloat;
    int64_t xi = x.t == Value::T::kBool ? x.b : x.i, yi = y.t == Value::T::kBool ? y.b : y.i;
    if (op == "+") return ints ? Value::Int(xi + yi) : Value::Float(x.num() + y.num());
    if (op == "-") return ints ? Value::Int(xi - yi) : Value::Float(x.num() - y.num());
    if (op == "*") return ints ? Value::Int(xi * yi) : Value::Float(x.num() * y.num());
    if (op == "/") {
      if (y.num() == 0) Fail("division by zero", n.line, n.col);
      return Value::Float(x.num() / y.num());
    }
    if (op == "//") {
      if (y.num() == 0) Fail("integer division or modulo by zero", n.line, n.col);
      if (ints) {
        int64_t q = xi / yi;
        if ((xi % yi != 0) && ((xi < 0) != (yi < 0))) --q;
        return Value::Int(q);
      }
      return Value::Float(std::floor(x.num() / y.num()));
    }
    if (op == "%") {
      if (y.num() == 0) Fail("integer division or modulo by zero", n.line, n.col);
      if (ints) {
        int64_t r = xi % yi;
        if (r != 0 && ((r < 0) != (yi < 0))) r += yi;
        return Value::Int(r);
      }
      double r = std::fmod(x.num(), y.num());
      if (r != 0 && ((r < 0) != (y.num() < 0))) r += y.num();
      return Value::Float(r);
    }
    if (op == "**") {
      if (ints && yi >= 0) {
        int64_t r = 1;
        for (int64_t k = 0; k < yi; ++k) r *= xi;
        return Value::Int(r);
      }
      return Value::Float(std::pow(x.num(), y.num()));
    }
    Fail("unknown operator " + op, n.line, n.col);
  }

  static std::string TypeName(const Value& v) {
    switch (v.t) {
      case Value::T::kUndefined: return "Undefined";
      case Value::T::kNone: return "NoneType";
      case Value::T::kBool: return "bool";
      case Value::T::kInt: return "int";
      case Value::T::kFloat: return "float";
      case Value::T::kStr: return "str";
      case Value::T::kArray: return "list";
      case Value::T::kObject: return "dict";
      case Value::T::kNamespace: return "Namespace";
      case Value::T::kFunc: return "function";
    }
    return "?";
  }

  static int64_t NormIndex(int64_t idx, int64_t len) { return idx < 0 ? idx + len : idx; }

  Value GetItem(const Value& obj, const Value& key, const Node& n) {
    if (obj.is_mapping()) {
      if (key.is_str()) {
        if (const Value* v = obj.o->Find(key.s)) return *v;
        return Value::Undef("'dict object' has no attribute '" + key.s + "'");
      }
      if (key.is_num()) {
        std::string k = ToStr(key);
        if (const Value* v = obj.o->Find(k)) return *v;
      }
      return Value::Undef("'dict object' has no attribute '" + ToStr(key) + "'");
    }
    if (obj.t == Value::T::kArray) {
      if (key.t != Value::T::kInt && key.t != Value::T::kBool) {
        if (key.is_str()) return GetAttr(obj, key.s, n);
        Fail("list indices must be integers", n.line, n.col);
      }
      int64_t len = static_cast<int64_t>(obj.a->size());
      int64_t idx = NormIndex(key.t == Value::T::kBool ? key.b : key.i, len);
      if (idx < 0 || idx >= len) return Value::Undef("list object has no element " + ToStr(key));
      return (*obj.a)[idx];
    }
    if (obj.is_str()) {
      if (key.t != Value::T::kInt) {
        if (key.is_str()) return GetAttr(obj, key.s, n);
        Fail("string indices must be integers", n.line, n.col);
      }
      std::u32string u = ToU32(obj.s);
      int64_t idx = NormIndex(key.i, static_cast<int64_t>(u.size()));
      if (idx < 0 || idx >= static_cast<int64_t>(u.size())) return Value::Undef("string index out of range");
      return Value::Str(FromU32(u.substr(idx, 1)));
    }
    if (obj.none()) Fail("'None' has no attribute '" + ToStr(key) + "'", n.line, n.col);
    return Value::Undef("'" + TypeName(obj) + " object' has no attribute '" + ToStr(key) + "'");
  }

  Value Slice(const Node& n) {
    Value obj = Eval(*n.kids[0]);
    std::optional<int64_t> start, stop;
    int64_t step = 1;
    if (n.a) start = Eval(*n.a).i;
    if (n.b) stop = Eval(*n.b).i;
    if (n.c) step = Eval(*n.c).i;
    if (step == 0) Fail("slice step cannot be zero", n.line, n.col);
    auto indices = [&](int64_t len) {
      std::vector<int64_t> idx;
      int64_t lo, hi;
      if (step > 0) {
        lo = start ? std::clamp(NormIndex(*start, len), int64_t{0}, len) : 0;
        hi = stop ? std::clamp(NormIndex(*stop, len), int64_t{0}, len) : len;
        for (int64_t k = lo; k < hi; k += step) idx.push_back(k);
      } else {
        lo = start ? std::clamp(NormIndex(*start, len), int64_t{-1}, len - 1) : len - 1;
        hi = stop ? std::clamp(NormIndex(*stop, len), int64_t{-1}, len - 1) : -1;
        for (int64_t k = lo; k > hi; k += step) idx.push_back(k);
      }
      return idx;
    };
    if (obj.t == Value::T::kArray) {
      Array out;
      for (int64_t k : indices(static_cast<int64_t>(obj.a->size()))) out.push_back((*obj.a)[k]);
      return Value::List(std::move(out));
    }
    if (obj.is_str()) {
      std::u32string u = ToU32(obj.s), out;
      for (int64_t k : indices(static_cast<int64_t>(u.size()))) out.push_back(u[k]);
      return Value::Str(FromU32(out));
    }
    if (obj.undefined()) UndefinedError(obj, n);
    Fail("object of type '" + TypeName(obj) + "' cannot be sliced", n.line, n.col);
  }

  // ---- attributes and methods
  Value GetAttr(const Value& obj, const std::string& name, const Node& n) {
    if (obj.is_mapping()) {
      if (const Value* v = obj.o->Find(name)) return *v;
      if (obj.t == Value::T::kObject) {
        if (name == "items") {
          return MakeFunc("items", [obj](Args&) {
            Array out;
            for (const auto& [k, v] : obj.o->items) out.push_back(Value::List({Value::Str(k), v}));
            return Value::List(std::move(out));
          });
        }
        if (name == "keys") {
          return MakeFunc("keys", [obj](Args&) {
            Array out;
            for (const auto& kv : obj.o->items) out.push_back(Value::Str(kv.first));
            return Value::List(std::move(out));
          });
        }
        if (name == "values") {
          return MakeFunc("values", [obj](Args&) {
            Array out;
            for (const auto& kv : obj.o->items) out.push_back(kv.second);
            return Value::List(std::move(out));
          });
        }
        if (name == "get") {
          return MakeFunc("get", [obj](Args& a) {
            if (!a.pos.empty()) {
              if (const Value* v = obj.o->Find(ToStr(a.pos[0]))) return *v;
            }
            return a.pos.size() > 1 ? a.pos[1] : Value::None();
          });
        }
      }
      return Value::Undef("'dict object' has no attribute '" + name + "'");
    }
    if (obj.is_str()) return StringMethod(obj, name, n);
    if (obj.t == Value::T::kArray) {
      if (name == "index") {
        return MakeFunc("index", [obj, &n](Args& a) {
          for (size_t k = 0; k < obj.a->size(); ++k) {
            if (!a.pos.empty() && Equal((*obj.a)[k], a.pos[0])) return Value::Int(static_cast<int64_t>(k));
          }
          Fail("value is not in list", n.line, n.col);
        });
      }
      if (name == "count") {
        return MakeFunc("count", [obj](Args& a) {
          int64_t c = 0;
          for (const auto& v : *obj.a) c += !a.pos.empty() && Equal(v, a.pos[0]);
          return Value::Int(c);
        });
      }
      if (name == "append" || name == "pop" || name == "extend" || name == "insert") {
        Fail("lists are immutable in chat templates (Hugging Face renders in an immutable sandbox); use "
             "'list + [item]' instead of ." + name + "()", n.line, n.col);
      }
    }
    if (obj.none()) Fail("'None' has no attribute '" + name + "'", n.line, n.col);
    return Value::Undef("'" + TypeName(obj) + " object' has no attribute '" + name + "'");
  }

  static bool IsPySpace(char32_t c) { return unicode::IsWhitespace(c) || c == 0x1C || c == 0x1D || c == 0x1E || c == 0x1F; }

  static std::string Strip(const std::string& s, const Value* chars, bool left, bool right) {
    std::u32string u = ToU32(s);
    std::u32string set;
    bool ws = chars == nullptr || chars->none() || chars->undefined();
    if (!ws) set = ToU32(ToStr(*chars));
    auto strip_it = [&](char32_t c) { return ws ? IsPySpace(c) : set.find(c) != std::u32string::npos; };
    size_t b = 0, e = u.size();
    if (left) {
      while (b < e && strip_it(u[b])) ++b;
    }
    if (right) {
      while (e > b && strip_it(u[e - 1])) --e;
    }
    return FromU32(u.substr(b, e - b));
  }

  static std::string Lower(const std::string& s) {
    std::string out;
    for (size_t p = 0; p < s.size();) {
      char32_t c = unicode::DecodeOne(s, &p);
      unicode::Append(&out, static_cast<char32_t>(utf8proc_tolower_wrapper(c)));
    }
    return out;
  }
  static std::string Upper(const std::string& s) {
    std::string out;
    for (size_t p = 0; p < s.size();) {
      char32_t c = unicode::DecodeOne(s, &p);
      unicode::Append(&out, static_cast<char32_t>(utf8proc_toupper_wrapper(c)));
    }
    return out;
  }
  static int32_t utf8proc_tolower_wrapper(char32_t c) { return utf8proc_tolower(static_cast<int32_t>(c)); }
  static int32_t utf8proc_toupper_wrapper(char32_t c) { return utf8proc_toupper(static_cast<int32_t>(c)); }

  static std::vector<std::string> PySplit(const std::string& s, const Value* sep, int64_t maxsplit) {
    std::vector<std::string> out;
    if (sep == nullptr || sep->none() || sep->undefined()) {
      std::u32string u = ToU32(s);
      size_t k = 0;
      while (k < u.size()) {
        while (k < u.size() && IsPySpace(u[k])) ++k;
        if (k >= u.size()) break;
        if (maxsplit >= 0 && static_cast<int64_t>(out.size()) == maxsplit) {
          size_t e = u.size();
          while (e > k && IsPySpace(u[e - 1])) --e;
          out.push_back(FromU32(u.substr(k, e - k)));
          break;
        }
        size_t b = k;
        while (k < u.size() && !IsPySpace(u[k])) ++k;
        out.push_back(FromU32(u.substr(b, k - b)));
      }
      return out;
    }
    std::string d = ToStr(*sep);
    if (d.empty()) Fail("empty separator");
    size_t pos = 0;
    while (true) {
      if (maxsplit >= 0 && static_cast<int64_t>(out.size()) == maxsplit) break;
      size_t f = s.find(d, pos);
      if (f == std::string::npos) break;
      out.push_back(s.substr(pos, f - pos));
      pos = f + d.size();
    }
    out.push_back(s.substr(pos));
    return out;
  }

  Value StringMethod(const Value& obj, const std::string& name, const Node& n) {
    std::string s = obj.s;
    auto fn = [&](std::function<Value(Args&)> f) { return MakeFunc(name, std::move(f)); };
    if (name == "strip") return fn([s](Args& a) { return Value::Str(Strip(s, a.Get(0, "chars"), true, true)); });
    if (name == "lstrip") return fn([s](Args& a) { return Value::Str(Strip(s, a.Get(0, "chars"), true, false)); });
    if (name == "rstrip") return fn([s](Args& a) { return Value::Str(Strip(s, a.Get(0, "chars"), false, true)); });
    if (name == "upper") return fn([s](Args&) { return Value::Str(Upper(s)); });
    if (name == "lower") return fn([s](Args&) { return Value::Str(Lower(s)); });
    if (name == "title") return fn([s](Args&) { return Value::Str(Title(s)); });
    if (name == "capitalize") return fn([s](Args&) { return Value::Str(Capitalize(s)); });
    if (name == "startswith" || name == "endswith") {
      bool starts = name == "startswith";
      return fn([s, starts](Args& a) {
        const Value* p = a.Get(0, "prefix");
        if (!p) return Value::Bool(false);
        std::vector<std::string> options;
        if (p->t == Value::T::kArray) {
          for (const auto& v : *p->a) options.push_back(ToStr(v));
        } else {
          options.push_back(ToStr(*p));
        }
        for (const auto& o : options) {
          if (o.size() <= s.size() && (starts ? s.compare(0, o.size(), o) == 0 : s.compare(s.size() - o.size(), o.size(), o) == 0)) {
            return Value::Bool(true);
          }
        }
        return Value::Bool(false);
      });
    }
    if (name == "split" || name == "rsplit") {
      return fn([s](Args& a) {
        const Value* m = a.Get(1, "maxsplit");
        Array out;
        for (auto& part : PySplit(s, a.Get(0, "sep"), m ? m->i : -1)) out.push_back(Value::Str(part));
        return Value::List(std::move(out));
      });
    }
    if (name == "splitlines") {
      return fn([s](Args&) {
        Array out;
        size_t b = 0;
        for (size_t k = 0; k < s.size(); ++k) {
          if (s[k] == '\n' || s[k] == '\r') {
            out.push_back(Value::Str(s.substr(b, k - b)));
            if (s[k] == '\r' && k + 1 < s.size() && s[k + 1] == '\n') ++k;
            b = k + 1;
          }
        }
        if (b < s.size()) out.push_back(Value::Str(s.substr(b)));
        return Value::List(std::move(out));
      });
    }
    if (name == "replace") {
      return fn([s](Args& a) {
        if (a.pos.size() < 2) Fail("replace() takes at least 2 arguments");
        return Value::Str(Replace(s, ToStr(a.pos[0]), ToStr(a.pos[1]), a.pos.size() > 2 ? a.pos[2].i : -1));
      });
    }
    if (name == "find") {
      return fn([s](Args& a) {
        size_t f = a.pos.empty() ? std::string::npos : s.find(ToStr(a.pos[0]));
        if (f == std::string::npos) return Value::Int(-1);
        return Value::Int(static_cast<int64_t>(ToU32(s.substr(0, f)).size()));
      });
    }
    if (name == "count") {
      return fn([s](Args& a) {
        std::string d = a.pos.empty() ? "" : ToStr(a.pos[0]);
        if (d.empty()) return Value::Int(static_cast<int64_t>(ToU32(s).size()) + 1);
        int64_t c = 0;
        for (size_t p = s.find(d); p != std::string::npos; p = s.find(d, p + d.size())) ++c;
        return Value::Int(c);
      });
    }
    if (name == "join") {
      return fn([s](Args& a) {
        std::string out;
        if (a.pos.empty()) return Value::Str(out);
        auto items = Iterate(a.pos[0], 0, 0);
        for (size_t k = 0; k < items.size(); ++k) out += (k ? s : "") + ToStr(items[k]);
        return Value::Str(out);
      });
    }
    if (name == "isdigit" || name == "isalpha" || name == "isspace" || name == "isalnum" || name == "islower" ||
        name == "isupper") {
      std::string which = name;
      return fn([s, which](Args&) {
        if (s.empty()) return Value::Bool(false);
        for (unsigned char c : s) {
          bool ok = which == "isdigit"   ? std::isdigit(c)
                    : which == "isalpha" ? std::isalpha(c)
                    : which == "isspace" ? std::isspace(c)
                    : which == "isalnum" ? std::isalnum(c)
                    : which == "islower" ? !std::isupper(c)
                                         : !std::islower(c);
          if (!ok) return Value::Bool(false);
        }
        return Value::Bool(true);
      });
    }
    if (name == "format") {
      return fn([s](Args& a) {
        std::string out;
        size_t next = 0;
        for (size_t k = 0; k < s.size(); ++k) {
          if (s[k] == '{' && k + 1 < s.size() && s[k + 1] == '}') {
            if (next < a.pos.size()) out += ToStr(a.pos[next++]);
            ++k;
          } else {
            out += s[k];
          }
        }
        return Value::Str(out);
      });
    }
    return Value::Undef("'str object' has no attribute '" + name + "'");
  }

  static std::string Replace(const std::string& s, const std::string& from, const std::string& to, int64_t count) {
    if (from.empty()) return s;
    std::string out;
    size_t pos = 0;
    int64_t done = 0;
    while (count < 0 || done < count) {
      size_t f = s.find(from, pos);
      if (f == std::string::npos) break;
      out += s.substr(pos, f - pos) + to;
      pos = f + from.size();
      ++done;
    }
    return out + s.substr(pos);
  }
  static std::string Capitalize(const std::string& s) {
    if (s.empty()) return s;
    std::u32string u = ToU32(Lower(s));
    std::string first = Upper(FromU32(u.substr(0, 1)));
    return first + FromU32(u.substr(1));
  }
  static std::string Title(const std::string& s) {
    std::string out;
    bool prev_alpha = false;
    for (size_t p = 0; p < s.size();) {
      size_t b = p;
      char32_t c = unicode::DecodeOne(s, &p);
      std::string ch = s.substr(b, p - b);
      bool alpha = unicode::IsAlnum(c) && !(c >= '0' && c <= '9');
      out += alpha ? (prev_alpha ? Lower(ch) : Upper(ch)) : ch;
      prev_alpha = alpha;
    }
    return out;
  }

  // ---- filters and tests
  Value ApplyFilter(const std::string& name, Value x, Args& a, const Node& n) {
    if (name == "trim") {
      if (x.undefined()) return Value::Str("");
      return Value::Str(Strip(ToStr(x), a.Get(0, "chars"), true, true));
    }
    if (name == "length" || name == "count") return Value::Int(PyLen(x));
    if (name == "tojson") {
      const Value* indent = a.Get(0, "indent");
      const Value* sort = a.Get(99, "sort_keys");
      std::string out;
      ToJson(x, indent && indent->t == Value::T::kInt ? static_cast<int>(indent->i) : -1, 0, sort && Truthy(*sort), &out);
      return Value::Str(out);
    }
    if (name == "string") return Value::Str(ToStr(x));
    if (name == "upper") return Value::Str(Upper(ToStr(x)));
    if (name == "lower") return Value::Str(Lower(ToStr(x)));
    if (name == "capitalize") return Value::Str(Capitalize(ToStr(x)));
    if (name == "title") return Value::Str(Title(ToStr(x)));
    if (name == "safe") return x;
    if (name == "e" || name == "escape") {
      std::string out;
      for (char c : ToStr(x)) {
        switch (c) {
          case '&': out += "&amp;"; break;
          case '<': out += "&lt;"; break;
          case '>': out += "&gt;"; break;
          case '"': out += "&#34;"; break;
          case '\'': out += "&#39;"; break;
          default: out += c;
        }
      }
      return Value::Str(out);
    }
    if (name == "default" || name == "d") {
      const Value* dflt = a.Get(0, "default_value");
      const Value* boolean = a.Get(1, "boolean");
      bool use = x.undefined() || (boolean && Truthy(*boolean) && !Truthy(x));
      return use ? (dflt ? *dflt : Value::Str("")) : x;
    }
    if (name == "replace") {
      if (a.pos.size() < 2) Fail("replace filter needs (old, new)", n.line, n.col);
      return Value::Str(Replace(ToStr(x), ToStr(a.pos[0]), ToStr(a.pos[1]), a.pos.size() > 2 ? a.pos[2].i : -1));
    }
    if (name == "join") {
      const Value* sep = a.Get(0, "d");
      const Value* attr = a.Get(1, "attribute");
      std::string d = sep ? ToStr(*sep) : "";
      std::string out;
      auto items = Iterate(x, n.line, n.col);
      for (size_t k = 0; k < items.size(); ++k) {
        Value v = attr ? GetItem(items[k], *attr, n) : items[k];
        out += (k ? d : "") + ToStr(v);
      }
      return Value::Str(out);
    }
    if (name == "first" || name == "last") {
      auto items = Iterate(x, n.line, n.col);
      if (items.empty()) return Value::Undef("no first/last item of an empty sequence");
      return name == "first" ? items.front() : items.back();
    }
    if (name == "list") return Value::List(Iterate(x, n.line, n.col));
    if (name == "reverse") {
      if (x.is_str()) {
        std::u32string u = ToU32(x.s);
        std::reverse(u.begin(), u.end());
        return Value::Str(FromU32(u));
      }
      auto items = Iterate(x, n.line, n.col);
      std::reverse(items.begin(), items.end());
      return Value::List(std::move(items));
    }
    if (name == "int") {
      if (x.t == Value::T::kInt) return x;
      if (x.is_num()) return Value::Int(static_cast<int64_t>(x.num()));
      try {
        return Value::Int(std::stoll(ToStr(x)));
      } catch (...) {
        return Value::Int(a.pos.empty() ? 0 : a.pos[0].i);
      }
    }
    if (name == "float") {
      if (x.is_num()) return Value::Float(x.num());
      try {
        return Value::Float(std::stod(ToStr(x)));
      } catch (...) {
        return Value::Float(0);
      }
    }
    if (name == "abs") return x.t == Value::T::kInt ? Value::Int(std::llabs(x.i)) : Value::Float(std::fabs(x.num()));
    if (name == "round") {
      const Value* prec = a.Get(0, "precision");
      double scale = std::pow(10.0, prec ? prec->num() : 0);
      return Value::Float(std::round(x.num() * scale) / scale);
    }
    if (name == "sum") {
      double total = 0;
      bool ints = true;
      for (const auto& v : Iterate(x, n.line, n.col)) {
        total += v.num();
        ints = ints && v.t != Value::T::kFloat;
      }
      return ints ? Value::Int(static_cast<int64_t>(total)) : Value::Float(total);
    }
    if (name == "min" || name == "max") {
      auto items = Iterate(x, n.line, n.col);
      if (items.empty()) return Value::Undef("empty sequence");
      Value best = items[0];
      for (const auto& v : items) {
        int c = Compare(v, best, n.line, n.col);
        if (name == "min" ? c < 0 : c > 0) best = v;
      }
      return best;
    }
    if (name == "unique") {
      Array out;
      for (const auto& v : Iterate(x, n.line, n.col)) {
        if (std::none_of(out.begin(), out.end(), [&](const Value& o) { return Equal(o, v); })) out.push_back(v);
      }
      return Value::List(std::move(out));
    }
    if (name == "sort" || name == "dictsort") {
      if (name == "dictsort") {
        Array pairs;
        if (x.is_mapping()) {
          for (const auto& [k, v] : x.o->items) pairs.push_back(Value::List({Value::Str(k), v}));
        }
        std::stable_sort(pairs.begin(), pairs.end(),
                         [&](const Value& p, const Value& q) { return Compare((*p.a)[0], (*q.a)[0], n.line, n.col) < 0; });
        return Value::List(std::move(pairs));
      }
      const Value* rev = a.Get(0, "reverse");
      const Value* attr = a.Get(2, "attribute");
      auto items = Iterate(x, n.line, n.col);
      auto key = [&](const Value& v) { return attr ? GetItem(v, *attr, n) : v; };
      std::stable_sort(items.begin(), items.end(),
                       [&](const Value& p, const Value& q) { return Compare(key(p), key(q), n.line, n.col) < 0; });
      if (rev && Truthy(*rev)) std::reverse(items.begin(), items.end());
      return Value::List(std::move(items));
    }
    if (name == "items") {
      Array out;
      if (x.is_mapping()) {
        for (const auto& [k, v] : x.o->items) out.push_back(Value::List({Value::Str(k), v}));
      }
      return Value::List(std::move(out));
    }
    if (name == "map") {
      const Value* attr = a.Get(99, "attribute");
      Array out;
      for (const auto& v : Iterate(x, n.line, n.col)) {
        if (attr) {
          out.push_back(GetItem(v, *attr, n));
        } else if (!a.pos.empty()) {
          Args rest;
          rest.pos.assign(a.pos.begin() + 1, a.pos.end());
          out.push_back(ApplyFilter(ToStr(a.pos[0]), v, rest, n));
        } else {
          out.push_back(v);
        }
      }
      return Value::List(std::move(out));
    }
    if (name == "select" || name == "reject" || name == "selectattr" || name == "rejectattr") {
      bool by_attr = name == "selectattr" || name == "rejectattr";
      bool want = name == "select" || name == "selectattr";
      Array out;
      size_t test_at = by_attr ? 1 : 0;
      for (const auto& v : Iterate(x, n.line, n.col)) {
        Value subject = by_attr ? (a.pos.empty() ? Value::Undef() : GetItem(v, a.pos[0], n)) : v;
        bool r;
        if (a.pos.size() > test_at) {
          Args rest;
          rest.pos.assign(a.pos.begin() + test_at + 1, a.pos.end());
          r = ApplyTest(ToStr(a.pos[test_at]), subject, rest, n);
        } else {
          r = Truthy(subject);
        }
        if (r == want) out.push_back(v);
      }
      return Value::List(std::move(out));
    }
    if (name == "indent") {
      const Value* width = a.Get(0, "width");
      const Value* first = a.Get(1, "first");
      const Value* blank = a.Get(2, "blank");
      std::string pad(width ? static_cast<size_t>(width->i) : 4, ' ');
      std::string s = ToStr(x), out;
      std::vector<std::string> lines;
      size_t b = 0;
      for (size_t k = 0; k <= s.size(); ++k) {
        if (k == s.size() || s[k] == '\n') {
          lines.push_back(s.substr(b, k - b));
          b = k + 1;
        }
      }
      for (size_t k = 0; k < lines.size(); ++k) {
        if (k) out += "\n";
        bool indent_it = (k > 0 || (first && Truthy(*first))) && (!lines[k].empty() || (blank && Truthy(*blank)));
        out += (indent_it ? pad : "") + lines[k];
      }
      return Value::Str(out);
    }
    if (name == "wordcount") return Value::Int(static_cast<int64_t>(PySplit(ToStr(x), nullptr, -1).size()));
    if (name == "format") {
      std::string fmt = ToStr(x), out;
      size_t next = 0;
      for (size_t k = 0; k < fmt.size(); ++k) {
        if (fmt[k] == '%' && k + 1 < fmt.size()) {
          char c = fmt[k + 1];
          if (c == '%') {
            out += '%';
          } else if (next < a.pos.size()) {
            out += ToStr(a.pos[next++]);
          }
          ++k;
        } else {
          out += fmt[k];
        }
      }
      return Value::Str(out);
    }
    Fail("no filter named '" + name + "'", n.line, n.col);
  }

  bool ApplyTest(const std::string& name, const Value& x, Args& a, const Node& n) {
    const Value* arg = a.pos.empty() ? nullptr : &a.pos[0];
    if (name == "defined") return !x.undefined();
    if (name == "undefined") return x.undefined();
    if (name == "none") return x.none();
    if (name == "string") return x.is_str();
    if (name == "number") return x.t == Value::T::kInt || x.t == Value::T::kFloat;
    if (name == "integer") return x.t == Value::T::kInt;
    if (name == "float") return x.t == Value::T::kFloat;
    if (name == "boolean") return x.t == Value::T::kBool;
    if (name == "true") return x.t == Value::T::kBool && x.b;
    if (name == "false") return x.t == Value::T::kBool && !x.b;
    if (name == "mapping") return x.is_mapping();
    if (name == "sequence" || name == "iterable") {
      return x.t == Value::T::kArray || x.is_str() || x.is_mapping();
    }
    if (name == "callable") return x.t == Value::T::kFunc;
    if (name == "even") return x.t == Value::T::kInt && x.i % 2 == 0;
    if (name == "odd") return x.t == Value::T::kInt && x.i % 2 != 0;
    if (name == "divisibleby") return arg && arg->i != 0 && x.i % arg->i == 0;
    if (name == "lower") return x.is_str() && Lower(x.s) == x.s;
    if (name == "upper") return x.is_str() && Upper(x.s) == x.s;
    if (!arg) Fail("test '" + name + "' needs an argument", n.line, n.col);
    if (name == "eq" || name == "equalto" || name == "==") return Equal(x, *arg);
    if (name == "ne" || name == "!=") return !Equal(x, *arg);
    if (name == "sameas") return Equal(x, *arg) && x.t == arg->t;
    if (name == "in") return Contains(*arg, x, n);
    if (name == "lt" || name == "lessthan" || name == "<") return Compare(x, *arg, n.line, n.col) < 0;
    if (name == "le" || name == "<=") return Compare(x, *arg, n.line, n.col) <= 0;
    if (name == "gt" || name == "greaterthan" || name == ">") return Compare(x, *arg, n.line, n.col) > 0;
    if (name == "ge" || name == ">=") return Compare(x, *arg, n.line, n.col) >= 0;
    Fail("no test named '" + name + "'", n.line, n.col);
  }

  std::vector<Frame> frames_;
  std::string* out_ = nullptr;
  std::vector<GenerationSpan> spans_;
};

}  // namespace

absl::StatusOr<std::shared_ptr<const Program>> ParseProgram(const std::string& source) {
  auto program = std::make_shared<Program>();
  try {
    Lexer lexer(source);
    Parser parser(lexer.Run(), program.get());
    program->body = parser.ParseTemplate();
  } catch (const JinjaError& e) {
    return absl::InvalidArgumentError(absl::StrCat("chat template syntax error at line ", e.line, ", column ",
                                                   e.col, ": ", e.message));
  }
  return std::shared_ptr<const Program>(std::move(program));
}

absl::StatusOr<RenderResult> RenderProgram(const Program& program, const nlohmann::ordered_json& context) {
  try {
    Renderer r(context);
    return r.Run(program.body);
  } catch (const JinjaError& e) {
    if (e.raised) return absl::InvalidArgumentError(e.message);
    if (e.line > 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("chat template error at line ", e.line, ", column ", e.col, ": ", e.message));
    }
    return absl::InvalidArgumentError(absl::StrCat("chat template error: ", e.message));
  } catch (const BreakSignal&) {
    return absl::InvalidArgumentError("chat template error: {% break %} outside a loop");
  } catch (const ContinueSignal&) {
    return absl::InvalidArgumentError("chat template error: {% continue %} outside a loop");
  }
}

bool HasGenerationBlocks(const Program& program) { return program.has_generation; }

}  // namespace align::engine::jinja
