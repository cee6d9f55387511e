// JsonLinesEventSink::Open: a missing folder on the way to events_path is created; a path that
// still cannot be opened is reported as events_path.
#include "worker/engine/core/events.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace align::engine {
namespace {

namespace fs = std::filesystem;
using ::align::testing::StatusIs;
using ::testing::HasSubstr;

TEST(EventsPathTest, MissingFolderIsCreated) {
  const std::string dir = ::testing::TempDir() + "/events_path_test_" + std::to_string(::getpid());
  fs::remove_all(dir);
  const std::string path = dir + "/a/b/rank-0.events.jsonl";
  {
    ASSERT_OK_AND_ASSIGN(auto sink, JsonLinesEventSink::Open(path));
    sink->Emit("start", {{"stage", "x"}});
  }
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  EXPECT_THAT(ss.str(), HasSubstr("\"event\":\"start\""));
  // A path that cannot be opened (here: a folder) is named as events_path.
  auto bad = JsonLinesEventSink::Open(dir + "/a");
  EXPECT_THAT(bad.status(), StatusIs(absl::StatusCode::kUnavailable,
                                     HasSubstr("events_path " + dir + "/a: cannot open for appending")));
  fs::remove_all(dir);
}

}  // namespace
}  // namespace align::engine
