#include "coordinator/store/sqlite_store.h"

#include <sqlite3.h>

#include <algorithm>
#include <set>
#include <tuple>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "coordinator/store/memory_store.h"
#include "nlohmann/json.hpp"

namespace align::coordinator {
namespace {

// Each entry migrates version i to i+1; never edit a released entry, append a new one.
const char* const kMigrations[] = {
    R"sql(
CREATE TABLE pipelines(
  pipeline_id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  state INTEGER NOT NULL,
  client_request_id TEXT UNIQUE,
  priority INTEGER NOT NULL DEFAULT 0,
  created_ms INTEGER NOT NULL,
  no_cache INTEGER NOT NULL DEFAULT 0,
  source_yaml TEXT NOT NULL DEFAULT '',
  status BLOB NOT NULL);
CREATE INDEX pipelines_name ON pipelines(name);
CREATE TABLE stages(
  pipeline_id TEXT NOT NULL REFERENCES pipelines(pipeline_id) ON DELETE CASCADE,
  name TEXT NOT NULL,
  idx INTEGER NOT NULL,
  state INTEGER NOT NULL,
  cache_key TEXT NOT NULL DEFAULT '',
  next_attempt_ms INTEGER NOT NULL DEFAULT 0,
  last_checkpoint TEXT NOT NULL DEFAULT '',
  status BLOB NOT NULL,
  PRIMARY KEY(pipeline_id, name));
CREATE INDEX stages_state ON stages(state);
CREATE TABLE attempts(
  attempt_id TEXT PRIMARY KEY,
  pipeline_id TEXT NOT NULL,
  stage TEXT NOT NULL,
  number INTEGER NOT NULL,
  state INTEGER NOT NULL,
  world_size INTEGER NOT NULL,
  cpus_per_rank INTEGER NOT NULL,
  placement TEXT NOT NULL,
  cancel_requested INTEGER NOT NULL DEFAULT 0,
  status BLOB NOT NULL,
  FOREIGN KEY(pipeline_id, stage) REFERENCES stages(pipeline_id, name) ON DELETE CASCADE);
CREATE INDEX attempts_stage ON attempts(pipeline_id, stage, number);
CREATE TABLE leases(
  lease_id TEXT PRIMARY KEY,
  attempt_id TEXT NOT NULL UNIQUE REFERENCES attempts(attempt_id) ON DELETE CASCADE,
  expires_ms INTEGER NOT NULL);
CREATE TABLE workers(
  worker_id TEXT PRIMARY KEY,
  incarnation INTEGER NOT NULL,
  state INTEGER NOT NULL,
  status BLOB NOT NULL);
CREATE TABLE events(
  sequence INTEGER PRIMARY KEY,
  pipeline_id TEXT NOT NULL,
  event BLOB NOT NULL);
CREATE INDEX events_pipeline ON events(pipeline_id, sequence);
CREATE TABLE log_lines(
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  pipeline_id TEXT NOT NULL,
  stage TEXT NOT NULL,
  attempt_id TEXT NOT NULL,
  rank INTEGER NOT NULL,
  offset INTEGER NOT NULL,
  line BLOB NOT NULL);
CREATE INDEX log_lines_attempt ON log_lines(attempt_id, rank, id);
CREATE INDEX log_lines_pipeline ON log_lines(pipeline_id, stage, rank);
CREATE TABLE metric_points(
  pipeline_id TEXT NOT NULL,
  stage TEXT NOT NULL,
  attempt_id TEXT NOT NULL,
  name TEXT NOT NULL,
  rank INTEGER NOT NULL,
  step INTEGER NOT NULL,
  value REAL NOT NULL,
  time_ms INTEGER NOT NULL);
CREATE INDEX metric_points_pipeline ON metric_points(pipeline_id, stage, name);
CREATE TABLE artifacts(
  pipeline_id TEXT NOT NULL,
  stage TEXT NOT NULL,
  name TEXT NOT NULL,
  attempt_id TEXT NOT NULL,
  uri TEXT NOT NULL,
  sha256 TEXT NOT NULL,
  size_bytes INTEGER NOT NULL,
  kind TEXT NOT NULL,
  created_ms INTEGER NOT NULL,
  artifact BLOB NOT NULL,
  PRIMARY KEY(pipeline_id, stage, name),
  FOREIGN KEY(pipeline_id, stage) REFERENCES stages(pipeline_id, name) ON DELETE CASCADE);
CREATE TABLE reports(
  report_id TEXT PRIMARY KEY,
  applied_ms INTEGER NOT NULL);
)sql",
};

constexpr int kNumMigrations = sizeof(kMigrations) / sizeof(kMigrations[0]);

int64_t ToMs(absl::Time t) {
  if (t == absl::InfinitePast()) return 0;
  if (t == absl::InfiniteFuture()) return INT64_MAX;
  return absl::ToUnixMillis(t);
}
absl::Time FromMs(int64_t ms) {
  if (ms == 0) return absl::InfinitePast();
  if (ms == INT64_MAX) return absl::InfiniteFuture();
  return absl::FromUnixMillis(ms);
}

bool IsBusy(int rc) { return (rc & 0xff) == SQLITE_BUSY || (rc & 0xff) == SQLITE_LOCKED; }

absl::Status SqliteError(sqlite3* db, int rc, absl::string_view what) {
  const std::string msg = absl::StrCat("SQLite ", what, ": ", sqlite3_errstr(rc),
                                       db != nullptr ? absl::StrCat(" (", sqlite3_errmsg(db), ")") : "");
  switch (rc & 0xff) {
    case SQLITE_FULL:
      return absl::UnavailableError(
          absl::StrCat(msg, "; the disk is full: free space, then retry (nothing was written)"));
    case SQLITE_IOERR:
    case SQLITE_CANTOPEN:
    case SQLITE_READONLY:
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_PROTOCOL:
      return absl::UnavailableError(msg);
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return absl::DataLossError(msg);
    default:
      return absl::InternalError(msg);
  }
}

std::string PlacementToJson(const std::vector<RankPlacement>& placement) {
  nlohmann::json arr = nlohmann::json::array();
  for (const RankPlacement& p : placement) {
    arr.push_back({{"worker_id", p.worker_id},
                   {"incarnation", p.incarnation},
                   {"ranks", p.ranks},
                   {"gpu_indices", p.gpu_indices}});
  }
  return arr.dump();
}

std::vector<RankPlacement> PlacementFromJson(const std::string& text) {
  std::vector<RankPlacement> out;
  nlohmann::json arr = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!arr.is_array()) return out;
  for (const auto& j : arr) {
    RankPlacement p;
    p.worker_id = j.value("worker_id", "");
    p.incarnation = j.value("incarnation", int64_t{0});
    p.ranks = j.value("ranks", std::vector<int>{});
    p.gpu_indices = j.value("gpu_indices", std::vector<int>{});
    out.push_back(std::move(p));
  }
  return out;
}

}  // namespace

// A statement borrowed from the cache; reset and unbound when it goes out of scope.
class Stmt {
 public:
  Stmt(sqlite3* db, sqlite3_stmt* s) : db_(db), s_(s) {}
  Stmt(Stmt&& o) noexcept : db_(o.db_), s_(o.s_) { o.s_ = nullptr; }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;
  ~Stmt() {
    if (s_ == nullptr) return;
    sqlite3_reset(s_);
    sqlite3_clear_bindings(s_);
  }
  Stmt& Bind(int i, const std::string& v) {
    sqlite3_bind_text(s_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Stmt& BindBlob(int i, const std::string& v) {
    sqlite3_bind_blob(s_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Stmt& Bind(int i, int64_t v) {
    sqlite3_bind_int64(s_, i, v);
    return *this;
  }
  Stmt& Bind(int i, double v) {
    sqlite3_bind_double(s_, i, v);
    return *this;
  }
  Stmt& BindNull(int i) {
    sqlite3_bind_null(s_, i);
    return *this;
  }
  //! Steps once: true with a row, false when done.
  absl::StatusOr<bool> Step() {
    const int rc = sqlite3_step(s_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    return SqliteError(db_, rc, "step");
  }
  absl::Status Run() {
    ASSIGN_OR_RETURN(bool row, Step());
    (void)row;
    return absl::OkStatus();
  }
  int64_t Int(int col) { return sqlite3_column_int64(s_, col); }
  double Double(int col) { return sqlite3_column_double(s_, col); }
  std::string Text(int col) {
    const unsigned char* t = sqlite3_column_text(s_, col);
    return t == nullptr ? std::string() : std::string(reinterpret_cast<const char*>(t),
                                                      sqlite3_column_bytes(s_, col));
  }
  std::string Blob(int col) {
    const void* b = sqlite3_column_blob(s_, col);
    return b == nullptr ? std::string()
                        : std::string(static_cast<const char*>(b), sqlite3_column_bytes(s_, col));
  }

 private:
  sqlite3* db_;
  sqlite3_stmt* s_;
};

class SqliteStore::Connection {
 public:
  ~Connection() {
    for (auto& [sql, s] : cache_) sqlite3_finalize(s);
    if (db_ != nullptr) sqlite3_close_v2(db_);
  }
  static absl::StatusOr<std::unique_ptr<Connection>> Open(const std::string& path) {
    auto c = std::unique_ptr<Connection>(new Connection());
    const int rc = sqlite3_open_v2(path.c_str(), &c->db_,
                                   SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                                   nullptr);
    if (rc != SQLITE_OK) {
      return absl::UnavailableError(absl::StrCat("cannot open database ", path, ": ",
                                                 sqlite3_errstr(rc),
                                                 "; check the --db path and its permissions"));
    }
    sqlite3_extended_result_codes(c->db_, 1);
    // Lock waits are absorbed here first; Apply retries beyond that.
    sqlite3_busy_timeout(c->db_, 5000);
    RETURN_IF_ERROR(c->Exec("PRAGMA foreign_keys=ON"));
    RETURN_IF_ERROR(c->Exec("PRAGMA synchronous=FULL"));
    return c;
  }
  absl::Status Exec(const std::string& sql) {
    char* err = nullptr;
    const int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err);
    if (rc != SQLITE_OK) {
      absl::Status s = SqliteError(db_, rc, absl::StrCat("exec '", sql.substr(0, 60), "'"));
      sqlite3_free(err);
      return s;
    }
    return absl::OkStatus();
  }
  //! Exec that reports the raw result code (for busy retries).
  int ExecRc(const char* sql) { return sqlite3_exec(db_, sql, nullptr, nullptr, nullptr); }
  absl::StatusOr<Stmt> Prepare(const std::string& sql) {
    auto it = cache_.find(sql);
    if (it == cache_.end()) {
      sqlite3_stmt* s = nullptr;
      const int rc = sqlite3_prepare_v3(db_, sql.c_str(), -1, SQLITE_PREPARE_PERSISTENT, &s, nullptr);
      if (rc != SQLITE_OK) return SqliteError(db_, rc, absl::StrCat("prepare '", sql, "'"));
      it = cache_.emplace(sql, s).first;
    }
    return Stmt(db_, it->second);
  }
  sqlite3* db() { return db_; }

 private:
  Connection() = default;
  sqlite3* db_ = nullptr;
  std::map<std::string, sqlite3_stmt*> cache_;
};

absl::StatusOr<std::unique_ptr<Store>> OpenStore(const std::string& path) {
  if (path.empty() || path == ":memory:") return std::unique_ptr<Store>(new MemoryStore());
  ASSIGN_OR_RETURN(auto store, SqliteStore::Open(path));
  return std::unique_ptr<Store>(std::move(store));
}

SqliteStore::SqliteStore(std::string path) : path_(std::move(path)) {}
SqliteStore::~SqliteStore() = default;

int SqliteStore::CurrentSchemaVersion() { return kNumMigrations; }

absl::StatusOr<std::unique_ptr<SqliteStore>> SqliteStore::Open(const std::string& path) {
  auto store = std::unique_ptr<SqliteStore>(new SqliteStore(path));
  ASSIGN_OR_RETURN(auto writer, Connection::Open(path));
  ASSIGN_OR_RETURN(auto reader, Connection::Open(path));
  // WAL: readers never block the writer and the writer never blocks readers.
  {
    ASSIGN_OR_RETURN(Stmt s, writer->Prepare("PRAGMA journal_mode=WAL"));
    ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row || s.Text(0) != "wal") {
      return absl::UnavailableError(absl::StrCat("database ", path,
                                                 " cannot use WAL journal mode (is it on a network "
                                                 "file system?); put --db on a local disk"));
    }
  }
  // Migrations: a version table, each step in its own transaction.
  RETURN_IF_ERROR(writer->Exec("CREATE TABLE IF NOT EXISTS schema_version(version INTEGER NOT NULL)"));
  int version = 0;
  {
    ASSIGN_OR_RETURN(Stmt s, writer->Prepare("SELECT MAX(version) FROM schema_version"));
    ASSIGN_OR_RETURN(bool row, s.Step());
    if (row) version = static_cast<int>(s.Int(0));
  }
  if (version > kNumMigrations) {
    return absl::FailedPreconditionError(absl::StrCat(
        "database ", path, " has schema version ", version, " but this align-coordinator knows only ",
        kNumMigrations, "; run a newer align-coordinator or restore a backup"));
  }
  for (int v = version; v < kNumMigrations; ++v) {
    RETURN_IF_ERROR(writer->Exec("BEGIN IMMEDIATE"));
    absl::Status s = writer->Exec(kMigrations[v]);
    if (s.ok()) s = writer->Exec(absl::StrCat("INSERT INTO schema_version(version) VALUES(", v + 1, ")"));
    if (!s.ok()) {
      (void)writer->Exec("ROLLBACK");
      return absl::Status(s.code(), absl::StrCat("migrating ", path, " to schema version ", v + 1,
                                                 ": ", s.message()));
    }
    RETURN_IF_ERROR(writer->Exec("COMMIT"));
    LOG(INFO) << "database " << path << " migrated to schema version " << v + 1;
  }
  {
    absl::MutexLock w(&store->write_mu_);
    store->writer_ = std::move(writer);
  }
  {
    absl::MutexLock r(&store->read_mu_);
    store->reader_ = std::move(reader);
  }
  return store;
}

absl::Status SqliteStore::SetMaxPageCountForTesting(int64_t pages) {
  absl::MutexLock lock(&write_mu_);
  return writer_->Exec(absl::StrCat("PRAGMA max_page_count=", pages));
}

absl::Status SqliteStore::Apply(const WriteBatch& batch) {
  Pending me{&batch};
  absl::MutexLock lock(&queue_mu_);
  queue_.push_back(&me);
  while (!me.done && leader_active_) queue_cv_.Wait(&queue_mu_);
  if (me.done) return me.status;
  // Leader: commit everything queued so far as one transaction (group commit).
  leader_active_ = true;
  std::vector<Pending*> group(queue_.begin(), queue_.end());
  queue_.clear();
  queue_mu_.Unlock();
  absl::Status group_status;
  {
    absl::MutexLock w(&write_mu_);
    group_status = CommitGroup(group);
  }
  queue_mu_.Lock();
  for (Pending* p : group) {
    if (!group_status.ok() && p->status.ok()) p->status = group_status;
    p->done = true;
  }
  leader_active_ = false;
  queue_cv_.SignalAll();
  return me.status;
}

absl::Status SqliteStore::CommitGroup(std::vector<Pending*>& group) {
  // BEGIN IMMEDIATE takes the write lock up front; another process holding it is waited for
  // (busy_timeout) and then retried here, so a lock never reaches the caller as an error.
  const absl::Time give_up = absl::Now() + absl::Seconds(60);
  absl::Duration backoff = absl::Milliseconds(1);
  for (;;) {
    const int rc = writer_->ExecRc("BEGIN IMMEDIATE");
    if (rc == SQLITE_OK) break;
    if (!IsBusy(rc) || absl::Now() > give_up) return SqliteError(writer_->db(), rc, "begin");
    absl::SleepFor(backoff);
    backoff = std::min(backoff * 2, absl::Milliseconds(50));
  }
  for (Pending* p : group) {
    absl::Status s = writer_->Exec("SAVEPOINT batch");
    if (s.ok()) {
      p->status = ApplyOne(*p->batch);
      if (!p->status.ok() && sqlite3_get_autocommit(writer_->db()) != 0) {
        // SQLite rolled the whole transaction back itself (disk full, I/O error): every batch
        // of the group failed with it.
        const absl::Status cause = p->status;
        for (Pending* q : group) q->status = cause;
        return cause;
      }
      if (!p->status.ok()) s = writer_->Exec("ROLLBACK TO batch");
    }
    if (s.ok()) s = writer_->Exec("RELEASE batch");
    if (!s.ok()) {
      (void)writer_->Exec("ROLLBACK");
      for (Pending* q : group) q->status = s;
      return s;
    }
  }
  for (;;) {
    const int rc = writer_->ExecRc("COMMIT");
    if (rc == SQLITE_OK) return absl::OkStatus();
    if (IsBusy(rc) && absl::Now() < give_up) {
      absl::SleepFor(absl::Milliseconds(2));
      continue;
    }
    absl::Status s = SqliteError(writer_->db(), rc, "commit");
    (void)writer_->Exec("ROLLBACK");
    for (Pending* p : group) p->status = s;
    return s;
  }
}

absl::Status SqliteStore::ApplyOne(const WriteBatch& b) {
  Connection& c = *writer_;
  for (const StageExpectation& e : b.expect) {
    ASSIGN_OR_RETURN(Stmt s, c.Prepare("SELECT state FROM stages WHERE pipeline_id=? AND name=?"));
    s.Bind(1, e.pipeline_id).Bind(2, e.stage);
    ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row || s.Int(0) != e.state) {
      return absl::FailedPreconditionError(absl::StrCat("stage ", e.pipeline_id, "/", e.stage,
                                                        " is no longer in state ",
                                                        v1::StageState_Name(e.state)));
    }
  }
  for (const StoredPipeline& p : b.new_pipelines) {
    const std::string& rid = p.status.client_request_id();
    if (!rid.empty()) {
      ASSIGN_OR_RETURN(Stmt s, c.Prepare("SELECT pipeline_id FROM pipelines WHERE client_request_id=?"));
      s.Bind(1, rid);
      ASSIGN_OR_RETURN(bool row, s.Step());
      if (row) {
        return absl::AlreadyExistsError(
            absl::StrCat("client_request_id ", rid, " already created pipeline ", s.Text(0)));
      }
    }
  }
  auto put_pipeline = [&](const StoredPipeline& p, bool insert) -> absl::Status {
    const std::string sql =
        insert ? "INSERT INTO pipelines(pipeline_id,name,state,client_request_id,priority,created_ms,"
                 "no_cache,source_yaml,status) VALUES(?,?,?,?,?,?,?,?,?)"
               : "INSERT INTO pipelines(pipeline_id,name,state,client_request_id,priority,created_ms,"
                 "no_cache,source_yaml,status) VALUES(?,?,?,?,?,?,?,?,?) ON CONFLICT(pipeline_id) DO "
                 "UPDATE SET state=excluded.state, status=excluded.status";
    ASSIGN_OR_RETURN(Stmt s, c.Prepare(sql));
    s.Bind(1, p.status.pipeline_id()).Bind(2, p.status.name()).Bind(3, int64_t{p.status.state()});
    if (p.status.client_request_id().empty()) {
      s.BindNull(4);
    } else {
      s.Bind(4, p.status.client_request_id());
    }
    s.Bind(5, int64_t{p.status.spec().metadata().priority()})
        .Bind(6, int64_t{p.status.created_at().seconds() * 1000 + p.status.created_at().nanos() / 1000000})
        .Bind(7, int64_t{p.no_cache})
        .Bind(8, p.source_yaml)
        .BindBlob(9, p.status.SerializeAsString());
    return s.Run();
  };
  for (const StoredPipeline& p : b.new_pipelines) RETURN_IF_ERROR(put_pipeline(p, true));
  for (const StoredPipeline& p : b.pipelines) RETURN_IF_ERROR(put_pipeline(p, false));
  for (const StoredStage& st : b.stages) {
    ASSIGN_OR_RETURN(
        Stmt s, c.Prepare("INSERT INTO stages(pipeline_id,name,idx,state,cache_key,next_attempt_ms,"
                          "last_checkpoint,status) VALUES(?,?,?,?,?,?,?,?) ON CONFLICT(pipeline_id,"
                          "name) DO UPDATE SET state=excluded.state, cache_key=excluded.cache_key, "
                          "next_attempt_ms=excluded.next_attempt_ms, last_checkpoint="
                          "excluded.last_checkpoint, status=excluded.status"));
    s.Bind(1, st.pipeline_id).Bind(2, st.status.name()).Bind(3, int64_t{st.index})
        .Bind(4, int64_t{st.status.state()}).Bind(5, st.status.cache_key())
        .Bind(6, ToMs(st.next_attempt_at)).Bind(7, st.last_checkpoint)
        .BindBlob(8, st.status.SerializeAsString());
    RETURN_IF_ERROR(s.Run());
  }
  for (const StoredAttempt& a : b.attempts) {
    ASSIGN_OR_RETURN(
        Stmt s, c.Prepare("INSERT INTO attempts(attempt_id,pipeline_id,stage,number,state,world_size,"
                          "cpus_per_rank,placement,cancel_requested,status) VALUES(?,?,?,?,?,?,?,?,?,?)"
                          " ON CONFLICT(attempt_id) DO UPDATE SET state=excluded.state, placement="
                          "excluded.placement, cancel_requested=excluded.cancel_requested, status="
                          "excluded.status"));
    s.Bind(1, a.status.attempt_id()).Bind(2, a.pipeline_id).Bind(3, a.stage)
        .Bind(4, int64_t{a.status.number()}).Bind(5, int64_t{a.status.state()})
        .Bind(6, int64_t{a.world_size}).Bind(7, int64_t{a.cpus_per_rank})
        .Bind(8, PlacementToJson(a.placement)).Bind(9, int64_t{a.cancel_requested})
        .BindBlob(10, a.status.SerializeAsString());
    RETURN_IF_ERROR(s.Run());
    if (a.lease_id.empty()) {
      ASSIGN_OR_RETURN(Stmt d, c.Prepare("DELETE FROM leases WHERE attempt_id=?"));
      d.Bind(1, a.status.attempt_id());
      RETURN_IF_ERROR(d.Run());
    } else {
      ASSIGN_OR_RETURN(Stmt l, c.Prepare("INSERT INTO leases(lease_id,attempt_id,expires_ms) "
                                         "VALUES(?,?,?) ON CONFLICT(attempt_id) DO UPDATE SET "
                                         "lease_id=excluded.lease_id, expires_ms=excluded.expires_ms"));
      l.Bind(1, a.lease_id).Bind(2, a.status.attempt_id()).Bind(3, ToMs(a.lease_expires));
      RETURN_IF_ERROR(l.Run());
    }
  }
  for (const v1::WorkerStatus& w : b.workers) {
    ASSIGN_OR_RETURN(Stmt s, c.Prepare("INSERT INTO workers(worker_id,incarnation,state,status) "
                                       "VALUES(?,?,?,?) ON CONFLICT(worker_id) DO UPDATE SET "
                                       "incarnation=excluded.incarnation, state=excluded.state, "
                                       "status=excluded.status"));
    s.Bind(1, w.worker_id()).Bind(2, w.incarnation()).Bind(3, int64_t{w.state()})
        .BindBlob(4, w.SerializeAsString());
    RETURN_IF_ERROR(s.Run());
  }
  for (const v1::Event& e : b.events) {
    ASSIGN_OR_RETURN(Stmt s, c.Prepare("INSERT INTO events(sequence,pipeline_id,event) VALUES(?,?,?)"));
    s.Bind(1, e.sequence()).Bind(2, e.pipeline_id()).BindBlob(3, e.SerializeAsString());
    RETURN_IF_ERROR(s.Run());
  }
  std::set<std::pair<std::string, int>> log_keys;
  for (const v1::LogLine& l : b.logs) {
    ASSIGN_OR_RETURN(Stmt s, c.Prepare("INSERT INTO log_lines(pipeline_id,stage,attempt_id,rank,"
                                       "offset,line) VALUES(?,?,?,?,?,?)"));
    s.Bind(1, l.pipeline_id()).Bind(2, l.stage()).Bind(3, l.attempt_id())
        .Bind(4, int64_t{l.rank()}).Bind(5, l.offset()).BindBlob(6, l.SerializeAsString());
    RETURN_IF_ERROR(s.Run());
    log_keys.insert({l.attempt_id(), l.rank()});
  }
  for (const auto& [attempt, rank] : log_keys) {
    // Bounded tail: keep the newest kLogLinesKept lines of each (attempt, rank).
    ASSIGN_OR_RETURN(Stmt s, c.Prepare(
        "DELETE FROM log_lines WHERE attempt_id=?1 AND rank=?2 AND id <= (SELECT id FROM log_lines "
        "WHERE attempt_id=?1 AND rank=?2 ORDER BY id DESC LIMIT 1 OFFSET ?3)"));
    s.Bind(1, attempt).Bind(2, int64_t{rank}).Bind(3, int64_t{kLogLinesKept});
    RETURN_IF_ERROR(s.Run());
  }
  for (const auto& [pipeline_id, series] : b.metrics) {
    for (const v1::MetricPoint& p : series.points()) {
      ASSIGN_OR_RETURN(Stmt s, c.Prepare("INSERT INTO metric_points(pipeline_id,stage,attempt_id,"
                                         "name,rank,step,value,time_ms) VALUES(?,?,?,?,?,?,?,?)"));
      s.Bind(1, pipeline_id).Bind(2, series.stage()).Bind(3, series.attempt_id())
          .Bind(4, series.name()).Bind(5, int64_t{p.rank()}).Bind(6, p.step()).Bind(7, p.value())
          .Bind(8, int64_t{p.time().seconds() * 1000 + p.time().nanos() / 1000000});
      RETURN_IF_ERROR(s.Run());
    }
  }
  for (const v1::Artifact& a : b.artifacts) {
    ASSIGN_OR_RETURN(
        Stmt s, c.Prepare("INSERT INTO artifacts(pipeline_id,stage,name,attempt_id,uri,sha256,"
                          "size_bytes,kind,created_ms,artifact) VALUES(?,?,?,?,?,?,?,?,?,?) ON "
                          "CONFLICT(pipeline_id,stage,name) DO UPDATE SET attempt_id=excluded."
                          "attempt_id, uri=excluded.uri, sha256=excluded.sha256, size_bytes="
                          "excluded.size_bytes, kind=excluded.kind, created_ms=excluded.created_ms,"
                          " artifact=excluded.artifact"));
    s.Bind(1, a.pipeline_id()).Bind(2, a.stage()).Bind(3, a.name()).Bind(4, a.attempt_id())
        .Bind(5, a.uri()).Bind(6, a.sha256()).Bind(7, a.size_bytes()).Bind(8, a.kind())
        .Bind(9, int64_t{a.created_at().seconds() * 1000}).BindBlob(10, a.SerializeAsString());
    RETURN_IF_ERROR(s.Run());
  }
  for (const std::string& r : b.report_ids) {
    ASSIGN_OR_RETURN(Stmt s, c.Prepare("INSERT OR IGNORE INTO reports(report_id,applied_ms) VALUES(?,?)"));
    s.Bind(1, r).Bind(2, absl::ToUnixMillis(absl::Now()));
    RETURN_IF_ERROR(s.Run());
  }
  return absl::OkStatus();
}

absl::StatusOr<StoreSnapshot> SqliteStore::Load() {
  absl::MutexLock lock(&read_mu_);
  Connection& c = *reader_;
  RETURN_IF_ERROR(c.Exec("BEGIN"));  // one consistent snapshot
  StoreSnapshot snap;
  auto body = [&]() -> absl::Status {
    {
      ASSIGN_OR_RETURN(Stmt s, c.Prepare("SELECT status, source_yaml, no_cache FROM pipelines "
                                         "ORDER BY created_ms, pipeline_id"));
      for (;;) {
        ASSIGN_OR_RETURN(bool row, s.Step());
        if (!row) break;
        StoredPipeline p;
        if (!p.status.ParseFromString(s.Blob(0))) return absl::DataLossError("corrupt pipeline row");
        p.source_yaml = s.Text(1);
        p.no_cache = s.Int(2) != 0;
        snap.pipelines.push_back(std::move(p));
      }
    }
    {
      ASSIGN_OR_RETURN(Stmt s, c.Prepare("SELECT pipeline_id, idx, next_attempt_ms, last_checkpoint,"
                                         " status FROM stages ORDER BY pipeline_id, idx"));
      for (;;) {
        ASSIGN_OR_RETURN(bool row, s.Step());
        if (!row) break;
        StoredStage st;
        st.pipeline_id = s.Text(0);
        st.index = static_cast<int>(s.Int(1));
        st.next_attempt_at = FromMs(s.Int(2));
        st.last_checkpoint = s.Text(3);
        if (!st.status.ParseFromString(s.Blob(4))) return absl::DataLossError("corrupt stage row");
        snap.stages.push_back(std::move(st));
      }
    }
    {
      ASSIGN_OR_RETURN(Stmt s, c.Prepare(
          "SELECT a.pipeline_id, a.stage, a.world_size, a.cpus_per_rank, a.placement, "
          "a.cancel_requested, a.status, l.lease_id, l.expires_ms FROM attempts a LEFT JOIN leases l "
          "ON l.attempt_id = a.attempt_id ORDER BY a.pipeline_id, a.stage, a.number"));
      for (;;) {
        ASSIGN_OR_RETURN(bool row, s.Step());
        if (!row) break;
        StoredAttempt a;
        a.pipeline_id = s.Text(0);
        a.stage = s.Text(1);
        a.world_size = static_cast<int>(s.Int(2));
        a.cpus_per_rank = static_cast<int>(s.Int(3));
        a.placement = PlacementFromJson(s.Text(4));
        a.cancel_requested = s.Int(5) != 0;
        if (!a.status.ParseFromString(s.Blob(6))) return absl::DataLossError("corrupt attempt row");
        a.lease_id = s.Text(7);
        a.lease_expires = FromMs(s.Int(8));
        snap.attempts.push_back(std::move(a));
      }
    }
    {
      ASSIGN_OR_RETURN(Stmt s, c.Prepare("SELECT status FROM workers ORDER BY worker_id"));
      for (;;) {
        ASSIGN_OR_RETURN(bool row, s.Step());
        if (!row) break;
        v1::WorkerStatus w;
        if (!w.ParseFromString(s.Blob(0))) return absl::DataLossError("corrupt worker row");
        snap.workers.push_back(std::move(w));
      }
    }
    {
      ASSIGN_OR_RETURN(Stmt s, c.Prepare("SELECT COALESCE(MAX(sequence), 0) FROM events"));
      ASSIGN_OR_RETURN(bool row, s.Step());
      if (row) snap.last_event_sequence = s.Int(0);
    }
    return absl::OkStatus();
  };
  absl::Status st = body();
  (void)c.Exec("COMMIT");
  RETURN_IF_ERROR(st);
  return snap;
}

absl::StatusOr<std::optional<std::string>> SqliteStore::FindByRequestId(
    const std::string& client_request_id) {
  absl::MutexLock lock(&read_mu_);
  ASSIGN_OR_RETURN(Stmt s, reader_->Prepare("SELECT pipeline_id FROM pipelines WHERE client_request_id=?"));
  s.Bind(1, client_request_id);
  ASSIGN_OR_RETURN(bool row, s.Step());
  if (!row) return std::optional<std::string>();
  return std::optional<std::string>(s.Text(0));
}

absl::StatusOr<std::vector<v1::Event>> SqliteStore::ReadEvents(const std::string& pipeline_id,
                                                               int64_t after, int limit) {
  absl::MutexLock lock(&read_mu_);
  ASSIGN_OR_RETURN(Stmt s, reader_->Prepare("SELECT event FROM events WHERE pipeline_id=? AND "
                                            "sequence>? ORDER BY sequence LIMIT ?"));
  s.Bind(1, pipeline_id).Bind(2, after).Bind(3, int64_t{limit});
  std::vector<v1::Event> out;
  for (;;) {
    ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) break;
    v1::Event e;
    if (!e.ParseFromString(s.Blob(0))) return absl::DataLossError("corrupt event row");
    out.push_back(std::move(e));
  }
  return out;
}

absl::StatusOr<std::vector<v1::LogLine>> SqliteStore::ReadLogs(const std::string& pipeline_id,
                                                               const std::string& stage, int rank,
                                                               int64_t tail) {
  absl::MutexLock lock(&read_mu_);
  ASSIGN_OR_RETURN(Stmt s, reader_->Prepare(
      "SELECT line FROM (SELECT id, line FROM log_lines WHERE pipeline_id=?1 AND (?2='' OR stage=?2)"
      " AND (?3<0 OR rank=?3) ORDER BY id DESC LIMIT ?4) ORDER BY id"));
  s.Bind(1, pipeline_id).Bind(2, stage).Bind(3, int64_t{rank}).Bind(4, tail > 0 ? tail : int64_t{-1});
  std::vector<v1::LogLine> out;
  for (;;) {
    ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) break;
    v1::LogLine l;
    if (!l.ParseFromString(s.Blob(0))) return absl::DataLossError("corrupt log row");
    out.push_back(std::move(l));
  }
  return out;
}

absl::StatusOr<std::vector<v1::MetricSeries>> SqliteStore::ReadMetrics(
    const std::string& pipeline_id, const std::string& stage,
    const std::vector<std::string>& names) {
  absl::MutexLock lock(&read_mu_);
  ASSIGN_OR_RETURN(Stmt s, reader_->Prepare(
      "SELECT stage, attempt_id, name, rank, step, value, time_ms FROM metric_points WHERE "
      "pipeline_id=?1 AND (?2='' OR stage=?2) ORDER BY stage, attempt_id, name, rowid"));
  s.Bind(1, pipeline_id).Bind(2, stage);
  std::map<std::tuple<std::string, std::string, std::string>, v1::MetricSeries> merged;
  for (;;) {
    ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) break;
    const std::string name = s.Text(2);
    if (!names.empty() && std::find(names.begin(), names.end(), name) == names.end()) continue;
    v1::MetricSeries& m = merged[{s.Text(0), s.Text(1), name}];
    m.set_stage(s.Text(0));
    m.set_attempt_id(s.Text(1));
    m.set_name(name);
    v1::MetricPoint* p = m.add_points();
    p->set_rank(static_cast<int>(s.Int(3)));
    p->set_step(s.Int(4));
    p->set_value(s.Double(5));
    const int64_t ms = s.Int(6);
    p->mutable_time()->set_seconds(ms / 1000);
    p->mutable_time()->set_nanos(static_cast<int>(ms % 1000) * 1000000);
  }
  std::vector<v1::MetricSeries> out;
  for (auto& [k, m] : merged) out.push_back(std::move(m));
  return out;
}

absl::StatusOr<std::vector<v1::Artifact>> SqliteStore::ReadArtifacts(const std::string& pipeline_id,
                                                                     const std::string& stage) {
  absl::MutexLock lock(&read_mu_);
  ASSIGN_OR_RETURN(Stmt s, reader_->Prepare("SELECT artifact FROM artifacts WHERE pipeline_id=?1 AND "
                                            "(?2='' OR stage=?2) ORDER BY stage, name"));
  s.Bind(1, pipeline_id).Bind(2, stage);
  std::vector<v1::Artifact> out;
  for (;;) {
    ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) break;
    v1::Artifact a;
    if (!a.ParseFromString(s.Blob(0))) return absl::DataLossError("corrupt artifact row");
    out.push_back(std::move(a));
  }
  return out;
}

absl::StatusOr<bool> SqliteStore::HasReport(const std::string& report_id) {
  absl::MutexLock lock(&read_mu_);
  ASSIGN_OR_RETURN(Stmt s, reader_->Prepare("SELECT 1 FROM reports WHERE report_id=?"));
  s.Bind(1, report_id);
  return s.Step();
}

}  // namespace align::coordinator
