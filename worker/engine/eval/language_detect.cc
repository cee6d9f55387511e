#include "worker/engine/eval/language_detect.h"

#include <array>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace align::engine::eval {
namespace {

// Decodes UTF-8 leniently (an invalid byte becomes U+FFFD).
std::vector<char32_t> Decode(const std::string& s) {
  std::vector<char32_t> out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    int len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (len == 0 || i + len > s.size()) {
      out.push_back(0xFFFD);
      ++i;
      continue;
    }
    char32_t cp = len == 1 ? c : len == 2 ? (c & 0x1F) : len == 3 ? (c & 0x0F) : (c & 0x07);
    for (int k = 1; k < len; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
    out.push_back(cp);
    i += len;
  }
  return out;
}

enum class Script {
  kLatin, kCyrillic, kGreek, kArabic, kHebrew, kDevanagari, kBengali, kGurmukhi, kGujarati,
  kTamil, kTelugu, kKannada, kMalayalam, kThai, kHangul, kKana, kHan, kOther, kCount
};

Script ScriptOf(char32_t c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= 0xC0 && c <= 0x24F && c != 0xD7 &&
      c != 0xF7) || (c >= 0x1E00 && c <= 0x1EFF)) return Script::kLatin;
  if (c >= 0x400 && c <= 0x4FF) return Script::kCyrillic;
  if (c >= 0x370 && c <= 0x3FF) return Script::kGreek;
  if ((c >= 0x600 && c <= 0x6FF) || (c >= 0x750 && c <= 0x77F) || (c >= 0xFB50 && c <= 0xFDFF) ||
      (c >= 0xFE70 && c <= 0xFEFF)) return Script::kArabic;
  if (c >= 0x590 && c <= 0x5FF) return Script::kHebrew;
  if (c >= 0x900 && c <= 0x97F) return Script::kDevanagari;
  if (c >= 0x980 && c <= 0x9FF) return Script::kBengali;
  if (c >= 0xA00 && c <= 0xA7F) return Script::kGurmukhi;
  if (c >= 0xA80 && c <= 0xAFF) return Script::kGujarati;
  if (c >= 0xB80 && c <= 0xBFF) return Script::kTamil;
  if (c >= 0xC00 && c <= 0xC7F) return Script::kTelugu;
  if (c >= 0xC80 && c <= 0xCFF) return Script::kKannada;
  if (c >= 0xD00 && c <= 0xD7F) return Script::kMalayalam;
  if (c >= 0xE00 && c <= 0xE7F) return Script::kThai;
  if ((c >= 0xAC00 && c <= 0xD7AF) || (c >= 0x1100 && c <= 0x11FF) || (c >= 0x3130 && c <= 0x318F))
    return Script::kHangul;
  if (c >= 0x3040 && c <= 0x30FF) return Script::kKana;
  if ((c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF)) return Script::kHan;
  return Script::kOther;
}

bool IsWordChar(char32_t c) {
  const Script s = ScriptOf(c);
  if (s != Script::kOther) return true;
  return c == '\'' || c == 0x2019;
}

// Lower-cases ASCII and Latin-1/Cyrillic capitals enough for stopword lookup.
char32_t Lower(char32_t c) {
  if (c >= 'A' && c <= 'Z') return c + 32;
  if (c >= 0xC0 && c <= 0xDE && c != 0xD7) return c + 32;
  if (c >= 0x410 && c <= 0x42F) return c + 32;
  if (c >= 0x400 && c <= 0x40F) return c + 80;
  return c;
}

std::string Encode(const std::u32string& w) {
  std::string out;
  for (char32_t c : w) {
    if (c < 0x80) {
      out += static_cast<char>(c);
    } else if (c < 0x800) {
      out += static_cast<char>(0xC0 | (c >> 6));
      out += static_cast<char>(0x80 | (c & 0x3F));
    } else if (c < 0x10000) {
      out += static_cast<char>(0xE0 | (c >> 12));
      out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (c & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (c >> 18));
      out += static_cast<char>(0x80 | ((c >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (c & 0x3F));
    }
  }
  return out;
}

std::vector<std::string> Words(const std::vector<char32_t>& cps) {
  std::vector<std::string> words;
  std::u32string cur;
  for (char32_t c : cps) {
    if (IsWordChar(c) || (c >= 0x300 && c <= 0x36F) ||
        (ScriptOf(c) == Script::kOther && c >= 0x900 && c <= 0xDFF)) {
      cur += Lower(c);
    } else if (!cur.empty()) {
      words.push_back(Encode(cur));
      cur.clear();
    }
  }
  if (!cur.empty()) words.push_back(Encode(cur));
  return words;
}

// The most frequent function words of each language (short lists: enough to separate them).
const std::map<std::string, std::set<std::string>>& LatinStopwords() {
  static const auto* lists = new std::map<std::string, std::set<std::string>>{
      {"en", {"the", "and", "of", "to", "is", "in", "that", "it", "you", "for", "with", "this",
              "are", "was", "be", "as", "on", "have", "not", "your", "i", "a", "an", "or", "by",
              "from", "we", "they", "can", "will", "my", "at", "but", "what", "which", "there"}},
      {"es", {"el", "la", "de", "que", "y", "en", "los", "las", "del", "se", "por", "un", "una",
              "con", "para", "es", "su", "al", "lo", "como", "más", "pero", "sus", "le", "muy"}},
      {"pt", {"o", "a", "de", "que", "e", "do", "da", "em", "um", "uma", "para", "com", "não",
              "os", "as", "no", "na", "se", "por", "mais", "dos", "das", "ao", "é", "você", "seu"}},
      {"fr", {"le", "la", "les", "de", "des", "et", "est", "un", "une", "du", "en", "que", "qui",
              "dans", "pour", "pas", "sur", "au", "avec", "ce", "il", "elle", "vous", "nous"}},
      {"de", {"der", "die", "das", "und", "ist", "nicht", "ich", "sie", "es", "ein", "eine",
              "zu", "den", "dem", "mit", "auf", "für", "von", "sich", "auch", "wir", "du", "im"}},
      {"it", {"il", "la", "di", "che", "e", "è", "un", "una", "per", "non", "con", "del", "della",
              "gli", "le", "i", "si", "sono", "lo", "nel", "alla", "ma", "come", "anche", "più"}},
      {"nl", {"de", "het", "een", "en", "van", "is", "dat", "niet", "ik", "je", "op", "te", "zijn",
              "met", "voor", "er", "maar", "ook", "wat", "hij"}},
      {"pl", {"i", "w", "nie", "na", "się", "z", "że", "do", "to", "jest", "jak", "o", "ale",
              "po", "co", "tak", "za", "od", "są", "czy", "jego", "już"}},
      {"fi", {"ja", "on", "ei", "se", "että", "oli", "hän", "ovat", "mutta", "kun", "niin", "tai",
              "myös", "ole", "tämä", "joka", "kuin", "mitä", "sen", "voi", "olla"}},
      {"sw", {"na", "ya", "wa", "kwa", "ni", "za", "katika", "la", "kuwa", "au", "hii", "huo",
              "cha", "vya", "kama", "lakini", "pia", "yake", "wake", "sana", "hiyo", "kwamba"}},
      {"id", {"dan", "yang", "di", "ini", "itu", "dengan", "untuk", "tidak", "dari", "dalam",
              "akan", "ada", "saya", "kami", "juga"}},
      {"tr", {"ve", "bir", "bu", "da", "de", "için", "ile", "çok", "ne", "daha", "gibi", "olarak"}},
  };
  return *lists;
}

// Letters only some Latin-script languages use; each hit adds weight to those languages.
const std::map<char32_t, std::vector<std::string>>& LatinMarkers() {
  static const auto* m = new std::map<char32_t, std::vector<std::string>>{
      {U'ñ', {"es"}}, {U'¿', {"es"}}, {U'¡', {"es"}}, {U'ã', {"pt"}}, {U'õ', {"pt"}},
      {U'ç', {"pt", "fr"}}, {U'ß', {"de"}}, {U'ä', {"de", "fi"}}, {U'ö', {"de", "fi"}},
      {U'ü', {"de"}}, {U'ł', {"pl"}}, {U'ą', {"pl"}}, {U'ę', {"pl"}}, {U'ś', {"pl"}},
      {U'ź', {"pl"}}, {U'ż', {"pl"}}, {U'ć', {"pl"}}, {U'ń', {"pl"}}, {U'è', {"fr", "it"}},
      {U'ê', {"fr", "pt"}}, {U'œ', {"fr"}}, {U'ğ', {"tr"}}, {U'ı', {"tr"}}, {U'ş', {"tr"}},
  };
  return *m;
}

std::string DetectLatin(const std::vector<char32_t>& cps, const std::vector<std::string>& words) {
  // Vietnamese: its horned vowels, đ and stacked tone marks are unique to it.
  int viet = 0;
  for (char32_t c : cps) {
    const char32_t l = Lower(c);
    if ((l >= 0x1EA0 && l <= 0x1EFF) || l == U'ơ' || l == U'ư' || l == U'đ' || l == U'Ơ' ||
        l == U'Ư' || l == U'Đ') ++viet;
  }
  if (viet * 20 >= static_cast<int>(words.size()) && viet >= 3) return "vi";
  std::map<std::string, double> score;
  for (const auto& [lang, list] : LatinStopwords()) {
    score[lang] = 0;
    for (const auto& w : words) score[lang] += list.count(w);
  }
  for (char32_t c : cps) {
    auto it = LatinMarkers().find(Lower(c));
    if (it == LatinMarkers().end()) continue;
    for (const auto& lang : it->second) score[lang] += 0.5;
  }
  std::string best = "en";
  double best_score = -1;
  for (const auto& [lang, s] : score) {
    if (s > best_score) {
      best = lang;
      best_score = s;
    }
  }
  return best;
}

int CountWords(const std::vector<std::string>& words, const std::set<std::string>& list) {
  int n = 0;
  for (const auto& w : words) n += list.count(w);
  return n;
}

}  // namespace

std::string DetectLanguage(const std::string& text) {
  const std::vector<char32_t> cps = Decode(text);
  std::array<int, static_cast<size_t>(Script::kCount)> counts{};
  int letters = 0;
  for (char32_t c : cps) {
    const Script s = ScriptOf(c);
    if (s == Script::kOther) continue;
    ++counts[static_cast<size_t>(s)];
    ++letters;
  }
  if (letters == 0) return "";
  // Japanese text mixes kana with Han: any real share of kana makes it Japanese.
  const int kana = counts[static_cast<size_t>(Script::kKana)];
  if (kana * 10 >= letters && kana > 0) return "ja";
  size_t best = 0;
  for (size_t i = 1; i < counts.size(); ++i) {
    if (counts[i] > counts[best]) best = i;
  }
  const std::vector<std::string> words = Words(cps);
  switch (static_cast<Script>(best)) {
    case Script::kLatin: return DetectLatin(cps, words);
    case Script::kCyrillic: {
      int uk = 0, ru = 0, bg = 0;
      for (char32_t c : cps) {
        const char32_t l = Lower(c);
        if (l == U'і' || l == U'ї' || l == U'є' || l == U'ґ') uk += 3;
        if (l == U'ы' || l == U'э' || l == U'ё') ru += 3;
        if (l == U'ъ') bg += 2;
      }
      ru += 2 * CountWords(words, {"и", "не", "что", "это", "как", "он", "она", "они", "мы", "его",
                                   "был", "была", "для", "который", "также", "или", "но"});
      bg += 2 * CountWords(words, {"и", "не", "че", "е", "са", "на", "за", "да", "се", "като",
                                   "това", "със", "от", "но", "или", "той", "тя", "те", "ще"});
      uk += 2 * CountWords(words, {"і", "та", "що", "це", "як", "не", "він", "вона", "вони", "для"});
      if (uk >= ru && uk >= bg) return "uk";
      return bg > ru ? "bg" : "ru";
    }
    case Script::kGreek: return "el";
    case Script::kArabic: {
      int fa = 0, ur = 0, ar = 0;
      for (char32_t c : cps) {
        if (c == U'پ' || c == U'چ' || c == U'ژ' || c == U'گ' || c == U'ی' || c == U'ک') ++fa;
        if (c == U'ٹ' || c == U'ڈ' || c == U'ڑ' || c == U'ں' || c == U'ے' || c == U'ھ') ur += 2;
        if (c == U'ة' || c == U'ى' || c == U'ي' || c == U'ك') ++ar;
      }
      ur += 2 * CountWords(words, {"ہے", "ہیں", "کے", "کی", "میں", "اور", "کا", "سے", "کو"});
      fa += 2 * CountWords(words, {"است", "این", "از", "به", "که", "را", "با", "های", "می"});
      ar += 2 * CountWords(words, {"في", "من", "على", "أن", "إلى", "التي", "الذي", "هذا", "عن"});
      if (ur >= fa && ur >= ar && ur > 0) return "ur";
      return fa > ar ? "fa" : "ar";
    }
    case Script::kHebrew: return "he";
    case Script::kDevanagari: {
      const int hi = CountWords(words, {"है", "हैं", "के", "की", "में", "और", "का", "को", "से",
                                        "यह", "कि", "भी", "था", "थे", "पर", "एक", "नहीं", "लिए"});
      const int mr = CountWords(words, {"आहे", "आणि", "या", "हे", "की", "व", "ही", "तर", "आहेत",
                                        "मध्ये", "नाही", "होते", "त्या", "एक", "काही", "करून"});
      const int ne = CountWords(words, {"छ", "र", "को", "मा", "हो", "छन्", "गर्न", "पनि", "यो",
                                        "भएको", "थियो", "लागि", "गरेको", "हुन्छ", "छैन", "तथा"});
      if (mr > hi && mr >= ne) return "mr";
      if (ne > hi && ne > mr) return "ne";
      return "hi";
    }
    case Script::kBengali: return "bn";
    case Script::kGurmukhi: return "pa";
    case Script::kGujarati: return "gu";
    case Script::kTamil: return "ta";
    case Script::kTelugu: return "te";
    case Script::kKannada: return "kn";
    case Script::kMalayalam: return "ml";
    case Script::kThai: return "th";
    case Script::kHangul: return "ko";
    case Script::kKana: return "ja";
    case Script::kHan: return "zh";
    default: return "";
  }
}

}  // namespace align::engine::eval
