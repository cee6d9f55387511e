// GPU inventory: NVML absence is not an error for the daemon, and CUDA_VISIBLE_DEVICES limits
// what a worker offers.
#include "worker/gpu_probe.h"

#include "common/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace align::worker {
namespace {

std::vector<v1::GpuInfo> FourGpus() {
  std::vector<v1::GpuInfo> out;
  for (int i = 0; i < 4; ++i) {
    v1::GpuInfo& g = out.emplace_back();
    g.set_index(i);
    g.set_uuid(absl::StrCat("GPU-000", i));
    g.set_model("NVIDIA H200");
  }
  return out;
}

std::vector<int> Indices(const std::vector<v1::GpuInfo>& gpus) {
  std::vector<int> out;
  for (const auto& g : gpus) out.push_back(g.index());
  return out;
}

TEST(GpuProbeTest, VisibleDevicesByIndexOrUuidKeepPhysicalIndices) {
  auto all = std::make_shared<StaticGpuProbe>(FourGpus());
  ASSERT_OK_AND_ASSIGN(auto by_index, VisibleGpuProbe(all, "2,3").Probe());
  EXPECT_THAT(Indices(by_index), ::testing::ElementsAre(2, 3));
  ASSERT_OK_AND_ASSIGN(auto by_uuid, VisibleGpuProbe(all, "GPU-0001, 0003").Probe());
  EXPECT_THAT(Indices(by_uuid), ::testing::ElementsAre(1, 3));
  ASSERT_OK_AND_ASSIGN(auto none, VisibleGpuProbe(all, "").Probe());
  EXPECT_TRUE(none.empty());
}

TEST(GpuProbeTest, DefaultProbeWorksWithoutNvml) {
  // On hosts without libnvidia-ml.so.1 this is an empty list, never an error.
  std::unique_ptr<GpuProbe> probe = DefaultGpuProbe();
  ASSERT_NE(probe, nullptr);
  EXPECT_OK(probe->Probe());
}

}  // namespace
}  // namespace align::worker
