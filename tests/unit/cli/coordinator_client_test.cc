#include "cli/coordinator_client.h"

#include "common/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace align::cli {
namespace {

using ::align::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

TEST(CoordinatorClientTest, ErrorsAreOneLineAndSayWhatToDo) {
  ClientConfig c{"coord:50051", "--coordinator", "t", "/etc/align/token"};
  EXPECT_THAT(DescribeRpcError(grpc::Status(grpc::StatusCode::UNAVAILABLE, "connection refused"), c,
                               "list"),
              StatusIs(absl::StatusCode::kUnavailable,
                       "cannot reach coordinator at coord:50051: connection refused; start it with "
                       "align-coordinator or use --coordinator (or ALIGN_COORDINATOR)"));
  EXPECT_THAT(
      DescribeRpcError(grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "bad token"), c, "list"),
      StatusIs(absl::StatusCode::kUnauthenticated,
               "coordinator at coord:50051 rejected the token from /etc/align/token: bad token; "
               "pass a valid one with --token-file, ALIGN_TOKEN_FILE or ALIGN_TOKEN"));
  // The coordinator's own message already says where to look: passed through, hint not doubled.
  EXPECT_THAT(DescribeRpcError(grpc::Status(grpc::StatusCode::NOT_FOUND,
                                            "no pipeline with id or name 'x'; see alignctl list"),
                               c, "pipeline \"x\""),
              StatusIs(absl::StatusCode::kNotFound,
                       "no pipeline with id or name 'x'; see alignctl list"));
  EXPECT_THAT(DescribeRpcError(grpc::Status(grpc::StatusCode::NOT_FOUND, ""), c, "pipeline \"x\""),
              StatusIs(absl::StatusCode::kNotFound,
                       "pipeline \"x\": not found (alignctl list shows the pipelines)"));
  EXPECT_THAT(DescribeRpcError(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "a\nb\n"), c, "submit"),
              StatusIs(absl::StatusCode::kInvalidArgument, "a; b"));
}

TEST(CoordinatorClientTest, UnreachableCoordinatorFailsFastWithTheAddress) {
  // Port 1 on loopback: nothing listens there.
  CoordinatorClient client({"127.0.0.1:1", "--coordinator", "", ""});
  auto r = client.Workers();
  EXPECT_THAT(r, StatusIs(absl::StatusCode::kUnavailable,
                          StartsWith("cannot reach coordinator at 127.0.0.1:1: ")));
  EXPECT_THAT(r.status().message(), Not(HasSubstr("\n")));
}

}  // namespace
}  // namespace align::cli
