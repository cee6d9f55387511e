// Starting and watching the processes of an attempt: each rank is one process that leads its own
// process group, so a signal or a /proc scan reaches every process it forked. The supervisor talks
// to this interface; tests may inject their own launcher.
#pragma once

#include <sys/types.h>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace align::worker {

//! How a process ended: exactly one of exit_code (signal == 0) or signal is meaningful.
struct ExitStatus {
  int exit_code = 0;
  int signal = 0;
  bool operator==(const ExitStatus&) const = default;
};

struct LaunchSpec {
  std::vector<std::string> argv;             // argv[0] is the program path
  std::map<std::string, std::string> env;    // added to (and overriding) the inherited environment
  std::string cwd;                           // empty: inherit
  std::string stdout_path;                   // appended to; empty: /dev/null
  std::string stderr_path;                   // appended to; empty: /dev/null
};

//! One launched process and the process group it leads.
class Process {
 public:
  virtual ~Process() = default;
  virtual pid_t pid() const = 0;
  //! Non-blocking: the leader's exit status once it has exited (reaps it).
  virtual std::optional<ExitStatus> Poll() = 0;
  //! Sends `sig` to every process of the group (no-op once the group is empty).
  virtual void SignalGroup(int sig) = 0;
  //! Pids of the group's live (not zombie) processes, leader included while it runs.
  virtual std::vector<pid_t> LiveMembers() = 0;
  //! Resident set size of the group's live processes, in bytes.
  virtual int64_t RssBytes() = 0;
};

class ProcessLauncher {
 public:
  virtual ~ProcessLauncher() = default;
  virtual absl::StatusOr<std::unique_ptr<Process>> Launch(const LaunchSpec& spec) = 0;
};

//! posix_spawn in a new process group, signals reset to defaults and unblocked in the child.
class PosixProcessLauncher final : public ProcessLauncher {
 public:
  absl::StatusOr<std::unique_ptr<Process>> Launch(const LaunchSpec& spec) override;
};

//! Live (state not Z/X) pids whose process group is `pgid`, found by scanning /proc.
std::vector<pid_t> ListProcessGroup(pid_t pgid);
//! VmRSS of `pid` in bytes from /proc/<pid>/status; 0 when it is gone.
int64_t ReadRssBytes(pid_t pid);

}  // namespace align::worker
