#include "worker/engine/train/optim.h"

#include <filesystem>
#include <fstream>

#include "common/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "worker/engine/train/checkpoint.h"

namespace align::engine::train {
namespace {

TEST(ScheduleTest, LinearCosineConstantWithWarmup) {
  EXPECT_DOUBLE_EQ(LearningRateAt(LrSchedule::kLinear, 1.0, 0, 10, 2), 0.0);
  EXPECT_DOUBLE_EQ(LearningRateAt(LrSchedule::kLinear, 1.0, 1, 10, 2), 0.5);
  EXPECT_DOUBLE_EQ(LearningRateAt(LrSchedule::kLinear, 1.0, 2, 10, 2), 1.0);
  EXPECT_DOUBLE_EQ(LearningRateAt(LrSchedule::kLinear, 1.0, 6, 10, 2), 0.5);
  EXPECT_NEAR(LearningRateAt(LrSchedule::kCosine, 1.0, 6, 10, 2), 0.5, 1e-12);
  EXPECT_DOUBLE_EQ(LearningRateAt(LrSchedule::kConstant, 1.0, 9, 10, 2), 1.0);
}

TEST(AdamWTest, MatchesTorchFirstStep) {
  // First AdamW step moves each weight by lr * sign(g) (bias-corrected m/sqrt(v) = +-1), after
  // decoupled decay.
  at::Tensor w = at::tensor({1.0f, -2.0f, 3.0f, 4.0f}).reshape({2, 2}).requires_grad_(true);
  AdamWOptions o;
  o.weight_decay = 0.1;
  AdamW opt({{"w", w}}, o);
  (w * at::tensor({1.0f, -1.0f, 2.0f, 0.5f}).reshape({2, 2})).sum().backward();
  opt.Step(0.01);
  EXPECT_NEAR(w[0][0].item<double>(), 1.0 * (1 - 0.001) - 0.01, 1e-6);
  EXPECT_NEAR(w[0][1].item<double>(), -2.0 * (1 - 0.001) + 0.01, 1e-6);
  EXPECT_EQ(opt.step(), 1);
  EXPECT_EQ(opt.StateTensors().size(), 2u);
}

TEST(ClipTest, GlobalNorm) {
  at::Tensor a = at::zeros({2}).requires_grad_(true);
  (a * at::tensor({3.0f, 4.0f})).sum().backward();
  EXPECT_NEAR(ClipGradNorm({a}, 1.0), 5.0, 1e-6);
  EXPECT_NEAR(a.grad().norm().item<double>(), 1.0, 1e-5);
}

class CheckpointTest : public ::testing::Test {
 protected:
  std::string root_ = ::testing::TempDir() + "/ckpt_test_" + std::to_string(::getpid());
  void TearDown() override { std::filesystem::remove_all(root_); }
  static absl::Status WriteOne(const std::string& dir) {
    std::filesystem::create_directories(dir);
    std::ofstream(dir + "/model.safetensors") << "x";
    return absl::OkStatus();
  }
};

TEST_F(CheckpointTest, KeepsLastKAndSkipsIncomplete) {
  CheckpointManager m(root_, 2);
  for (int s : {1, 2, 3}) ASSERT_OK(m.Save(s, WriteOne).status());
  auto all = m.ListComplete();
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].first, 2);
  // A half-written newer checkpoint (no marker) is never picked.
  std::filesystem::create_directories(root_ + "/checkpoint-9");
  EXPECT_EQ(*m.LatestComplete(), root_ + "/checkpoint-3");
  // A failed save keeps the last good ones and leaves no staging directory.
  auto failed = m.Save(4, [](const std::string& dir) {
    std::filesystem::create_directories(dir);
    return absl::UnavailableError("disk full");
  });
  EXPECT_FALSE(failed.ok());
  EXPECT_EQ(m.ListComplete().size(), 2u);
  EXPECT_EQ(*m.LatestComplete(), root_ + "/checkpoint-3");
  int staging = 0;
  for (auto& e : std::filesystem::directory_iterator(root_)) {
    staging += e.path().filename().string().rfind(".staging", 0) == 0;
  }
  EXPECT_EQ(staging, 0);
}

}  // namespace
}  // namespace align::engine::train
