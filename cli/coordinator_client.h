// A thin CoordinatorService client for alignctl: dials the resolved address, attaches the bearer
// token, sets deadlines, and turns every RPC failure into one clear line that says what to do.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include <grpcpp/grpcpp.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "align/v1/coordinator.grpc.pb.h"
#include "cli/client_config.h"

namespace align::cli {

//! The one-line message for a failed RPC: unreachable coordinator, bad token, unknown pipeline,
//! or the server's own message. Keeps the gRPC code so callers can branch on it.
absl::Status DescribeRpcError(const grpc::Status& status, const ClientConfig& config,
                              const std::string& what);

class CoordinatorClient {
 public:
  explicit CoordinatorClient(ClientConfig config);
  //! Wraps an existing channel (local mode dials the embedded server in-process).
  CoordinatorClient(ClientConfig config, std::shared_ptr<grpc::Channel> channel);

  const ClientConfig& config() const { return config_; }

  absl::StatusOr<align::v1::SubmitPipelineResponse> Submit(
      const align::v1::SubmitPipelineRequest& request);
  absl::StatusOr<align::v1::PipelineStatus> Get(const std::string& pipeline);
  absl::StatusOr<align::v1::ListPipelinesResponse> List(
      const align::v1::ListPipelinesRequest& request);
  absl::StatusOr<align::v1::PipelineStatus> Cancel(const std::string& pipeline,
                                                   const std::string& reason);
  absl::StatusOr<align::v1::PipelineStatus> Retry(const std::string& pipeline,
                                                  const std::string& stage);
  absl::StatusOr<align::v1::GetMetricsResponse> Metrics(const std::string& pipeline,
                                                        const std::string& stage);
  absl::StatusOr<align::v1::ListWorkersResponse> Workers();

  //! Streams events after `after_sequence` until the pipeline ends, the stream breaks, or
  //! on_event returns false. Returns the last error (OK when the server ended the stream).
  absl::Status Watch(const std::string& pipeline, int64_t after_sequence,
                     const std::function<bool(const align::v1::Event&)>& on_event);
  //! Streams log lines; with follow, until the pipeline ends.
  absl::Status Logs(const align::v1::StreamLogsRequest& request,
                    const std::function<bool(const align::v1::LogLine&)>& on_line);

 private:
  void Prepare(grpc::ClientContext* context, absl::Duration timeout) const;

  ClientConfig config_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<align::v1::CoordinatorService::Stub> stub_;
};

}  // namespace align::cli
