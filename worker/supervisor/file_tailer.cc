#include "worker/supervisor/file_tailer.h"

#include <sys/stat.h>

#include <algorithm>
#include <fstream>

namespace align::worker {
namespace {
constexpr int64_t kChunk = 64 * 1024;
constexpr int64_t kTailBytes = 64 * 1024;
}  // namespace

std::vector<std::string> FileTailer::ReadLines(size_t max_lines, bool flush_partial,
                                               size_t max_line_bytes) {
  std::vector<std::string> out;
  std::ifstream in(path_, std::ios::binary);
  if (!in) return out;
  in.seekg(offset_);
  std::string pending;
  std::string chunk(kChunk, '\0');
  int64_t consumed = offset_;  // bytes up to the end of the last complete line
  int64_t pos = offset_;
  while (out.size() < max_lines) {
    in.read(chunk.data(), kChunk);
    const std::streamsize n = in.gcount();
    if (n <= 0) break;
    for (std::streamsize i = 0; i < n && out.size() < max_lines; ++i) {
      ++pos;
      const char c = chunk[i];
      if (c == '\n') {
        if (pending.size() > max_line_bytes) pending.resize(max_line_bytes);
        out.push_back(std::move(pending));
        pending.clear();
        consumed = pos;
      } else {
        pending.push_back(c);
      }
    }
    if (!in) break;
  }
  if (flush_partial && !pending.empty() && out.size() < max_lines) {
    if (pending.size() > max_line_bytes) pending.resize(max_line_bytes);
    out.push_back(std::move(pending));
    consumed = pos;
  }
  offset_ = consumed;
  lines_read_ += static_cast<int64_t>(out.size());
  return out;
}

bool FileTailer::AtEnd() const {
  struct stat st;
  if (stat(path_.c_str(), &st) != 0) return true;
  return st.st_size <= offset_;
}

std::vector<std::string> ReadLastLines(const std::string& path, size_t max_lines) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) return {};
  const int64_t size = in.tellg();
  const int64_t start = std::max<int64_t>(0, size - kTailBytes);
  in.seekg(start);
  std::string data(size - start, '\0');
  in.read(data.data(), static_cast<std::streamsize>(data.size()));
  data.resize(in.gcount());
  std::vector<std::string> lines;
  size_t begin = 0;
  // A cut first line is dropped unless we read from the file's start.
  if (start > 0) {
    const size_t nl = data.find('\n');
    begin = nl == std::string::npos ? data.size() : nl + 1;
  }
  while (begin < data.size()) {
    size_t nl = data.find('\n', begin);
    if (nl == std::string::npos) nl = data.size();
    lines.push_back(data.substr(begin, nl - begin));
    begin = nl + 1;
  }
  if (lines.size() > max_lines) lines.erase(lines.begin(), lines.end() - max_lines);
  return lines;
}

}  // namespace align::worker
