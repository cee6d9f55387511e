// The one place where absl::Status and grpc::Status are translated (codes map one to one).
#pragma once

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace align {

grpc::Status ToGrpcStatus(const absl::Status& status);
absl::Status FromGrpcStatus(const grpc::Status& status);

}  // namespace align
