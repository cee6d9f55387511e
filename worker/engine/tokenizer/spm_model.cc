// SpmModel over libalign_spm (spm_shim/), loaded at run time with dlopen(RTLD_LOCAL |
// RTLD_DEEPBIND): Debian's libsentencepiece exports an embedded protobuf that crashes any process
// that also loads LibTorch's libprotobuf when the two are linked together. See spm_shim.h.
#include "worker/engine/tokenizer/spm_model.h"

#include <dlfcn.h>
#include <unistd.h>

#include <cstdlib>
#include <mutex>

namespace align::engine {
namespace {

struct ShimApi {
  void* (*load)(const char*, char*, size_t) = nullptr;
  void (*free_model)(void*) = nullptr;
  int (*encode)(void*, const char*, size_t, int32_t**, uint32_t**, uint32_t**, size_t*) = nullptr;
  char* (*decode)(void*, const int32_t*, size_t) = nullptr;
  void (*free_buffer)(void*) = nullptr;
  int32_t (*size)(void*) = nullptr;
  char* (*id_to_piece)(void*, int32_t) = nullptr;
  int32_t (*piece_to_id)(void*, const char*) = nullptr;
  int (*is_control)(void*, int32_t) = nullptr;
  int (*is_unknown)(void*, int32_t) = nullptr;
  int32_t (*special_id)(void*, int) = nullptr;
  std::string error;  // why the shim could not be loaded; empty when it was
};

std::string ExecutableDir() {
  char buf[4096];
  const ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0) return "";
  std::string path(buf, static_cast<size_t>(n));
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? "" : path.substr(0, slash);
}

// Candidates, in order: $ALIGN_SPM_SHIM, <exe dir>/../lib, the build tree's lib dir.
std::vector<std::string> ShimCandidates() {
  std::vector<std::string> out;
  if (const char* env = std::getenv("ALIGN_SPM_SHIM"); env != nullptr && *env != '\0') out.push_back(env);
  const std::string exe_dir = ExecutableDir();
  if (!exe_dir.empty()) {
    out.push_back(exe_dir + "/../lib/libalign_spm.so");
    out.push_back(exe_dir + "/libalign_spm.so");
  }
#ifdef ALIGN_SPM_SHIM_PATH
  out.push_back(ALIGN_SPM_SHIM_PATH);
#endif
  out.push_back("libalign_spm.so");
  return out;
}

template <typename F>
bool Bind(void* handle, const char* name, F* fn) {
  *fn = reinterpret_cast<F>(dlsym(handle, name));
  return *fn != nullptr;
}

const ShimApi& Shim() {
  static ShimApi* api = [] {
    auto* a = new ShimApi();
    void* handle = nullptr;
    std::string tried;
    for (const std::string& path : ShimCandidates()) {
      handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
      if (handle != nullptr) break;
      tried += "\n  " + path + ": " + dlerror();
    }
    if (handle == nullptr) {
      a->error = "cannot load libalign_spm.so (SentencePiece support); set ALIGN_SPM_SHIM to its "
                 "path. Tried:" + tried;
      return a;
    }
    const bool ok = Bind(handle, "align_spm_load", &a->load) &&
                    Bind(handle, "align_spm_free", &a->free_model) &&
                    Bind(handle, "align_spm_encode", &a->encode) &&
                    Bind(handle, "align_spm_decode", &a->decode) &&
                    Bind(handle, "align_spm_free_buffer", &a->free_buffer) &&
                    Bind(handle, "align_spm_size", &a->size) &&
                    Bind(handle, "align_spm_id_to_piece", &a->id_to_piece) &&
                    Bind(handle, "align_spm_piece_to_id", &a->piece_to_id) &&
                    Bind(handle, "align_spm_is_control", &a->is_control) &&
                    Bind(handle, "align_spm_is_unknown", &a->is_unknown) &&
                    Bind(handle, "align_spm_special_id", &a->special_id);
    if (!ok) a->error = "libalign_spm.so lacks a symbol; rebuild it";
    return a;
  }();
  return *api;
}

std::string TakeString(char* s) {
  if (s == nullptr) return "";
  std::string out(s);
  Shim().free_buffer(s);
  return out;
}

}  // namespace

struct SpmModel::Impl {
  void* model = nullptr;
};

SpmModel::SpmModel() : impl_(std::make_unique<Impl>()) {}
SpmModel::~SpmModel() {
  if (impl_ && impl_->model != nullptr) Shim().free_model(impl_->model);
}

std::unique_ptr<SpmModel> SpmModel::Load(const std::string& path, std::string* error) {
  const ShimApi& api = Shim();
  if (!api.error.empty()) {
    *error = api.error;
    return nullptr;
  }
  char err[1024] = {0};
  void* model = api.load(path.c_str(), err, sizeof(err));
  if (model == nullptr) {
    *error = err;
    return nullptr;
  }
  std::unique_ptr<SpmModel> m(new SpmModel());
  m->impl_->model = model;
  return m;
}

void SpmModel::Encode(const std::string& text, bool dummy_prefix, std::vector<int32_t>* ids,
                      std::vector<std::pair<uint32_t, uint32_t>>* offsets) const {
  // Without the dummy prefix: encode "<unk>" + text and drop the pieces "<unk>" alone encodes to
  // (Hugging Face's LlamaTokenizer legacy=False does the same).
  std::string prefix;
  size_t skip = 0;
  if (!dummy_prefix && unk_id() >= 0) {
    prefix = IdToPiece(unk_id());
    std::vector<int32_t> prefix_ids;
    Encode(prefix, true, &prefix_ids, nullptr);
    skip = prefix_ids.size();
  }
  const std::string input = prefix + text;
  const uint32_t shift = static_cast<uint32_t>(prefix.size());
  int32_t* out_ids = nullptr;
  uint32_t* begins = nullptr;
  uint32_t* ends = nullptr;
  size_t n = 0;
  if (Shim().encode(impl_->model, input.data(), input.size(), &out_ids, &begins, &ends, &n) == 0) {
    for (size_t i = skip; i < n; ++i) {
      ids->push_back(out_ids[i]);
      if (offsets) {
        offsets->emplace_back(begins[i] > shift ? begins[i] - shift : 0, ends[i] > shift ? ends[i] - shift : 0);
      }
    }
  }
  Shim().free_buffer(out_ids);
  Shim().free_buffer(begins);
  Shim().free_buffer(ends);
}

std::string SpmModel::Decode(const std::vector<int32_t>& ids) const {
  return TakeString(Shim().decode(impl_->model, ids.data(), ids.size()));
}
int32_t SpmModel::Size() const { return Shim().size(impl_->model); }
std::string SpmModel::IdToPiece(int32_t id) const {
  return TakeString(Shim().id_to_piece(impl_->model, id));
}
int32_t SpmModel::PieceToId(const std::string& piece) const {
  return Shim().piece_to_id(impl_->model, piece.c_str());
}
bool SpmModel::IsControl(int32_t id) const { return Shim().is_control(impl_->model, id) != 0; }
bool SpmModel::IsUnknown(int32_t id) const { return Shim().is_unknown(impl_->model, id) != 0; }
int32_t SpmModel::bos_id() const { return Shim().special_id(impl_->model, 0); }
int32_t SpmModel::eos_id() const { return Shim().special_id(impl_->model, 1); }
int32_t SpmModel::unk_id() const { return Shim().special_id(impl_->model, 2); }
int32_t SpmModel::pad_id() const { return Shim().special_id(impl_->model, 3); }

}  // namespace align::engine
