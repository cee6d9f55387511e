// Hand-written safetensors reader/writer (8-byte little-endian header length, JSON header, raw
// little-endian data). Reads are memory-mapped; writes go to a file the caller renames.
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include <ATen/ATen.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace align::engine::model {

//! One tensor's entry in a safetensors header.
struct TensorInfo {
  std::string dtype;             // "F32", "BF16", ...
  std::vector<int64_t> shape;
  uint64_t begin = 0;            // data_offsets, relative to the data section
  uint64_t end = 0;
  std::string file;              // which file holds it (sharded checkpoints)
};

//! Parses and validates one file's header (offsets in range, non-overlapping, sizes matching
//! dtype x shape). Errors name the file and the tensor.
absl::StatusOr<std::map<std::string, TensorInfo>> ReadSafetensorsHeader(const std::string& path);

//! Reads every tensor of one safetensors file (or a model dir: model.safetensors or a sharded
//! model.safetensors.index.json) converting to `dtype` (F32/F16/BF16 sources). Tensors are
//! copied out of the mapping, so the result owns its memory.
absl::StatusOr<std::map<std::string, at::Tensor>> ReadSafetensors(const std::string& path,
                                                                  at::ScalarType dtype);
//! Same, for a model directory: model.safetensors or model.safetensors.index.json shards.
absl::StatusOr<std::map<std::string, at::Tensor>> ReadSafetensorsDir(const std::string& dir,
                                                                     at::ScalarType dtype);

//! Writes tensors (any of float32/float16/bfloat16, CPU or not) to `path` in the given order,
//! with {"format":"pt"} metadata, and fsyncs it.
absl::Status WriteSafetensors(const std::string& path,
                              const std::vector<std::pair<std::string, at::Tensor>>& tensors);

//! Writes tensors into `dir` as model.safetensors, or as model-0000i-of-0000n.safetensors plus
//! model.safetensors.index.json when the total exceeds `max_shard_bytes`.
absl::Status WriteSafetensorsDir(const std::string& dir,
                                 const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                                 uint64_t max_shard_bytes);

}  // namespace align::engine::model
