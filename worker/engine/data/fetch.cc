#include "worker/engine/data/fetch.h"

#include <unistd.h>

#ifdef ALIGN_HAVE_CURL
#include <curl/curl.h>
#include <openssl/evp.h>
#endif

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <fstream>
#include <memory>
#include <mutex>
#include <system_error>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/status_macros.h"
#include "worker/engine/core/failure.h"

namespace align::engine::data {
namespace {

namespace fs = std::filesystem;

std::string HumanBytes(double b) {
  if (b >= 1e9) return absl::StrFormat("%.1f GB", b / 1e9);
  if (b >= 1e6) return absl::StrFormat("%.1f MB", b / 1e6);
  if (b >= 1e3) return absl::StrFormat("%.1f kB", b / 1e3);
  return absl::StrFormat("%.0f B", b);
}

#ifdef ALIGN_HAVE_CURL

struct DigestDeleter {
  void operator()(EVP_MD_CTX* ctx) const { EVP_MD_CTX_free(ctx); }
};
using Digest = std::unique_ptr<EVP_MD_CTX, DigestDeleter>;

Digest NewSha256() {
  Digest ctx(EVP_MD_CTX_new());
  if (ctx != nullptr) EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr);
  return ctx;
}

std::string HexDigest(EVP_MD_CTX* ctx) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx, md, &len);
  static const char* kHex = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < len; ++i) {
    out.push_back(kHex[md[i] >> 4]);
    out.push_back(kHex[md[i] & 0xf]);
  }
  return out;
}

absl::StatusOr<std::string> HashFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open to verify its sha256"));
  Digest ctx = NewSha256();
  std::vector<char> buf(1 << 16);
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    if (in.gcount() > 0) EVP_DigestUpdate(ctx.get(), buf.data(), static_cast<size_t>(in.gcount()));
  }
  return HexDigest(ctx.get());
}

// State shared with libcurl's callbacks during one transfer.
struct Transfer {
  std::FILE* out = nullptr;
  EVP_MD_CTX* digest = nullptr;
  int64_t bytes = 0;
  bool write_failed = false;
  int write_errno = 0;
  std::FILE* progress = nullptr;  // null: no bar
  std::string label;
  absl::Time started = absl::Now();
  absl::Time last_draw = absl::InfinitePast();
  // The caller's progress callback (FetchOptions::on_progress), about once a second.
  const std::function<void(const FetchProgress&)>* on_progress = nullptr;
  FetchProgress info;
  absl::Time last_report = absl::Now();

  void Report(int64_t total, bool done) {
    if (on_progress == nullptr || !*on_progress) return;
    absl::Time now = absl::Now();
    if (!done && now - last_report < absl::Seconds(1)) return;
    last_report = now;
    info.bytes = bytes;
    if (total > 0) info.total = total;
    info.done = done;
    (*on_progress)(info);
  }
};

size_t OnData(char* data, size_t size, size_t nmemb, void* user) {
  auto* t = static_cast<Transfer*>(user);
  size_t n = size * nmemb;
  if (std::fwrite(data, 1, n, t->out) != n) {
    t->write_failed = true;
    t->write_errno = errno;
    return 0;  // makes libcurl abort with CURLE_WRITE_ERROR
  }
  EVP_DigestUpdate(t->digest, data, n);
  t->bytes += static_cast<int64_t>(n);
  return n;
}

void DrawBar(Transfer& t, curl_off_t total, bool final) {
  absl::Time now = absl::Now();
  if (!final && now - t.last_draw < absl::Milliseconds(100)) return;
  t.last_draw = now;
  double secs = std::max(1e-3, absl::ToDoubleSeconds(now - t.started));
  double rate = static_cast<double>(t.bytes) / secs;
  std::string line;
  if (total > 0) {
    double frac = std::min(1.0, static_cast<double>(t.bytes) / static_cast<double>(total));
    constexpr int kWidth = 30;
    int filled = static_cast<int>(frac * kWidth);
    std::string bar(filled, '#');
    bar.append(kWidth - filled, '.');
    line = absl::StrFormat("  %s [%s] %3.0f%% %s/%s %s/s", t.label, bar, frac * 100,
                           HumanBytes(t.bytes), HumanBytes(static_cast<double>(total)),
                           HumanBytes(rate));
  } else {
    line = absl::StrFormat("  %s %s %s/s", t.label, HumanBytes(t.bytes), HumanBytes(rate));
  }
  std::fprintf(t.progress, "\r%s\033[K%s", line.c_str(), final ? "\n" : "");
  std::fflush(t.progress);
}

int OnProgress(void* user, curl_off_t dltotal, curl_off_t, curl_off_t, curl_off_t) {
  auto* t = static_cast<Transfer*>(user);
  if (t->progress != nullptr) DrawBar(*t, dltotal, /*final=*/false);
  t->Report(dltotal, /*done=*/false);
  return 0;
}

void GlobalInitOnce() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

struct CurlDeleter {
  void operator()(CURL* c) const { curl_easy_cleanup(c); }
};

#else   // !ALIGN_HAVE_CURL

absl::StatusOr<std::string> HashFile(const std::string& path) {
  return absl::UnimplementedError(absl::StrCat(
      path, ": cannot verify sha256: align was built without libcurl/OpenSSL "
            "(apt-get install libcurl4-openssl-dev and rebuild)"));
}

#endif  // ALIGN_HAVE_CURL

bool IsHexSha256(const std::string& s) {
  if (s.size() != 64) return false;
  for (char c : s) {
    if (!absl::ascii_isxdigit(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

std::string UrlFileName(const std::string& url) {
  std::string path = url.substr(0, url.find_first_of("?#"));
  std::string name = path.substr(path.find_last_of('/') + 1);
  if (name.empty()) name = "download";
  return name;
}

}  // namespace

bool IsHttpUrl(const std::string& path) {
  return absl::StartsWith(path, "http://") || absl::StartsWith(path, "https://");
}

std::string DefaultCacheDir() {
  if (const char* v = std::getenv("ALIGN_CACHE_DIR"); v != nullptr && *v != '\0') return v;
  if (const char* v = std::getenv("XDG_CACHE_HOME"); v != nullptr && *v != '\0') {
    return absl::StrCat(v, "/align");
  }
  if (const char* v = std::getenv("HOME"); v != nullptr && *v != '\0') {
    return absl::StrCat(v, "/.cache/align");
  }
  return ".align/cache";
}

std::string CachePath(const std::string& url, const std::string& sha256,
                      const std::string& cache_dir) {
  std::string dir = cache_dir.empty() ? DefaultCacheDir() : cache_dir;
  return absl::StrCat(dir, "/", absl::AsciiStrToLower(sha256.substr(0, 16)), "/",
                      UrlFileName(url));
}

absl::StatusOr<std::string> FetchToCache(const std::string& url, const std::string& sha256_in,
                                         const FetchOptions& options) {
  if (!IsHttpUrl(url)) {
    return absl::InvalidArgumentError(absl::StrCat(url, ": not an http(s) URL"));
  }
  std::string sha256 = absl::AsciiStrToLower(sha256_in);
  if (!IsHexSha256(sha256)) {
    return absl::InvalidArgumentError(absl::StrCat(
        url, ": a download needs its sha256 (64 hex digits) in the data source's `sha256` field",
        sha256.empty() ? "" : absl::StrCat("; got \"", sha256_in, "\"")));
  }
#ifndef ALIGN_HAVE_CURL
  return absl::UnimplementedError(absl::StrCat(
      "cannot download ", url, ": align was built without libcurl/OpenSSL "
      "(apt-get install libcurl4-openssl-dev and rebuild), or put the file in ALIGN_DATA_DIR"));
#else
  const std::string dest = CachePath(url, sha256, options.cache_dir);
  std::error_code ec;
  if (fs::exists(dest, ec)) {
    ASSIGN_OR_RETURN(std::string have, HashFile(dest));
    if (have == sha256) return dest;
    // A cached file that no longer matches (disk corruption, manual edit): fetch it again.
    fs::remove(dest, ec);
  }
  fs::create_directories(fs::path(dest).parent_path(), ec);
  if (ec) {
    return absl::PermissionDeniedError(absl::StrCat("cannot create cache directory ",
                                                    fs::path(dest).parent_path().string(), ": ",
                                                    ec.message(), " (set ALIGN_CACHE_DIR)"));
  }
  const std::string part = absl::StrCat(dest, ".part-", getpid());
  std::FILE* out = std::fopen(part.c_str(), "wb");
  if (out == nullptr) {
    return absl::PermissionDeniedError(
        absl::StrCat("cannot write ", part, ": ", std::strerror(errno), " (set ALIGN_CACHE_DIR)"));
  }
  GlobalInitOnce();
  std::unique_ptr<CURL, CurlDeleter> curl(curl_easy_init());
  Digest digest = NewSha256();
  Transfer t;
  t.out = out;
  t.digest = digest.get();
  std::FILE* progress = options.progress_stream != nullptr ? options.progress_stream : stderr;
  if (options.force_progress || isatty(fileno(progress))) t.progress = progress;
  t.label = UrlFileName(url);
  t.on_progress = &options.on_progress;
  t.info.url = url;
  t.info.dest = dest;
  if (options.on_progress) options.on_progress(t.info);
  char errbuf[CURL_ERROR_SIZE] = {0};
  curl_easy_setopt(curl.get(), CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl.get(), CURLOPT_FOLLOWLOCATION, 1L);  // the hub redirects to its CDN
  curl_easy_setopt(curl.get(), CURLOPT_MAXREDIRS, 10L);
  curl_easy_setopt(curl.get(), CURLOPT_FAILONERROR, 1L);
  curl_easy_setopt(curl.get(), CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(curl.get(), CURLOPT_USERAGENT, "align-fetch/1");
  curl_easy_setopt(curl.get(), CURLOPT_CONNECTTIMEOUT, static_cast<long>(options.connect_timeout_seconds));
  curl_easy_setopt(curl.get(), CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_easy_setopt(curl.get(), CURLOPT_LOW_SPEED_TIME, static_cast<long>(options.stall_timeout_seconds));
  curl_easy_setopt(curl.get(), CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl.get(), CURLOPT_WRITEFUNCTION, &OnData);
  curl_easy_setopt(curl.get(), CURLOPT_WRITEDATA, &t);
  curl_easy_setopt(curl.get(), CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(curl.get(), CURLOPT_XFERINFOFUNCTION, &OnProgress);
  curl_easy_setopt(curl.get(), CURLOPT_XFERINFODATA, &t);
  CURLcode rc = curl_easy_perform(curl.get());
  bool close_failed = std::fclose(out) != 0;
  t.Report(0, /*done=*/true);
  if (rc != CURLE_OK || t.write_failed || close_failed) {
    fs::remove(part, ec);
    if (t.progress != nullptr) std::fprintf(t.progress, "\n");
    if (t.write_failed || close_failed) {
      return absl::UnavailableError(absl::StrCat("downloading ", url, ": writing ", part,
                                                 " failed: ", std::strerror(t.write_errno)));
    }
    std::string why = errbuf[0] != '\0' ? errbuf : curl_easy_strerror(rc);
    return absl::UnavailableError(absl::StrCat(
        "downloading ", url, " failed: ", why,
        ". Check the URL and the network, or put the file in ALIGN_DATA_DIR and use a local path"));
  }
  if (t.progress != nullptr) DrawBar(t, 0, /*final=*/true);
  std::string got = HexDigest(digest.get());
  if (got != sha256) {
    fs::remove(part, ec);
    fs::remove(fs::path(dest).parent_path(), ec);  // only when empty: nothing else is cached there
    return absl::DataLossError(absl::StrCat(
        "sha256 mismatch for ", url, ": expected ", sha256, ", got ", got, " (", t.bytes,
        " bytes); deleted the partial download ", part,
        ". The origin changed or the checksum in the spec is wrong"));
  }
  fs::rename(part, dest, ec);
  if (ec) {
    fs::remove(part, ec);
    return absl::UnavailableError(absl::StrCat("cannot move ", part, " to ", dest, ": ", ec.message()));
  }
  return dest;
#endif  // ALIGN_HAVE_CURL
}

const std::vector<KnownOrigin>& KnownOrigins() {
  // Checksums are those of the copies in the shared data directory, which its README describes
  // as unmodified upstream files at the pinned commits.
  static const auto* origins = new std::vector<KnownOrigin>{
      {"datasets/hh-rlhf/harmless-base-test.jsonl.gz",
       "https://huggingface.co/datasets/Anthropic/hh-rlhf/resolve/main/harmless-base/test.jsonl.gz",
       "ebfaaed21162a4de120ae85366075b34425e2a6303fac59b99555002f7016f03"},
      {"eval/truthfulqa/TruthfulQA.csv",
       "https://raw.githubusercontent.com/sylinrl/TruthfulQA/main/TruthfulQA.csv",
       "99d6ae7755e3b435eade956068c9de7c0c474770344237aeb66b56519ba4b697"},
  };
  return *origins;
}

absl::StatusOr<std::string> ResolveDataFile(const std::string& path, const std::string& sha256,
                                            const std::string& data_dir,
                                            const FetchOptions& options) {
  if (IsHttpUrl(path)) return FetchToCache(path, sha256, options);
  std::string local = path;
  std::string relative;
  if (absl::StartsWith(path, "data://")) {
    relative = path.substr(7);
    local = absl::StrCat(data_dir.empty() ? "." : data_dir, "/", relative);
  }
  std::error_code ec;
  if (!fs::exists(local, ec)) {
    if (!relative.empty()) {
      for (const KnownOrigin& o : KnownOrigins()) {
        if (o.data_path == relative) {
          return FetchToCache(o.url, sha256.empty() ? o.sha256 : sha256, options);
        }
      }
    }
    return absl::NotFoundError(absl::StrCat(
        path, ": no such file",
        relative.empty()
            ? ""
            : absl::StrCat(" (looked for ", fs::absolute(local, ec).lexically_normal().string(), ")"),
        relative.empty() ? "" : "; set ALIGN_DATA_DIR to the data directory or use an http(s) URL with its sha256"));
  }
  if (!sha256.empty() && fs::is_regular_file(local, ec)) {
    ASSIGN_OR_RETURN(std::string got, HashFile(local));
    if (got != absl::AsciiStrToLower(sha256)) {
      return absl::DataLossError(absl::StrCat(local, ": sha256 is ", got, ", the spec expects ",
                                              sha256, "; the file differs from the recipe's"));
    }
  }
  return local;
}

absl::Status FetchJobData(JobSpec& job, EventSink& events, FetchOptions options) {
  auto it = job.stage.find("data");
  if (it == job.stage.end() || !it->is_array()) return absl::OkStatus();
  const std::string data_dir = DataRoot(job.data_dir);
  for (size_t i = 0; i < it->size(); ++i) {
    const nlohmann::json& d = (*it)[i];
    if (!d.is_object()) continue;
    const std::string raw = d.value("path", "");
    const std::string sha256 = d.value("sha256", "");
    const bool remote = IsHttpUrl(raw);
    const bool data_scheme = absl::StartsWith(raw, "data://");
    if (!remote && !data_scheme && sha256.empty()) continue;  // read as is by SourcesFromJob
    const std::string key = absl::StrCat("data/", i);
    // A stage output or local path comes as the worker resolved it; URLs and data:// as written,
    // so that a data:// file missing locally can be fetched from its origin.
    std::string path = raw;
    if (!remote && !data_scheme) {
      if (auto in = job.inputs.find(key); in != job.inputs.end()) path = in->second;
    }
    options.on_progress = [&events](const FetchProgress& p) {
      std::string message;
      if (p.done) {
        message = absl::StrCat("downloaded ", p.url, ": ", HumanBytes(static_cast<double>(p.bytes)));
      } else if (p.bytes == 0) {
        message = absl::StrCat("downloading ", p.url, " to ", p.dest);
      } else {
        message = absl::StrCat("downloading ", p.url, ": ", HumanBytes(static_cast<double>(p.bytes)),
                               p.total > 0 ? absl::StrCat(" of ", HumanBytes(static_cast<double>(p.total)))
                                           : std::string());
      }
      nlohmann::json fields = {{"phase", "download"}, {"message", message}, {"url", p.url},
                               {"bytes", p.bytes}, {"done", p.done}};
      if (p.total > 0) fields["total_bytes"] = p.total;
      events.Emit("phase", std::move(fields));
    };
    absl::StatusOr<std::string> local = ResolveDataFile(path, sha256, data_dir, options);
    if (!local.ok()) {
      absl::Status s(local.status().code(),
                     absl::StrCat("stage.data[", i, "].path: ", local.status().message()));
      // A wrong checksum or a missing file is the spec's to fix: retrying would not help.
      if (local.status().code() == absl::StatusCode::kDataLoss ||
          local.status().code() == absl::StatusCode::kNotFound) {
        s = MarkInputError(std::move(s));
      }
      return s;
    }
    job.inputs[key] = *local;
  }
  return absl::OkStatus();
}

}  // namespace align::engine::data
