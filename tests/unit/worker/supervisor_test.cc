// The supervisor against the real fake-align-train: every way an attempt can end gives the right
// state and failure class, and no process of the attempt is left afterwards. Kill grace periods
// and hang limits run on a FakeClock; only process exits are waited for (polling, with a deadline).
#include "worker/supervisor/supervisor.h"

#include <signal.h>
#include <sys/wait.h>

#include <filesystem>

#include <nlohmann/json.hpp>

#include "common/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/worker/test_util.h"

namespace align::worker {
namespace {

using ::align::testing::IsOk;
using ::align::testing::StatusIs;
using ::testing::Contains;
using ::testing::HasSubstr;
using testing::FakeTrainPath;
using testing::PollUntil;
using testing::ProcessGone;
using testing::ReadFile;

class SupervisorTest : public ::testing::Test {
 protected:
  std::unique_ptr<Supervisor> Make(std::vector<std::string> args,
                                   std::string train_path = FakeTrainPath()) {
    SupervisorOptions o;
    o.align_train_path = std::move(train_path);
    o.align_train_args = std::move(args);
    o.work_root = scratch_.path() + "/work";
    o.artifact_root = scratch_.path() + "/artifacts";
    o.data_dir = "/data/root";
    o.kill_grace = absl::Seconds(10);
    o.hang_min_timeout = absl::Seconds(1);
    o.hang_step_multiple = 10;
    o.hang_min_steps = 2;
    auto s = Supervisor::Create(std::move(o), launcher_, clock_);
    EXPECT_THAT(s, IsOk());
    return std::move(s).value();
  }

  static v1::Assignment Assignment(const std::string& id) {
    v1::Assignment a;
    a.set_attempt_id(id);
    a.set_pipeline_id("p-1");
    a.set_stage("sft");
    a.mutable_job()->mutable_stage()->set_name("sft");
    a.set_world_size(1);
    a.add_ranks(0);
    a.set_master_addr("10.0.0.5");
    a.set_master_port(29555);
    return a;
  }

  // Ticks until the attempt ended; the exit.
  v1::AttemptExit RunToEnd(Supervisor& s, const std::string& id) {
    EXPECT_TRUE(PollUntil([&] { return s.ExitOf(id).has_value(); }, [&] { s.Tick(); }))
        << "attempt " << id << " did not end";
    return s.ExitOf(id).value_or(v1::AttemptExit());
  }

  int64_t Step(Supervisor& s, const std::string& id) {
    for (const auto& r : s.Snapshot()) {
      if (r.attempt_id == id) return r.progress.step();
    }
    return -1;
  }

  void ExpectNoProcessLeft() {
    for (pid_t pid : launcher_.pids()) {
      EXPECT_THAT(ListProcessGroup(pid), ::testing::IsEmpty()) << "process group " << pid;
      EXPECT_TRUE(ProcessGone(pid)) << pid;
    }
  }

  testing::ScratchDir scratch_;
  testing::RecordingLauncher launcher_;
  FakeClock clock_;
};

TEST_F(SupervisorTest, SuccessfulAttemptReportsProgressArtifactsAndExit) {
  auto s = Make({"--mode", "succeed", "--steps", "3"});
  v1::Assignment a = Assignment("a-ok");
  a.add_gpu_indices(1);
  a.set_cpus_per_rank(2);
  ASSERT_OK(s->Start(a));
  const v1::AttemptExit exit = RunToEnd(*s, "a-ok");
  EXPECT_EQ(exit.state(), v1::ATTEMPT_SUCCEEDED);
  EXPECT_EQ(exit.failure_class(), v1::FAILURE_CLASS_UNSPECIFIED);
  EXPECT_EQ(exit.reason(), "succeeded");
  ExpectNoProcessLeft();

  // The job file: proto3 JSON with snake_case names and the worker's paths filled in.
  const std::string dir = s->AttemptDir("a-ok");
  const auto job = nlohmann::json::parse(ReadFile(dir + "/job.json"));
  EXPECT_EQ(job["attempt_id"], "a-ok");
  EXPECT_EQ(job["events_path"], dir + "/rank-0.events.jsonl");
  EXPECT_EQ(job["output_dir"], scratch_.path() + "/artifacts/p-1/sft");
  EXPECT_EQ(job["work_dir"], scratch_.path() + "/work/stages/p-1/sft");
  EXPECT_EQ(job["data_dir"], "/data/root");
  EXPECT_EQ(job["threads"], 2);

  std::vector<std::string> lines;
  v1::ReportAttemptRequest last;
  std::vector<v1::Artifact> artifacts;
  std::string checkpoint;
  std::map<std::string, int> metric_points;
  while (auto r = s->NextReport("a-ok")) {
    for (const auto& l : r->logs()) lines.push_back(absl::StrCat(l.stream(), ":", l.text()));
    for (const auto& art : r->artifacts()) artifacts.push_back(art);
    for (const auto& m : r->metrics()) metric_points[m.name()] += m.points_size();
    if (!r->checkpoint().empty()) checkpoint = r->checkpoint();
    last = *r;
    if (r->has_exit()) break;
  }
  ASSERT_TRUE(last.has_exit());
  EXPECT_THAT(lines, Contains("stdout:env RANK=0"));
  EXPECT_THAT(lines, Contains("stdout:env LOCAL_RANK=0"));
  EXPECT_THAT(lines, Contains("stdout:env WORLD_SIZE=1"));
  EXPECT_THAT(lines, Contains("stdout:env MASTER_ADDR=10.0.0.5"));
  EXPECT_THAT(lines, Contains("stdout:env MASTER_PORT=29555"));
  EXPECT_THAT(lines, Contains("stdout:env CUDA_VISIBLE_DEVICES=1"));
  EXPECT_THAT(lines, Contains("stdout:env OMP_NUM_THREADS=2"));
  EXPECT_THAT(lines, Contains("stdout:env ALIGN_DATA_DIR=/data/root"));
  EXPECT_THAT(lines, Contains("stderr:step 3/3 loss 0.6667"));
  ASSERT_EQ(artifacts.size(), 1u);
  EXPECT_EQ(artifacts[0].name(), "model");
  EXPECT_EQ(artifacts[0].uri(), "file://" + scratch_.path() + "/artifacts/p-1/sft/model");
  EXPECT_EQ(artifacts[0].sha256(),
            "6b2c1f0e9d6a8e4f5b3c2a1d0e9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f");
  EXPECT_EQ(artifacts[0].size_bytes(), 12);
  EXPECT_EQ(artifacts[0].pipeline_id(), "p-1");
  EXPECT_EQ(artifacts[0].attempt_id(), "a-ok");
  EXPECT_EQ(checkpoint, scratch_.path() + "/artifacts/p-1/sft/checkpoint-3");
  EXPECT_EQ(metric_points["loss"], 3);
  EXPECT_EQ(metric_points["rewards/margins"], 3);
  // Nothing new after the exit.
  EXPECT_FALSE(s->NextReport("a-ok").has_value());
  EXPECT_EQ(s->Running().size(), 1u);  // slots stay busy until the exit is acknowledged
  s->Forget("a-ok");
  EXPECT_TRUE(s->Idle());
}

TEST_F(SupervisorTest, LogsAreForwardedInBoundedReportsAndTheExitComesLast) {
  SupervisorOptions o;
  o.align_train_path = FakeTrainPath();
  o.align_train_args = {"--mode", "succeed", "--steps", "3"};
  o.work_root = scratch_.path() + "/work";
  o.artifact_root = scratch_.path() + "/artifacts";
  o.max_log_lines_per_report = 2;
  ASSERT_OK_AND_ASSIGN(auto s, Supervisor::Create(o, launcher_, clock_));
  ASSERT_OK(s->Start(Assignment("a-logs")));
  RunToEnd(*s, "a-logs");
  int reports = 0;
  int64_t next_stdout = 0, next_stderr = 0;
  bool saw_exit = false;
  while (auto r = s->NextReport("a-logs")) {
    ++reports;
    ASSERT_FALSE(saw_exit);
    EXPECT_LE(r->logs_size(), 2);
    for (const auto& l : r->logs()) {
      int64_t& next = l.stream() == "stdout" ? next_stdout : next_stderr;
      EXPECT_EQ(l.offset(), next);
      ++next;
    }
    saw_exit = r->has_exit();
    if (saw_exit) break;
  }
  EXPECT_TRUE(saw_exit);
  EXPECT_EQ(next_stdout, 9);  // 8 env lines + "done"
  EXPECT_EQ(next_stderr, 3);  // one line per step
  EXPECT_GE(reports, 6);
}

struct FailureCase {
  std::string mode;
  v1::FailureClass failure_class;
  int exit_code;
  int signal;
  std::string reason;
};

class SupervisorFailureTest : public SupervisorTest,
                              public ::testing::WithParamInterface<FailureCase> {};

TEST_P(SupervisorFailureTest, EndsWithTheRightClass) {
  const FailureCase& c = GetParam();
  auto s = Make({"--mode", c.mode});
  ASSERT_OK(s->Start(Assignment("a-fail")));
  const v1::AttemptExit exit = RunToEnd(*s, "a-fail");
  EXPECT_EQ(exit.state(), v1::ATTEMPT_FAILED);
  EXPECT_EQ(exit.failure_class(), c.failure_class) << exit.reason();
  EXPECT_EQ(exit.exit_code(), c.exit_code);
  EXPECT_EQ(exit.signal(), c.signal);
  EXPECT_THAT(exit.reason(), HasSubstr(c.reason));
  EXPECT_THAT(exit.log_tail(), Contains("step 3/3 loss 0.6667"));
  // The tail is kept on disk beside the logs.
  EXPECT_THAT(ReadFile(s->AttemptDir("a-fail") + "/failure-tail.log"),
              HasSubstr("step 3/3 loss 0.6667"));
  ExpectNoProcessLeft();
}

INSTANTIATE_TEST_SUITE_P(
    Modes, SupervisorFailureTest,
    ::testing::Values(
        FailureCase{"exit3", v1::USER_ERROR, 3, 0,
                    "rank 0 exited with code 3 (bad data or model input): data line 7"},
        FailureCase{"exit4", v1::INFRASTRUCTURE, 4, 0,
                    "exited with code 4 (infrastructure): cannot write checkpoint"},
        FailureCase{"oom", v1::USER_ERROR, 1, 0, "log rule 'cuda-oom' matched"},
        FailureCase{"ecc", v1::INFRASTRUCTURE, 1, 0, "log rule 'ecc' matched"},
        FailureCase{"segv", v1::USER_ERROR, 0, SIGSEGV, "killed by SIGSEGV"}),
    [](const auto& info) { return info.param.mode; });

TEST_F(SupervisorTest, CancelStopsARunningAttempt) {
  auto s = Make({"--mode", "run"});
  ASSERT_OK(s->Start(Assignment("a-run")));
  ASSERT_TRUE(PollUntil([&] { return Step(*s, "a-run") >= 2; }, [&] { s->Tick(); }));
  const std::vector<RankSnapshot> snap = s->Snapshot();
  ASSERT_EQ(snap.size(), 1u);
  EXPECT_TRUE(snap[0].running);
  EXPECT_GT(snap[0].rss_bytes, 0);  // from /proc/<pid>/status
  EXPECT_EQ(snap[0].pipeline_id, "p-1");
  s->Cancel("a-run", StopCause::kUserCancel, "cancelled by alice");
  const v1::AttemptExit exit = RunToEnd(*s, "a-run");
  EXPECT_EQ(exit.state(), v1::ATTEMPT_CANCELLED);
  EXPECT_EQ(exit.failure_class(), v1::CANCELLED_BY_USER);
  EXPECT_EQ(exit.reason(), "cancelled by alice");
  ExpectNoProcessLeft();
}

TEST_F(SupervisorTest, ARankIgnoringSigtermIsKilledAfterTheGracePeriod) {
  auto s = Make({"--mode", "ignore_term", "--steps", "3"});
  ASSERT_OK(s->Start(Assignment("a-stubborn")));
  // Step 3 comes after the fake has set SIGTERM to ignored.
  ASSERT_TRUE(PollUntil([&] { return Step(*s, "a-stubborn") == 3; }, [&] { s->Tick(); }));
  s->Cancel("a-stubborn", StopCause::kUserCancel, "cancelled");
  for (int i = 0; i < 20; ++i) s->Tick();
  const pid_t leader = launcher_.pids().at(0);
  EXPECT_FALSE(s->ExitOf("a-stubborn").has_value());
  EXPECT_FALSE(ProcessGone(leader));
  clock_.Advance(absl::Seconds(9));
  s->Tick();
  EXPECT_FALSE(ProcessGone(leader));  // still inside the grace period
  clock_.Advance(absl::Seconds(1));
  const v1::AttemptExit exit = RunToEnd(*s, "a-stubborn");
  EXPECT_EQ(exit.state(), v1::ATTEMPT_CANCELLED);
  EXPECT_EQ(exit.failure_class(), v1::CANCELLED_BY_USER);
  ExpectNoProcessLeft();
}

TEST_F(SupervisorTest, AChildThatOutlivesTheRankIsKilledBeforeTheSlotsAreFree) {
  const std::string pid_file = scratch_.path() + "/child.pid";
  auto s = Make({"--mode", "fork_child", "--pid-file", pid_file});
  ASSERT_OK(s->Start(Assignment("a-fork")));
  // The leader exits 0 while its child (ignoring SIGTERM) lives on: the attempt must not end.
  ASSERT_TRUE(PollUntil([&] { return ProcessGone(launcher_.pids().at(0)); },
                        [&] { s->Tick(); }));
  for (int i = 0; i < 20; ++i) s->Tick();
  EXPECT_FALSE(s->ExitOf("a-fork").has_value());
  const pid_t child = std::stoi(ReadFile(pid_file));
  EXPECT_FALSE(ProcessGone(child));
  EXPECT_THAT(ListProcessGroup(launcher_.pids().at(0)), ::testing::ElementsAre(child));
  clock_.Advance(absl::Seconds(10));
  const v1::AttemptExit exit = RunToEnd(*s, "a-fork");
  EXPECT_EQ(exit.state(), v1::ATTEMPT_SUCCEEDED);
  EXPECT_EQ(exit.reason(), "succeeded; killed 1 process(es) left after every rank exited");
  EXPECT_TRUE(ProcessGone(child));
  ExpectNoProcessLeft();
}

TEST_F(SupervisorTest, ARankWithoutStepsForTooLongIsHung) {
  auto s = Make({"--mode", "hang", "--steps", "3", "--step-ms", "5"});
  ASSERT_OK(s->Start(Assignment("a-hang")));
  ASSERT_TRUE(PollUntil([&] { return Step(*s, "a-hang") == 3; }, [&] { s->Tick(); }));
  // Limit: max(1 s minimum, 10 x 5 ms) = 1 s of silence.
  clock_.Advance(absl::Milliseconds(900));
  s->Tick();
  EXPECT_FALSE(s->ExitOf("a-hang").has_value());
  clock_.Advance(absl::Milliseconds(200));
  const v1::AttemptExit exit = RunToEnd(*s, "a-hang");
  EXPECT_EQ(exit.state(), v1::ATTEMPT_FAILED);
  EXPECT_EQ(exit.failure_class(), v1::INFRASTRUCTURE);
  EXPECT_EQ(exit.reason(),
            "rank 0 hung: no step event for 1.1s after step 3 (recent step time 5ms, limit 1s)");
  ExpectNoProcessLeft();
}

TEST_F(SupervisorTest, AMissingEngineBinaryIsAnInfrastructureFailure) {
  auto s = Make({}, scratch_.path() + "/no-such-align-train");
  ASSERT_OK(s->Start(Assignment("a-missing")));
  const v1::AttemptExit exit = RunToEnd(*s, "a-missing");
  EXPECT_EQ(exit.state(), v1::ATTEMPT_FAILED);
  EXPECT_EQ(exit.failure_class(), v1::INFRASTRUCTURE);
  EXPECT_THAT(exit.reason(), HasSubstr("cannot start"));
}

TEST_F(SupervisorTest, TwoLocalRanksGetTheirOwnJobFilesAndEnvironment) {
  auto s = Make({"--mode", "succeed"});
  v1::Assignment a = Assignment("a-two");
  a.set_world_size(4);
  a.clear_ranks();
  a.add_ranks(2);
  a.add_ranks(3);
  ASSERT_OK(s->Start(a));
  const v1::AttemptExit exit = RunToEnd(*s, "a-two");
  EXPECT_EQ(exit.state(), v1::ATTEMPT_SUCCEEDED);
  const std::string dir = s->AttemptDir("a-two");
  EXPECT_EQ(nlohmann::json::parse(ReadFile(dir + "/rank-3.job.json"))["events_path"],
            dir + "/rank-3.events.jsonl");
  EXPECT_THAT(ReadFile(dir + "/rank-3.stdout.log"), HasSubstr("env RANK=3\nenv LOCAL_RANK=1\n"
                                                              "env WORLD_SIZE=4\n"));
  EXPECT_THAT(ReadFile(dir + "/rank-2.stdout.log"), HasSubstr("env CUDA_VISIBLE_DEVICES=\n"));
  ExpectNoProcessLeft();
}

TEST_F(SupervisorTest, OneFailingRankStopsTheOthersAndDecidesTheClass) {
  auto s = Make({"--mode", "rank1_exit3"});
  v1::Assignment a = Assignment("a-gang");
  a.set_world_size(2);
  a.add_ranks(1);
  ASSERT_OK(s->Start(a));
  const v1::AttemptExit exit = RunToEnd(*s, "a-gang");
  EXPECT_EQ(exit.state(), v1::ATTEMPT_FAILED);
  EXPECT_EQ(exit.failure_class(), v1::USER_ERROR);
  EXPECT_EQ(exit.exit_code(), 3);
  EXPECT_THAT(exit.reason(), HasSubstr("rank 1 exited with code 3 (bad data or model input)"));
  EXPECT_EQ(launcher_.pids().size(), 2u);
  ExpectNoProcessLeft();
}

TEST_F(SupervisorTest, ARedeliveredAssignmentIsIgnored) {
  auto s = Make({"--mode", "succeed"});
  ASSERT_OK(s->Start(Assignment("a-dup")));
  EXPECT_THAT(s->Start(Assignment("a-dup")), StatusIs(absl::StatusCode::kAlreadyExists));
  EXPECT_THAT(s->Start(Assignment("../evil")), StatusIs(absl::StatusCode::kInvalidArgument));
  RunToEnd(*s, "a-dup");
  EXPECT_EQ(launcher_.pids().size(), 1u);
}

TEST_F(SupervisorTest, RanksLeftByACrashedWorkerAreKilledOnTheNextStart) {
  auto s = Make({"--mode", "ignore_term", "--steps", "1"});
  ASSERT_OK(s->Start(Assignment("a-orphan")));
  ASSERT_TRUE(PollUntil([&] { return Step(*s, "a-orphan") == 1; }, [&] { s->Tick(); }));
  const pid_t leader = launcher_.pids().at(0);
  // The daemon "dies": its supervisor is gone, the rank lives on.
  s.reset();
  ASSERT_FALSE(ProcessGone(leader));
  // A pid file naming an unrelated live group (our own) must not be acted on.
  std::filesystem::create_directories(scratch_.path() + "/work/attempts/a-other");
  std::ofstream(scratch_.path() + "/work/attempts/a-other/rank-0.pid") << getpgrp() << "\n";
  EXPECT_EQ(KillOrphanedRanks(scratch_.path() + "/work"), 1);
  EXPECT_TRUE(PollUntil([&] { return ListProcessGroup(leader).empty(); }));
  // Reap it: the test process is its parent.
  waitpid(leader, nullptr, 0);
  EXPECT_EQ(KillOrphanedRanks(scratch_.path() + "/work"), 0);
}

}  // namespace
}  // namespace align::worker
