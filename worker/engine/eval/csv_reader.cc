#include "worker/engine/eval/csv_reader.h"

#include <csv.h>

#include <fstream>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace align::engine::eval {
namespace {

struct Builder {
  std::vector<CsvRow> rows;
  CsvRow current;
};

void OnField(void* data, size_t len, void* ctx) {
  auto* b = static_cast<Builder*>(ctx);
  b->current.emplace_back(static_cast<const char*>(data), len);
}

void OnRow(int, void* ctx) {
  auto* b = static_cast<Builder*>(ctx);
  b->rows.push_back(std::move(b->current));
  b->current.clear();
}

// Python's csv keeps spaces around unquoted fields; libcsv trims them unless told otherwise.
int NoSpace(unsigned char) { return 0; }

}  // namespace

absl::StatusOr<std::vector<CsvRow>> ParseCsv(const std::string& text, const std::string& source) {
  csv_parser parser;
  if (csv_init(&parser, CSV_STRICT | CSV_STRICT_FINI) != 0) {
    return absl::InternalError("csv_init failed");
  }
  csv_set_space_func(&parser, NoSpace);
  Builder builder;
  const size_t parsed = csv_parse(&parser, text.data(), text.size(), OnField, OnRow, &builder);
  absl::Status status;
  if (parsed != text.size() || csv_fini(&parser, OnField, OnRow, &builder) != 0) {
    status = absl::InvalidArgumentError(absl::StrCat(
        source, ": malformed CSV near row ", builder.rows.size() + 1, ": ",
        csv_strerror(csv_error(&parser)), " (expected RFC 4180: quote fields holding commas, quotes or newlines)"));
  }
  csv_free(&parser);
  if (!status.ok()) return status;
  return std::move(builder.rows);
}

absl::StatusOr<std::vector<CsvRow>> ReadCsvFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open CSV file '", path, "'"));
  std::stringstream ss;
  ss << in.rdbuf();
  return ParseCsv(ss.str(), path);
}

}  // namespace align::engine::eval
