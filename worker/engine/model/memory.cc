#include "worker/engine/model/memory.h"

#include <malloc.h>

namespace align::engine::model {

void KeepFreedTensorMemoryInHeap() {
  // Blocks up to 1 GiB come from the heap, and the heap is not trimmed until 1 GiB is free.
  mallopt(M_MMAP_THRESHOLD, 1 << 30);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
}

}  // namespace align::engine::model
