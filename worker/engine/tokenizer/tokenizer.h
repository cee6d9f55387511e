// Tokenizers that give exactly Hugging Face's ids: tokenizer.json (byte-level and
// SentencePiece-style BPE), GPT-2 vocab.json + merges.txt, and SentencePiece tokenizer.model, plus
// the special tokens and chat template of tokenizer_config.json. Used by data, train, eval, model
// and the CLI; every const method is safe to call from many threads at once.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace align::engine {

//! Which file format the tokenizer was loaded from.
enum class TokenizerFormat { kTokenizerJson, kGpt2VocabMerges, kSentencePieceModel };

//! A tokenizer's backend (the model + normalizer + pre-tokenizer + decoder pipeline). Internal;
//! implemented in tokenizer_json.cc and sentencepiece_backend.cc.
class TokenizerBackend;

class Tokenizer {
 public:
  //! Loads from a directory holding tokenizer.json [+ tokenizer_config.json], or vocab.json +
  //! merges.txt, or tokenizer.model; or from one of those files directly. Errors name the file
  //! and the field or component that is wrong (an unsupported component lists what is supported).
  static absl::StatusOr<std::unique_ptr<Tokenizer>> Load(const std::string& dir_or_file);

  ~Tokenizer();
  Tokenizer(const Tokenizer&) = delete;
  Tokenizer& operator=(const Tokenizer&) = delete;

  //! Text -> ids. Special-token strings inside `text` ("<s>", "<|im_end|>", ...) are always matched
  //! as added tokens (as Hugging Face does); `add_special_tokens` only controls the
  //! post-processor (BOS/EOS the tokenizer adds around the text).
  std::vector<int32_t> Encode(absl::string_view text, bool add_special_tokens) const;
  //! Encode, also giving each token's byte range [first, second) in `text` (special tokens the
  //! post-processor adds get an empty range). Used to map template spans onto tokens.
  std::vector<int32_t> EncodeWithOffsets(absl::string_view text, bool add_special_tokens,
                                         std::vector<std::pair<uint32_t, uint32_t>>* offsets) const;

  //! Encodes many texts on up to `threads` threads (<= 0: hardware concurrency). Output order
  //! matches input order; results equal Encode() on each text.
  std::vector<std::vector<int32_t>> EncodeBatch(const std::vector<std::string>& texts,
                                                bool add_special_tokens, int threads) const;

  //! Ids -> text. Invalid UTF-8 byte sequences become U+FFFD (one per invalid byte); unknown ids
  //! are skipped. `skip_special_tokens` drops tokens marked special.
  std::string Decode(const std::vector<int32_t>& ids, bool skip_special_tokens) const;

  //! The token string of an id (the vocabulary's form, e.g. "Ġthe", "▁the", "<0x0A>").
  std::optional<std::string> IdToToken(int32_t id) const;
  //! The id of a token string (vocabulary or added token).
  std::optional<int32_t> TokenToId(absl::string_view token) const;
  //! Largest id + 1 (vocabulary plus added tokens): the embedding rows a model needs.
  int32_t VocabSize() const;
  //! True when `id` is an added token marked special (BOS, EOS, <|im_end|>, ...).
  bool IsSpecial(int32_t id) const;

  //! Special tokens from tokenizer_config.json (or the model file); nullopt when absent.
  std::optional<int32_t> bos_id() const { return bos_id_; }
  std::optional<int32_t> eos_id() const { return eos_id_; }
  std::optional<int32_t> pad_id() const { return pad_id_; }
  std::optional<int32_t> unk_id() const { return unk_id_; }
  //! Their strings ("" when absent): templates render them as bos_token / eos_token.
  const std::string& bos_token() const { return bos_token_; }
  const std::string& eos_token() const { return eos_token_; }
  const std::string& pad_token() const { return pad_token_; }
  const std::string& unk_token() const { return unk_token_; }

  //! Whether Encode(text, true) puts a BOS first (from the post-processor, or add_bos_token).
  bool add_bos_token() const;
  //! Whether Encode(text, true) puts an EOS last.
  bool add_eos_token() const;

  //! The default chat template source ("" when the tokenizer has none).
  const std::string& chat_template() const { return chat_template_; }
  //! A named template from a list-form chat_template ("default", "tool_use", ...); nullopt if absent.
  std::optional<std::string> named_chat_template(const std::string& name) const;
  //! tokenizer_config.json's model_max_length (nullopt when absent or the "infinite" 1e30 value).
  std::optional<int64_t> model_max_length() const { return model_max_length_; }

  TokenizerFormat format() const { return format_; }
  //! The files this tokenizer was loaded from (tokenizer.json, tokenizer_config.json,
  //! special_tokens_map.json, vocab.json, merges.txt, tokenizer.model, ...), absolute or as given:
  //! copy them into a saved model directory so it loads the same tokenizer.
  const std::vector<std::string>& source_files() const { return source_files_; }
  //! Copies source_files() into `dir` (created if missing), keeping their file names.
  absl::Status SaveTo(const std::string& dir) const;

 private:
  Tokenizer();
  friend class TokenizerLoader;

  std::unique_ptr<TokenizerBackend> backend_;
  TokenizerFormat format_ = TokenizerFormat::kTokenizerJson;
  std::optional<int32_t> bos_id_, eos_id_, pad_id_, unk_id_;
  std::string bos_token_, eos_token_, pad_token_, unk_token_;
  std::optional<bool> add_bos_override_, add_eos_override_;  // add_bos_token in the config
  std::string chat_template_;
  std::vector<std::pair<std::string, std::string>> named_templates_;
  std::optional<int64_t> model_max_length_;
  std::vector<std::string> source_files_;
};

}  // namespace align::engine
