#pragma once

// Process-wide memory policy for processes that run the model. No torch headers, so a main()
// can include it cheaply.

namespace align::engine::model {

//! Keeps freed tensor memory in the process heap instead of returning it to the kernel. glibc
//! serves blocks above its mmap threshold (128 KiB, rising to at most 32 MiB) with a fresh mmap
//! and unmaps them on free; attention scores and logits are bigger, so every forward pass would
//! page-fault its temporaries in again (on stories260K eval that was more system than user time:
//! docs/performance.md, "Eval: MMLU log-likelihood scoring"). The cost: RSS stays at its peak.
//! Call once, early in main(), in processes that run the model (align-train, the benchmarks).
void KeepFreedTensorMemoryInHeap();

}  // namespace align::engine::model
