#include "worker/supervisor/process_launcher.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

extern char** environ;

namespace align::worker {
namespace {

class PosixProcess final : public Process {
 public:
  explicit PosixProcess(pid_t pid) : pid_(pid) {}
  ~PosixProcess() override {
    // Never leave a zombie behind; the supervisor only drops processes it saw exit.
    if (!exited_) waitpid(pid_, nullptr, WNOHANG);
  }

  pid_t pid() const override { return pid_; }

  std::optional<ExitStatus> Poll() override {
    if (exited_) return status_;
    int wstatus = 0;
    const pid_t r = waitpid(pid_, &wstatus, WNOHANG);
    if (r == 0) return std::nullopt;
    if (r < 0) {
      // ECHILD: someone else reaped it (e.g. a SIGCHLD=SIG_IGN host); report it as killed.
      exited_ = true;
      status_ = ExitStatus{.exit_code = -1, .signal = 0};
      return status_;
    }
    exited_ = true;
    if (WIFEXITED(wstatus)) {
      status_ = ExitStatus{.exit_code = WEXITSTATUS(wstatus), .signal = 0};
    } else if (WIFSIGNALED(wstatus)) {
      status_ = ExitStatus{.exit_code = 0, .signal = WTERMSIG(wstatus)};
    }
    return status_;
  }

  void SignalGroup(int sig) override {
    // The leader's pid is the group id; once the group is empty the id may be reused, so check.
    if (ListProcessGroup(pid_).empty() && exited_) return;
    kill(-pid_, sig);
  }

  std::vector<pid_t> LiveMembers() override { return ListProcessGroup(pid_); }

  int64_t RssBytes() override {
    int64_t total = 0;
    for (pid_t p : ListProcessGroup(pid_)) total += ReadRssBytes(p);
    return total;
  }

 private:
  pid_t pid_;
  bool exited_ = false;
  ExitStatus status_;
};

// The fields after the command name in /proc/<pid>/stat: state, ppid, pgrp, ...
bool ReadStat(pid_t pid, char* state, pid_t* pgrp) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/stat"));
  if (!in) return false;
  std::string line;
  std::getline(in, line);
  const size_t close = line.rfind(')');
  if (close == std::string::npos) return false;
  std::istringstream rest(line.substr(close + 1));
  long ppid = 0, pg = 0;
  rest >> *state >> ppid >> pg;
  if (!rest) return false;
  *pgrp = static_cast<pid_t>(pg);
  return true;
}

}  // namespace

std::vector<pid_t> ListProcessGroup(pid_t pgid) {
  std::vector<pid_t> out;
  DIR* dir = opendir("/proc");
  if (dir == nullptr) return out;
  while (dirent* entry = readdir(dir)) {
    int pid = 0;
    if (!absl::SimpleAtoi(entry->d_name, &pid)) continue;
    char state = '?';
    pid_t pgrp = 0;
    if (!ReadStat(pid, &state, &pgrp)) continue;
    // Zombies hold no memory or devices; an unreaped orphan must not keep slots busy forever.
    if (pgrp == pgid && state != 'Z' && state != 'X') out.push_back(pid);
  }
  closedir(dir);
  return out;
}

int64_t ReadRssBytes(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) {
      std::istringstream fields(line.substr(6));
      int64_t kb = 0;
      fields >> kb;
      return kb * 1024;
    }
  }
  return 0;
}

absl::StatusOr<std::unique_ptr<Process>> PosixProcessLauncher::Launch(const LaunchSpec& spec) {
  if (spec.argv.empty()) return absl::InvalidArgumentError("launch: empty argv");
  std::map<std::string, std::string> env;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    const char* eq = std::strchr(*e, '=');
    if (eq == nullptr) continue;
    env[std::string(*e, eq - *e)] = std::string(eq + 1);
  }
  for (const auto& [k, v] : spec.env) env[k] = v;
  std::vector<std::string> env_strings;
  env_strings.reserve(env.size());
  for (const auto& [k, v] : env) env_strings.push_back(absl::StrCat(k, "=", v));
  std::vector<char*> envp;
  for (auto& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::vector<std::string> args = spec.argv;
  std::vector<char*> argv;
  for (auto& s : args) argv.push_back(s.data());
  argv.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  const std::string out = spec.stdout_path.empty() ? "/dev/null" : spec.stdout_path;
  const std::string err = spec.stderr_path.empty() ? "/dev/null" : spec.stderr_path;
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, out.c_str(),
                                   O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, err.c_str(),
                                   O_WRONLY | O_CREAT | O_APPEND, 0644);
  if (!spec.cwd.empty()) posix_spawn_file_actions_addchdir_np(&actions, spec.cwd.c_str());

  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  // The daemon blocks SIGTERM/SIGINT to wait for them in one thread; the child must not inherit
  // that, or a cancel's SIGTERM would never reach it.
  sigset_t empty, defaults;
  sigemptyset(&empty);
  sigemptyset(&defaults);
  for (int sig : {SIGTERM, SIGINT, SIGHUP, SIGPIPE, SIGCHLD, SIGUSR1, SIGUSR2, SIGQUIT}) {
    sigaddset(&defaults, sig);
  }
  posix_spawnattr_setsigmask(&attr, &empty);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  posix_spawnattr_setpgroup(&attr, 0);  // a new group led by the child
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
                                      POSIX_SPAWN_SETSIGDEF);

  pid_t pid = 0;
  const int rc = posix_spawnp(&pid, argv[0], &actions, &attr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot start ", spec.argv[0], ": ", std::strerror(rc),
        "; check --align-train points at an executable align-train"));
  }
  return std::unique_ptr<Process>(std::make_unique<PosixProcess>(pid));
}

}  // namespace align::worker
