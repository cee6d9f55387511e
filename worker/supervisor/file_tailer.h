// Reads a growing file (a rank's log or events) line by line from where it stopped, so forwarding
// is pull-based: a slow coordinator leaves lines on disk instead of in memory (back-pressure).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace align::worker {

class FileTailer {
 public:
  explicit FileTailer(std::string path) : path_(std::move(path)) {}
  //! Up to `max_lines` complete new lines (a partial last line waits for its newline unless
  //! `flush_partial`, used once the writer has exited). Lines longer than `max_line_bytes` are cut.
  std::vector<std::string> ReadLines(size_t max_lines, bool flush_partial = false,
                                     size_t max_line_bytes = 16384);
  //! True when everything written so far has been read.
  bool AtEnd() const;
  //! Number of lines handed out so far (the next line's 0-based offset).
  int64_t lines_read() const { return lines_read_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  int64_t offset_ = 0;
  int64_t lines_read_ = 0;
};

//! The last `max_lines` lines of a file (reads at most its last 64 KiB); empty if unreadable.
std::vector<std::string> ReadLastLines(const std::string& path, size_t max_lines);

}  // namespace align::worker
