// Streaming JSON-lines readers for plain and gzip-compressed files (zlib reads both), with the
// stage's bad-line policy: fail naming file:line, or skip and count. Used by every data consumer.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace align::engine::data {

//! What to do with a line that is not a JSON object (DataSource.on_bad_line).
enum class OnBadLine { kFail, kSkip };

//! Parses "FAIL"/"SKIP"/"" (proto enum names, any case); empty or unspecified means kFail.
absl::StatusOr<OnBadLine> ParseOnBadLine(const std::string& text);

struct ReadStats {
  int64_t lines = 0;    // non-empty lines seen
  int64_t rows = 0;     // rows handed to the callback
  int64_t skipped = 0;  // bad lines skipped under kSkip
  std::vector<std::string> bad_lines;  // "file:line: why" for the first few skipped lines
};

//! Calls `on_row(row, line_number)` for each JSON object line of `path` (.jsonl or .jsonl.gz).
//! A callback error stops the read and is returned with file:line added. Blank lines are ignored.
//! `max_rows` > 0 stops after that many rows.
absl::StatusOr<ReadStats> ReadJsonl(
    const std::string& path, OnBadLine on_bad_line,
    const std::function<absl::Status(nlohmann::json&& row, int64_t line)>& on_row,
    int64_t max_rows = 0);

//! Reads every row into memory.
absl::StatusOr<std::vector<nlohmann::json>> ReadJsonlRows(const std::string& path,
                                                          OnBadLine on_bad_line,
                                                          ReadStats* stats = nullptr,
                                                          int64_t max_rows = 0);

//! Writes rows as JSON lines to `path` atomically (temporary file, fsync, rename).
absl::Status WriteJsonl(const std::string& path, const std::vector<nlohmann::json>& rows);

//! Writes `text` to `path` atomically (temporary file, fsync, rename).
absl::Status WriteFileAtomic(const std::string& path, const std::string& text);

//! Hex SHA-256 and size of a file (for artifact events and cache keys).
absl::StatusOr<std::string> Sha256File(const std::string& path, int64_t* size_bytes = nullptr);
//! Hex SHA-256 of a string.
std::string Sha256Hex(const std::string& bytes);

}  // namespace align::engine::data
