#include "worker/engine/model/blas.h"

#include <dlfcn.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "common/logging.h"

namespace align::engine::model {
namespace {

// Symbols of the loaded OpenBLAS, looked up at run time: the build links LibTorch, not OpenBLAS,
// and the BLAS under libblas.so.3 is whatever update-alternatives selected.
template <typename Fn>
Fn Symbol(const char* name) {
  return reinterpret_cast<Fn>(dlsym(RTLD_DEFAULT, name));
}

}  // namespace

std::string OpenBlasCoreName() {
  auto fn = Symbol<char* (*)()>("openblas_get_corename");
  if (fn == nullptr) return "";
  const char* name = fn();
  return name ? name : "";
}

std::optional<std::string> BetterOpenBlasCore(std::string_view core, bool user_set, bool avx512f,
                                              bool avx2_fma) {
  if (user_set || core != "Prescott") return std::nullopt;
  if (avx512f) return "SkylakeX";
  if (avx2_fma) return "Haswell";
  return std::nullopt;
}

void ReexecWithBetterOpenBlasCore(char** argv, bool announce) {
  const char* env = std::getenv("OPENBLAS_CORETYPE");
  const std::string core = OpenBlasCoreName();
  const auto better =
      BetterOpenBlasCore(core, env != nullptr && *env != '\0', __builtin_cpu_supports("avx512f"),
                         __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"));
  if (!better) return;
  if (announce) {
    LOG(INFO) << "OpenBLAS chose its " << core << " (SSE3) kernels on this CPU, a model it does "
              << "not know; re-running with OPENBLAS_CORETYPE=" << *better
              << " (set OPENBLAS_CORETYPE yourself to choose)";
  }
  if (setenv("OPENBLAS_CORETYPE", better->c_str(), 1) != 0) return;
  execv("/proc/self/exe", argv);
  LOG(WARNING) << "cannot re-execute /proc/self/exe (" << std::strerror(errno)
               << "): matrix products use the slower " << core << " kernels";
  unsetenv("OPENBLAS_CORETYPE");
}

void SetOpenBlasThreads(int threads) {
  if (threads <= 0) return;
  if (auto fn = Symbol<void (*)(int)>("openblas_set_num_threads")) fn(threads);
}

}  // namespace align::engine::model
