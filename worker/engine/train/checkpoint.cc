#include "worker/engine/train/checkpoint.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/logging.h"

namespace align::engine::train {
namespace fs = std::filesystem;

absl::Status FsyncPath(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) return absl::UnavailableError(absl::StrCat(path, ": open for fsync: ", std::strerror(errno)));
  int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) return absl::UnavailableError(absl::StrCat(path, ": fsync: ", std::strerror(errno)));
  return absl::OkStatus();
}

bool CheckpointManager::IsComplete(const std::string& dir) {
  std::error_code ec;
  return fs::is_regular_file(fs::path(dir) / kCompleteMarker, ec);
}

absl::StatusOr<std::string> CheckpointManager::Save(
    int64_t step, const std::function<absl::Status(const std::string&)>& write) {
  std::error_code ec;
  fs::create_directories(root_, ec);
  if (ec) return absl::UnavailableError(absl::StrCat(root_, ": cannot create: ", ec.message()));
  const std::string final_dir = absl::StrCat(root_, "/checkpoint-", step);
  const std::string staging = absl::StrCat(root_, "/.staging-checkpoint-", step, "-", ::getpid());
  fs::remove_all(staging, ec);
  auto fail = [&](absl::Status s) {
    std::error_code ignore;
    fs::remove_all(staging, ignore);
    return absl::Status(s.code(), absl::StrCat("checkpoint at step ", step, ": ", s.message()));
  };
  absl::Status s = write(staging);
  if (!s.ok()) return fail(s);
  if (!fs::is_directory(staging, ec)) {
    return fail(absl::InternalError("the writer created no checkpoint directory"));
  }
  {
    const std::string marker = staging + "/" + kCompleteMarker;
    std::ofstream out(marker);
    out << step << "\n";
    out.close();
    if (!out) return fail(absl::UnavailableError(absl::StrCat(marker, ": write failed")));
  }
  for (const auto& entry : fs::directory_iterator(staging, ec)) {
    if (entry.is_regular_file()) {
      if (absl::Status fs_status = FsyncPath(entry.path().string()); !fs_status.ok()) return fail(fs_status);
    }
  }
  if (absl::Status d = FsyncPath(staging); !d.ok()) return fail(d);
  // A same-step directory left by a killed attempt is replaced; a complete one is equal content.
  if (fs::exists(final_dir, ec)) fs::remove_all(final_dir, ec);
  if (std::rename(staging.c_str(), final_dir.c_str()) != 0) {
    return fail(absl::UnavailableError(absl::StrCat(final_dir, ": rename: ", std::strerror(errno))));
  }
  (void)FsyncPath(root_);
  if (keep_last_ > 0) {
    auto all = ListComplete();
    const int64_t excess = static_cast<int64_t>(all.size()) - keep_last_;
    for (int64_t i = 0; i < excess; ++i) {
      if (all[static_cast<size_t>(i)].second == final_dir) continue;
      fs::remove_all(all[static_cast<size_t>(i)].second, ec);
      if (ec) LOG(WARNING) << "could not prune " << all[static_cast<size_t>(i)].second << ": " << ec.message();
    }
  }
  return final_dir;
}

std::vector<std::pair<int64_t, std::string>> CheckpointManager::ListComplete() const {
  std::vector<std::pair<int64_t, std::string>> out;
  std::error_code ec;
  if (!fs::is_directory(root_, ec)) return out;
  for (const auto& entry : fs::directory_iterator(root_, ec)) {
    const std::string name = entry.path().filename().string();
    constexpr char kPrefix[] = "checkpoint-";
    if (name.rfind(kPrefix, 0) != 0) continue;
    int64_t step = 0;
    if (!absl::SimpleAtoi(name.substr(sizeof(kPrefix) - 1), &step)) continue;
    if (!IsComplete(entry.path().string())) continue;
    out.emplace_back(step, entry.path().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::optional<std::string> CheckpointManager::LatestComplete() const {
  auto all = ListComplete();
  if (all.empty()) return std::nullopt;
  return all.back().second;
}

}  // namespace align::engine::train
