#include "worker/supervisor/supervisor.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/time_util.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/logging.h"
#include "common/status_macros.h"

namespace align::worker {

namespace fs = std::filesystem;

struct Supervisor::Rank {
  int rank = 0;
  int local_rank = 0;
  std::unique_ptr<Process> process;
  std::optional<ExitStatus> exit;
  std::string stdout_path;
  std::string stderr_path;
  FileTailer events{""};
  FileTailer out{""};
  FileTailer err{""};
  EventParser parser;
  size_t artifacts_reported = 0;
  int64_t rss_bytes = 0;
  absl::Time rss_at = absl::InfinitePast();
};

struct Supervisor::Attempt {
  v1::Assignment assignment;
  std::string dir;
  std::vector<Rank> ranks;
  StopCause stop = StopCause::kNone;
  std::string stop_reason;
  absl::Time term_sent_at = absl::InfinitePast();
  bool killed = false;
  int failed_rank = -1;  // index into ranks
  bool ended = false;
  v1::AttemptExit exit;
  bool exit_reported = false;
  int64_t reported_progress_version = -1;
  std::string reported_checkpoint;
};

namespace {

google::protobuf::Timestamp ToTimestamp(absl::Time t) {
  return google::protobuf::util::TimeUtil::NanosecondsToTimestamp(absl::ToUnixNanos(t));
}

absl::Status WriteFile(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << text;
    if (!out) return absl::InternalError(absl::StrCat("cannot write ", tmp));
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot rename ", tmp, ": ", ec.message()));
  return absl::OkStatus();
}

bool Failed(const ExitStatus& e) { return e.signal != 0 || e.exit_code != 0; }

}  // namespace

int PickFreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return 29500;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_ANY);
  addr.sin_port = 0;
  int port = 29500;
  socklen_t len = sizeof(addr);
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  close(fd);
  return port;
}

namespace {

bool CarriesAttempt(pid_t pid, const std::string& attempt_id) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/environ"), std::ios::binary);
  const std::string want = "ALIGN_ATTEMPT_ID=" + attempt_id;
  std::string entry;
  while (std::getline(in, entry, '\0')) {
    if (entry == want) return true;
  }
  return false;
}

}  // namespace

int KillOrphanedRanks(const std::string& work_root) {
  int killed = 0;
  std::error_code ec;
  const fs::path attempts = fs::path(work_root) / "attempts";
  if (!fs::is_directory(attempts, ec)) return 0;
  for (const auto& dir : fs::directory_iterator(attempts, ec)) {
    const std::string attempt_id = dir.path().filename().string();
    for (const auto& file : fs::directory_iterator(dir.path(), ec)) {
      const std::string name = file.path().filename().string();
      if (name.rfind("rank-", 0) != 0 || file.path().extension() != ".pid") continue;
      std::ifstream in(file.path());
      pid_t pgid = 0;
      if (!(in >> pgid) || pgid <= 1) continue;
      const std::vector<pid_t> members = ListProcessGroup(pgid);
      bool ours = false;
      for (pid_t m : members) ours = ours || CarriesAttempt(m, attempt_id);
      if (ours) {
        LOG(WARNING) << "killing " << members.size() << " process(es) of attempt " << attempt_id
                     << " left by a previous run of the worker (process group " << pgid << ")";
        kill(-pgid, SIGKILL);
        ++killed;
      }
      fs::remove(file.path(), ec);
    }
  }
  return killed;
}

absl::StatusOr<std::unique_ptr<Supervisor>> Supervisor::Create(SupervisorOptions options,
                                                              ProcessLauncher& launcher,
                                                              Clock& clock) {
  ASSIGN_OR_RETURN(FailureClassifier classifier, FailureClassifier::Create(options.log_rules));
  return std::unique_ptr<Supervisor>(
      new Supervisor(std::move(options), std::move(classifier), launcher, clock));
}

Supervisor::Supervisor(SupervisorOptions options, FailureClassifier classifier,
                       ProcessLauncher& launcher, Clock& clock)
    : options_(std::move(options)),
      classifier_(std::move(classifier)),
      launcher_(launcher),
      clock_(clock) {}

Supervisor::~Supervisor() = default;

std::string Supervisor::AttemptDir(const std::string& attempt_id) const {
  return (fs::path(options_.work_root) / "attempts" / attempt_id).string();
}

absl::Status Supervisor::Start(const v1::Assignment& assignment) {
  const std::string& id = assignment.attempt_id();
  if (id.empty() || id.find('/') != std::string::npos || id == "." || id == "..") {
    return absl::InvalidArgumentError(
        absl::StrCat("assignment has an unusable attempt_id '", id, "'"));
  }
  absl::MutexLock lock(&mu_);
  if (attempts_.count(id) > 0) {
    return absl::AlreadyExistsError(absl::StrCat("attempt ", id, " is already on this worker"));
  }
  const absl::Time now = clock_.Now();
  auto attempt = std::make_unique<Attempt>();
  attempt->assignment = assignment;
  attempt->dir = AttemptDir(id);
  Attempt& a = *attempt;
  attempts_[id] = std::move(attempt);

  std::error_code ec;
  fs::create_directories(a.dir, ec);
  if (ec) {
    a.stop = StopCause::kLaunchFailed;
    a.stop_reason = absl::StrCat("cannot create attempt directory ", a.dir, ": ", ec.message());
    Finish(a, now);
    return absl::OkStatus();
  }

  v1::TrainJob job = assignment.job();
  if (job.attempt_id().empty()) job.set_attempt_id(id);
  if (job.pipeline_id().empty()) job.set_pipeline_id(assignment.pipeline_id());
  if (job.output_dir().empty()) {
    job.set_output_dir((fs::path(options_.artifact_root) / assignment.pipeline_id() /
                        assignment.stage()).string());
  }
  if (job.work_dir().empty()) {
    job.set_work_dir((fs::path(options_.work_root) / "stages" / assignment.pipeline_id() /
                      assignment.stage()).string());
  }
  if (job.data_dir().empty()) job.set_data_dir(options_.data_dir);
  if (job.threads() == 0 && assignment.cpus_per_rank() > 0) job.set_threads(assignment.cpus_per_rank());
  fs::create_directories(job.output_dir(), ec);
  fs::create_directories(job.work_dir(), ec);

  std::vector<int> ranks(assignment.ranks().begin(), assignment.ranks().end());
  if (ranks.empty()) ranks.push_back(0);
  const int world_size =
      assignment.world_size() > 0 ? assignment.world_size() : static_cast<int>(ranks.size());
  const std::string master_addr =
      assignment.master_addr().empty() ? "127.0.0.1" : assignment.master_addr();
  const int master_port = assignment.master_port() > 0 ? assignment.master_port() : PickFreePort();

  for (size_t i = 0; i < ranks.size(); ++i) {
    Rank& r = a.ranks.emplace_back();
    r.rank = ranks[i];
    r.local_rank = static_cast<int>(i);
    const std::string prefix = (fs::path(a.dir) / absl::StrCat("rank-", r.rank)).string();
    r.stdout_path = prefix + ".stdout.log";
    r.stderr_path = prefix + ".stderr.log";
    r.events = FileTailer(prefix + ".events.jsonl");
    r.out = FileTailer(r.stdout_path);
    r.err = FileTailer(r.stderr_path);
  }
  auto prefix_of = [&](const Rank& r) {
    return (fs::path(a.dir) / absl::StrCat("rank-", r.rank)).string();
  };
  for (Rank& r : a.ranks) {
    job.set_events_path(r.events.path());
    // The contract's file is <attempt dir>/job.json; several local ranks need one events_path each.
    const std::string job_path =
        a.ranks.size() == 1 ? (fs::path(a.dir) / "job.json").string()
                            : (fs::path(a.dir) / absl::StrCat("rank-", r.rank, ".job.json")).string();
    std::string json;
    google::protobuf::util::JsonPrintOptions print;
    print.preserve_proto_field_names = true;
    print.add_whitespace = true;
    absl::Status st;
    if (auto s = google::protobuf::util::MessageToJsonString(job, &json, print); !s.ok()) {
      st = absl::InternalError(absl::StrCat("cannot encode job file: ", s.ToString()));
    } else {
      st = WriteFile(job_path, json);
    }
    LaunchSpec spec;
    spec.argv = {options_.align_train_path, "--job", job_path};
    for (const auto& arg : options_.align_train_args) spec.argv.push_back(arg);
    spec.env = options_.extra_env;
    spec.env["RANK"] = absl::StrCat(r.rank);
    spec.env["LOCAL_RANK"] = absl::StrCat(r.local_rank);
    spec.env["WORLD_SIZE"] = absl::StrCat(world_size);
    spec.env["LOCAL_WORLD_SIZE"] = absl::StrCat(a.ranks.size());
    spec.env["MASTER_ADDR"] = master_addr;
    spec.env["MASTER_PORT"] = absl::StrCat(master_port);
    // An empty list hides every GPU from a CPU stage instead of letting it grab device 0.
    spec.env["CUDA_VISIBLE_DEVICES"] =
        r.local_rank < assignment.gpu_indices_size()
            ? absl::StrCat(assignment.gpu_indices(r.local_rank))
            : "";
    if (assignment.cpus_per_rank() > 0) {
      spec.env["OMP_NUM_THREADS"] = absl::StrCat(assignment.cpus_per_rank());
    }
    if (!job.data_dir().empty()) spec.env["ALIGN_DATA_DIR"] = job.data_dir();
    spec.env["ALIGN_ATTEMPT_ID"] = id;
    spec.cwd = a.dir;
    spec.stdout_path = r.stdout_path;
    spec.stderr_path = r.stderr_path;
    if (st.ok()) {
      auto process = launcher_.Launch(spec);
      if (process.ok()) {
        r.process = std::move(process).value();
        (void)WriteFile(prefix_of(r) + ".pid", absl::StrCat(r.process->pid(), "\n"));
        continue;
      }
      st = process.status();
    }
    // Ranks already started are stopped; the attempt ends as an infrastructure failure.
    LOG(ERROR) << "attempt " << id << " rank " << r.rank << ": " << st;
    r.exit = ExitStatus{.exit_code = -1, .signal = 0};
    BeginStop(a, StopCause::kLaunchFailed, absl::StrCat("rank ", r.rank, ": ", st.message()), now);
    break;
  }
  for (Rank& r : a.ranks) {
    if (!r.process && !r.exit) r.exit = ExitStatus{.exit_code = -1, .signal = 0};
  }
  LOG(INFO) << "attempt " << id << " (" << assignment.pipeline_id() << "/" << assignment.stage()
            << ") started " << a.ranks.size() << " rank(s) in " << a.dir;
  TickAttempt(a, now);
  return absl::OkStatus();
}

void Supervisor::BeginStop(Attempt& a, StopCause cause, const std::string& reason,
                           absl::Time now) {
  // The first cause wins: a cancel arriving while leftovers of a successful attempt are being
  // killed does not turn that success into a cancellation.
  if (a.stop != StopCause::kNone) return;
  a.stop = cause;
  a.stop_reason = reason;
  if (a.term_sent_at == absl::InfinitePast()) a.term_sent_at = now;
  for (Rank& r : a.ranks) {
    if (r.process) r.process->SignalGroup(SIGTERM);
  }
}

void Supervisor::Cancel(const std::string& attempt_id, StopCause cause, const std::string& reason) {
  absl::MutexLock lock(&mu_);
  auto it = attempts_.find(attempt_id);
  if (it == attempts_.end() || it->second->ended) return;
  LOG(INFO) << "attempt " << attempt_id << ": stopping: " << reason;
  BeginStop(*it->second, cause, reason, clock_.Now());
}

void Supervisor::CancelAll(StopCause cause, const std::string& reason) {
  absl::MutexLock lock(&mu_);
  const absl::Time now = clock_.Now();
  for (auto& [id, a] : attempts_) {
    if (!a->ended) BeginStop(*a, cause, reason, now);
  }
}

void Supervisor::ReadEvents(Rank& r, absl::Time now) {
  // Bounded per tick so one chatty rank cannot starve the others.
  for (const std::string& line : r.events.ReadLines(4096, /*flush_partial=*/r.exit.has_value())) {
    r.parser.Consume(line, now);
  }
}

void Supervisor::Tick() {
  absl::MutexLock lock(&mu_);
  const absl::Time now = clock_.Now();
  for (auto& [id, a] : attempts_) {
    if (!a->ended) TickAttempt(*a, now);
  }
}

void Supervisor::TickAttempt(Attempt& a, absl::Time now) {
  for (Rank& r : a.ranks) {
    if (r.process && !r.exit) {
      r.exit = r.process->Poll();
      if (r.exit) {
        LOG(INFO) << "attempt " << a.assignment.attempt_id() << " rank " << r.rank
                  << (r.exit->signal ? " killed by signal " : " exited with code ")
                  << (r.exit->signal ? r.exit->signal : r.exit->exit_code);
      }
    }
    ReadEvents(r, now);
  }
  if (a.stop == StopCause::kNone) {
    for (size_t i = 0; i < a.ranks.size(); ++i) {
      const Rank& r = a.ranks[i];
      if (r.exit && Failed(*r.exit)) {
        a.failed_rank = static_cast<int>(i);
        BeginStop(a, StopCause::kRankFailed, "", now);
        break;
      }
    }
  }
  if (a.stop == StopCause::kNone) {
    for (const Rank& r : a.ranks) {
      if (r.exit || !r.parser.in_train_phase() ||
          r.parser.steps_seen() < options_.hang_min_steps) {
        continue;
      }
      const absl::Duration limit = std::max(
          options_.hang_min_timeout, options_.hang_step_multiple * r.parser.recent_step_time());
      const absl::Duration silent = now - r.parser.last_step_at();
      if (silent > limit) {
        BeginStop(a, StopCause::kHung,
                  absl::StrCat("rank ", r.rank, " hung: no step event for ",
                               absl::FormatDuration(absl::Trunc(silent, absl::Milliseconds(1))),
                               " after step ", r.parser.progress().step(), " (recent step time ",
                               absl::FormatDuration(absl::Trunc(r.parser.recent_step_time(),
                                                                absl::Milliseconds(1))),
                               ", limit ", absl::FormatDuration(absl::Trunc(limit, absl::Milliseconds(1))),
                               ")"),
                  now);
        break;
      }
    }
  }
  bool all_exited = true;
  for (const Rank& r : a.ranks) all_exited = all_exited && r.exit.has_value();
  if (!all_exited) {
    if (a.stop != StopCause::kNone && !a.killed && now >= a.term_sent_at + options_.kill_grace) {
      a.killed = true;
      for (Rank& r : a.ranks) {
        if (r.process) r.process->SignalGroup(SIGKILL);
      }
    }
    return;
  }
  // Every leader is gone; the attempt ends only when nothing it forked is left either.
  size_t leftovers = 0;
  for (Rank& r : a.ranks) {
    if (r.process) leftovers += r.process->LiveMembers().size();
  }
  if (leftovers == 0) {
    Finish(a, now);
    return;
  }
  if (a.stop == StopCause::kNone) {
    BeginStop(a, StopCause::kLeftovers,
              absl::StrCat(leftovers, " process(es) left after every rank exited"), now);
    return;
  }
  if (a.killed || now >= a.term_sent_at + options_.kill_grace) {
    a.killed = true;
    for (Rank& r : a.ranks) {
      if (r.process) r.process->SignalGroup(SIGKILL);
    }
  }
}

void Supervisor::Finish(Attempt& a, absl::Time now) {
  a.ended = true;
  v1::AttemptExit& exit = a.exit;
  *exit.mutable_finished_at() = ToTimestamp(now);
  const Rank* tail_rank = a.ranks.empty() ? nullptr : &a.ranks[0];
  switch (a.stop) {
    case StopCause::kNone:
    case StopCause::kLeftovers:
      exit.set_state(v1::ATTEMPT_SUCCEEDED);
      exit.set_failure_class(v1::FAILURE_CLASS_UNSPECIFIED);
      exit.set_reason(a.stop == StopCause::kLeftovers
                          ? absl::StrCat("succeeded; killed ", a.stop_reason)
                          : "succeeded");
      tail_rank = nullptr;
      break;
    case StopCause::kUserCancel:
      exit.set_state(v1::ATTEMPT_CANCELLED);
      exit.set_failure_class(v1::CANCELLED_BY_USER);
      exit.set_reason(a.stop_reason.empty() ? "cancelled" : a.stop_reason);
      break;
    case StopCause::kLeaseLost:
    case StopCause::kShutdown:
    case StopCause::kHung:
    case StopCause::kLaunchFailed:
      exit.set_state(v1::ATTEMPT_FAILED);
      exit.set_failure_class(v1::INFRASTRUCTURE);
      exit.set_reason(a.stop_reason);
      break;
    case StopCause::kRankFailed: {
      const Rank& r = a.ranks[a.failed_rank];
      tail_rank = &r;
      FailureInput input;
      input.exit = *r.exit;
      input.engine_failure_class = r.parser.error_class();
      input.engine_message = r.parser.error_message();
      input.log_tail = ReadLastLines(r.stdout_path, options_.log_tail_lines);
      for (auto& line : ReadLastLines(r.stderr_path, options_.log_tail_lines)) {
        input.log_tail.push_back(std::move(line));
      }
      const Classification c = classifier_.Classify(input);
      exit.set_state(v1::ATTEMPT_FAILED);
      exit.set_failure_class(c.failure_class);
      exit.set_reason(absl::StrCat("rank ", r.rank, " ", c.reason));
      exit.set_exit_code(r.exit->exit_code);
      exit.set_signal(r.exit->signal);
      break;
    }
  }
  if (tail_rank != nullptr) {
    std::vector<std::string> tail = ReadLastLines(tail_rank->stdout_path, options_.log_tail_lines);
    for (auto& line : ReadLastLines(tail_rank->stderr_path, options_.log_tail_lines)) {
      tail.push_back(std::move(line));
    }
    if (tail.size() > options_.log_tail_lines) {
      tail.erase(tail.begin(), tail.end() - options_.log_tail_lines);
    }
    for (auto& line : tail) exit.add_log_tail(line);
    // Kept beside the full logs so the tail survives the worker's restart and log rotation.
    (void)WriteFile((fs::path(a.dir) / "failure-tail.log").string(),
                    absl::StrCat(absl::StrJoin(tail, "\n"), "\n"));
  }
  LOG(INFO) << "attempt " << a.assignment.attempt_id() << " ended: "
            << v1::AttemptState_Name(exit.state()) << " "
            << v1::FailureClass_Name(exit.failure_class()) << " " << exit.reason();
}

std::vector<v1::RunningAttempt> Supervisor::Running() {
  absl::MutexLock lock(&mu_);
  std::vector<v1::RunningAttempt> out;
  for (auto& [id, a] : attempts_) {
    v1::RunningAttempt& r = out.emplace_back();
    r.set_attempt_id(id);
    for (const Rank& rank : a->ranks) r.add_ranks(rank.rank);
    if (!a->ranks.empty()) *r.mutable_progress() = a->ranks[0].parser.progress();
  }
  return out;
}

std::vector<std::string> Supervisor::AttemptIds() {
  absl::MutexLock lock(&mu_);
  std::vector<std::string> out;
  for (auto& [id, a] : attempts_) out.push_back(id);
  return out;
}

std::optional<v1::ReportAttemptRequest> Supervisor::NextReport(const std::string& attempt_id) {
  absl::MutexLock lock(&mu_);
  auto it = attempts_.find(attempt_id);
  if (it == attempts_.end()) return std::nullopt;
  Attempt& a = *it->second;
  v1::ReportAttemptRequest req;
  req.set_attempt_id(attempt_id);
  bool any = false;
  const absl::Time now = clock_.Now();
  size_t budget = options_.max_log_lines_per_report;
  bool drained = true;
  for (Rank& r : a.ranks) {
    for (auto [tailer, stream] : {std::pair{&r.out, "stdout"}, std::pair{&r.err, "stderr"}}) {
      int64_t offset = tailer->lines_read();
      for (auto& text : tailer->ReadLines(budget, /*flush_partial=*/r.exit.has_value())) {
        v1::LogLine* line = req.add_logs();
        line->set_pipeline_id(a.assignment.pipeline_id());
        line->set_stage(a.assignment.stage());
        line->set_attempt_id(attempt_id);
        line->set_rank(r.rank);
        line->set_stream(stream);
        line->set_offset(offset++);
        line->set_text(std::move(text));
        *line->mutable_time() = ToTimestamp(now);
        --budget;
        any = true;
      }
      drained = drained && tailer->AtEnd();
    }
  }
  if (!a.ranks.empty()) {
    const Rank& lead = a.ranks[0];
    if (lead.parser.progress_version() != a.reported_progress_version &&
        lead.parser.progress_version() > 0) {
      *req.mutable_progress() = lead.parser.progress();
      a.reported_progress_version = lead.parser.progress_version();
      any = true;
    }
    if (lead.parser.checkpoint() != a.reported_checkpoint) {
      req.set_checkpoint(lead.parser.checkpoint());
      a.reported_checkpoint = lead.parser.checkpoint();
      any = true;
    }
  }
  std::map<std::string, v1::MetricSeries*> series;
  for (Rank& r : a.ranks) {
    for (StepPoint& p : r.parser.TakeStepPoints()) {
      for (auto& [name, value] : p.metrics) {
        v1::MetricSeries*& s = series[name];
        if (s == nullptr) {
          s = req.add_metrics();
          s->set_name(name);
          s->set_stage(a.assignment.stage());
          s->set_attempt_id(attempt_id);
        }
        v1::MetricPoint* point = s->add_points();
        point->set_step(p.step);
        point->set_value(value);
        point->set_rank(r.rank);
        *point->mutable_time() = ToTimestamp(now);
        any = true;
      }
    }
    const auto& artifacts = r.parser.artifacts();
    for (; r.artifacts_reported < artifacts.size(); ++r.artifacts_reported) {
      v1::Artifact* art = req.add_artifacts();
      *art = artifacts[r.artifacts_reported];
      art->set_pipeline_id(a.assignment.pipeline_id());
      art->set_stage(a.assignment.stage());
      art->set_attempt_id(attempt_id);
      any = true;
    }
  }
  if (a.ended && drained && !a.exit_reported) {
    a.exit_reported = true;
    *req.mutable_exit() = a.exit;
    any = true;
  }
  if (!any) return std::nullopt;
  return req;
}

std::optional<v1::AttemptExit> Supervisor::ExitOf(const std::string& attempt_id) {
  absl::MutexLock lock(&mu_);
  auto it = attempts_.find(attempt_id);
  if (it == attempts_.end() || !it->second->ended) return std::nullopt;
  return it->second->exit;
}

void Supervisor::Forget(const std::string& attempt_id) {
  absl::MutexLock lock(&mu_);
  auto it = attempts_.find(attempt_id);
  if (it != attempts_.end() && it->second->ended) attempts_.erase(it);
}

bool Supervisor::Idle() {
  absl::MutexLock lock(&mu_);
  return attempts_.empty();
}

std::vector<RankSnapshot> Supervisor::Snapshot() {
  absl::MutexLock lock(&mu_);
  std::vector<RankSnapshot> out;
  for (auto& [id, a] : attempts_) {
    for (Rank& r : a->ranks) {
      RankSnapshot s;
      s.pipeline_id = a->assignment.pipeline_id();
      s.stage = a->assignment.stage();
      s.attempt_id = id;
      s.rank = r.rank;
      s.progress = r.parser.progress();
      s.running = !a->ended;
      // A /proc scan per rank is not free on a busy host: refresh RSS every few seconds only.
      const absl::Time now = absl::Now();
      if (r.process && !r.exit && now - r.rss_at > absl::Seconds(5)) {
        r.rss_bytes = r.process->RssBytes();
        r.rss_at = now;
      }
      s.rss_bytes = (r.process && !r.exit) ? r.rss_bytes : 0;
      out.push_back(std::move(s));
    }
  }
  return out;
}

}  // namespace align::worker
