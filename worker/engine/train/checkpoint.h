// Checkpoint directories under <work_dir>/checkpoints: checkpoint-<step>/ in Hugging Face layout
// plus trainer state, written to a staging directory, marked COMPLETE, fsynced and renamed, so a
// half-written checkpoint is never picked on resume; older ones are pruned to keep the last K
// only after a save succeeded (a failed save never deletes the last good one).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace align::engine::train {

inline constexpr char kCompleteMarker[] = "COMPLETE";

class CheckpointManager {
 public:
  //! `root` is created on first save; keep_last <= 0 keeps every checkpoint.
  CheckpointManager(std::string root, int keep_last) : root_(std::move(root)), keep_last_(keep_last) {}

  //! Calls `write(staging_dir)` (the directory does not exist yet: the writer creates it, e.g.
  //! by saving the model into it), then marks and publishes it as checkpoint-<step>. Returns the
  //! final path. On any error the staging directory is removed and older checkpoints stay.
  absl::StatusOr<std::string> Save(int64_t step,
                                   const std::function<absl::Status(const std::string&)>& write);

  //! Complete checkpoints, oldest first, as (step, path).
  std::vector<std::pair<int64_t, std::string>> ListComplete() const;
  //! The newest complete checkpoint, if any.
  std::optional<std::string> LatestComplete() const;

  static bool IsComplete(const std::string& dir);
  const std::string& root() const { return root_; }

 private:
  std::string root_;
  int keep_last_;
};

//! fsyncs a file or directory (a directory after renames in it, so they survive a crash).
absl::Status FsyncPath(const std::string& path);

}  // namespace align::engine::train
