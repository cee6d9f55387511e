// UTF-8 helpers shared by the tokenizer backends and the chat-template interpreter: decoding,
// encoding, lossy repair (Rust's from_utf8_lossy), GPT-2's byte<->unicode map, NFC/NFKC.
#pragma once

#include <array>
#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"

namespace align::engine::unicode {

//! Decodes one code point at `*pos` and advances; an invalid byte yields U+FFFD and advances 1.
char32_t DecodeOne(absl::string_view s, size_t* pos);
//! Appends `cp` as UTF-8.
void Append(std::string* out, char32_t cp);
//! Length of the UTF-8 sequence starting with byte `b` (1 for invalid lead bytes).
inline size_t SeqLen(unsigned char b) {
  if (b < 0x80) return 1;
  if ((b >> 5) == 0x6) return 2;
  if ((b >> 4) == 0xE) return 3;
  if ((b >> 3) == 0x1E) return 4;
  return 1;
}
//! Length of the valid UTF-8 sequence at `pos`, 0 when invalid there.
size_t ValidSeqLen(absl::string_view s, size_t pos);
bool IsValid(absl::string_view s);
//! Rust's String::from_utf8_lossy: each maximal invalid subpart becomes one U+FFFD.
std::string Lossy(absl::string_view bytes);
//! Replaces every byte that is not part of valid UTF-8 with U+FFFD (one per byte).
std::string LossyPerByte(absl::string_view bytes);

enum class NormalForm { kNFC, kNFKC, kNFD, kNFKD };
//! Unicode normalization via utf8proc. Invalid UTF-8 is returned unchanged.
std::string Normalize(absl::string_view s, NormalForm form);

//! GPT-2's bytes_to_unicode: byte -> the code point that stands for it in byte-level vocabularies.
const std::array<char32_t, 256>& ByteToUnicode();
//! The inverse: code point -> byte, or -1.
int UnicodeToByte(char32_t cp);
//! Maps raw bytes to their byte-level string ("Ġthe" for " the").
std::string BytesToByteLevel(absl::string_view bytes);
//! Maps a byte-level string back to raw bytes; false if it has a char outside the map.
bool ByteLevelToBytes(absl::string_view s, std::string* out);

//! Unicode White_Space (Rust char::is_whitespace).
bool IsWhitespace(char32_t cp);
//! Letters or numbers (Rust char::is_alphanumeric), for single_word added tokens.
bool IsAlnum(char32_t cp);

}  // namespace align::engine::unicode
