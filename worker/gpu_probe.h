// GPU inventory and live usage. NvmlGpuProbe loads libnvidia-ml.so.1 at run time (dlopen), so one
// align-worker binary runs on hosts with and without NVIDIA drivers; StaticGpuProbe is for tests
// and for CPU-only hosts.
#pragma once

#include <memory>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "align/v1/state.pb.h"

namespace align::worker {

class GpuProbe {
 public:
  virtual ~GpuProbe() = default;
  //! Every GPU with model, UUID, total and used memory and utilization (0..1).
  virtual absl::StatusOr<std::vector<v1::GpuInfo>> Probe() = 0;
};

//! NVML through dlopen. Create() fails with Unavailable when the library or a GPU driver is absent.
class NvmlGpuProbe final : public GpuProbe {
 public:
  static absl::StatusOr<std::unique_ptr<NvmlGpuProbe>> Create();
  ~NvmlGpuProbe() override;
  absl::StatusOr<std::vector<v1::GpuInfo>> Probe() override;

 private:
  struct Api;
  explicit NvmlGpuProbe(std::unique_ptr<Api> api);
  absl::Mutex mu_;  // NVML is thread-safe, but handles are cached per call under this lock
  std::unique_ptr<Api> api_ ABSL_GUARDED_BY(mu_);
};

//! Returns a fixed list (empty: a CPU-only host); SetGpus changes it (tests).
class StaticGpuProbe final : public GpuProbe {
 public:
  explicit StaticGpuProbe(std::vector<v1::GpuInfo> gpus = {}) : gpus_(std::move(gpus)) {}
  absl::StatusOr<std::vector<v1::GpuInfo>> Probe() override {
    absl::MutexLock lock(&mu_);
    return gpus_;
  }
  void SetGpus(std::vector<v1::GpuInfo> gpus) {
    absl::MutexLock lock(&mu_);
    gpus_ = std::move(gpus);
  }

 private:
  absl::Mutex mu_;
  std::vector<v1::GpuInfo> gpus_ ABSL_GUARDED_BY(mu_);
};

//! Keeps only the GPUs a CUDA_VISIBLE_DEVICES-style list names (indices or UUIDs, comma
//! separated), so a worker started by Slurm or a container runtime offers only its share, while
//! NVML (which ignores that variable) would list the whole node. Indices stay physical.
class VisibleGpuProbe final : public GpuProbe {
 public:
  VisibleGpuProbe(std::shared_ptr<GpuProbe> inner, const std::string& visible);
  absl::StatusOr<std::vector<v1::GpuInfo>> Probe() override;

 private:
  std::shared_ptr<GpuProbe> inner_;
  std::vector<std::string> visible_;
};

//! NVML when it loads (limited to $CUDA_VISIBLE_DEVICES when set), else an empty StaticGpuProbe.
std::unique_ptr<GpuProbe> DefaultGpuProbe();

}  // namespace align::worker
