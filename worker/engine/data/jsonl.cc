#include "worker/engine/data/jsonl.h"

#include <fcntl.h>
#include <unistd.h>
#include <zlib.h>

#include <array>
#include <cstdio>
#include <cstring>
#include <fstream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace align::engine::data {
namespace {

// A compact SHA-256 (FIPS 180-4); no crypto library is linked into the engine for this alone.
class Sha256 {
 public:
  Sha256() { Reset(); }
  void Update(const unsigned char* data, size_t n) {
    for (size_t i = 0; i < n; ++i) {
      buf_[len_++] = data[i];
      if (len_ == 64) {
        Block(buf_.data());
        len_ = 0;
      }
      bits_ += 8;
    }
  }
  std::string HexDigest() {
    uint64_t bits = bits_;
    unsigned char pad = 0x80;
    Update(&pad, 1);
    unsigned char zero = 0;
    while (len_ != 56) Update(&zero, 1);
    unsigned char lenb[8];
    for (int i = 0; i < 8; ++i) lenb[i] = static_cast<unsigned char>(bits >> (56 - 8 * i));
    Update(lenb, 8);
    static const char* kHex = "0123456789abcdef";
    std::string out;
    for (uint32_t v : h_) {
      for (int i = 7; i >= 0; --i) out.push_back(kHex[(v >> (4 * i)) & 0xf]);
    }
    return out;
  }

 private:
  static uint32_t Rotr(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }
  void Reset() {
    h_ = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
          0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    len_ = 0;
    bits_ = 0;
  }
  void Block(const unsigned char* p) {
    static const uint32_t k[64] = {
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
        0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
        0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
        0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
        0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
        0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
        0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
        0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
        0xc67178f2};
    uint32_t w[64];
    for (int i = 0; i < 16; ++i) {
      w[i] = (uint32_t{p[4 * i]} << 24) | (uint32_t{p[4 * i + 1]} << 16) |
             (uint32_t{p[4 * i + 2]} << 8) | uint32_t{p[4 * i + 3]};
    }
    for (int i = 16; i < 64; ++i) {
      uint32_t s0 = Rotr(w[i - 15], 7) ^ Rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
      uint32_t s1 = Rotr(w[i - 2], 17) ^ Rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
      w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = h_[0], b = h_[1], c = h_[2], d = h_[3], e = h_[4], f = h_[5], g = h_[6],
             h = h_[7];
    for (int i = 0; i < 64; ++i) {
      uint32_t s1 = Rotr(e, 6) ^ Rotr(e, 11) ^ Rotr(e, 25);
      uint32_t ch = (e & f) ^ (~e & g);
      uint32_t t1 = h + s1 + ch + k[i] + w[i];
      uint32_t s0 = Rotr(a, 2) ^ Rotr(a, 13) ^ Rotr(a, 22);
      uint32_t mj = (a & b) ^ (a & c) ^ (b & c);
      uint32_t t2 = s0 + mj;
      h = g;
      g = f;
      f = e;
      e = d + t1;
      d = c;
      c = b;
      b = a;
      a = t1 + t2;
    }
    h_[0] += a;
    h_[1] += b;
    h_[2] += c;
    h_[3] += d;
    h_[4] += e;
    h_[5] += f;
    h_[6] += g;
    h_[7] += h;
  }
  std::array<uint32_t, 8> h_;
  std::array<unsigned char, 64> buf_;
  size_t len_ = 0;
  uint64_t bits_ = 0;
};

}  // namespace

absl::StatusOr<OnBadLine> ParseOnBadLine(const std::string& text) {
  std::string t = absl::AsciiStrToLower(text);
  if (t.empty() || t == "fail" || t == "on_bad_line_unspecified") return OnBadLine::kFail;
  if (t == "skip") return OnBadLine::kSkip;
  return absl::InvalidArgumentError(
      absl::StrCat("on_bad_line: '", text, "' is not one of FAIL, SKIP"));
}

absl::StatusOr<ReadStats> ReadJsonl(
    const std::string& path, OnBadLine on_bad_line,
    const std::function<absl::Status(nlohmann::json&& row, int64_t line)>& on_row,
    int64_t max_rows) {
  // gzopen reads uncompressed files transparently, so one path serves .jsonl and .jsonl.gz.
  gzFile f = gzopen(path.c_str(), "rb");
  if (f == nullptr) {
    return absl::NotFoundError(absl::StrCat(path, ": cannot open data file: ", std::strerror(errno),
                                            "; check the data source path"));
  }
  gzbuffer(f, 1 << 17);
  ReadStats stats;
  std::string line;
  std::vector<char> chunk(1 << 16);
  int64_t line_no = 0;
  bool eof = false;
  absl::Status status;
  while (!eof && status.ok()) {
    line.clear();
    // Lines can be longer than the chunk: keep reading until the newline.
    while (true) {
      char* got = gzgets(f, chunk.data(), static_cast<int>(chunk.size()));
      if (got == nullptr) {
        int err = 0;
        const char* msg = gzerror(f, &err);
        if (err != Z_OK && err != Z_STREAM_END) {
          gzclose(f);
          return absl::DataLossError(absl::StrCat(path, ":", line_no + 1,
                                                  ": corrupt or truncated file: ", msg));
        }
        eof = true;
        break;
      }
      line.append(got);
      if (!line.empty() && line.back() == '\n') break;
    }
    if (eof && line.empty()) break;
    ++line_no;
    while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.pop_back();
    if (absl::StripAsciiWhitespace(line).empty()) continue;
    ++stats.lines;
    nlohmann::json row = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    std::string why;
    if (row.is_discarded()) {
      why = "not valid JSON";
    } else if (!row.is_object()) {
      why = "expected a JSON object";
    }
    if (!why.empty()) {
      std::string where = absl::StrCat(path, ":", line_no, ": ", why);
      if (on_bad_line == OnBadLine::kFail) {
        gzclose(f);
        return absl::InvalidArgumentError(
            absl::StrCat(where, " (set on_bad_line: SKIP to skip and count bad lines)"));
      }
      ++stats.skipped;
      if (stats.bad_lines.size() < 10) stats.bad_lines.push_back(where);
      continue;
    }
    status = on_row(std::move(row), line_no);
    if (!status.ok()) {
      gzclose(f);
      return absl::Status(status.code(), absl::StrCat(path, ":", line_no, ": ", status.message()));
    }
    ++stats.rows;
    if (max_rows > 0 && stats.rows >= max_rows) break;
  }
  gzclose(f);
  return stats;
}

absl::StatusOr<std::vector<nlohmann::json>> ReadJsonlRows(const std::string& path,
                                                          OnBadLine on_bad_line, ReadStats* stats,
                                                          int64_t max_rows) {
  std::vector<nlohmann::json> rows;
  auto s = ReadJsonl(
      path, on_bad_line,
      [&](nlohmann::json&& row, int64_t) {
        rows.push_back(std::move(row));
        return absl::OkStatus();
      },
      max_rows);
  if (!s.ok()) return s.status();
  if (stats != nullptr) *stats = *s;
  return rows;
}

absl::Status WriteFileAtomic(const std::string& path, const std::string& text) {
  const std::string tmp = absl::StrCat(path, ".tmp-", ::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) {
    return absl::UnavailableError(
        absl::StrCat(tmp, ": cannot create: ", std::strerror(errno)));
  }
  size_t off = 0;
  while (off < text.size()) {
    ssize_t n = ::write(fd, text.data() + off, text.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      std::string err = std::strerror(errno);
      ::close(fd);
      ::unlink(tmp.c_str());
      return absl::UnavailableError(absl::StrCat(tmp, ": write failed: ", err));
    }
    off += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    ::unlink(tmp.c_str());
    return absl::UnavailableError(absl::StrCat(tmp, ": fsync/close failed"));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::string err = std::strerror(errno);
    ::unlink(tmp.c_str());
    return absl::UnavailableError(absl::StrCat(path, ": rename failed: ", err));
  }
  return absl::OkStatus();
}

absl::Status WriteJsonl(const std::string& path, const std::vector<nlohmann::json>& rows) {
  std::string text;
  for (const auto& r : rows) {
    text += r.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    text += '\n';
  }
  return WriteFileAtomic(path, text);
}

absl::StatusOr<std::string> Sha256File(const std::string& path, int64_t* size_bytes) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open to hash"));
  Sha256 h;
  std::vector<char> buf(1 << 16);
  int64_t total = 0;
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    std::streamsize n = in.gcount();
    if (n <= 0) break;
    h.Update(reinterpret_cast<const unsigned char*>(buf.data()), static_cast<size_t>(n));
    total += n;
  }
  if (size_bytes != nullptr) *size_bytes = total;
  return h.HexDigest();
}

std::string Sha256Hex(const std::string& bytes) {
  Sha256 h;
  h.Update(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size());
  return h.HexDigest();
}

}  // namespace align::engine::data
