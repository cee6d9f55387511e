// SentencePiece tokenizer.model through the real library. Control pieces (<s>, </s>, [INST] in
// newer Mistral models) written in the text are matched as special tokens first, and each text
// segment between them is encoded on its own. Only text at the very start gets SentencePiece's
// dummy "▁" prefix (Hugging Face's LlamaTokenizer with legacy=False, and mistral-common); with
// "legacy": true in tokenizer_config.json every segment gets it.
#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "worker/engine/tokenizer/backend.h"
#include "worker/engine/tokenizer/spm_model.h"

namespace align::engine {
namespace {

class SpmBackend final : public TokenizerBackend {
 public:
  std::unique_ptr<SpmModel> model;
  bool add_bos = true, add_eos = false;
  bool legacy = false;  // true: every segment gets the dummy prefix, also after special tokens
  std::vector<std::pair<std::string, int32_t>> specials;  // control pieces, longest first
  std::array<bool, 256> first_{};

  void Encode(absl::string_view text, bool add_special, std::vector<int32_t>* ids,
              std::vector<TokenOffset>* offsets) const override {
    if (add_special && add_bos && model->bos_id() >= 0) {
      ids->push_back(model->bos_id());
      if (offsets) offsets->emplace_back(0, 0);
    }
    size_t last = 0;
    auto run = [&](size_t b, size_t e) {
      if (e <= b) return;
      size_t before = offsets ? offsets->size() : 0;
      model->Encode(std::string(text.substr(b, e - b)), legacy || b == 0, ids, offsets);
      if (offsets) {
        for (size_t k = before; k < offsets->size(); ++k) {
          (*offsets)[k].first += static_cast<uint32_t>(b);
          (*offsets)[k].second += static_cast<uint32_t>(b);
        }
      }
    };
    for (size_t i = 0; i < text.size();) {
      if (!first_[static_cast<unsigned char>(text[i])]) {
        ++i;
        continue;
      }
      const std::pair<std::string, int32_t>* hit = nullptr;
      for (const auto& s : specials) {
        if (text.compare(i, s.first.size(), s.first) == 0) {
          hit = &s;
          break;
        }
      }
      if (!hit) {
        ++i;
        continue;
      }
      run(last, i);
      ids->push_back(hit->second);
      if (offsets) offsets->emplace_back(i, i + hit->first.size());
      i += hit->first.size();
      last = i;
    }
    run(last, text.size());
    if (add_special && add_eos && model->eos_id() >= 0) {
      ids->push_back(model->eos_id());
      if (offsets) offsets->emplace_back(text.size(), text.size());
    }
  }

  std::string Decode(const std::vector<int32_t>& ids, bool skip_special) const override {
    std::string out;
    std::vector<int32_t> run;
    auto flush = [&] {
      if (!run.empty()) out += model->Decode(run);
      run.clear();
    };
    for (int32_t id : ids) {
      if (id < 0 || id >= model->Size()) continue;
      if (model->IsControl(id)) {
        flush();
        if (!skip_special) out += model->IdToPiece(id);
        continue;
      }
      run.push_back(id);
    }
    flush();
    return out;
  }
  std::optional<std::string> IdToToken(int32_t id) const override {
    if (id < 0 || id >= model->Size()) return std::nullopt;
    return model->IdToPiece(id);
  }
  std::optional<int32_t> TokenToId(absl::string_view token) const override {
    int32_t id = model->PieceToId(std::string(token));
    if (id < 0 || (model->IsUnknown(id) && model->IdToPiece(id) != token)) return std::nullopt;
    return id;
  }
  int32_t VocabSize() const override { return model->Size(); }
  bool IsSpecial(int32_t id) const override {
    return id >= 0 && id < model->Size() && (model->IsControl(id) || model->IsUnknown(id));
  }
  std::vector<int32_t> SpecialPrefix() const override {
    if (add_bos && model->bos_id() >= 0) return {model->bos_id()};
    return {};
  }
  std::vector<int32_t> SpecialSuffix() const override {
    if (add_eos && model->eos_id() >= 0) return {model->eos_id()};
    return {};
  }
};

}  // namespace

absl::StatusOr<std::unique_ptr<TokenizerBackend>> MakeSentencePieceBackend(const std::string& path,
                                                                           bool add_bos,
                                                                           bool add_eos, bool legacy) {
  std::string error;
  auto model = SpmModel::Load(path, &error);
  if (!model) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": cannot load SentencePiece model: ", error));
  }
  auto b = std::make_unique<SpmBackend>();
  b->add_bos = add_bos;
  b->add_eos = add_eos;
  b->legacy = legacy;
  for (int32_t id = 0; id < model->Size(); ++id) {
    if (!model->IsControl(id)) continue;
    std::string piece = model->IdToPiece(id);
    if (piece.empty()) continue;
    b->first_[static_cast<unsigned char>(piece[0])] = true;
    b->specials.emplace_back(piece, id);
  }
  std::stable_sort(b->specials.begin(), b->specials.end(),
                   [](const auto& x, const auto& y) { return x.first.size() > y.first.size(); });
  b->model = std::move(model);
  return std::unique_ptr<TokenizerBackend>(std::move(b));
}

SpmSpecials SentencePieceSpecials(const TokenizerBackend& backend) {
  SpmSpecials s;
  const auto* spm = dynamic_cast<const SpmBackend*>(&backend);
  if (spm == nullptr) return s;
  auto piece = [&](int32_t id) { return id >= 0 ? spm->model->IdToPiece(id) : std::string(); };
  s.bos = piece(spm->model->bos_id());
  s.eos = piece(spm->model->eos_id());
  s.unk = piece(spm->model->unk_id());
  s.pad = piece(spm->model->pad_id());
  return s;
}

}  // namespace align::engine
