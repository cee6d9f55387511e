// Internal: the interface behind Tokenizer, implemented by the tokenizer.json pipeline
// (hf_backend.cc, also used for GPT-2 vocab.json + merges.txt) and by SentencePiece
// (sentencepiece_backend.cc). Not for use outside worker/engine/tokenizer.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace align::engine {

//! A token's byte range [first, second) in the text given to Encode.
using TokenOffset = std::pair<uint32_t, uint32_t>;

class TokenizerBackend {
 public:
  virtual ~TokenizerBackend() = default;
  //! Appends ids (and offsets when `offsets` is non-null) for `text`.
  virtual void Encode(absl::string_view text, bool add_special_tokens, std::vector<int32_t>* ids,
                      std::vector<TokenOffset>* offsets) const = 0;
  virtual std::string Decode(const std::vector<int32_t>& ids, bool skip_special_tokens) const = 0;
  virtual std::optional<std::string> IdToToken(int32_t id) const = 0;
  virtual std::optional<int32_t> TokenToId(absl::string_view token) const = 0;
  virtual int32_t VocabSize() const = 0;
  virtual bool IsSpecial(int32_t id) const = 0;
  //! Ids the post-processor puts before / after a single sequence.
  virtual std::vector<int32_t> SpecialPrefix() const = 0;
  virtual std::vector<int32_t> SpecialSuffix() const = 0;
};

//! tokenizer.json (parsed) -> backend. `source` names the file in errors.
absl::StatusOr<std::unique_ptr<TokenizerBackend>> MakeHfBackend(const nlohmann::json& tokenizer_json,
                                                                const std::string& source);
//! GPT-2 vocab.json + merges.txt -> the tokenizer.json GPT-2 pipeline.
absl::StatusOr<std::unique_ptr<TokenizerBackend>> MakeGpt2Backend(const std::string& vocab_path,
                                                                  const std::string& merges_path);
//! SentencePiece tokenizer.model. `add_bos`/`add_eos` decide what add_special_tokens adds;
//! `legacy` gives text after a special token its own dummy prefix.
absl::StatusOr<std::unique_ptr<TokenizerBackend>> MakeSentencePieceBackend(const std::string& path,
                                                                           bool add_bos, bool add_eos,
                                                                           bool legacy);
//! BOS/EOS/UNK/PAD strings a SentencePiece model defines ("" when none).
struct SpmSpecials {
  std::string bos, eos, unk, pad;
};
SpmSpecials SentencePieceSpecials(const TokenizerBackend& backend);

}  // namespace align::engine
