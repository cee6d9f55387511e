// The worker's /metrics: align_worker_* series with pipeline/stage/attempt/rank labels, removed
// when the attempt is gone.
#include "worker/worker_metrics.h"

#include <prometheus/text_serializer.h>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace align::worker {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

std::string Text(prometheus::Registry& r) {
  return prometheus::TextSerializer().Serialize(r.Collect());
}

TEST(WorkerMetricsTest, RankProgressIsExportedWithLabelsAndRemovedAfterwards) {
  auto registry = std::make_shared<prometheus::Registry>();
  WorkerMetrics m(registry);
  RankSnapshot s;
  s.pipeline_id = "p-1";
  s.stage = "dpo";
  s.attempt_id = "a-1";
  s.rank = 0;
  s.running = true;
  s.rss_bytes = 1048576;
  s.progress.set_step(7);
  (*s.progress.mutable_metrics())["loss"] = 0.5;
  (*s.progress.mutable_metrics())["learning_rate"] = 0.001;
  (*s.progress.mutable_metrics())["rewards/margins"] = 0.25;
  (*s.progress.mutable_metrics())["rewards/accuracies"] = 0.75;
  s.progress.set_tokens_per_second(1234);
  m.UpdateRanks({s});
  v1::GpuInfo g;
  g.set_index(0);
  g.set_uuid("GPU-1");
  g.set_memory_used_bytes(2048);
  g.set_utilization(0.5);
  m.UpdateGpus({g});
  const std::string labels = R"({attempt="a-1",pipeline="p-1",rank="0",stage="dpo"})";
  std::string text = Text(*registry);
  EXPECT_THAT(text, HasSubstr("align_worker_step" + labels + " 7"));
  EXPECT_THAT(text, HasSubstr("align_worker_loss" + labels + " 0.5"));
  EXPECT_THAT(text, HasSubstr("align_worker_learning_rate" + labels + " 0.001"));
  EXPECT_THAT(text, HasSubstr("align_worker_tokens_per_second" + labels + " 1234"));
  EXPECT_THAT(text, HasSubstr("align_worker_reward_margin" + labels + " 0.25"));
  EXPECT_THAT(text, HasSubstr("align_worker_reward_accuracy" + labels + " 0.75"));
  EXPECT_THAT(text, HasSubstr("align_worker_process_rss_bytes" + labels + " 1048576"));
  EXPECT_THAT(text, HasSubstr(R"(align_worker_gpu_memory_used_bytes{gpu="0",uuid="GPU-1"} 2048)"));
  EXPECT_THAT(text, HasSubstr(R"(align_worker_gpu_utilization_ratio{gpu="0",uuid="GPU-1"} 0.5)"));
  EXPECT_THAT(text, HasSubstr("align_worker_attempts_running 1"));
  m.UpdateRanks({});
  text = Text(*registry);
  EXPECT_THAT(text, Not(HasSubstr("a-1")));
  EXPECT_THAT(text, HasSubstr("align_worker_attempts_running 0"));
}

}  // namespace
}  // namespace align::worker
