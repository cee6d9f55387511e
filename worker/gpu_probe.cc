#include "worker/gpu_probe.h"

#include <dlfcn.h>

#include <cstdlib>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/status_macros.h"
#include "common/logging.h"

namespace align::worker {
namespace {

// The few NVML declarations we need (nvml.h is not installed on CPU hosts); the ABI is stable.
using nvmlReturn_t = int;
using nvmlDevice_t = void*;
struct nvmlMemory_t {
  unsigned long long total;
  unsigned long long free;
  unsigned long long used;
};
struct nvmlUtilization_t {
  unsigned int gpu;
  unsigned int memory;
};
constexpr nvmlReturn_t kNvmlSuccess = 0;

}  // namespace

struct NvmlGpuProbe::Api {
  void* handle = nullptr;
  nvmlReturn_t (*init)() = nullptr;
  nvmlReturn_t (*shutdown)() = nullptr;
  const char* (*error_string)(nvmlReturn_t) = nullptr;
  nvmlReturn_t (*device_count)(unsigned int*) = nullptr;
  nvmlReturn_t (*handle_by_index)(unsigned int, nvmlDevice_t*) = nullptr;
  nvmlReturn_t (*name)(nvmlDevice_t, char*, unsigned int) = nullptr;
  nvmlReturn_t (*uuid)(nvmlDevice_t, char*, unsigned int) = nullptr;
  nvmlReturn_t (*memory)(nvmlDevice_t, nvmlMemory_t*) = nullptr;
  nvmlReturn_t (*utilization)(nvmlDevice_t, nvmlUtilization_t*) = nullptr;

  std::string Error(nvmlReturn_t rc) const {
    return error_string != nullptr ? error_string(rc) : absl::StrCat("NVML error ", rc);
  }
};

absl::StatusOr<std::unique_ptr<NvmlGpuProbe>> NvmlGpuProbe::Create() {
  auto api = std::make_unique<Api>();
  api->handle = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
  if (api->handle == nullptr) {
    return absl::UnavailableError(
        absl::StrCat("NVML not available (libnvidia-ml.so.1: ", dlerror(), ")"));
  }
  auto sym = [&](auto& fn, const char* name) {
    fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(dlsym(api->handle, name));
    return fn != nullptr;
  };
  const bool ok = sym(api->init, "nvmlInit_v2") && sym(api->shutdown, "nvmlShutdown") &&
                  sym(api->device_count, "nvmlDeviceGetCount_v2") &&
                  sym(api->handle_by_index, "nvmlDeviceGetHandleByIndex_v2") &&
                  sym(api->name, "nvmlDeviceGetName") && sym(api->uuid, "nvmlDeviceGetUUID") &&
                  sym(api->memory, "nvmlDeviceGetMemoryInfo") &&
                  sym(api->utilization, "nvmlDeviceGetUtilizationRates");
  sym(api->error_string, "nvmlErrorString");
  if (!ok) {
    dlclose(api->handle);
    return absl::UnavailableError("libnvidia-ml.so.1 lacks the NVML v2 functions we need");
  }
  if (const nvmlReturn_t rc = api->init(); rc != kNvmlSuccess) {
    const std::string msg = api->Error(rc);
    dlclose(api->handle);
    return absl::UnavailableError(absl::StrCat("nvmlInit failed: ", msg));
  }
  return std::unique_ptr<NvmlGpuProbe>(new NvmlGpuProbe(std::move(api)));
}

NvmlGpuProbe::NvmlGpuProbe(std::unique_ptr<Api> api) : api_(std::move(api)) {}

NvmlGpuProbe::~NvmlGpuProbe() {
  absl::MutexLock lock(&mu_);
  api_->shutdown();
  dlclose(api_->handle);
}

absl::StatusOr<std::vector<v1::GpuInfo>> NvmlGpuProbe::Probe() {
  absl::MutexLock lock(&mu_);
  unsigned int count = 0;
  if (const nvmlReturn_t rc = api_->device_count(&count); rc != kNvmlSuccess) {
    return absl::UnavailableError(absl::StrCat("nvmlDeviceGetCount: ", api_->Error(rc)));
  }
  std::vector<v1::GpuInfo> out;
  for (unsigned int i = 0; i < count; ++i) {
    nvmlDevice_t dev = nullptr;
    if (const nvmlReturn_t rc = api_->handle_by_index(i, &dev); rc != kNvmlSuccess) {
      return absl::UnavailableError(
          absl::StrCat("nvmlDeviceGetHandleByIndex(", i, "): ", api_->Error(rc)));
    }
    v1::GpuInfo& g = out.emplace_back();
    g.set_index(static_cast<int>(i));
    char buf[256] = {};
    if (api_->name(dev, buf, sizeof(buf)) == kNvmlSuccess) g.set_model(buf);
    char uuid[128] = {};
    if (api_->uuid(dev, uuid, sizeof(uuid)) == kNvmlSuccess) g.set_uuid(uuid);
    nvmlMemory_t mem{};
    if (api_->memory(dev, &mem) == kNvmlSuccess) {
      g.set_memory_total_bytes(static_cast<int64_t>(mem.total));
      g.set_memory_used_bytes(static_cast<int64_t>(mem.used));
    }
    nvmlUtilization_t util{};
    if (api_->utilization(dev, &util) == kNvmlSuccess) g.set_utilization(util.gpu / 100.0);
  }
  return out;
}

VisibleGpuProbe::VisibleGpuProbe(std::shared_ptr<GpuProbe> inner, const std::string& visible)
    : inner_(std::move(inner)) {
  for (absl::string_view item : absl::StrSplit(visible, ',', absl::SkipWhitespace())) {
    visible_.emplace_back(absl::StripAsciiWhitespace(item));
  }
}

absl::StatusOr<std::vector<v1::GpuInfo>> VisibleGpuProbe::Probe() {
  ASSIGN_OR_RETURN(std::vector<v1::GpuInfo> all, inner_->Probe());
  std::vector<v1::GpuInfo> out;
  for (const std::string& want : visible_) {
    for (const v1::GpuInfo& g : all) {
      const bool by_uuid = !g.uuid().empty() && (g.uuid() == want || g.uuid() == "GPU-" + want);
      if (want == absl::StrCat(g.index()) || by_uuid) out.push_back(g);
    }
  }
  return out;
}

std::unique_ptr<GpuProbe> DefaultGpuProbe() {
  auto nvml = NvmlGpuProbe::Create();
  if (nvml.ok()) {
    if (const char* visible = std::getenv("CUDA_VISIBLE_DEVICES"); visible != nullptr) {
      LOG(INFO) << "offering only the GPUs in CUDA_VISIBLE_DEVICES=" << visible;
      return std::make_unique<VisibleGpuProbe>(std::move(nvml).value(), visible);
    }
    return std::move(nvml).value();
  }
  LOG(INFO) << "no GPUs: " << nvml.status().message() << "; offering CPU slots only";
  return std::make_unique<StaticGpuProbe>();
}

}  // namespace align::worker
