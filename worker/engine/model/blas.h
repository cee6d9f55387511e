#pragma once

// OpenBLAS settings for processes that run the model. LibTorch's CPU matrix products go to the
// system BLAS (Debian: OpenBLAS through update-alternatives), whose kernels and thread pool torch
// does not choose. No torch headers, so a main() can include it cheaply.

#include <optional>
#include <string>
#include <string_view>

namespace align::engine::model {

//! The kernel set OpenBLAS chose at load time ("Haswell", "SkylakeX", "Prescott", ...), or ""
//! when the process's BLAS is not OpenBLAS.
std::string OpenBlasCoreName();

//! The OPENBLAS_CORETYPE to run with instead, or nullopt to keep `core`. OpenBLAS picks its
//! kernels from the CPU model number and falls back to Prescott (SSE3, 2004) on models newer than
//! it knows (Debian's 0.3.21 on Emerald Rapids, family 6 model 207): about 2x slower training
//! steps. When it did so on a CPU with AVX-512 (-> SkylakeX) or AVX2 and FMA (-> Haswell), and the
//! user set no OPENBLAS_CORETYPE (`user_set`), the better set is returned.
std::optional<std::string> BetterOpenBlasCore(std::string_view core, bool user_set, bool avx512f,
                                              bool avx2_fma);

//! Re-executes this program (/proc/self/exe, same argv, same pid) with OPENBLAS_CORETYPE set when
//! BetterOpenBlasCore says so, logging why; returns only when nothing is to be done or exec failed
//! (then the run goes on with the slow kernels and a warning). Call first thing in main().
//! `announce`: log the re-execution (align-train's stage logs); interactive tools pass false.
void ReexecWithBetterOpenBlasCore(char** argv, bool announce = true);

//! Caps OpenBLAS's own thread pool (separate from torch's intra-op threads) at `threads`, so a
//! stage given N CPUs uses N; no-op for threads <= 0 or a BLAS that is not OpenBLAS.
void SetOpenBlasThreads(int threads);

}  // namespace align::engine::model
