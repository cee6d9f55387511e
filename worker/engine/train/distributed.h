// Data-parallel collectives for the trainer: a small interface (sum, broadcast from rank 0,
// barrier) with a no-op single-process implementation and one over c10d process groups (Gloo for
// CPU tensors; NCCL for CUDA tensors in CUDA builds). RunTraining takes one injected; align-train
// builds it from RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT (docs/training.md, "Data parallel").
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include <ATen/ATen.h>

#include "absl/status/statusor.h"

namespace align::engine::train {

class Collective {
 public:
  virtual ~Collective() = default;
  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  //! Replaces each tensor's values by their sum over all ranks (any shapes; one exchange per
  //! dtype and device). Every rank must pass tensors of the same shapes in the same order.
  virtual absl::Status AllReduceSum(std::vector<at::Tensor>& tensors) = 0;
  //! Replaces each tensor's values by rank 0's.
  virtual absl::Status Broadcast(std::vector<at::Tensor>& tensors) = 0;
  //! Returns once every rank has called it.
  virtual absl::Status Barrier() = 0;
};

//! Whether this build has the c10d groups (false without the gloo headers at build time: then
//! the Connect* functions fail with FailedPrecondition, exit code 2, saying so).
bool DataParallelAvailable();

//! World size 1: every operation is a no-op.
std::unique_ptr<Collective> SingleProcessCollective();

//! Joins a group through a c10d TCPStore at `master_addr:master_port` (rank 0 serves it). Fails
//! with Unavailable naming the address when the peers do not all connect within `timeout`; a
//! collective waits up to max(timeout, 30 min) (rank 0 may be saving a large checkpoint).
absl::StatusOr<std::unique_ptr<Collective>> ConnectTcp(const std::string& master_addr, int master_port,
                                                       int rank, int world_size,
                                                       std::chrono::milliseconds timeout);

//! Tests: joins group `name` of this process through a shared in-memory store; call it from one
//! thread per rank (construction blocks until all `world_size` ranks have joined).
absl::StatusOr<std::unique_ptr<Collective>> ConnectInProcess(const std::string& name, int rank,
                                                             int world_size,
                                                             std::chrono::milliseconds timeout);

//! align-train: SingleProcessCollective() when world_size is 1, else ConnectTcp from MASTER_ADDR
//! (default 127.0.0.1) and MASTER_PORT (default 29500); ALIGN_DIST_TIMEOUT_S overrides the
//! 300 s rendezvous timeout. Errors name the variable to fix.
absl::StatusOr<std::unique_ptr<Collective>> CollectiveFromEnv(int rank, int world_size);

}  // namespace align::engine::train
