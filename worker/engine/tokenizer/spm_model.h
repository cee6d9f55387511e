// Internal: a thin wrapper over the SentencePiece library in plain std types. SentencePiece's
// header defines absl::string_view as std::string_view, which clashes with Debian's Abseil, so
// only spm_model.cc includes it and nothing here mentions Abseil.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace align::engine {

class SpmModel {
 public:
  //! Loads tokenizer.model; nullptr with `*error` set on failure (or when built without
  //! SentencePiece).
  static std::unique_ptr<SpmModel> Load(const std::string& path, std::string* error);
  ~SpmModel();

  //! Encodes text (no BOS/EOS); offsets are byte ranges in `text`. Without `dummy_prefix` the
  //! model's "▁" prefix is suppressed (Hugging Face's legacy=False trick: encode "<unk>" + text and
  //! drop the pieces of "<unk>"), for text that follows a special token.
  void Encode(const std::string& text, bool dummy_prefix, std::vector<int32_t>* ids,
              std::vector<std::pair<uint32_t, uint32_t>>* offsets) const;
  //! Decodes ids of ordinary pieces (SentencePiece drops the dummy-prefix space).
  std::string Decode(const std::vector<int32_t>& ids) const;
  int32_t Size() const;
  std::string IdToPiece(int32_t id) const;
  int32_t PieceToId(const std::string& piece) const;  // unk id when absent
  bool IsControl(int32_t id) const;
  bool IsUnknown(int32_t id) const;
  int32_t bos_id() const;  // -1 when the model has none
  int32_t eos_id() const;
  int32_t unk_id() const;
  int32_t pad_id() const;

 private:
  SpmModel();
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace align::engine
