// A small language identifier for IFEval's `language:response_language` and the English checks
// of `change_case:*`. No packaged C++ library does this, so it is a heuristic: the dominant
// Unicode script decides most languages; Latin, Cyrillic, Arabic and Devanagari text is told
// apart by distinctive letters and stopword counts. Limits: docs/evaluation.md.
#pragma once

#include <string>

namespace align::engine::eval {

//! ISO 639-1 code of the text's language ("en", "hi", "zh", ...), or "" when the text has too
//! few letters to tell (IFEval's reference counts an undetectable language as followed).
std::string DetectLanguage(const std::string& text);

}  // namespace align::engine::eval
