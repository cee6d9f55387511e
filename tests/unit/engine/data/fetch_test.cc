// Downloads with checksum against a tiny HTTP/1.0 server on 127.0.0.1 started by the test (no
// external network exists in CI).
#include "worker/engine/data/fetch.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "worker/engine/core/failure.h"

namespace align::engine::data {
namespace {

namespace fs = std::filesystem;
using ::align::testing::StatusIs;
using ::testing::HasSubstr;

// sha256("abc"), the FIPS 180-2 test vector.
constexpr char kAbcSha[] = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

class TinyHttpServer {
 public:
  struct Response {
    int status = 200;
    std::string body;
    std::string location;  // for redirects
  };

  TinyHttpServer() {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    EXPECT_EQ(bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    socklen_t len = sizeof(addr);
    getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    EXPECT_EQ(listen(fd_, 16), 0);
  }
  ~TinyHttpServer() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
    close(fd_);
  }

  void Serve(const std::string& path, Response r) { routes_[path] = std::move(r); }
  void Start() { thread_ = std::thread([this] { Loop(); }); }
  std::string Url(const std::string& path) const {
    return absl::StrCat("http://127.0.0.1:", port_, path);
  }
  int requests() const { return requests_.load(); }

 private:
  void Loop() {
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, 50) <= 0) continue;
      int c = accept(fd_, nullptr, nullptr);
      if (c < 0) continue;
      std::string req;
      char buf[4096];
      while (req.find("\r\n\r\n") == std::string::npos) {
        ssize_t n = read(c, buf, sizeof(buf));
        if (n <= 0) break;
        req.append(buf, static_cast<size_t>(n));
      }
      ++requests_;
      std::istringstream line(req);
      std::string method, path;
      line >> method >> path;
      std::string out;
      auto it = routes_.find(path);
      if (it == routes_.end()) {
        out = "HTTP/1.0 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found";
      } else if (!it->second.location.empty()) {
        out = absl::StrCat("HTTP/1.0 302 Found\r\nLocation: ", it->second.location,
                           "\r\nContent-Length: 0\r\n\r\n");
      } else {
        out = absl::StrCat("HTTP/1.0 ", it->second.status, " OK\r\nContent-Length: ",
                           it->second.body.size(), "\r\n\r\n", it->second.body);
      }
      size_t off = 0;
      while (off < out.size()) {
        ssize_t n = write(c, out.data() + off, out.size() - off);
        if (n <= 0) break;
        off += static_cast<size_t>(n);
      }
      close(c);
    }
  }

  int fd_ = -1;
  int port_ = 0;
  std::map<std::string, Response> routes_;
  std::atomic<bool> stop_{false};
  std::atomic<int> requests_{0};
  std::thread thread_;
};

class FetchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           absl::StrCat("align_fetch_test_", getpid(), "_",
                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    options_.cache_dir = (dir_ / "cache").string();
    progress_ = std::tmpfile();
    options_.progress_stream = progress_;
  }
  void TearDown() override {
    std::fclose(progress_);
    fs::remove_all(dir_);
  }
  std::string ProgressText() {
    std::fflush(progress_);
    std::rewind(progress_);
    std::string s;
    char buf[1024];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof(buf), progress_)) > 0) s.append(buf, n);
    return s;
  }
  int FilesIn(const fs::path& d) {
    int n = 0;
    if (!fs::exists(d)) return 0;
    for (const auto& e : fs::recursive_directory_iterator(d)) n += e.is_regular_file() ? 1 : 0;
    return n;
  }
  static std::string Read(const std::string& p) {
    std::ifstream in(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }

  fs::path dir_;
  FetchOptions options_;
  std::FILE* progress_ = nullptr;
};

TEST_F(FetchTest, DownloadsVerifiesAndPublishesIntoTheCache) {
  TinyHttpServer server;
  server.Serve("/datasets/x/resolve/main/abc.jsonl", {200, "abc", ""});
  server.Start();
  const std::string url = server.Url("/datasets/x/resolve/main/abc.jsonl");
  ASSERT_OK_AND_ASSIGN(std::string path, FetchToCache(url, kAbcSha, options_));
  EXPECT_EQ(path, options_.cache_dir + "/ba7816bf8f01cfea/abc.jsonl");
  EXPECT_EQ(Read(path), "abc");
  EXPECT_EQ(FilesIn(options_.cache_dir), 1);  // no partial file left behind
  EXPECT_EQ(server.requests(), 1);
  EXPECT_EQ(ProgressText(), "");  // not a TTY, no bar

  // A verified cached copy is reused without touching the network.
  ASSERT_OK_AND_ASSIGN(std::string again, FetchToCache(url, kAbcSha, options_));
  EXPECT_EQ(again, path);
  EXPECT_EQ(server.requests(), 1);
}

TEST_F(FetchTest, ChecksumMismatchDeletesThePartialFileAndSaysSo) {
  TinyHttpServer server;
  server.Serve("/abc.jsonl", {200, "abd", ""});
  server.Start();
  auto got = FetchToCache(server.Url("/abc.jsonl"), kAbcSha, options_);
  EXPECT_THAT(got, StatusIs(absl::StatusCode::kDataLoss, HasSubstr("sha256 mismatch")));
  EXPECT_THAT(got.status().message(), HasSubstr(absl::StrCat("expected ", kAbcSha)));
  EXPECT_THAT(got.status().message(), HasSubstr("got a52d159f262b2c6ddb724a61840befc36eb30c88877a4030b65cbe86298449c9 (3 bytes)"));
  EXPECT_THAT(got.status().message(), HasSubstr("deleted the partial download"));
  EXPECT_EQ(FilesIn(options_.cache_dir), 0);
}

TEST_F(FetchTest, FollowsRedirectsLikeTheHubsCdn) {
  TinyHttpServer server;
  server.Serve("/resolve/main/abc.jsonl", {302, "", "/cdn/blob"});
  server.Serve("/cdn/blob", {200, "abc", ""});
  server.Start();
  ASSERT_OK_AND_ASSIGN(std::string path,
                       FetchToCache(server.Url("/resolve/main/abc.jsonl"), kAbcSha, options_));
  EXPECT_EQ(Read(path), "abc");
  EXPECT_EQ(server.requests(), 2);
}

TEST_F(FetchTest, HttpErrorIsOneClearLine) {
  TinyHttpServer server;
  server.Start();
  auto got = FetchToCache(server.Url("/missing.jsonl"), kAbcSha, options_);
  EXPECT_THAT(got, StatusIs(absl::StatusCode::kUnavailable, HasSubstr("404")));
  EXPECT_THAT(got.status().message(), HasSubstr(server.Url("/missing.jsonl")));
  EXPECT_EQ(FilesIn(options_.cache_dir), 0);
}

TEST_F(FetchTest, RefusesADownloadWithoutChecksum) {
  EXPECT_THAT(FetchToCache("https://huggingface.co/datasets/a/resolve/main/b.jsonl", "", options_),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("needs its sha256")));
  EXPECT_THAT(FetchToCache("https://example.org/b.jsonl", "xyz", options_),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("got \"xyz\"")));
}

TEST_F(FetchTest, DrawsAProgressBarWhenAsked) {
  TinyHttpServer server;
  server.Serve("/abc.jsonl", {200, "abc", ""});
  server.Start();
  options_.force_progress = true;
  ASSERT_OK(FetchToCache(server.Url("/abc.jsonl"), kAbcSha, options_).status());
  std::string text = ProgressText();
  EXPECT_THAT(text, HasSubstr("abc.jsonl"));
  EXPECT_THAT(text, HasSubstr("3 B"));
  EXPECT_EQ(text.back(), '\n');
}

TEST_F(FetchTest, ResolvesLocalDataPathsAndChecksThemWhenAsked) {
  fs::create_directories(dir_ / "data/datasets");
  std::ofstream(dir_ / "data/datasets/abc.jsonl") << "abc";
  const std::string data_dir = (dir_ / "data").string();
  ASSERT_OK_AND_ASSIGN(std::string p,
                       ResolveDataFile("data://datasets/abc.jsonl", kAbcSha, data_dir, options_));
  EXPECT_EQ(p, data_dir + "/datasets/abc.jsonl");
  EXPECT_THAT(ResolveDataFile("data://datasets/abc.jsonl",
                              "0000000000000000000000000000000000000000000000000000000000000000",
                              data_dir, options_),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr(absl::StrCat("sha256 is ", kAbcSha))));
  EXPECT_THAT(ResolveDataFile("data://datasets/nope.jsonl", "", data_dir, options_),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("set ALIGN_DATA_DIR")));
}

TEST_F(FetchTest, KnownOriginsArePublicHubOrGithubUrlsWithChecksums) {
  ASSERT_FALSE(KnownOrigins().empty());
  for (const KnownOrigin& o : KnownOrigins()) {
    EXPECT_TRUE(o.url.rfind("https://huggingface.co/", 0) == 0 ||
                o.url.rfind("https://raw.githubusercontent.com/", 0) == 0)
        << o.url;
    EXPECT_EQ(o.sha256.size(), 64u) << o.data_path;
  }
}

// The engine side: FetchJobData resolves a job's data sources before the stage reads them.
JobSpec JobWithData(nlohmann::json data, const std::string& data_dir) {
  JobSpec job;
  job.stage_name = "sft";
  job.stage_type = "sft";
  job.stage = {{"name", "sft"}, {"type", "SFT"}, {"data", std::move(data)}};
  job.data_dir = data_dir;
  return job;
}

TEST_F(FetchTest, FetchJobDataDownloadsUrlSourcesWithProgressEvents) {
  TinyHttpServer server;
  server.Serve("/abc.jsonl", {200, "abc", ""});
  server.Start();
  const std::string url = server.Url("/abc.jsonl");
  fs::create_directories(dir_ / "data");
  std::ofstream(dir_ / "data/local.jsonl") << "x";
  JobSpec job = JobWithData({{{"path", url}, {"sha256", kAbcSha}},
                             {{"path", "data://local.jsonl"}},
                             {{"path", "${stages.prefs.outputs.train}"}}},
                            (dir_ / "data").string());
  job.inputs["data/1"] = (dir_ / "data/local.jsonl").string();
  job.inputs["data/2"] = "/artifacts/p/prefs/train.jsonl";  // a stage output, left as it is
  RecordingEventSink events;
  ASSERT_OK(FetchJobData(job, events, options_));
  EXPECT_EQ(job.inputs["data/0"], options_.cache_dir + "/ba7816bf8f01cfea/abc.jsonl");
  EXPECT_EQ(job.inputs["data/1"], (dir_ / "data").string() + "/local.jsonl");
  EXPECT_EQ(job.inputs["data/2"], "/artifacts/p/prefs/train.jsonl");
  ASSERT_GE(events.events.size(), 2u);
  const nlohmann::json& first = events.events.front();
  const nlohmann::json& last = events.events.back();
  EXPECT_EQ(first["event"], "phase");
  EXPECT_EQ(first["phase"], "download");
  EXPECT_EQ(first["message"], absl::StrCat("downloading ", url, " to ", job.inputs["data/0"]));
  EXPECT_EQ(first["bytes"], 0);
  EXPECT_EQ(last["done"], true);
  EXPECT_EQ(last["bytes"], 3);
  EXPECT_EQ(last["message"], absl::StrCat("downloaded ", url, ": 3 B"));

  // The second run finds the verified copy: no request, no download events.
  RecordingEventSink again;
  JobSpec job2 = JobWithData({{{"path", url}, {"sha256", kAbcSha}}}, (dir_ / "data").string());
  ASSERT_OK(FetchJobData(job2, again, options_));
  EXPECT_EQ(job2.inputs["data/0"], job.inputs["data/0"]);
  EXPECT_TRUE(again.events.empty());
  EXPECT_EQ(server.requests(), 1);
}

TEST_F(FetchTest, FetchJobDataChecksumMismatchIsAnInputErrorNamingTheSource) {
  TinyHttpServer server;
  server.Serve("/abc.jsonl", {200, "abd", ""});
  server.Start();
  JobSpec job = JobWithData({{{"path", "data://x.jsonl"}},
                             {{"path", server.Url("/abc.jsonl")}, {"sha256", kAbcSha}}},
                            (dir_ / "data").string());
  fs::create_directories(dir_ / "data");
  std::ofstream(dir_ / "data/x.jsonl") << "x";
  RecordingEventSink events;
  absl::Status st = FetchJobData(job, events, options_);
  EXPECT_THAT(st, StatusIs(absl::StatusCode::kDataLoss,
                           HasSubstr(absl::StrCat("stage.data[1].path: sha256 mismatch for ",
                                                  server.Url("/abc.jsonl"), ": expected ", kAbcSha))));
  EXPECT_EQ(ExitCodeFor(st), 3);  // the spec's to fix: not retried as infrastructure
  EXPECT_EQ(FilesIn(options_.cache_dir), 0);
  EXPECT_FALSE(fs::exists(options_.cache_dir + "/ba7816bf8f01cfea"));
}

TEST_F(FetchTest, FetchJobDataNetworkFailureIsInfrastructure) {
  TinyHttpServer server;
  server.Start();
  JobSpec job = JobWithData({{{"path", server.Url("/missing.jsonl")}, {"sha256", kAbcSha}}}, "");
  RecordingEventSink events;
  absl::Status st = FetchJobData(job, events, options_);
  EXPECT_THAT(st, StatusIs(absl::StatusCode::kUnavailable, HasSubstr("stage.data[0].path: downloading")));
  EXPECT_EQ(ExitCodeFor(st), 4);
}

}  // namespace
}  // namespace align::engine::data
