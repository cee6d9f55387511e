// Downloads of data files from their public origin (Hugging Face hub, GitHub raw URLs) into a
// local cache, verified by SHA-256 and published by atomic rename. Used when a stage names an
// http(s) URL, or a data:// file that is missing from ALIGN_DATA_DIR but has a known origin.
// Engine code: libcurl and OpenSSL's digest, no protobuf.
#pragma once

#include <cstdint>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/engine/core/events.h"
#include "worker/engine/core/job.h"

namespace align::engine::data {

//! Where a download stands, for callers that report progress their own way (events, log lines).
struct FetchProgress {
  std::string url;
  std::string dest;     // the cache path it is published to
  int64_t bytes = 0;    // received so far
  int64_t total = 0;    // Content-Length; 0 when the server did not say
  bool done = false;    // the last call: the transfer ended (verified or not)
};

struct FetchOptions {
  //! Where downloads are kept: <cache_dir>/<first 16 hex of sha256>/<file name>. Empty means
  //! $ALIGN_CACHE_DIR, else $XDG_CACHE_HOME/align, else ~/.cache/align.
  std::string cache_dir;
  //! Progress output; nullptr = stderr. The bar is drawn only when this stream is a TTY or when
  //! force_progress is set (tests).
  std::FILE* progress_stream = nullptr;
  bool force_progress = false;
  //! Give up on a connection that cannot be made in this many seconds.
  int64_t connect_timeout_seconds = 30;
  //! Abort a transfer slower than 1 byte/s for this long (a stalled server).
  int64_t stall_timeout_seconds = 60;
  //! Called when a download starts (bytes 0), about once a second while it streams, and once
  //! when the transfer ends (done). Never called for a verified cached copy.
  std::function<void(const FetchProgress&)> on_progress;
};

//! True for http:// and https:// paths.
bool IsHttpUrl(const std::string& path);

//! The default cache directory (see FetchOptions::cache_dir).
std::string DefaultCacheDir();

//! Where `url` with checksum `sha256` lives in the cache (whether or not it is there yet).
std::string CachePath(const std::string& url, const std::string& sha256,
                      const std::string& cache_dir);

//! Returns a local copy of `url` whose SHA-256 equals `sha256` (lowercase hex, required: a
//! download without a checksum cannot be trusted to be the file the recipe was written for).
//! A verified cached copy is reused without network access. Otherwise the file is downloaded to
//! a temporary name beside its cache path, hashed while it streams, and renamed into place only
//! when the hash matches; a mismatch deletes the partial file and says so.
absl::StatusOr<std::string> FetchToCache(const std::string& url, const std::string& sha256,
                                         const FetchOptions& options = {});

//! A data file with a public origin, for data:// paths missing from ALIGN_DATA_DIR.
struct KnownOrigin {
  std::string data_path;  // relative to ALIGN_DATA_DIR, e.g. "datasets/hh-rlhf/harmless-base-test.jsonl.gz"
  std::string url;
  std::string sha256;
};

//! The built-in origins of the shared inputs that are published unmodified upstream.
const std::vector<KnownOrigin>& KnownOrigins();

//! Resolves a stage input to a local file: an http(s) URL is fetched (sha256 required);
//! "data://rel" is <data_dir>/rel when present, else fetched from its known origin; any other
//! path must exist. When `sha256` is set, a local file is checked against it too.
absl::StatusOr<std::string> ResolveDataFile(const std::string& path, const std::string& sha256,
                                            const std::string& data_dir,
                                            const FetchOptions& options = {});

//! Resolves the stage's data sources that need it before the stage runs: http(s) URLs are
//! downloaded into the cache (FetchToCache), data:// files missing from the data directory are
//! fetched from their known origin, and sources with a `sha256` are verified. job.inputs["data/i"]
//! then names the local file, which SourcesFromJob reads. Progress goes to `events` as `phase`
//! events (phase "download"). Errors name stage.data[i].path; a checksum mismatch is an input
//! error (exit code 3, not retried), a network failure an infrastructure one (retried).
absl::Status FetchJobData(JobSpec& job, EventSink& events, FetchOptions options = {});

}  // namespace align::engine::data
