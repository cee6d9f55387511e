// The scheduler is a pure function: snapshots in, decisions out.
#include "coordinator/scheduler/scheduler.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace align::coordinator {
namespace {

using ::testing::ElementsAre;

SchedStage Stage(const std::string& name, int priority, int64_t order, int ranks = 1, int gpus = 0,
                 int cpus = 1) {
  SchedStage s;
  s.pipeline_id = "p";
  s.stage = name;
  s.priority = priority;
  s.submit_order = order;
  s.resources.set_ranks(ranks);
  s.resources.set_gpus_per_rank(gpus);
  s.resources.set_cpus_per_rank(cpus);
  return s;
}

SchedWorker Worker(const std::string& id, int cpu_slots, int gpus = 0) {
  SchedWorker w;
  w.worker_id = id;
  w.incarnation = 1;
  w.cpu_slots = w.free_cpu_slots = cpu_slots;
  for (int g = 0; g < gpus; ++g) w.gpu_indices.push_back(g);
  w.free_gpus = w.gpu_indices;
  return w;
}

std::vector<std::string> Placed(const Decisions& d) {
  std::vector<std::string> out;
  for (const Placement& p : d.placements) out.push_back(p.stage);
  return out;
}

TEST(SchedulerTest, PriorityThenFifo) {
  Decisions d = Schedule({Stage("old-low", 0, 1), Stage("new-high", 5, 3), Stage("mid-low", 0, 2)},
                         {Worker("w", 2)});
  EXPECT_THAT(Placed(d), ElementsAre("new-high", "old-low"));
  ASSERT_EQ(d.waiting.size(), 1u);
  const Waiting& w = d.waiting.at({"p", "mid-low"});
  EXPECT_EQ(w.queue_position, 1);
  EXPECT_EQ(w.reason, "waiting for resources: needs 1 rank x 1 CPU slot; 0 of 1 fit on the 1 eligible workers now");
}

TEST(SchedulerTest, GangIsAllOrNothingAcrossWorkers) {
  // 4 ranks x 1 GPU over two 2-GPU workers: placed as one gang.
  Decisions d = Schedule({Stage("dpo", 0, 1, 4, 1)}, {Worker("a", 8, 2), Worker("b", 8, 2)});
  ASSERT_EQ(d.placements.size(), 1u);
  const Placement& p = d.placements[0];
  EXPECT_EQ(p.world_size, 4);
  ASSERT_EQ(p.ranks.size(), 2u);
  EXPECT_EQ(p.ranks[0].worker_id, "a");
  EXPECT_THAT(p.ranks[0].ranks, ElementsAre(0, 1));
  EXPECT_THAT(p.ranks[0].gpu_indices, ElementsAre(0, 1));
  EXPECT_THAT(p.ranks[1].ranks, ElementsAre(2, 3));

  // With one GPU busy, 3 of 4 fit now: nothing is placed (no partial gang).
  SchedWorker busy = Worker("b", 8, 2);
  busy.free_gpus = {1};
  d = Schedule({Stage("dpo", 0, 1, 4, 1)}, {Worker("a", 8, 2), busy});
  EXPECT_TRUE(d.placements.empty());
  EXPECT_TRUE(d.impossible.empty());
  EXPECT_EQ(d.waiting.at({"p", "dpo"}).reason,
            "waiting for resources: needs 4 ranks x 1 GPU; 3 of 4 fit on the 2 eligible workers now");
}

TEST(SchedulerTest, CpuStagesPreferCpuWorkers) {
  Decisions d = Schedule({Stage("prefs", 0, 1)}, {Worker("gpu-host", 8, 2), Worker("cpu-host", 2)});
  ASSERT_EQ(d.placements.size(), 1u);
  EXPECT_EQ(d.placements[0].ranks[0].worker_id, "cpu-host");
  EXPECT_TRUE(d.placements[0].ranks[0].gpu_indices.empty());
}

TEST(SchedulerTest, ImpossibleStagesFailFastWithTheReason) {
  Decisions d = Schedule({Stage("huge", 0, 1, 3, 0, 4)}, {Worker("a", 4), Worker("b", 4)});
  ASSERT_EQ(d.impossible.size(), 1u);
  EXPECT_EQ(d.impossible[0].reason,
            "needs 3 ranks x 4 CPU slots, but the eligible workers together hold at most 2 ranks");
}

TEST(SchedulerTest, GpuStageMayFallBackToCpuWhenAllowed) {
  SchedStage s = Stage("sft", 0, 1, 1, 1);
  s.resources.set_cpu_only_allowed(true);
  Decisions d = Schedule({s}, {Worker("cpu", 2)});
  ASSERT_EQ(d.placements.size(), 1u);
  EXPECT_TRUE(d.placements[0].on_cpu);
}

TEST(SchedulerTest, NoWorkersMeansWaitingNotImpossible) {
  Decisions d = Schedule({Stage("a", 0, 1), Stage("b", 0, 2)}, {});
  EXPECT_TRUE(d.impossible.empty());
  EXPECT_EQ(d.waiting.at({"p", "b"}).queue_position, 2);
  EXPECT_EQ(d.waiting.at({"p", "b"}).reason, "no worker is registered and alive yet");
}

TEST(SchedulerTest, NodeSelectorMustMatch) {
  SchedStage s = Stage("eval", 0, 1);
  (*s.resources.mutable_node_selector())["zone"] = "b";
  SchedWorker a = Worker("a", 4);
  a.labels["zone"] = "a";
  SchedWorker b = Worker("b", 4);
  b.labels["zone"] = "b";
  Decisions d = Schedule({s}, {a, b});
  ASSERT_EQ(d.placements.size(), 1u);
  EXPECT_EQ(d.placements[0].ranks[0].worker_id, "b");
}

}  // namespace
}  // namespace align::coordinator
