// Bearer-token authentication for the coordinator's gRPC services. The token file has one token
// per line, "<role> <token> [name]" with role user, worker or admin (admin may do both); '#'
// starts a comment. Users and workers can thus hold different tokens.
#pragma once

#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace align::coordinator {

enum class Role { kUser, kWorker };

class TokenAuth {
 public:
  //! Authentication off: every call is allowed (local mode, tests).
  TokenAuth() = default;
  //! Reads a token file; an empty path turns authentication off.
  static absl::StatusOr<TokenAuth> LoadFile(const std::string& path);
  //! Parses token file text; `source` names it in errors.
  static absl::StatusOr<TokenAuth> Parse(absl::string_view text, absl::string_view source);

  bool enabled() const { return enabled_; }
  //! Checks an "authorization" metadata value ("Bearer <token>") for `role`; returns the
  //! principal name. UNAUTHENTICATED for a missing, malformed or unknown token;
  //! PERMISSION_DENIED for a valid token of the other role.
  absl::StatusOr<std::string> Check(absl::string_view authorization, Role role) const;

 private:
  struct Entry {
    bool user = false;
    bool worker = false;
    std::string name;
  };
  bool enabled_ = false;
  std::map<std::string, Entry> tokens_;
};

}  // namespace align::coordinator
