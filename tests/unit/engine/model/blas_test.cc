#include "worker/engine/model/blas.h"

#include <gtest/gtest.h>

namespace align::engine::model {
namespace {

TEST(BetterOpenBlasCore, PrescottFallbackOnAModernCpuGetsItsKernels) {
  EXPECT_EQ(BetterOpenBlasCore("Prescott", false, true, true), "SkylakeX");
  EXPECT_EQ(BetterOpenBlasCore("Prescott", false, false, true), "Haswell");
}

TEST(BetterOpenBlasCore, KeepsAKnownCoreTheUsersChoiceAndOldCpus) {
  EXPECT_EQ(BetterOpenBlasCore("SkylakeX", false, true, true), std::nullopt);
  EXPECT_EQ(BetterOpenBlasCore("Haswell", false, true, true), std::nullopt);
  EXPECT_EQ(BetterOpenBlasCore("Prescott", true, true, true), std::nullopt);   // OPENBLAS_CORETYPE set
  EXPECT_EQ(BetterOpenBlasCore("Prescott", false, false, false), std::nullopt);  // a real SSE3 CPU
  EXPECT_EQ(BetterOpenBlasCore("", false, true, true), std::nullopt);          // not OpenBLAS
}

TEST(OpenBlasCoreName, NamesTheLoadedKernelsWhenOpenBlasIsTheBlas) {
  // The test binary links LibTorch, which maps libblas.so.3: OpenBLAS where setup.sh installed it.
  const std::string core = OpenBlasCoreName();
  if (core.empty()) GTEST_SKIP() << "the BLAS in this process is not OpenBLAS";
  EXPECT_NE(core.find_first_not_of(' '), std::string::npos);
}

}  // namespace
}  // namespace align::engine::model
