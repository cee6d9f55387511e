#include "worker/engine/model/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "nlohmann/json.hpp"

namespace align::engine::model {
namespace {

using json = nlohmann::json;

// Element size for the dtypes we can read; 0 for names we recognise but do not read.
struct DtypeInfo {
  const char* name;
  int64_t size;
  bool readable;
  at::ScalarType type;
};

constexpr DtypeInfo kDtypes[] = {
    {"F32", 4, true, at::kFloat},   {"F16", 2, true, at::kHalf},
    {"BF16", 2, true, at::kBFloat16}, {"F64", 8, false, at::kDouble},
    {"I64", 8, false, at::kLong},   {"I32", 4, false, at::kInt},
    {"I16", 2, false, at::kShort},  {"I8", 1, false, at::kChar},
    {"U8", 1, false, at::kByte},    {"BOOL", 1, false, at::kBool},
    {"F8_E4M3", 1, false, at::kByte}, {"F8_E5M2", 1, false, at::kByte},
};

const DtypeInfo* FindDtype(const std::string& name) {
  for (const auto& d : kDtypes) {
    if (name == d.name) return &d;
  }
  return nullptr;
}

absl::StatusOr<const char*> DtypeName(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return "F32";
    case at::kHalf: return "F16";
    case at::kBFloat16: return "BF16";
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("cannot write dtype ", c10::toString(t), " to safetensors (F32/F16/BF16 only)"));
  }
}

// A read-only mapping of a whole file, unmapped on destruction.
class MappedFile {
 public:
  static absl::StatusOr<std::unique_ptr<MappedFile>> Open(const std::string& path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      return absl::NotFoundError(absl::StrCat(path, ": cannot open: ", std::strerror(errno)));
    }
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
      ::close(fd);
      return absl::InternalError(absl::StrCat(path, ": fstat failed: ", std::strerror(errno)));
    }
    auto f = std::unique_ptr<MappedFile>(new MappedFile());
    f->size_ = static_cast<uint64_t>(st.st_size);
    if (f->size_ > 0) {
      void* p = ::mmap(nullptr, f->size_, PROT_READ, MAP_PRIVATE, fd, 0);
      if (p == MAP_FAILED) {
        ::close(fd);
        return absl::InternalError(absl::StrCat(path, ": mmap failed: ", std::strerror(errno)));
      }
      f->data_ = static_cast<const uint8_t*>(p);
    }
    ::close(fd);
    return f;
  }
  ~MappedFile() {
    if (data_ != nullptr) ::munmap(const_cast<uint8_t*>(data_), size_);
  }
  const uint8_t* data() const { return data_; }
  uint64_t size() const { return size_; }

 private:
  MappedFile() = default;
  const uint8_t* data_ = nullptr;
  uint64_t size_ = 0;
};

struct ParsedFile {
  std::map<std::string, TensorInfo> tensors;
  uint64_t data_start = 0;
};

absl::StatusOr<ParsedFile> ParseHeader(const std::string& path, const uint8_t* data,
                                       uint64_t size) {
  if (size < 8) {
    return absl::DataLossError(absl::StrCat(
        path, ": truncated safetensors file (", size, " bytes; the 8-byte header length is missing)"));
  }
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | data[i];
  if (header_len > size - 8) {
    return absl::DataLossError(absl::StrCat(path, ": truncated safetensors file: header length ",
                                            header_len, " exceeds the ", size - 8,
                                            " bytes after the length field"));
  }
  std::string header(reinterpret_cast<const char*>(data + 8), header_len);
  json j = json::parse(header, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::DataLossError(
        absl::StrCat(path, ": safetensors header is not a JSON object (corrupt file)"));
  }
  ParsedFile out;
  out.data_start = 8 + header_len;
  const uint64_t data_size = size - out.data_start;
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (it.key() == "__metadata__") continue;
    const std::string& name = it.key();
    const json& e = it.value();
    auto bad = [&](const std::string& what) {
      return absl::DataLossError(
          absl::StrCat(path, ": tensor '", name, "': ", what));
    };
    if (!e.is_object() || !e.contains("dtype") || !e.contains("shape") ||
        !e.contains("data_offsets") || !e["dtype"].is_string() || !e["shape"].is_array() ||
        !e["data_offsets"].is_array() || e["data_offsets"].size() != 2) {
      return bad("header entry must have dtype, shape and data_offsets [begin, end]");
    }
    TensorInfo info;
    info.file = path;
    info.dtype = e["dtype"].get<std::string>();
    const DtypeInfo* d = FindDtype(info.dtype);
    if (d == nullptr || !d->readable) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ": tensor '", name, "' has dtype ", info.dtype,
          " which cannot be read; supported dtypes: F32, F16, BF16"));
    }
    int64_t numel = 1;
    for (const auto& s : e["shape"]) {
      if (!s.is_number_integer() || s.get<int64_t>() < 0) return bad("shape entries must be non-negative integers");
      info.shape.push_back(s.get<int64_t>());
      numel *= s.get<int64_t>();
    }
    for (const auto& o : e["data_offsets"]) {
      if (!o.is_number_unsigned() && !(o.is_number_integer() && o.get<int64_t>() >= 0)) {
        return bad("data_offsets must be non-negative integers");
      }
    }
    info.begin = e["data_offsets"][0].get<uint64_t>();
    info.end = e["data_offsets"][1].get<uint64_t>();
    if (info.end < info.begin) {
      return bad(absl::StrCat("header lies: data_offsets [", info.begin, ", ", info.end,
                              "] end before they begin"));
    }
    const uint64_t need = static_cast<uint64_t>(numel) * d->size;
    if (info.end - info.begin != need) {
      return bad(absl::StrCat("header lies: data_offsets [", info.begin, ", ", info.end, "] span ",
                              info.end - info.begin, " bytes but dtype ", info.dtype, " shape [",
                              absl::StrJoin(info.shape, ", "), "] needs ", need));
    }
    if (info.end > data_size) {
      return absl::DataLossError(absl::StrCat(
          path, ": tensor '", name, "': data_offsets [", info.begin, ", ", info.end,
          "] run past the end of the data (", data_size,
          " bytes): the file is truncated or its header lies about offsets"));
    }
    out.tensors.emplace(name, std::move(info));
  }
  // Overlap check: sort by begin and compare neighbours.
  std::vector<std::pair<const std::string*, const TensorInfo*>> order;
  for (const auto& [n, i] : out.tensors) order.push_back({&n, &i});
  std::sort(order.begin(), order.end(),
            [](const auto& a, const auto& b) { return a.second->begin < b.second->begin; });
  for (size_t k = 1; k < order.size(); ++k) {
    const auto& prev = order[k - 1];
    const auto& cur = order[k];
    if (cur.second->begin < prev.second->end && cur.second->end > cur.second->begin) {
      return absl::DataLossError(absl::StrCat(
          path, ": tensor '", *cur.first, "': header lies: data_offsets [", cur.second->begin,
          ", ", cur.second->end, "] overlap tensor '", *prev.first, "' [", prev.second->begin,
          ", ", prev.second->end, "]"));
    }
  }
  return out;
}

absl::Status ReadInto(const std::string& path, at::ScalarType dtype,
                      std::map<std::string, at::Tensor>* out,
                      const std::set<std::string>* only = nullptr) {
  auto file = MappedFile::Open(path);
  if (!file.ok()) return file.status();
  auto parsed = ParseHeader(path, (*file)->data(), (*file)->size());
  if (!parsed.ok()) return parsed.status();
  for (const auto& [name, info] : parsed->tensors) {
    if (only != nullptr && only->count(name) == 0) continue;
    const DtypeInfo* d = FindDtype(info.dtype);
    at::Tensor t = at::empty(info.shape, at::TensorOptions().dtype(d->type));
    if (info.end > info.begin) {
      std::memcpy(t.data_ptr(), (*file)->data() + parsed->data_start + info.begin,
                  info.end - info.begin);
    }
    (*out)[name] = (d->type == dtype) ? t : t.to(dtype);
  }
  return absl::OkStatus();
}

absl::Status FsyncPath(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return absl::InternalError(absl::StrCat(path, ": cannot open to fsync: ", std::strerror(errno)));
  int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) return absl::InternalError(absl::StrCat(path, ": fsync failed: ", std::strerror(errno)));
  return absl::OkStatus();
}

bool FileExists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

}  // namespace

absl::StatusOr<std::map<std::string, TensorInfo>> ReadSafetensorsHeader(const std::string& path) {
  auto file = MappedFile::Open(path);
  if (!file.ok()) return file.status();
  auto parsed = ParseHeader(path, (*file)->data(), (*file)->size());
  if (!parsed.ok()) return parsed.status();
  return std::move(parsed->tensors);
}

absl::StatusOr<std::map<std::string, at::Tensor>> ReadSafetensors(const std::string& path,
                                                                  at::ScalarType dtype) {
  std::map<std::string, at::Tensor> out;
  try {
    absl::Status s = ReadInto(path, dtype, &out);
    if (!s.ok()) return s;
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat(path, ": ", e.what_without_backtrace()));
  }
  return out;
}

absl::StatusOr<std::map<std::string, at::Tensor>> ReadSafetensorsDir(const std::string& dir,
                                                                     at::ScalarType dtype) {
  const std::string index_path = dir + "/model.safetensors.index.json";
  const std::string single = dir + "/model.safetensors";
  std::map<std::string, at::Tensor> out;
  if (FileExists(index_path)) {
    std::ifstream in(index_path);
    std::stringstream ss;
    ss << in.rdbuf();
    json j = json::parse(ss.str(), nullptr, false);
    if (j.is_discarded() || !j.is_object() || !j.contains("weight_map") ||
        !j["weight_map"].is_object()) {
      return absl::DataLossError(
          absl::StrCat(index_path, ": expected a JSON object with a 'weight_map' object"));
    }
    std::map<std::string, std::set<std::string>> by_file;
    for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
      if (!it.value().is_string()) {
        return absl::DataLossError(absl::StrCat(index_path, ": weight_map entry '", it.key(),
                                                "' must name a file"));
      }
      const std::string file = it.value().get<std::string>();
      if (file.find('/') != std::string::npos) {
        return absl::DataLossError(absl::StrCat(index_path, ": weight_map entry '", it.key(),
                                                "' names '", file, "' outside the directory"));
      }
      by_file[file].insert(it.key());
    }
    try {
      for (const auto& [file, names] : by_file) {
        absl::Status s = ReadInto(dir + "/" + file, dtype, &out, &names);
        if (!s.ok()) return s;
        for (const auto& n : names) {
          if (out.count(n) == 0) {
            return absl::DataLossError(absl::StrCat(dir, "/", file, ": missing tensor '", n,
                                                    "' listed in model.safetensors.index.json"));
          }
        }
      }
    } catch (const c10::Error& e) {
      return absl::InternalError(absl::StrCat(dir, ": ", e.what_without_backtrace()));
    }
    return out;
  }
  if (FileExists(single)) return ReadSafetensors(single, dtype);
  return absl::NotFoundError(absl::StrCat(
      dir, ": no model.safetensors or model.safetensors.index.json (expected a Hugging Face "
           "model directory with safetensors weights)"));
}

absl::Status WriteSafetensors(const std::string& path,
                              const std::vector<std::pair<std::string, at::Tensor>>& tensors) {
  try {
    std::vector<at::Tensor> cpu;
    cpu.reserve(tensors.size());
    json header = json::object();
    header["__metadata__"] = {{"format", "pt"}};
    uint64_t offset = 0;
    for (const auto& [name, t] : tensors) {
      auto dn = DtypeName(t.scalar_type());
      if (!dn.ok()) return absl::InvalidArgumentError(absl::StrCat(path, ": tensor '", name, "': ", dn.status().message()));
      at::Tensor c = t.detach().to(at::kCPU).contiguous();
      const uint64_t bytes = c.numel() * c.element_size();
      header[name] = {{"dtype", *dn}, {"shape", c.sizes().vec()},
                      {"data_offsets", {offset, offset + bytes}}};
      offset += bytes;
      cpu.push_back(std::move(c));
    }
    std::string h = header.dump();
    // Pad the header with spaces so the data section starts 8-byte aligned, as the reference
    // writer does.
    while ((h.size() + 8) % 8 != 0) h.push_back(' ');
    FILE* f = std::fopen(path.c_str(), "wb");
    if (f == nullptr) return absl::InternalError(absl::StrCat(path, ": cannot create: ", std::strerror(errno)));
    uint8_t len[8];
    uint64_t n = h.size();
    for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>((n >> (8 * i)) & 0xff);
    bool ok = std::fwrite(len, 1, 8, f) == 8 && std::fwrite(h.data(), 1, h.size(), f) == h.size();
    for (const auto& c : cpu) {
      if (!ok) break;
      const size_t bytes = c.numel() * c.element_size();
      ok = std::fwrite(c.data_ptr(), 1, bytes, f) == bytes;
    }
    ok = ok && std::fflush(f) == 0 && ::fsync(fileno(f)) == 0;
    ok = (std::fclose(f) == 0) && ok;
    if (!ok) return absl::InternalError(absl::StrCat(path, ": write failed: ", std::strerror(errno)));
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat(path, ": ", e.what_without_backtrace()));
  }
  return absl::OkStatus();
}

absl::Status WriteSafetensorsDir(const std::string& dir,
                                 const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                                 uint64_t max_shard_bytes) {
  uint64_t total = 0;
  std::vector<std::vector<std::pair<std::string, at::Tensor>>> shards(1);
  uint64_t current = 0;
  for (const auto& nt : tensors) {
    const uint64_t bytes = nt.second.numel() * nt.second.element_size();
    if (current > 0 && current + bytes > max_shard_bytes) {
      shards.emplace_back();
      current = 0;
    }
    shards.back().push_back(nt);
    current += bytes;
    total += bytes;
  }
  if (shards.size() == 1) return WriteSafetensors(dir + "/model.safetensors", tensors);
  json index;
  index["metadata"] = {{"total_size", total}};
  index["weight_map"] = json::object();
  for (size_t i = 0; i < shards.size(); ++i) {
    const std::string name =
        absl::StrFormat("model-%05d-of-%05d.safetensors", i + 1, shards.size());
    absl::Status s = WriteSafetensors(dir + "/" + name, shards[i]);
    if (!s.ok()) return s;
    for (const auto& nt : shards[i]) index["weight_map"][nt.first] = name;
  }
  const std::string index_path = dir + "/model.safetensors.index.json";
  {
    std::ofstream out(index_path, std::ios::binary);
    out << index.dump(2) << "\n";
    if (!out) return absl::InternalError(absl::StrCat(index_path, ": write failed"));
  }
  return FsyncPath(index_path);
}

}  // namespace align::engine::model
