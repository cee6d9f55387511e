// SqliteStore: the durable Store. One SQLite file in WAL mode with foreign keys, a busy timeout,
// synchronous=FULL and versioned schema migrations. Concurrent Apply calls are group-committed (one
// transaction, one fsync, a savepoint per batch so one bad batch fails alone); reads use their own
// connection so a long reader never blocks the writer. "database is locked" is retried inside;
// a full disk or an I/O error fails the batch with UNAVAILABLE and leaves the file intact.
#pragma once

#include <deque>
#include <map>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "coordinator/store/store.h"

struct sqlite3;
struct sqlite3_stmt;

namespace align::coordinator {

class SqliteStore final : public Store {
 public:
  //! Opens or creates the database at `path` and migrates it to the current schema.
  static absl::StatusOr<std::unique_ptr<SqliteStore>> Open(const std::string& path);
  ~SqliteStore() override;

  absl::Status Apply(const WriteBatch& batch) override;
  absl::StatusOr<StoreSnapshot> Load() override;
  absl::StatusOr<std::optional<std::string>> FindByRequestId(
      const std::string& client_request_id) override;
  absl::StatusOr<std::vector<v1::Event>> ReadEvents(const std::string& pipeline_id, int64_t after,
                                                    int limit) override;
  absl::StatusOr<std::vector<v1::LogLine>> ReadLogs(const std::string& pipeline_id,
                                                    const std::string& stage, int rank,
                                                    int64_t tail) override;
  absl::StatusOr<std::vector<v1::MetricSeries>> ReadMetrics(
      const std::string& pipeline_id, const std::string& stage,
      const std::vector<std::string>& names) override;
  absl::StatusOr<std::vector<v1::Artifact>> ReadArtifacts(const std::string& pipeline_id,
                                                          const std::string& stage) override;
  absl::StatusOr<bool> HasReport(const std::string& report_id) override;

  //! The schema version this binary writes.
  static int CurrentSchemaVersion();
  //! Caps the database size in pages (PRAGMA max_page_count): lets tests hit SQLITE_FULL.
  absl::Status SetMaxPageCountForTesting(int64_t pages);

  class Connection;  // a sqlite3 handle with a statement cache

 private:
  struct Pending {
    const WriteBatch* batch;
    absl::Status status;
    bool done = false;
  };
  explicit SqliteStore(std::string path);
  absl::Status ApplyOne(const WriteBatch& batch) ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_);
  absl::Status CommitGroup(std::vector<Pending*>& group) ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_);

  const std::string path_;
  absl::Mutex queue_mu_;
  std::deque<Pending*> queue_ ABSL_GUARDED_BY(queue_mu_);
  bool leader_active_ ABSL_GUARDED_BY(queue_mu_) = false;
  absl::CondVar queue_cv_;

  absl::Mutex write_mu_ ABSL_ACQUIRED_AFTER(queue_mu_);
  std::unique_ptr<Connection> writer_ ABSL_GUARDED_BY(write_mu_);
  absl::Mutex read_mu_;
  std::unique_ptr<Connection> reader_ ABSL_GUARDED_BY(read_mu_);
};

}  // namespace align::coordinator
