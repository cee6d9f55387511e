// Downloads of data files from their public origin (Hugging Face hub, GitHub raw URLs) into a
// local cache, verified by SHA-256 and published by atomic rename. Used when a stage names an
// http(s) URL, or a data:// file that is missing from ALIGN_DATA_DIR but has a known origin.
// Engine code: libcurl and OpenSSL's digest, no protobuf.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace align::engine::data {

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

}  // namespace align::engine::data
