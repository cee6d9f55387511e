// Sync points: named places in the coordinator where a test can run code (force a thread order,
// or simulate a crash between two steps, e.g. after a placement is committed but before any worker
// hears of it). Free when no callback is set.
#pragma once

#include <functional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

namespace align::coordinator {

class SyncPoints {
 public:
  //! The callback runs for every Process(name); nullptr clears it.
  void SetCallback(std::function<void(absl::string_view)> callback) {
    absl::MutexLock lock(&mu_);
    callback_ = std::move(callback);
  }
  void Process(absl::string_view name) {
    std::function<void(absl::string_view)> cb;
    {
      absl::MutexLock lock(&mu_);
      cb = callback_;
    }
    if (cb) cb(name);
  }

 private:
  absl::Mutex mu_;
  std::function<void(absl::string_view)> callback_ ABSL_GUARDED_BY(mu_);
};

//! Names used in the coordinator.
inline constexpr char kSyncAfterPlacementCommit[] = "Coordinator::AfterPlacementCommit";
inline constexpr char kSyncAfterSubmitCommit[] = "Coordinator::AfterSubmitCommit";

}  // namespace align::coordinator
