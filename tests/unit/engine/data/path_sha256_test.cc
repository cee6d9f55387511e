#include <filesystem>
#include <fstream>
#include <string>

#include "common/testing/status_matchers.h"
#include "gtest/gtest.h"
#include "worker/engine/data/sources.h"

namespace align::engine::data {
namespace {

namespace fs = std::filesystem;

void Write(const fs::path& p, const std::string& bytes) {
  fs::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary) << bytes;
}

// The hash artifact events and the eval record (judge model) share: a file's own SHA-256; a
// directory's over "relative-name file-sha256\n" lines in sorted order, nested files included.
// Expected values from Python's hashlib over the same bytes.
TEST(PathSha256, FileAndDirectoryManifest) {
  const fs::path dir = fs::path(::testing::TempDir()) / "path_sha256";
  fs::remove_all(dir);
  Write(dir / "sub/b.bin", "beta");
  Write(dir / "a.txt", "alpha\n");
  int64_t size = -1;
  ASSERT_OK_AND_ASSIGN(std::string file_sha, PathSha256((dir / "a.txt").string(), &size));
  EXPECT_EQ(file_sha, "b6a98d9ce9a2d9149288fa3df42d377c3e42737afdcdaf714e33c0a100b51060");
  EXPECT_EQ(size, 6);
  ASSERT_OK_AND_ASSIGN(std::string dir_sha, PathSha256(dir.string(), &size));
  EXPECT_EQ(dir_sha, "e33113d2c95f14fdd8ceb79f8064c57b7560a3b825293a3acfff3b718ef6e9c1");
  EXPECT_EQ(size, 10);
  EXPECT_FALSE(PathSha256((dir / "missing").string()).ok());
}

}  // namespace
}  // namespace align::engine::data
