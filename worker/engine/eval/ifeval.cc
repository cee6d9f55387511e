#include "worker/engine/eval/ifeval.h"

#include <algorithm>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <optional>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "worker/engine/eval/language_detect.h"
#include "worker/engine/eval/regex.h"

namespace align::engine::eval {
namespace {

// Python's str.isspace() set, as UTF-8, for strip(): ASCII whitespace plus Unicode spaces.
const std::vector<std::string>& PySpaces() {
  static const auto* spaces = new std::vector<std::string>{
      " ", "\t", "\n", "\r", "\v", "\f", "\x1c", "\x1d", "\x1e", "\x1f", "\xc2\x85", "\xc2\xa0",
      "\xe1\x9a\x80", "\xe2\x80\x80", "\xe2\x80\x81", "\xe2\x80\x82", "\xe2\x80\x83",
      "\xe2\x80\x84", "\xe2\x80\x85", "\xe2\x80\x86", "\xe2\x80\x87", "\xe2\x80\x88",
      "\xe2\x80\x89", "\xe2\x80\x8a", "\xe2\x80\xa8", "\xe2\x80\xa9", "\xe2\x80\xaf",
      "\xe2\x81\x9f", "\xe3\x80\x80"};
  return *spaces;
}

// Python str.strip(): Unicode whitespace off both ends.
std::string Strip(const std::string& s) {
  size_t b = 0, e = s.size();
  bool changed = true;
  while (changed && b < e) {
    changed = false;
    for (const auto& sp : PySpaces()) {
      if (e - b >= sp.size() && s.compare(b, sp.size(), sp) == 0) {
        b += sp.size();
        changed = true;
        break;
      }
    }
  }
  changed = true;
  while (changed && b < e) {
    changed = false;
    for (const auto& sp : PySpaces()) {
      if (e - b >= sp.size() && s.compare(e - sp.size(), sp.size(), sp) == 0) {
        e -= sp.size();
        changed = true;
        break;
      }
    }
  }
  return s.substr(b, e - b);
}

std::string StripChars(const std::string& s, const std::string& chars, bool left, bool right) {
  size_t b = 0, e = s.size();
  if (left) {
    while (b < e && chars.find(s[b]) != std::string::npos) ++b;
  }
  if (right) {
    while (e > b && chars.find(s[e - 1]) != std::string::npos) --e;
  }
  return s.substr(b, e - b);
}

// ASCII lower-casing: the checkers compare English phrases.
std::string Lower(std::string s) {
  for (char& c : s) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return s;
}

std::string RemovePrefix(const std::string& s, const std::string& p) {
  return absl::StartsWith(s, p) ? s.substr(p.size()) : s;
}
std::string RemoveSuffix(const std::string& s, const std::string& p) {
  return absl::EndsWith(s, p) ? s.substr(0, s.size() - p.size()) : s;
}

// A compiled pattern that is a constant of the checker (compiled once, never fails).
const Regex& Constant(const std::string& pattern, Regex::Options options = {}) {
  static auto* cache = new std::map<std::string, Regex>();
  static std::mutex mu;
  std::lock_guard<std::mutex> lock(mu);
  const std::string key = absl::StrCat(options.ignore_case, options.multiline, pattern);
  auto it = cache->find(key);
  if (it == cache->end()) {
    auto compiled = Regex::Compile(pattern, options);
    CHECK(compiled.ok()) << compiled.status();
    it = cache->emplace(key, *std::move(compiled)).first;
  }
  return it->second;
}

absl::StatusOr<int64_t> IntArg(const nlohmann::json& kwargs, const std::string& name,
                               const std::string& id) {
  auto it = kwargs.find(name);
  if (it == kwargs.end() || it->is_null()) {
    return absl::InvalidArgumentError(absl::StrCat("IFEval instruction '", id, "': argument '",
                                                   name, "' is missing (expected an integer)"));
  }
  if (!it->is_number()) {
    return absl::InvalidArgumentError(absl::StrCat("IFEval instruction '", id, "': argument '",
                                                   name, "' must be an integer, got ", it->dump()));
  }
  return it->get<int64_t>();
}

absl::StatusOr<std::string> StrArg(const nlohmann::json& kwargs, const std::string& name,
                                   const std::string& id) {
  auto it = kwargs.find(name);
  if (it == kwargs.end() || !it->is_string()) {
    return absl::InvalidArgumentError(absl::StrCat("IFEval instruction '", id, "': argument '",
                                                   name, "' must be a string"));
  }
  return it->get<std::string>();
}

absl::StatusOr<std::vector<std::string>> ListArg(const nlohmann::json& kwargs,
                                                 const std::string& name, const std::string& id) {
  auto it = kwargs.find(name);
  if (it == kwargs.end() || !it->is_array()) {
    return absl::InvalidArgumentError(absl::StrCat("IFEval instruction '", id, "': argument '",
                                                   name, "' must be a list of strings"));
  }
  std::vector<std::string> out;
  for (const auto& v : *it) {
    if (!v.is_string()) {
      return absl::InvalidArgumentError(absl::StrCat("IFEval instruction '", id, "': argument '",
                                                     name, "' must be a list of strings"));
    }
    out.push_back(v.get<std::string>());
  }
  return out;
}

// "less than" -> n < threshold, "at least" -> n >= threshold.
absl::StatusOr<bool> Compare(int64_t n, const nlohmann::json& kwargs, const std::string& rel_key,
                             int64_t threshold, const std::string& id) {
  ASSIGN_OR_RETURN(std::string relation, StrArg(kwargs, rel_key, id));
  if (relation == "less than") return n < threshold;
  if (relation == "at least") return n >= threshold;
  return absl::InvalidArgumentError(absl::StrCat("IFEval instruction '", id, "': ", rel_key,
                                                 " must be 'less than' or 'at least', got '",
                                                 relation, "'"));
}

absl::StatusOr<Regex> UserRegex(const std::string& pattern, Regex::Options options,
                                const std::string& id) {
  auto r = Regex::Compile(pattern, options);
  if (!r.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("IFEval instruction '", id, "': ", r.status().message()));
  }
  return r;
}

int CountWords(const std::string& text) {
  return static_cast<int>(Constant("\\w+").FindAll(text).size());
}

// Python's isupper()/islower(): at least one cased character and none of the other case.
bool IsUpper(const std::string& s) {
  return !Constant("[\\p{Ll}\\p{Lt}]").Search(s) && Constant("\\p{Lu}").Search(s);
}
bool IsLower(const std::string& s) {
  return !Constant("[\\p{Lu}\\p{Lt}]").Search(s) && Constant("\\p{Ll}").Search(s);
}

bool IsEnglish(const std::string& s) {
  const std::string lang = DetectLanguage(s);
  return lang.empty() || lang == "en";  // undetectable counts as followed, as the reference does
}

using Checker = std::function<absl::StatusOr<bool>(const nlohmann::json&, const std::string&,
                                                   const std::string&)>;

const std::map<std::string, Checker>& Checkers() {
  static const auto* checkers = new std::map<std::string, Checker>{
      {"keywords:existence",
       [](const nlohmann::json& kw, const std::string& v, const std::string& id)
           -> absl::StatusOr<bool> {
         ASSIGN_OR_RETURN(auto keywords, ListArg(kw, "keywords", id));
         for (const auto& k : keywords) {
           ASSIGN_OR_RETURN(Regex r, UserRegex(k, {.ignore_case = true}, id));
           if (!r.Search(v)) return false;
         }
         return true;
       }},
      {"keywords:frequency",
       [](const nlohmann::json& kw, const std::string& v, const std::string& id)
           -> absl::StatusOr<bool> {
         ASSIGN_OR_RETURN(std::string keyword, StrArg(kw, "keyword", id));
         ASSIGN_OR_RETURN(int64_t frequency, IntArg(kw, "frequency", id));
         ASSIGN_OR_RETURN(Regex r, UserRegex(Strip(keyword), {.ignore_case = true}, id));
         return Compare(static_cast<int64_t>(r.FindAll(v).size()), kw, "relation", frequency, id);
       }},
      {"keywords:forbidden_words",
       [](const nlohmann::json& kw, const std::string& v, const std::string& id)
           -> absl::StatusOr<bool> {
         ASSIGN_OR_RETURN(auto words, ListArg(kw, "forbidden_words", id));
         for (const auto& w : words) {
           ASSIGN_OR_RETURN(Regex r, UserRegex("\\b" + w + "\\b", {.ignore_case = true}, id));
           if (r.Search(v)) return false;
         }
         return true;
       }},
      {"keywords:letter_frequency",
       [](const nlohmann::json& kw, const std::string& v, const std::string& id)
           -> absl::StatusOr<bool> {
         ASSIGN_OR_RETURN(std::string letter, StrArg(kw, "letter", id));
         ASSIGN_OR_RETURN(int64_t frequency, IntArg(kw, "let_frequency", id));
         letter = Lower(Strip(letter));
         // The reference draws a random letter when the argument is not one ASCII letter (one
         // prompt asks for '#'); counting the character asked for keeps the score deterministic.
         if (letter.size() != 1) {
           return absl::InvalidArgumentError(absl::StrCat(
               "IFEval instruction '", id, "': letter must be one character, got '", letter, "'"));
         }
         const std::string lower = Lower(v);
         const int64_t n = std::count(lower.begin(), lower.end(), letter[0]);
         return Compare(n, kw, "let_relation", frequency, id);
       }},
      {"language:response_language",
       [](const nlohmann::json& kw, const std::string& v, const std::string& id)
           -> absl::StatusOr<bool> {
         ASSIGN_OR_RETURN(std::string language, StrArg(kw, "language", id));
         const std::string detected = DetectLanguage(v);
         return detected.empty() || detected == language;
       }},
      {"length_constraints:number_sentences",
       [](const nlohmann::json& kw, const std::string& v, const std::string& id)
           -> absl::StatusOr<bool> {
         ASSIGN_OR_RETURN(int64_t num, IntArg(kw, "num_sentences", id));
         int64_t n = 0;
         for (const auto& s : SplitIntoSentences(v)) n += s.empty() ? 0 : 1;
         return Compare(n, kw, "relation", num, id);
       }},
      {"length_constraints:number_paragraphs",
       [](const nlohmann::json& kw, const std::string& v, const std::string& id)
           -> absl::StatusOr<bool> {
         ASSIGN_OR_RETURN(int64_t num, IntArg(kw, "num_paragraphs", id));
         const auto paragraphs = Constant("\\s?\\*\\*\\*\\s?").Split(v);
         int64_t n = static_cast<int64_t>(paragraphs.size());
         for (size_t i = 0; i < paragraphs.size(); ++i) {
           if (!Strip(paragraphs[i]).empty()) continue;
           if (i == 0 || i + 1 == paragraphs.size()) {
             --n;
           } else {
             return false;
           }
         }
         return n == num;
       }},
      {"length_constraints:number_words",
       [](const nlohmann::json& kw, const std::string& v, const std::string& id)
           -> absl::StatusOr<bool> {
         ASSIGN_OR_RETURN(int64_t num, IntArg(kw, "num_words", id));
         return Compare(CountWords(v), kw, "relation", num, id);
       }},
      {"length_constraints:nth_paragraph_first_word",
       [](const nlohmann::json& kw, const std::string& v, const std::string& id)
           -> absl::StatusOr<bool> {
         ASSIGN_OR_RETURN(int64_t num, IntArg(kw, "num_paragraphs", id));
         ASSIGN_OR_RETURN(int64_t nth, IntArg(kw, "nth_paragraph", id));
         ASSIGN_OR_RETURN(std::string want, StrArg(kw, "first_word", id));
         want = Lower(want);
         const std::vector<std::string> paragraphs = absl::StrSplit(v, "\n\n");
         int64_t n = static_cast<int64_t>(paragraphs.size());
         for (const auto& p : paragraphs) n -= Strip(p).empty() ? 1 : 0;
         if (nth > n || nth < 1) return false;
         const std::string paragraph = Strip(paragraphs[nth - 1]);
         if (paragraph.empty()) return false;
         std::string word = Constant("\\S+").FindAll(paragraph)[0];
         word = StripChars(StripChars(word, "'", true, false), "\"", true, false);
         std::string first;
         for (char c : word) {
           if (std::string(".,?!'\"").find(c) != std::string::npos) break;
           first += c;
         }
         return n == num && Lower(first) == want;
       }},
      {"detectable_content:number_placeholders",
       [](const nlohmann::json& kw, const std::string& v, const std::string& id)
           -> absl::StatusOr<bool> {
         ASSIGN_OR_RETURN(int64_t num, IntArg(kw, "num_placeholders", id));
         return static_cast<int64_t>(Constant("\\[.*?\\]").FindAll(v).size()) >= num;
       }},
      {"detectable_content:postscript",
       [](const nlohmann::json& kw, const std::string& v, const std::string& id)
           -> absl::StatusOr<bool> {
         ASSIGN_OR_RETURN(std::string marker, StrArg(kw, "postscript_marker", id));
         marker = Strip(marker);
         std::string pattern;
         if (marker == "P.P.S") {
           pattern = "\\s*p\\.\\s?p\\.\\s?s.*$";
         } else if (marker == "P.S.") {
           pattern = "\\s*p\\.\\s?s\\..*$";
         } else {
           pattern = "\\s*" + Lower(marker) + ".*$";
         }
         ASSIGN_OR_RETURN(Regex r, UserRegex(pattern, {.multiline = true}, id));
         return r.Search(Lower(v));
       }},
      {"detectable_format:number_bullet_lists",
       [](const nlohmann::json& kw, const std::string& v, const std::string& id)
           -> absl::StatusOr<bool> {
         ASSIGN_OR_RETURN(int64_t num, IntArg(kw, "num_bullets", id));
         const size_t stars = Constant("^\\s*\\*[^\\*].*$", {.multiline = true}).FindAll(v).size();
         const size_t dashes = Constant("^\\s*-.*$", {.multiline = true}).FindAll(v).size();
         return static_cast<int64_t>(stars + dashes) == num;
       }},
      {"detectable_format:constrained_response",
       [](const nlohmann::json&, const std::string& v, const std::string&)
           -> absl::StatusOr<bool> {
         const std::string s = Strip(v);
         for (const char* option : {"My answer is yes.", "My answer is no.", "My answer is maybe."}) {
           if (absl::StrContains(s, option)) return true;
         }
         return false;
       }},
      {"detectable_format:number_highlighted_sections",
       [](const nlohmann::json& kw, const std::string& v, const std::string& id)
           -> absl::StatusOr<bool> {
         ASSIGN_OR_RETURN(int64_t num, IntArg(kw, "num_highlights", id));
         int64_t n = 0;
         for (const auto& h : Constant("\\*[^\\n\\*]*\\*").FindAll(v)) {
           n += Strip(StripChars(h, "*", true, true)).empty() ? 0 : 1;
         }
         for (const auto& h : Constant("\\*\\*[^\\n\\*]*\\*\\*").FindAll(v)) {
           n += Strip(RemoveSuffix(RemovePrefix(h, "**"), "**")).empty() ? 0 : 1;
         }
         return n >= num;
       }},
      {"detectable_format:multiple_sections",
       [](const nlohmann::json& kw, const std::string& v, const std::string& id)
           -> absl::StatusOr<bool> {
         ASSIGN_OR_RETURN(std::string splitter, StrArg(kw, "section_spliter", id));
         ASSIGN_OR_RETURN(int64_t num, IntArg(kw, "num_sections", id));
         ASSIGN_OR_RETURN(Regex r, UserRegex("\\s?" + Strip(splitter) + "\\s?\\d+\\s?", {}, id));
         return static_cast<int64_t>(r.Split(v).size()) - 1 >= num;
       }},
      {"detectable_format:json_format",
       [](const nlohmann::json&, const std::string& v, const std::string&)
           -> absl::StatusOr<bool> {
         std::string s = Strip(v);
         for (const char* p : {"```json", "```Json", "```JSON", "```"}) s = RemovePrefix(s, p);
         s = Strip(RemoveSuffix(s, "```"));
         return nlohmann::json::accept(s);
       }},
      {"detectable_format:title",
       [](const nlohmann::json&, const std::string& v, const std::string&)
           -> absl::StatusOr<bool> {
         for (const auto& t : Constant("<<[^\\n]+>>").FindAll(v)) {
           if (!Strip(StripChars(StripChars(t, "<", true, false), ">", false, true)).empty()) {
             return true;
           }
         }
         return false;
       }},
      {"combination:two_responses",
       [](const nlohmann::json&, const std::string& v, const std::string&)
           -> absl::StatusOr<bool> {
         const std::vector<std::string> parts = absl::StrSplit(v, "******");
         std::vector<std::string> valid;
         for (size_t i = 0; i < parts.size(); ++i) {
           if (Strip(parts[i]).empty()) {
             if (i != 0 && i + 1 != parts.size()) return false;
           } else {
             valid.push_back(parts[i]);
           }
         }
         return valid.size() == 2 && Strip(valid[0]) != Strip(valid[1]);
       }},
      {"combination:repeat_prompt",
       [](const nlohmann::json& kw, const std::string& v, const std::string& id)
           -> absl::StatusOr<bool> {
         ASSIGN_OR_RETURN(std::string prompt, StrArg(kw, "prompt_to_repeat", id));
         return absl::StartsWith(Lower(Strip(v)), Lower(Strip(prompt)));
       }},
      {"startend:end_checker",
       [](const nlohmann::json& kw, const std::string& v, const std::string& id)
           -> absl::StatusOr<bool> {
         ASSIGN_OR_RETURN(std::string phrase, StrArg(kw, "end_phrase", id));
         const std::string value = Lower(StripChars(Strip(v), "\"", true, true));
         return absl::EndsWith(value, Lower(Strip(phrase)));
       }},
      {"change_case:capital_word_frequency",
       [](const nlohmann::json& kw, const std::string& v, const std::string& id)
           -> absl::StatusOr<bool> {
         ASSIGN_OR_RETURN(int64_t num, IntArg(kw, "capital_frequency", id));
         // NLTK's word_tokenize keeps hyphenated words whole and splits clitics ("n't", "'s").
         int64_t n = 0;
         for (const auto& w : Constant("\\w+(?:-\\w+)*|'\\w+").FindAll(v)) n += IsUpper(w) ? 1 : 0;
         return Compare(n, kw, "capital_relation", num, id);
       }},
      {"change_case:english_capital",
       [](const nlohmann::json&, const std::string& v, const std::string&)
           -> absl::StatusOr<bool> { return IsUpper(v) && IsEnglish(v); }},
      {"change_case:english_lowercase",
       [](const nlohmann::json&, const std::string& v, const std::string&)
           -> absl::StatusOr<bool> { return IsLower(v) && IsEnglish(v); }},
      {"punctuation:no_comma",
       [](const nlohmann::json&, const std::string& v, const std::string&)
           -> absl::StatusOr<bool> { return v.find(',') == std::string::npos; }},
      {"startend:quotation",
       [](const nlohmann::json&, const std::string& v, const std::string&)
           -> absl::StatusOr<bool> {
         const std::string s = Strip(v);
         return s.size() > 1 && s.front() == '"' && s.back() == '"';
       }},
  };
  return *checkers;
}

std::string ReplaceLiteral(std::string s, const std::string& from, const std::string& to) {
  size_t pos = 0;
  while ((pos = s.find(from, pos)) != std::string::npos) {
    s.replace(pos, from.size(), to);
    pos += to.size();
  }
  return s;
}

}  // namespace

std::vector<std::string> IfEvalInstructionIds() {
  std::vector<std::string> ids;
  for (const auto& [id, fn] : Checkers()) ids.push_back(id);
  return ids;
}

std::vector<std::string> SplitIntoSentences(const std::string& input) {
  const std::string alphabets = "([A-Za-z])";
  const std::string prefixes = "(Mr|St|Mrs|Ms|Dr)[.]";
  const std::string suffixes = "(Inc|Ltd|Jr|Sr|Co)";
  const std::string starters =
      "(Mr|Mrs|Ms|Dr|Prof|Capt|Cpt|Lt|He\\s|She\\s|It\\s|They\\s|Their\\s|Our\\s|We\\s|But\\s|"
      "However\\s|That\\s|This\\s|Wherever)";
  const std::string acronyms = "([A-Z][.][A-Z][.](?:[A-Z][.])?)";
  const std::string websites = "[.](com|net|org|io|gov|edu|me)";
  const std::string digits = "([0-9])";
  std::string text = " " + input + "  ";
  text = ReplaceLiteral(text, "\n", " ");
  text = Constant(prefixes).ReplaceAll(text, "\\1<prd>");
  text = Constant(websites).ReplaceAll(text, "<prd>\\1");
  text = Constant(digits + "[.]" + digits).ReplaceAll(text, "\\1<prd>\\2");
  text = Constant("\\.{2,}").ReplaceWith(text, [](const std::vector<std::string>& g) {
    std::string r;
    for (size_t i = 0; i < g[0].size(); ++i) r += "<prd>";
    return r + "<stop>";
  });
  text = ReplaceLiteral(text, "Ph.D.", "Ph<prd>D<prd>");
  text = Constant("\\s" + alphabets + "[.] ").ReplaceAll(text, " \\1<prd> ");
  text = Constant(acronyms + " " + starters).ReplaceAll(text, "\\1<stop> \\2");
  text = Constant(alphabets + "[.]" + alphabets + "[.]" + alphabets + "[.]")
             .ReplaceAll(text, "\\1<prd>\\2<prd>\\3<prd>");
  text = Constant(alphabets + "[.]" + alphabets + "[.]").ReplaceAll(text, "\\1<prd>\\2<prd>");
  text = Constant(" " + suffixes + "[.] " + starters).ReplaceAll(text, " \\1<stop> \\2");
  text = Constant(" " + suffixes + "[.]").ReplaceAll(text, " \\1<prd>");
  text = Constant(" " + alphabets + "[.]").ReplaceAll(text, " \\1<prd>");
  text = ReplaceLiteral(text, ".\xe2\x80\x9d", "\xe2\x80\x9d.");
  text = ReplaceLiteral(text, ".\"", "\".");
  text = ReplaceLiteral(text, "!\"", "\"!");
  text = ReplaceLiteral(text, "?\"", "\"?");
  text = ReplaceLiteral(text, ".", ".<stop>");
  text = ReplaceLiteral(text, "?", "?<stop>");
  text = ReplaceLiteral(text, "!", "!<stop>");
  text = ReplaceLiteral(text, "<prd>", ".");
  std::vector<std::string> sentences;
  for (absl::string_view s : absl::StrSplit(text, "<stop>")) sentences.push_back(Strip(std::string(s)));
  if (!sentences.empty() && sentences.back().empty()) sentences.pop_back();
  return sentences;
}

absl::StatusOr<bool> CheckInstruction(const std::string& instruction_id,
                                      const nlohmann::json& kwargs, const std::string& response) {
  auto it = Checkers().find(instruction_id);
  if (it == Checkers().end()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "unknown IFEval instruction id '", instruction_id, "'; known: ",
        absl::StrJoin(IfEvalInstructionIds(), ", ")));
  }
  if (Strip(response).empty()) return false;
  const nlohmann::json args = kwargs.is_object() ? kwargs : nlohmann::json::object();
  return it->second(args, response, instruction_id);
}

absl::StatusOr<IfEvalOutcome> EvaluateIfEvalPrompt(const IfEvalPrompt& prompt,
                                                   const std::string& response) {
  const std::vector<std::string> lines = absl::StrSplit(response, '\n');
  auto join = [&](size_t from, size_t to) {  // lines[from:to] as Python slices them
    if (from >= to || from >= lines.size()) return std::string();
    return Strip(absl::StrJoin(lines.begin() + from, lines.begin() + std::min(to, lines.size()), "\n"));
  };
  const size_t n = lines.size();
  const std::string remove_first = join(1, n);
  const std::string remove_last = n == 0 ? std::string() : join(0, n - 1);
  const std::string remove_both = n == 0 ? std::string() : join(1, n - 1);
  auto no_stars = [](const std::string& s) { return ReplaceLiteral(s, "*", ""); };
  const std::vector<std::string> variants = {
      response, no_stars(response), remove_first, remove_last, remove_both,
      no_stars(remove_first), no_stars(remove_last), no_stars(remove_both)};
  IfEvalOutcome out;
  for (size_t i = 0; i < prompt.instruction_ids.size(); ++i) {
    const nlohmann::json& kw = i < prompt.kwargs.size() ? prompt.kwargs[i] : nlohmann::json();
    ASSIGN_OR_RETURN(bool strict, CheckInstruction(prompt.instruction_ids[i], kw, response));
    bool loose = false;
    for (const auto& v : variants) {
      ASSIGN_OR_RETURN(bool ok, CheckInstruction(prompt.instruction_ids[i], kw, v));
      if (ok) {
        loose = true;
        break;
      }
    }
    out.strict.push_back(strict);
    out.loose.push_back(loose);
  }
  return out;
}

absl::StatusOr<IfEvalScores> ScoreIfEval(const std::vector<IfEvalPrompt>& prompts,
                                         const std::vector<std::string>& responses) {
  if (prompts.size() != responses.size()) {
    return absl::InvalidArgumentError(absl::StrCat("IFEval: ", prompts.size(), " prompts but ",
                                                   responses.size(), " responses"));
  }
  IfEvalScores s;
  int prompt_strict = 0, prompt_loose = 0, inst_strict = 0, inst_loose = 0;
  std::map<std::string, std::pair<int, int>> per;  // id -> (followed, total)
  for (size_t i = 0; i < prompts.size(); ++i) {
    ASSIGN_OR_RETURN(IfEvalOutcome o, EvaluateIfEvalPrompt(prompts[i], responses[i]));
    const bool all_strict = std::all_of(o.strict.begin(), o.strict.end(), [](bool b) { return b; });
    const bool all_loose = std::all_of(o.loose.begin(), o.loose.end(), [](bool b) { return b; });
    prompt_strict += all_strict;
    prompt_loose += all_loose;
    for (size_t k = 0; k < o.strict.size(); ++k) {
      inst_strict += o.strict[k];
      inst_loose += o.loose[k];
      auto& [followed, total] = per[prompts[i].instruction_ids[k]];
      followed += o.strict[k];
      ++total;
    }
    s.instructions += static_cast<int>(o.strict.size());
  }
  s.prompts = static_cast<int>(prompts.size());
  if (s.prompts > 0) {
    s.prompt_strict = static_cast<double>(prompt_strict) / s.prompts;
    s.prompt_loose = static_cast<double>(prompt_loose) / s.prompts;
  }
  if (s.instructions > 0) {
    s.instruction_strict = static_cast<double>(inst_strict) / s.instructions;
    s.instruction_loose = static_cast<double>(inst_loose) / s.instructions;
  }
  for (const auto& [id, ft] : per) s.per_instruction_strict[id] = static_cast<double>(ft.first) / ft.second;
  return s;
}

absl::StatusOr<std::vector<IfEvalPrompt>> LoadIfEvalPrompts(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open IFEval prompts '", path, "'"));
  std::vector<IfEvalPrompt> out;
  std::string line;
  int lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    if (Strip(line).empty()) continue;
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object() || !j.contains("prompt") ||
        !j.contains("instruction_id_list") || !j["instruction_id_list"].is_array()) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ":", lineno, ": expected a JSON object with prompt, instruction_id_list, kwargs"));
    }
    IfEvalPrompt p;
    p.key = j.value("key", int64_t{0});
    p.prompt = j["prompt"].get<std::string>();
    for (const auto& id : j["instruction_id_list"]) p.instruction_ids.push_back(id.get<std::string>());
    if (j.contains("kwargs") && j["kwargs"].is_array()) {
      for (const auto& kw : j["kwargs"]) p.kwargs.push_back(kw);
    }
    if (p.kwargs.size() != p.instruction_ids.size()) {
      return absl::InvalidArgumentError(absl::StrCat(path, ":", lineno, ": ", p.instruction_ids.size(),
                                                     " instruction ids but ", p.kwargs.size(), " kwargs"));
    }
    out.push_back(std::move(p));
  }
  return out;
}

absl::StatusOr<std::map<std::string, std::string>> LoadIfEvalResponses(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open IFEval responses '", path, "'"));
  std::map<std::string, std::string> out;
  std::string line;
  int lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    if (Strip(line).empty()) continue;
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object() || !j.contains("prompt") || !j.contains("response") ||
        !j["prompt"].is_string() || !j["response"].is_string()) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ":", lineno, ": expected a JSON object with string prompt and response"));
    }
    out[j["prompt"].get<std::string>()] = j["response"].get<std::string>();
  }
  return out;
}

}  // namespace align::engine::eval
