// libalign_spm: see spm_shim.h for why SentencePiece sits behind this C interface.
#include "worker/engine/tokenizer/spm_shim/spm_shim.h"

#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include <sentencepiece_processor.h>

namespace {

char* CopyString(const std::string& s) {
  char* out = static_cast<char*>(std::malloc(s.size() + 1));
  if (out == nullptr) return nullptr;
  std::memcpy(out, s.data(), s.size());
  out[s.size()] = '\0';
  return out;
}

sentencepiece::SentencePieceProcessor* Sp(void* model) {
  return static_cast<sentencepiece::SentencePieceProcessor*>(model);
}

}  // namespace

extern "C" {

void* align_spm_load(const char* path, char* err, size_t err_len) {
  auto sp = std::make_unique<sentencepiece::SentencePieceProcessor>();
  const auto status = sp->Load(path);
  if (!status.ok()) {
    if (err != nullptr && err_len > 0) {
      std::strncpy(err, status.ToString().c_str(), err_len - 1);
      err[err_len - 1] = '\0';
    }
    return nullptr;
  }
  return sp.release();
}

void align_spm_free(void* model) { delete Sp(model); }

int align_spm_encode(void* model, const char* text, size_t len, int32_t** ids, uint32_t** begins,
                     uint32_t** ends, size_t* n) {
  const auto spt = Sp(model)->EncodeAsImmutableProto(std::string(text, len));
  const size_t count = static_cast<size_t>(spt.pieces().size());
  *n = count;
  *ids = static_cast<int32_t*>(std::malloc(sizeof(int32_t) * (count + 1)));
  *begins = static_cast<uint32_t*>(std::malloc(sizeof(uint32_t) * (count + 1)));
  *ends = static_cast<uint32_t*>(std::malloc(sizeof(uint32_t) * (count + 1)));
  if (*ids == nullptr || *begins == nullptr || *ends == nullptr) return -1;
  size_t i = 0;
  for (const auto& p : spt.pieces()) {
    (*ids)[i] = static_cast<int32_t>(p.id());
    (*begins)[i] = p.begin();
    (*ends)[i] = p.end();
    ++i;
  }
  return 0;
}

char* align_spm_decode(void* model, const int32_t* ids, size_t n) {
  std::vector<int> v(ids, ids + n);
  return CopyString(Sp(model)->DecodeIds(v));
}

void align_spm_free_buffer(void* buffer) { std::free(buffer); }
int32_t align_spm_size(void* model) { return Sp(model)->GetPieceSize(); }
char* align_spm_id_to_piece(void* model, int32_t id) { return CopyString(Sp(model)->IdToPiece(id)); }
int32_t align_spm_piece_to_id(void* model, const char* piece) { return Sp(model)->PieceToId(piece); }
int align_spm_is_control(void* model, int32_t id) { return Sp(model)->IsControl(id) ? 1 : 0; }
int align_spm_is_unknown(void* model, int32_t id) { return Sp(model)->IsUnknown(id) ? 1 : 0; }

int32_t align_spm_special_id(void* model, int which) {
  switch (which) {
    case 0: return Sp(model)->bos_id();
    case 1: return Sp(model)->eos_id();
    case 2: return Sp(model)->unk_id();
    case 3: return Sp(model)->pad_id();
    default: return -1;
  }
}

}  // extern "C"
