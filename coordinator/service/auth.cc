#include "coordinator/service/auth.h"

#include <fstream>
#include <sstream>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace align::coordinator {

absl::StatusOr<TokenAuth> TokenAuth::LoadFile(const std::string& path) {
  if (path.empty()) return TokenAuth();
  std::ifstream in(path);
  if (!in) {
    return absl::NotFoundError(absl::StrCat("cannot read token file ", path,
                                            "; check --token-file and its permissions"));
  }
  std::stringstream ss;
  ss << in.rdbuf();
  return Parse(ss.str(), path);
}

absl::StatusOr<TokenAuth> TokenAuth::Parse(absl::string_view text, absl::string_view source) {
  TokenAuth auth;
  auth.enabled_ = true;
  int line_no = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_no;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || absl::StartsWith(line, "#")) continue;
    std::vector<absl::string_view> parts = absl::StrSplit(line, ' ', absl::SkipWhitespace());
    if (parts.size() < 2 || parts.size() > 3) {
      return absl::InvalidArgumentError(absl::StrCat(
          source, ":", line_no, ": expected '<role> <token> [name]' (role: user, worker or admin)"));
    }
    Entry e;
    if (parts[0] == "user") {
      e.user = true;
    } else if (parts[0] == "worker") {
      e.worker = true;
    } else if (parts[0] == "admin") {
      e.user = e.worker = true;
    } else {
      return absl::InvalidArgumentError(absl::StrCat(source, ":", line_no, ": unknown role '",
                                                     parts[0], "'; expected user, worker or admin"));
    }
    if (parts[1].size() < 16) {
      return absl::InvalidArgumentError(absl::StrCat(
          source, ":", line_no, ": token is shorter than 16 characters; use e.g. `openssl rand -hex 32`"));
    }
    e.name = parts.size() == 3 ? std::string(parts[2]) : std::string(parts[0]);
    auth.tokens_[std::string(parts[1])] = e;
  }
  if (auth.tokens_.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": no tokens; add lines '<role> <token> [name]' or drop --token-file"));
  }
  return auth;
}

absl::StatusOr<std::string> TokenAuth::Check(absl::string_view authorization, Role role) const {
  if (!enabled_) return std::string();
  absl::string_view token = authorization;
  if (!absl::ConsumePrefix(&token, "Bearer ") && !absl::ConsumePrefix(&token, "bearer ")) {
    return absl::UnauthenticatedError(
        "missing bearer token: send 'authorization: Bearer <token>' (alignctl --token-file)");
  }
  token = absl::StripAsciiWhitespace(token);
  auto it = tokens_.find(std::string(token));
  if (token.empty() || it == tokens_.end()) {
    return absl::UnauthenticatedError("unknown bearer token; check the token file on both sides");
  }
  if ((role == Role::kUser && !it->second.user) || (role == Role::kWorker && !it->second.worker)) {
    return absl::PermissionDeniedError(absl::StrCat(
        "token of '", it->second.name, "' may not call ",
        role == Role::kUser ? "CoordinatorService (it is a worker token)"
                            : "WorkerService (it is a user token)"));
  }
  return it->second.name;
}

}  // namespace align::coordinator
