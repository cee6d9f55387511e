// Helpers for worker tests: where fake-align-train is, a launcher that remembers pids, a scratch
// directory, and /proc checks that no process of an attempt is left.
#pragma once

#include <sys/types.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "worker/supervisor/process_launcher.h"

namespace align::worker::testing {

inline std::string FakeTrainPath() { return std::string(ALIGN_BINARY_DIR) + "/bin/fake-align-train"; }

//! A fresh directory under the system temp dir, removed at destruction.
class ScratchDir {
 public:
  ScratchDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "align-worker-test-XXXXXX").string();
    path_ = mkdtemp(tmpl.data());
  }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

//! PosixProcessLauncher that records every leader pid it started.
class RecordingLauncher final : public ProcessLauncher {
 public:
  absl::StatusOr<std::unique_ptr<Process>> Launch(const LaunchSpec& spec) override {
    auto p = real_.Launch(spec);
    if (p.ok()) {
      absl::MutexLock lock(&mu_);
      pids_.push_back((*p)->pid());
      specs_.push_back(spec);
    }
    return p;
  }
  std::vector<pid_t> pids() {
    absl::MutexLock lock(&mu_);
    return pids_;
  }
  std::vector<LaunchSpec> specs() {
    absl::MutexLock lock(&mu_);
    return specs_;
  }

 private:
  PosixProcessLauncher real_;
  absl::Mutex mu_;
  std::vector<pid_t> pids_;
  std::vector<LaunchSpec> specs_;
};

//! True when `pid` is gone or a zombie (holds nothing).
inline bool ProcessGone(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/stat"));
  if (!in) return true;
  std::string line;
  std::getline(in, line);
  const size_t close = line.rfind(')');
  if (close == std::string::npos || close + 2 >= line.size()) return true;
  const char state = line[close + 2];
  return state == 'Z' || state == 'X';
}

//! Polls `done` (calling `step` between tries) until it holds or a generous deadline passes.
inline bool PollUntil(const std::function<bool()>& done, const std::function<void()>& step = {},
                      std::chrono::seconds deadline = std::chrono::seconds(30)) {
  const auto end = std::chrono::steady_clock::now() + deadline;
  while (std::chrono::steady_clock::now() < end) {
    if (step) step();
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return done();
}

inline std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

}  // namespace align::worker::testing
