#include "worker/engine/tokenizer/spm_model.h"

#ifdef ALIGN_HAVE_SENTENCEPIECE
#include <sentencepiece_processor.h>
#endif

namespace align::engine {

#ifdef ALIGN_HAVE_SENTENCEPIECE
struct SpmModel::Impl {
  sentencepiece::SentencePieceProcessor sp;
};

SpmModel::SpmModel() : impl_(std::make_unique<Impl>()) {}
SpmModel::~SpmModel() = default;

std::unique_ptr<SpmModel> SpmModel::Load(const std::string& path, std::string* error) {
  std::unique_ptr<SpmModel> m(new SpmModel());
  auto status = m->impl_->sp.Load(path);
  if (!status.ok()) {
    *error = status.ToString();
    return nullptr;
  }
  return m;
}

void SpmModel::Encode(const std::string& text, std::vector<int32_t>* ids,
                      std::vector<std::pair<uint32_t, uint32_t>>* offsets) const {
  auto spt = impl_->sp.EncodeAsImmutableProto(text);
  for (const auto& p : spt.pieces()) {
    ids->push_back(static_cast<int32_t>(p.id()));
    if (offsets) offsets->emplace_back(p.begin(), p.end());
  }
}

std::string SpmModel::Decode(const std::vector<int32_t>& ids) const {
  std::vector<int> v(ids.begin(), ids.end());
  return impl_->sp.DecodeIds(v);
}
int32_t SpmModel::Size() const { return impl_->sp.GetPieceSize(); }
std::string SpmModel::IdToPiece(int32_t id) const { return impl_->sp.IdToPiece(id); }
int32_t SpmModel::PieceToId(const std::string& piece) const { return impl_->sp.PieceToId(piece); }
bool SpmModel::IsControl(int32_t id) const { return impl_->sp.IsControl(id); }
bool SpmModel::IsUnknown(int32_t id) const { return impl_->sp.IsUnknown(id); }
int32_t SpmModel::bos_id() const { return impl_->sp.bos_id(); }
int32_t SpmModel::eos_id() const { return impl_->sp.eos_id(); }
int32_t SpmModel::unk_id() const { return impl_->sp.unk_id(); }
int32_t SpmModel::pad_id() const { return impl_->sp.pad_id(); }

#else  // !ALIGN_HAVE_SENTENCEPIECE

struct SpmModel::Impl {};
SpmModel::SpmModel() = default;
SpmModel::~SpmModel() = default;
std::unique_ptr<SpmModel> SpmModel::Load(const std::string& path, std::string* error) {
  *error = "this build has no SentencePiece (install libsentencepiece-dev and re-run cmake)";
  return nullptr;
}
void SpmModel::Encode(const std::string&, std::vector<int32_t>*,
                      std::vector<std::pair<uint32_t, uint32_t>>*) const {}
std::string SpmModel::Decode(const std::vector<int32_t>&) const { return ""; }
int32_t SpmModel::Size() const { return 0; }
std::string SpmModel::IdToPiece(int32_t) const { return ""; }
int32_t SpmModel::PieceToId(const std::string&) const { return -1; }
bool SpmModel::IsControl(int32_t) const { return false; }
bool SpmModel::IsUnknown(int32_t) const { return false; }
int32_t SpmModel::bos_id() const { return -1; }
int32_t SpmModel::eos_id() const { return -1; }
int32_t SpmModel::unk_id() const { return -1; }
int32_t SpmModel::pad_id() const { return -1; }
#endif

}  // namespace align::engine
