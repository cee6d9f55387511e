#include "worker/engine/core/events.h"

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <system_error>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace align::engine {
namespace {

double NowSeconds() {
  using namespace std::chrono;
  return duration_cast<duration<double>>(system_clock::now().time_since_epoch()).count();
}

nlohmann::json Stamp(const std::string& type, nlohmann::json fields) {
  if (!fields.is_object()) fields = nlohmann::json::object();
  fields["event"] = type;
  fields["time"] = NowSeconds();
  return fields;
}

}  // namespace

absl::StatusOr<std::unique_ptr<JsonLinesEventSink>> JsonLinesEventSink::Open(const std::string& path) {
  if (path.empty()) return std::unique_ptr<JsonLinesEventSink>(new JsonLinesEventSink(stdout, false));
  // The worker creates the attempt directory; a job run by hand may name a folder that does
  // not exist yet.
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  if (!parent.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(parent, ec);
    if (ec) {
      return absl::UnavailableError(absl::StrCat("events_path ", path, ": cannot create its folder ",
                                                 parent.string(), ": ", ec.message()));
    }
  }
  std::FILE* f = std::fopen(path.c_str(), "a");
  if (f == nullptr) {
    return absl::UnavailableError(
        absl::StrCat("events_path ", path, ": cannot open for appending: ", std::strerror(errno)));
  }
  return std::unique_ptr<JsonLinesEventSink>(new JsonLinesEventSink(f, true));
}

JsonLinesEventSink::~JsonLinesEventSink() {
  if (owned_) std::fclose(file_);
}

void JsonLinesEventSink::Emit(const std::string& type, nlohmann::json fields) {
  const std::string line =
      Stamp(type, std::move(fields)).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  std::lock_guard<std::mutex> lock(mu_);
  std::fwrite(line.data(), 1, line.size(), file_);
  std::fflush(file_);
}

void RecordingEventSink::Emit(const std::string& type, nlohmann::json fields) {
  std::lock_guard<std::mutex> lock(mu);
  events.push_back(Stamp(type, std::move(fields)));
}

}  // namespace align::engine
