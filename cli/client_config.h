// Where alignctl finds the coordinator and its bearer token: --coordinator / --token-file flags,
// then ALIGN_COORDINATOR / ALIGN_TOKEN / ALIGN_TOKEN_FILE, then the config file
// (~/.config/align/config.yaml, or $ALIGN_CONFIG), then localhost:7070 without a token.
#pragma once

#include <functional>
#include <string>

#include "absl/status/statusor.h"

namespace align::cli {

//! The coordinator's default gRPC address (align-coordinator's default --listen port).
inline constexpr char kDefaultCoordinator[] = "localhost:7070";

struct ClientFlags {
  std::string coordinator;  // --coordinator
  std::string token_file;   // --token-file
};

struct ClientConfig {
  std::string address;
  std::string address_source;  // "--coordinator", "ALIGN_COORDINATOR", the config path, "default"
  std::string token;           // empty: no authorization header
  std::string token_source;    // file path or "ALIGN_TOKEN"
};

//! $ALIGN_CONFIG, else $XDG_CONFIG_HOME/align/config.yaml, else $HOME/.config/align/config.yaml.
std::string DefaultClientConfigPath(const std::function<const char*(const char*)>& getenv);

//! Resolves address and token. The config file is YAML with optional keys `coordinator`
//! (host:port) and `token_file` (a path; `~/` is expanded); a missing file is fine, a broken one
//! is an error naming it. A token file holds the token on its first non-empty line.
absl::StatusOr<ClientConfig> ResolveClientConfig(
    const ClientFlags& flags, const std::function<const char*(const char*)>& getenv,
    const std::string& config_path);

//! ResolveClientConfig with the process environment and DefaultClientConfigPath().
absl::StatusOr<ClientConfig> ResolveClientConfigFromEnvironment(const ClientFlags& flags);

}  // namespace align::cli
