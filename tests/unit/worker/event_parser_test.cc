// Progress events (docs/events.md) -> progress, step times, artifacts; and line-wise file tailing.
#include "worker/supervisor/event_parser.h"

#include <fstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/worker/test_util.h"
#include "worker/supervisor/file_tailer.h"

namespace align::worker {
namespace {

const absl::Time kT0 = absl::FromUnixSeconds(1'700'000'000);

TEST(EventParserTest, StepEventsUpdateProgressAndStepTimes) {
  EventParser p;
  p.Consume(R"({"event":"phase","time":1,"phase":"train","message":"x"})", kT0);
  p.Consume(R"({"event":"step","time":1,"step":1,"total_steps":10,"epoch":0.1,)"
            R"("metrics":{"loss":2.5,"rewards/margins":0.4},"tokens_per_second":900,"step_seconds":0.5})",
            kT0 + absl::Seconds(1));
  p.Consume(R"({"event":"step","time":2,"step":2,"total_steps":10,"epoch":0.2,)"
            R"("metrics":{"loss":2.0},"tokens_per_second":1000,"step_seconds":0.5})",
            kT0 + absl::Seconds(3));
  EXPECT_EQ(p.steps_seen(), 2);
  EXPECT_EQ(p.progress().step(), 2);
  EXPECT_EQ(p.progress().total_steps(), 10);
  EXPECT_DOUBLE_EQ(p.progress().metrics().at("loss"), 2.0);
  EXPECT_DOUBLE_EQ(p.progress().metrics().at("rewards/margins"), 0.4);
  EXPECT_DOUBLE_EQ(p.progress().tokens_per_second(), 1000);
  // The gap between arrivals (2 s) is longer than the reported 0.5 s: the longer one counts.
  EXPECT_EQ(p.recent_step_time(), absl::Seconds(2));
  EXPECT_DOUBLE_EQ(p.progress().eta_seconds(), 16);
  EXPECT_EQ(p.last_step_at(), kT0 + absl::Seconds(3));
  const auto points = p.TakeStepPoints();
  ASSERT_EQ(points.size(), 2u);
  EXPECT_EQ(points[0].step, 1);
  EXPECT_TRUE(p.TakeStepPoints().empty());
}

TEST(EventParserTest, EvalPhasePausesHangDetection) {
  EventParser p;
  p.Consume(R"({"event":"step","time":1,"step":1,"step_seconds":0.1})", kT0);
  EXPECT_TRUE(p.in_train_phase());
  p.Consume(R"({"event":"phase","time":1,"phase":"eval","message":""})", kT0);
  EXPECT_FALSE(p.in_train_phase());
  EXPECT_EQ(p.progress().phase(), "eval");
}

TEST(EventParserTest, EvalProgressIsABarWithoutMetricPoints) {
  EventParser p;
  p.Consume(R"({"event":"phase","time":1,"phase":"eval","message":"mmlu"})", kT0);
  p.Consume(R"({"event":"progress","time":2,"phase":"eval","suite":"mmlu","done":300,"total":1140,)"
            R"("eta_seconds":28})",
            kT0 + absl::Seconds(10));
  EXPECT_EQ(p.progress().phase(), "eval mmlu");
  EXPECT_EQ(p.progress().step(), 300);
  EXPECT_EQ(p.progress().total_steps(), 1140);
  EXPECT_DOUBLE_EQ(p.progress().eta_seconds(), 28);
  EXPECT_FALSE(p.in_train_phase());  // not a training step: the hang detector stays paused
  EXPECT_EQ(p.steps_seen(), 0);
  EXPECT_TRUE(p.TakeStepPoints().empty());
}

TEST(EventParserTest, ArtifactsCheckpointsDoneAndErrors) {
  EventParser p;
  p.Consume(R"({"event":"checkpoint","time":1,"step":5,"path":"/w/checkpoint-5"})", kT0);
  p.Consume(R"({"event":"artifact","time":1,"name":"model","path":"/out/p/sft//model",)"
            R"("kind":"model","sha256":"abc","size_bytes":42})",
            kT0);
  p.Consume(R"({"event":"error","time":1,"message":"bad line 3","failure_class":"user_error"})",
            kT0);
  p.Consume(R"({"event":"done","time":1,"status":"succeeded","metrics":{"loss":0.1}})", kT0);
  EXPECT_EQ(p.checkpoint(), "/w/checkpoint-5");
  ASSERT_EQ(p.artifacts().size(), 1u);
  EXPECT_EQ(p.artifacts()[0].uri(), "file:///out/p/sft/model");
  EXPECT_EQ(p.artifacts()[0].sha256(), "abc");
  EXPECT_EQ(p.artifacts()[0].size_bytes(), 42);
  EXPECT_EQ(p.error_message(), "bad line 3");
  EXPECT_EQ(p.error_class(), "user_error");
  EXPECT_TRUE(p.done());
  EXPECT_DOUBLE_EQ(p.progress().metrics().at("loss"), 0.1);
}

TEST(EventParserTest, MalformedLinesAreCountedAndSkipped) {
  EventParser p;
  p.Consume("not json", kT0);
  p.Consume(R"({"no_event":1})", kT0);
  p.Consume(R"({"event":"step","step":"seven"})", kT0);
  EXPECT_EQ(p.malformed_lines(), 2);
  EXPECT_EQ(p.progress().step(), 0);
}

TEST(FileTailerTest, ReadsCompleteLinesAndWaitsForTheRest) {
  testing::ScratchDir dir;
  const std::string path = dir.path() + "/log";
  FileTailer t(path);
  EXPECT_TRUE(t.ReadLines(10).empty());  // not there yet
  std::ofstream out(path);
  out << "one\ntwo\nthr" << std::flush;
  EXPECT_THAT(t.ReadLines(1), ::testing::ElementsAre("one"));
  EXPECT_THAT(t.ReadLines(10), ::testing::ElementsAre("two"));
  EXPECT_FALSE(t.AtEnd());
  out << "ee\n" << std::flush;
  EXPECT_THAT(t.ReadLines(10), ::testing::ElementsAre("three"));
  out << "tail without newline" << std::flush;
  EXPECT_TRUE(t.ReadLines(10).empty());
  EXPECT_THAT(t.ReadLines(10, /*flush_partial=*/true),
              ::testing::ElementsAre("tail without newline"));
  EXPECT_TRUE(t.AtEnd());
  EXPECT_EQ(t.lines_read(), 4);
  EXPECT_THAT(ReadLastLines(path, 2), ::testing::ElementsAre("three", "tail without newline"));
}

}  // namespace
}  // namespace align::worker
