// RFC 4180 CSV (quoted fields with commas, quotes and newlines) via libcsv, for the MMLU and
// TruthfulQA files. Fields are kept exactly as written (no trimming), like Python's csv module.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace align::engine::eval {

using CsvRow = std::vector<std::string>;

//! Parses CSV text; `source` names the input in errors (which give the row number).
absl::StatusOr<std::vector<CsvRow>> ParseCsv(const std::string& text, const std::string& source);
//! Reads and parses a CSV file.
absl::StatusOr<std::vector<CsvRow>> ReadCsvFile(const std::string& path);

}  // namespace align::engine::eval
