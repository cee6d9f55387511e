#include "cli/client_config.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>

#include "common/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace align::cli {
namespace {

namespace fs = std::filesystem;
using ::align::testing::StatusIs;
using ::testing::HasSubstr;

class ClientConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("align_client_config_" + std::to_string(getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string Write(const std::string& name, const std::string& text) {
    std::string p = (dir_ / name).string();
    std::ofstream(p) << text;
    return p;
  }
  std::function<const char*(const char*)> Env() {
    return [this](const char* n) -> const char* {
      auto it = env_.find(n);
      return it == env_.end() ? nullptr : it->second.c_str();
    };
  }
  fs::path dir_;
  std::map<std::string, std::string> env_;
};

TEST_F(ClientConfigTest, DefaultsToLocalhostWithoutToken) {
  ASSERT_OK_AND_ASSIGN(ClientConfig c, ResolveClientConfig({}, Env(), (dir_ / "none.yaml").string()));
  EXPECT_EQ(c.address, "localhost:7070");
  EXPECT_EQ(c.address_source, "default");
  EXPECT_EQ(c.token, "");
}

TEST_F(ClientConfigTest, FlagBeatsEnvironmentBeatsConfigFile) {
  std::string token = Write("tok", "\n  s3cret  \n");
  std::string cfg = Write("config.yaml", "coordinator: file-host:1\ntoken_file: " + token + "\n");
  ASSERT_OK_AND_ASSIGN(ClientConfig c, ResolveClientConfig({}, Env(), cfg));
  EXPECT_EQ(c.address, "file-host:1");
  EXPECT_EQ(c.address_source, cfg);
  EXPECT_EQ(c.token, "s3cret");
  EXPECT_EQ(c.token_source, token);

  env_["ALIGN_COORDINATOR"] = "env-host:2";
  env_["ALIGN_TOKEN"] = "envtoken";
  ASSERT_OK_AND_ASSIGN(c, ResolveClientConfig({}, Env(), cfg));
  EXPECT_EQ(c.address, "env-host:2");
  EXPECT_EQ(c.token, "envtoken");
  EXPECT_EQ(c.token_source, "ALIGN_TOKEN");

  std::string flag_token = Write("flagtok", "flagtoken\n");
  ASSERT_OK_AND_ASSIGN(c, ResolveClientConfig({"flag-host:3", flag_token}, Env(), cfg));
  EXPECT_EQ(c.address, "flag-host:3");
  EXPECT_EQ(c.address_source, "--coordinator");
  EXPECT_EQ(c.token, "flagtoken");
}

TEST_F(ClientConfigTest, ConfigPathFollowsXdgAndAlignConfig) {
  env_["HOME"] = "/home/u";
  EXPECT_EQ(DefaultClientConfigPath(Env()), "/home/u/.config/align/config.yaml");
  env_["XDG_CONFIG_HOME"] = "/x";
  EXPECT_EQ(DefaultClientConfigPath(Env()), "/x/align/config.yaml");
  env_["ALIGN_CONFIG"] = "/etc/align.yaml";
  EXPECT_EQ(DefaultClientConfigPath(Env()), "/etc/align.yaml");
}

TEST_F(ClientConfigTest, BadConfigAndTokenFilesAreClearErrors) {
  std::string cfg = Write("config.yaml", "coordinator: a:1\ntoken: x\n");
  EXPECT_THAT(ResolveClientConfig({}, Env(), cfg),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       cfg + ":2: unknown key \"token\"; expected coordinator or token_file"));
  std::string broken = Write("broken.yaml", "coordinator: [a\n");
  EXPECT_THAT(ResolveClientConfig({}, Env(), broken),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(broken + ":")));
  EXPECT_THAT(ResolveClientConfig({"", (dir_ / "missing").string()}, Env(), ""),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("cannot read token file")));
  // A missing default config file is fine; one named by ALIGN_CONFIG is an error.
  const std::string missing = (dir_ / "nope.yaml").string();
  EXPECT_OK(ResolveClientConfig({}, Env(), missing).status());
  env_["ALIGN_CONFIG"] = missing;
  EXPECT_THAT(ResolveClientConfig({}, Env(), missing),
              StatusIs(absl::StatusCode::kNotFound,
                       "ALIGN_CONFIG names " + missing +
                           ", which does not exist; create it or unset ALIGN_CONFIG"));
  env_.erase("ALIGN_CONFIG");
  std::string empty = Write("empty", "\n\n");
  EXPECT_THAT(ResolveClientConfig({"", empty}, Env(), ""),
              StatusIs(absl::StatusCode::kInvalidArgument, "token file " + empty + " is empty"));
}

}  // namespace
}  // namespace align::cli
