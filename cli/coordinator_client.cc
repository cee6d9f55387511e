#include "cli/coordinator_client.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"

namespace align::cli {
namespace {

constexpr absl::Duration kUnaryTimeout = absl::Seconds(30);

std::string OneLine(const std::string& s) {
  std::string out = absl::StrReplaceAll(s, {{"\n", "; "}});
  while (!out.empty() && (out.back() == ' ' || out.back() == ';')) out.pop_back();
  return out;
}

}  // namespace

absl::Status DescribeRpcError(const grpc::Status& status, const ClientConfig& config,
                              const std::string& what) {
  const auto code = static_cast<absl::StatusCode>(status.error_code());
  const std::string msg = OneLine(status.error_message());
  switch (status.error_code()) {
    case grpc::StatusCode::UNAVAILABLE:
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return absl::Status(code, absl::StrCat("cannot reach coordinator at ", config.address, ": ",
                                             msg.empty() ? "no answer" : msg,
                                             "; start it with align-coordinator or use "
                                             "--coordinator (or ALIGN_COORDINATOR)"));
    case grpc::StatusCode::UNAUTHENTICATED:
      return absl::Status(
          code, absl::StrCat("coordinator at ", config.address, " rejected the token",
                             config.token_source.empty()
                                 ? " (none was sent)"
                                 : absl::StrCat(" from ", config.token_source),
                             msg.empty() ? "" : absl::StrCat(": ", msg),
                             "; pass a valid one with --token-file, ALIGN_TOKEN_FILE or ALIGN_TOKEN"));
    case grpc::StatusCode::PERMISSION_DENIED:
      return absl::Status(code, absl::StrCat(what, ": permission denied: ", msg));
    case grpc::StatusCode::NOT_FOUND:
      // The coordinator's message names what is missing and, for a pipeline, points at
      // `alignctl list`; an empty one (an older coordinator) gets the hint here.
      return absl::Status(code, msg.empty() ? absl::StrCat(what, ": not found (alignctl list shows "
                                                           "the pipelines)")
                                            : msg);
    default:
      return absl::Status(code, msg.empty() ? absl::StrCat(what, " failed") : msg);
  }
}

CoordinatorClient::CoordinatorClient(ClientConfig config)
    : CoordinatorClient(config, nullptr) {}

CoordinatorClient::CoordinatorClient(ClientConfig config, std::shared_ptr<grpc::Channel> channel)
    : config_(std::move(config)), channel_(std::move(channel)) {
  if (channel_ == nullptr) {
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(64 << 20);
    // Fail fast on an unreachable address instead of retrying a dead port for long.
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 200);
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 2000);
    channel_ = grpc::CreateCustomChannel(config_.address, grpc::InsecureChannelCredentials(), args);
  }
  stub_ = align::v1::CoordinatorService::NewStub(channel_);
}

void CoordinatorClient::Prepare(grpc::ClientContext* context, absl::Duration timeout) const {
  if (!config_.token.empty()) context->AddMetadata("authorization", "Bearer " + config_.token);
  if (timeout != absl::InfiniteDuration()) {
    context->set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  }
}

absl::StatusOr<align::v1::SubmitPipelineResponse> CoordinatorClient::Submit(
    const align::v1::SubmitPipelineRequest& request) {
  grpc::ClientContext ctx;
  Prepare(&ctx, kUnaryTimeout);
  align::v1::SubmitPipelineResponse response;
  grpc::Status s = stub_->SubmitPipeline(&ctx, request, &response);
  if (!s.ok()) return DescribeRpcError(s, config_, "submit");
  return response;
}

absl::StatusOr<align::v1::PipelineStatus> CoordinatorClient::Get(const std::string& pipeline) {
  grpc::ClientContext ctx;
  Prepare(&ctx, kUnaryTimeout);
  align::v1::GetPipelineRequest request;
  request.set_pipeline_id(pipeline);
  align::v1::PipelineStatus response;
  grpc::Status s = stub_->GetPipeline(&ctx, request, &response);
  if (!s.ok()) return DescribeRpcError(s, config_, absl::StrCat("pipeline \"", pipeline, "\""));
  return response;
}

absl::StatusOr<align::v1::ListPipelinesResponse> CoordinatorClient::List(
    const align::v1::ListPipelinesRequest& request) {
  grpc::ClientContext ctx;
  Prepare(&ctx, kUnaryTimeout);
  align::v1::ListPipelinesResponse response;
  grpc::Status s = stub_->ListPipelines(&ctx, request, &response);
  if (!s.ok()) return DescribeRpcError(s, config_, "list");
  return response;
}

absl::StatusOr<align::v1::PipelineStatus> CoordinatorClient::Cancel(const std::string& pipeline,
                                                                    const std::string& reason) {
  grpc::ClientContext ctx;
  Prepare(&ctx, kUnaryTimeout);
  align::v1::CancelPipelineRequest request;
  request.set_pipeline_id(pipeline);
  request.set_reason(reason);
  align::v1::CancelPipelineResponse response;
  grpc::Status s = stub_->CancelPipeline(&ctx, request, &response);
  if (!s.ok()) return DescribeRpcError(s, config_, absl::StrCat("pipeline \"", pipeline, "\""));
  return response.status();
}

absl::StatusOr<align::v1::PipelineStatus> CoordinatorClient::Retry(const std::string& pipeline,
                                                                   const std::string& stage) {
  grpc::ClientContext ctx;
  Prepare(&ctx, kUnaryTimeout);
  align::v1::RetryStageRequest request;
  request.set_pipeline_id(pipeline);
  request.set_stage(stage);
  align::v1::RetryStageResponse response;
  grpc::Status s = stub_->RetryStage(&ctx, request, &response);
  if (!s.ok()) return DescribeRpcError(s, config_, absl::StrCat("pipeline \"", pipeline, "\""));
  return response.status();
}

absl::StatusOr<align::v1::GetMetricsResponse> CoordinatorClient::Metrics(
    const std::string& pipeline, const std::string& stage) {
  grpc::ClientContext ctx;
  Prepare(&ctx, kUnaryTimeout);
  align::v1::GetMetricsRequest request;
  request.set_pipeline_id(pipeline);
  request.set_stage(stage);
  align::v1::GetMetricsResponse response;
  grpc::Status s = stub_->GetMetrics(&ctx, request, &response);
  if (!s.ok()) return DescribeRpcError(s, config_, absl::StrCat("pipeline \"", pipeline, "\""));
  return response;
}

absl::StatusOr<align::v1::ListWorkersResponse> CoordinatorClient::Workers() {
  grpc::ClientContext ctx;
  Prepare(&ctx, kUnaryTimeout);
  align::v1::ListWorkersResponse response;
  grpc::Status s = stub_->ListWorkers(&ctx, align::v1::ListWorkersRequest(), &response);
  if (!s.ok()) return DescribeRpcError(s, config_, "workers");
  return response;
}

absl::Status CoordinatorClient::Watch(const std::string& pipeline, int64_t after_sequence,
                                      const std::function<bool(const align::v1::Event&)>& on_event) {
  grpc::ClientContext ctx;
  Prepare(&ctx, absl::InfiniteDuration());
  align::v1::WatchPipelineRequest request;
  request.set_pipeline_id(pipeline);
  request.set_after_sequence(after_sequence);
  auto reader = stub_->WatchPipeline(&ctx, request);
  align::v1::Event event;
  while (reader->Read(&event)) {
    if (!on_event(event)) {
      ctx.TryCancel();
      break;
    }
  }
  grpc::Status s = reader->Finish();
  if (!s.ok() && s.error_code() != grpc::StatusCode::CANCELLED) {
    return DescribeRpcError(s, config_, absl::StrCat("pipeline \"", pipeline, "\""));
  }
  return absl::OkStatus();
}

absl::Status CoordinatorClient::Logs(const align::v1::StreamLogsRequest& request,
                                     const std::function<bool(const align::v1::LogLine&)>& on_line) {
  grpc::ClientContext ctx;
  Prepare(&ctx, request.follow() ? absl::InfiniteDuration() : kUnaryTimeout);
  auto reader = stub_->StreamLogs(&ctx, request);
  align::v1::LogLine line;
  while (reader->Read(&line)) {
    if (!on_line(line)) {
      ctx.TryCancel();
      break;
    }
  }
  grpc::Status s = reader->Finish();
  if (!s.ok() && s.error_code() != grpc::StatusCode::CANCELLED) {
    return DescribeRpcError(s, config_,
                            absl::StrCat("pipeline \"", request.pipeline_id(), "\""));
  }
  return absl::OkStatus();
}

}  // namespace align::cli
