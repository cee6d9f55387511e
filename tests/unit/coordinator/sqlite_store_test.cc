// SqliteStore against real files in a temp dir: migrations, atomic batches, unique request ids,
// concurrent claimers, a reader holding a transaction open, disk full.
#include "coordinator/store/sqlite_store.h"

#include <sqlite3.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <thread>

#include "common/testing/status_matchers.h"
#include "coordinator/store/memory_store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace align::coordinator {
namespace {

using ::align::testing::IsOk;
using ::align::testing::StatusIs;
using ::testing::HasSubstr;

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "align-store-XXXXXX").string();
    path_ = mkdtemp(tmpl.data());
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

StoredPipeline Pipeline(const std::string& id, const std::string& name, const std::string& rid = "") {
  StoredPipeline p;
  p.status.set_pipeline_id(id);
  p.status.set_name(name);
  p.status.set_client_request_id(rid);
  p.status.set_state(v1::PIPELINE_QUEUED);
  p.status.mutable_created_at()->set_seconds(1700000000);
  return p;
}

StoredStage Stage(const std::string& pid, const std::string& name, v1::StageState state, int idx = 0) {
  StoredStage s;
  s.pipeline_id = pid;
  s.index = idx;
  s.status.set_name(name);
  s.status.set_state(state);
  return s;
}

TEST(SqliteStoreTest, MigratesOnceAndRecordsTheVersion) {
  TempDir dir;
  { ASSERT_OK(SqliteStore::Open(dir.File("a.db"))); }
  ASSERT_OK_AND_ASSIGN(auto store, SqliteStore::Open(dir.File("a.db")));  // reopen: no re-run
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(dir.File("a.db").c_str(), &db), SQLITE_OK);
  sqlite3_stmt* s = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db, "SELECT COUNT(*), MAX(version) FROM schema_version", -1, &s, nullptr), SQLITE_OK);
  ASSERT_EQ(sqlite3_step(s), SQLITE_ROW);
  EXPECT_EQ(sqlite3_column_int(s, 0), SqliteStore::CurrentSchemaVersion());
  EXPECT_EQ(sqlite3_column_int(s, 1), SqliteStore::CurrentSchemaVersion());
  sqlite3_finalize(s);
  ASSERT_EQ(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &s, nullptr), SQLITE_OK);
  ASSERT_EQ(sqlite3_step(s), SQLITE_ROW);
  EXPECT_STREQ(reinterpret_cast<const char*>(sqlite3_column_text(s, 0)), "wal");
  sqlite3_finalize(s);
  sqlite3_close(db);
}

TEST(SqliteStoreTest, RefusesANewerSchema) {
  TempDir dir;
  { ASSERT_OK(SqliteStore::Open(dir.File("a.db"))); }
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(dir.File("a.db").c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "INSERT INTO schema_version VALUES(99)", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(db);
  EXPECT_THAT(SqliteStore::Open(dir.File("a.db")),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("schema version 99")));
}

TEST(SqliteStoreTest, UnicodeNameAndRowsRoundTrip) {
  TempDir dir;
  const std::string name = "実験-ü-✓";
  {
    ASSERT_OK_AND_ASSIGN(auto store, SqliteStore::Open(dir.File("a.db")));
    WriteBatch b;
    b.new_pipelines.push_back(Pipeline("p-1", name, "rid-1"));
    b.stages.push_back(Stage("p-1", "sft", v1::STAGE_QUEUED));
    StoredAttempt a;
    a.pipeline_id = "p-1";
    a.stage = "sft";
    a.status.set_attempt_id("a-1");
    a.status.set_number(1);
    a.placement.push_back({"w1", 7, {0, 1}, {2, 3}});
    a.world_size = 2;
    a.lease_id = "l-1";
    a.lease_expires = absl::FromUnixSeconds(1700000100);
    b.attempts.push_back(a);
    v1::Event e;
    e.set_sequence(5);
    e.set_pipeline_id("p-1");
    b.events.push_back(e);
    ASSERT_OK(store->Apply(b));
  }
  ASSERT_OK_AND_ASSIGN(auto store, SqliteStore::Open(dir.File("a.db")));
  ASSERT_OK_AND_ASSIGN(StoreSnapshot snap, store->Load());
  ASSERT_EQ(snap.pipelines.size(), 1u);
  EXPECT_EQ(snap.pipelines[0].status.name(), name);
  ASSERT_EQ(snap.attempts.size(), 1u);
  EXPECT_EQ(snap.attempts[0].placement[0], (RankPlacement{"w1", 7, {0, 1}, {2, 3}}));
  EXPECT_EQ(snap.attempts[0].lease_id, "l-1");
  EXPECT_EQ(snap.attempts[0].lease_expires, absl::FromUnixSeconds(1700000100));
  EXPECT_EQ(snap.last_event_sequence, 5);
  ASSERT_OK_AND_ASSIGN(auto found, store->FindByRequestId("rid-1"));
  EXPECT_EQ(found, std::optional<std::string>("p-1"));
}

TEST(SqliteStoreTest, DuplicateRequestIdFailsTheWholeBatch) {
  TempDir dir;
  ASSERT_OK_AND_ASSIGN(auto store, SqliteStore::Open(dir.File("a.db")));
  WriteBatch b1;
  b1.new_pipelines.push_back(Pipeline("p-1", "x", "same"));
  ASSERT_OK(store->Apply(b1));
  WriteBatch b2;
  b2.new_pipelines.push_back(Pipeline("p-2", "y", "same"));
  b2.stages.push_back(Stage("p-2", "sft", v1::STAGE_QUEUED));
  EXPECT_THAT(store->Apply(b2), StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr("p-1")));
  ASSERT_OK_AND_ASSIGN(StoreSnapshot snap, store->Load());
  EXPECT_EQ(snap.pipelines.size(), 1u);
  EXPECT_EQ(snap.stages.size(), 0u);
}

TEST(SqliteStoreTest, ConcurrentSubmitsWithTheSameRequestIdLeaveOneRow) {
  TempDir dir;
  ASSERT_OK_AND_ASSIGN(auto s1, SqliteStore::Open(dir.File("a.db")));
  ASSERT_OK_AND_ASSIGN(auto s2, SqliteStore::Open(dir.File("a.db")));  // as two processes
  std::atomic<int> ok{0}, exists{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&, i] {
      WriteBatch b;
      b.new_pipelines.push_back(Pipeline("p-" + std::to_string(i), "x", "same-rid"));
      absl::Status s = (i % 2 == 0 ? s1 : s2)->Apply(b);
      if (s.ok()) ++ok;
      if (s.code() == absl::StatusCode::kAlreadyExists) ++exists;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), 1);
  EXPECT_EQ(exists.load(), 7);
  ASSERT_OK_AND_ASSIGN(StoreSnapshot snap, s1->Load());
  EXPECT_EQ(snap.pipelines.size(), 1u);
}

// 16 claimers (each with its own connections, like separate processes) race over 20 queued
// stages while another connection holds a read transaction open: every stage is claimed exactly
// once, and nobody sees "database is locked".
TEST(SqliteStoreTest, SixteenClaimersClaimEachStageExactlyOnceWithAReaderOpen) {
  TempDir dir;
  const std::string path = dir.File("claims.db");
  {
    ASSERT_OK_AND_ASSIGN(auto store, SqliteStore::Open(path));
    WriteBatch b;
    b.new_pipelines.push_back(Pipeline("p-1", "claims"));
    for (int i = 0; i < 20; ++i) b.stages.push_back(Stage("p-1", "s" + std::to_string(i), v1::STAGE_QUEUED, i));
    ASSERT_OK(store->Apply(b));
  }
  sqlite3* reader = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &reader), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(reader, "BEGIN", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(reader, "SELECT COUNT(*) FROM stages", -1, &st, nullptr), SQLITE_OK);
  ASSERT_EQ(sqlite3_step(st), SQLITE_ROW);  // the read transaction now holds a snapshot
  EXPECT_EQ(sqlite3_column_int(st, 0), 20);

  std::vector<std::unique_ptr<SqliteStore>> stores;
  for (int c = 0; c < 16; ++c) {
    ASSERT_OK_AND_ASSIGN(auto s, SqliteStore::Open(path));
    stores.push_back(std::move(s));
  }
  std::atomic<int> claimed{0};
  std::vector<std::vector<int>> won(16);
  std::vector<std::string> errors(16);
  std::vector<std::thread> threads;
  for (int c = 0; c < 16; ++c) {
    threads.emplace_back([&, c] {
      for (int i = 0; i < 20; ++i) {
        const int stage = (i + c) % 20;
        WriteBatch b;
        b.expect.push_back({"p-1", "s" + std::to_string(stage), v1::STAGE_QUEUED});
        StoredStage s = Stage("p-1", "s" + std::to_string(stage), v1::STAGE_ASSIGNED, stage);
        s.status.set_reason("claimed by " + std::to_string(c));
        b.stages.push_back(s);
        StoredAttempt a;
        a.pipeline_id = "p-1";
        a.stage = "s" + std::to_string(stage);
        a.status.set_attempt_id("a-" + std::to_string(stage) + "-" + std::to_string(c));
        a.lease_id = "l-" + std::to_string(stage) + "-" + std::to_string(c);
        b.attempts.push_back(a);
        absl::Status st = stores[c]->Apply(b);
        if (st.ok()) {
          won[c].push_back(stage);
          ++claimed;
        } else if (st.code() != absl::StatusCode::kFailedPrecondition) {
          errors[c] = st.ToString();
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  sqlite3_finalize(st);
  sqlite3_exec(reader, "COMMIT", nullptr, nullptr, nullptr);
  sqlite3_close(reader);
  for (const std::string& e : errors) EXPECT_EQ(e, "");
  EXPECT_EQ(claimed.load(), 20);
  std::vector<int> count(20, 0);
  for (const auto& w : won) {
    for (int s : w) ++count[s];
  }
  for (int i = 0; i < 20; ++i) EXPECT_EQ(count[i], 1) << "stage s" << i;
  ASSERT_OK_AND_ASSIGN(StoreSnapshot snap, stores[0]->Load());
  EXPECT_EQ(snap.attempts.size(), 20u);
  for (const StoredStage& s : snap.stages) EXPECT_EQ(s.status.state(), v1::STAGE_ASSIGNED);
}

TEST(SqliteStoreTest, DiskFullIsUnavailableAndTheDatabaseStaysIntact) {
  TempDir dir;
  ASSERT_OK_AND_ASSIGN(auto store, SqliteStore::Open(dir.File("a.db")));
  WriteBatch b;
  b.new_pipelines.push_back(Pipeline("p-1", "kept"));
  ASSERT_OK(store->Apply(b));
  ASSERT_OK(store->SetMaxPageCountForTesting(1));  // below the current size: every write is full
  WriteBatch big;
  big.new_pipelines.push_back(Pipeline("p-2", "big"));
  big.new_pipelines.back().source_yaml = std::string(1 << 20, 'x');
  EXPECT_THAT(store->Apply(big), StatusIs(absl::StatusCode::kUnavailable, HasSubstr("full")));
  ASSERT_OK(store->SetMaxPageCountForTesting(1 << 30));
  ASSERT_OK_AND_ASSIGN(StoreSnapshot snap, store->Load());
  ASSERT_EQ(snap.pipelines.size(), 1u);
  EXPECT_EQ(snap.pipelines[0].status.name(), "kept");
  // And the store keeps working afterwards.
  ASSERT_OK(store->Apply(big));
}

TEST(SqliteStoreTest, LogTailIsBounded) {
  TempDir dir;
  ASSERT_OK_AND_ASSIGN(auto store, SqliteStore::Open(dir.File("a.db")));
  WriteBatch b;
  for (int i = 0; i < kLogLinesKept + 10; ++i) {
    v1::LogLine l;
    l.set_pipeline_id("p-1");
    l.set_stage("sft");
    l.set_attempt_id("a-1");
    l.set_offset(i);
    l.set_text("line " + std::to_string(i));
    b.logs.push_back(l);
  }
  ASSERT_OK(store->Apply(b));
  ASSERT_OK_AND_ASSIGN(auto lines, store->ReadLogs("p-1", "", -1, 0));
  ASSERT_EQ(lines.size(), static_cast<size_t>(kLogLinesKept));
  EXPECT_EQ(lines.front().text(), "line 10");
  ASSERT_OK_AND_ASSIGN(auto tail, store->ReadLogs("p-1", "sft", 0, 3));
  ASSERT_EQ(tail.size(), 3u);
  EXPECT_EQ(tail.back().offset(), kLogLinesKept + 9);
}

TEST(MemoryStoreTest, ExpectationFailureChangesNothing) {
  MemoryStore store;
  WriteBatch b;
  b.new_pipelines.push_back(Pipeline("p-1", "x"));
  b.stages.push_back(Stage("p-1", "s", v1::STAGE_QUEUED));
  ASSERT_OK(store.Apply(b));
  WriteBatch claim;
  claim.expect.push_back({"p-1", "s", v1::STAGE_BLOCKED});
  claim.stages.push_back(Stage("p-1", "s", v1::STAGE_ASSIGNED));
  EXPECT_THAT(store.Apply(claim), StatusIs(absl::StatusCode::kFailedPrecondition));
  ASSERT_OK_AND_ASSIGN(StoreSnapshot snap, store.Load());
  EXPECT_EQ(snap.stages[0].status.state(), v1::STAGE_QUEUED);
}

}  // namespace
}  // namespace align::coordinator
