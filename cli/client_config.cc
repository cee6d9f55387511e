#include "cli/client_config.h"

#include <yaml-cpp/yaml.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace align::cli {
namespace {

std::string Get(const std::function<const char*(const char*)>& getenv, const char* name) {
  const char* v = getenv(name);
  return v == nullptr ? "" : std::string(v);
}

std::string ExpandHome(const std::string& path,
                       const std::function<const char*(const char*)>& getenv) {
  if (absl::StartsWith(path, "~/")) return absl::StrCat(Get(getenv, "HOME"), path.substr(1));
  return path;
}

absl::StatusOr<std::string> ReadToken(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    return absl::NotFoundError(absl::StrCat("cannot read token file ", path,
                                            ": no such file or not readable"));
  }
  std::string line;
  while (std::getline(in, line)) {
    std::string t(absl::StripAsciiWhitespace(line));
    if (!t.empty()) return t;
  }
  return absl::InvalidArgumentError(absl::StrCat("token file ", path, " is empty"));
}

}  // namespace

std::string DefaultClientConfigPath(const std::function<const char*(const char*)>& getenv) {
  if (std::string v = Get(getenv, "ALIGN_CONFIG"); !v.empty()) return v;
  if (std::string v = Get(getenv, "XDG_CONFIG_HOME"); !v.empty()) {
    return absl::StrCat(v, "/align/config.yaml");
  }
  return absl::StrCat(Get(getenv, "HOME"), "/.config/align/config.yaml");
}

absl::StatusOr<ClientConfig> ResolveClientConfig(
    const ClientFlags& flags, const std::function<const char*(const char*)>& getenv,
    const std::string& config_path) {
  std::string file_address;
  std::string file_token_file;
  std::error_code ec;
  // The default locations are optional; a file named by ALIGN_CONFIG must exist.
  if (!config_path.empty() && config_path == Get(getenv, "ALIGN_CONFIG") &&
      !std::filesystem::exists(config_path, ec)) {
    return absl::NotFoundError(absl::StrCat("ALIGN_CONFIG names ", config_path,
                                            ", which does not exist; create it or unset ALIGN_CONFIG"));
  }
  if (!config_path.empty() && std::filesystem::exists(config_path, ec)) {
    try {
      YAML::Node root = YAML::LoadFile(config_path);
      if (root && !root.IsNull()) {
        if (!root.IsMap()) {
          return absl::InvalidArgumentError(absl::StrCat(
              config_path, ": expected a mapping with keys coordinator and token_file"));
        }
        for (const auto& kv : root) {
          const std::string key = kv.first.as<std::string>();
          if (key == "coordinator" || key == "address") {
            file_address = kv.second.as<std::string>();
          } else if (key == "token_file") {
            file_token_file = ExpandHome(kv.second.as<std::string>(), getenv);
          } else {
            return absl::InvalidArgumentError(
                absl::StrCat(config_path, ":", kv.first.Mark().line + 1, ": unknown key \"", key,
                             "\"; expected coordinator or token_file"));
          }
        }
      }
    } catch (const YAML::Exception& e) {
      return absl::InvalidArgumentError(absl::StrCat(config_path, ":", e.mark.line + 1, ":",
                                                     e.mark.column + 1, ": ", e.msg));
    }
  }

  ClientConfig config;
  if (!flags.coordinator.empty()) {
    config.address = flags.coordinator;
    config.address_source = "--coordinator";
  } else if (std::string v = Get(getenv, "ALIGN_COORDINATOR"); !v.empty()) {
    config.address = v;
    config.address_source = "ALIGN_COORDINATOR";
  } else if (!file_address.empty()) {
    config.address = file_address;
    config.address_source = config_path;
  } else {
    config.address = kDefaultCoordinator;
    config.address_source = "default";
  }

  std::string token_file;
  if (!flags.token_file.empty()) {
    token_file = flags.token_file;
  } else if (std::string v = Get(getenv, "ALIGN_TOKEN"); !v.empty()) {
    config.token = std::string(absl::StripAsciiWhitespace(v));
    config.token_source = "ALIGN_TOKEN";
    return config;
  } else if (std::string v = Get(getenv, "ALIGN_TOKEN_FILE"); !v.empty()) {
    token_file = v;
  } else {
    token_file = file_token_file;
  }
  if (!token_file.empty()) {
    auto token = ReadToken(token_file);
    if (!token.ok()) return token.status();
    config.token = *token;
    config.token_source = token_file;
  }
  return config;
}

absl::StatusOr<ClientConfig> ResolveClientConfigFromEnvironment(const ClientFlags& flags) {
  auto env = [](const char* name) -> const char* { return std::getenv(name); };
  return ResolveClientConfig(flags, env, DefaultClientConfigPath(env));
}

}  // namespace align::cli
