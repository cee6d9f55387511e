// Thin gRPC adapters (callback API) over the Coordinator's plain handler methods: authentication,
// absl <-> grpc status translation (align::ToGrpcStatus), RPC metrics, long polls and the two
// server streams. No business logic lives here.
#pragma once

#include <memory>
#include <set>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "align/v1/coordinator.grpc.pb.h"
#include "align/v1/worker.grpc.pb.h"
#include "coordinator/coordinator.h"
#include "coordinator/metrics.h"
#include "coordinator/service/auth.h"

namespace align::coordinator {

//! A server-stream writer parked until new data may exist; the hub wakes parked writers when
//! events are committed (and on a short timer, for logs).
class StreamWaker {
 public:
  virtual ~StreamWaker() = default;
  virtual void Wake() = 0;
};

class StreamHub {
 public:
  void Park(StreamWaker* w);
  //! Wakes every parked writer (each re-parks itself if nothing is new).
  void WakeAll();
  //! Called from a writer's OnDone: waits until no Wake() on it is running, then forgets it.
  void Forget(StreamWaker* w);

 private:
  absl::Mutex mu_;
  std::set<StreamWaker*> parked_ ABSL_GUARDED_BY(mu_);
  std::set<StreamWaker*> waking_ ABSL_GUARDED_BY(mu_);
};

class CoordinatorServiceImpl final : public v1::CoordinatorService::CallbackService {
 public:
  CoordinatorServiceImpl(Coordinator& core, const TokenAuth& auth, CoordinatorMetrics* metrics,
                         StreamHub& hub)
      : core_(core), auth_(auth), metrics_(metrics), hub_(hub) {}

  grpc::ServerUnaryReactor* SubmitPipeline(grpc::CallbackServerContext* ctx,
                                           const v1::SubmitPipelineRequest* req,
                                           v1::SubmitPipelineResponse* resp) override;
  grpc::ServerUnaryReactor* GetPipeline(grpc::CallbackServerContext* ctx,
                                        const v1::GetPipelineRequest* req,
                                        v1::PipelineStatus* resp) override;
  grpc::ServerUnaryReactor* ListPipelines(grpc::CallbackServerContext* ctx,
                                          const v1::ListPipelinesRequest* req,
                                          v1::ListPipelinesResponse* resp) override;
  grpc::ServerUnaryReactor* CancelPipeline(grpc::CallbackServerContext* ctx,
                                           const v1::CancelPipelineRequest* req,
                                           v1::CancelPipelineResponse* resp) override;
  grpc::ServerUnaryReactor* RetryStage(grpc::CallbackServerContext* ctx,
                                       const v1::RetryStageRequest* req,
                                       v1::RetryStageResponse* resp) override;
  grpc::ServerWriteReactor<v1::Event>* WatchPipeline(grpc::CallbackServerContext* ctx,
                                                     const v1::WatchPipelineRequest* req) override;
  grpc::ServerWriteReactor<v1::LogLine>* StreamLogs(grpc::CallbackServerContext* ctx,
                                                    const v1::StreamLogsRequest* req) override;
  grpc::ServerUnaryReactor* GetMetrics(grpc::CallbackServerContext* ctx,
                                       const v1::GetMetricsRequest* req,
                                       v1::GetMetricsResponse* resp) override;
  grpc::ServerUnaryReactor* ListWorkers(grpc::CallbackServerContext* ctx,
                                        const v1::ListWorkersRequest* req,
                                        v1::ListWorkersResponse* resp) override;

 private:
  Coordinator& core_;
  const TokenAuth& auth_;
  CoordinatorMetrics* metrics_;
  StreamHub& hub_;
};

class WorkerServiceImpl final : public v1::WorkerService::CallbackService {
 public:
  WorkerServiceImpl(Coordinator& core, const TokenAuth& auth, CoordinatorMetrics* metrics)
      : core_(core), auth_(auth), metrics_(metrics) {}

  grpc::ServerUnaryReactor* RegisterWorker(grpc::CallbackServerContext* ctx,
                                           const v1::RegisterWorkerRequest* req,
                                           v1::RegisterWorkerResponse* resp) override;
  grpc::ServerUnaryReactor* Heartbeat(grpc::CallbackServerContext* ctx,
                                      const v1::HeartbeatRequest* req,
                                      v1::HeartbeatResponse* resp) override;
  grpc::ServerUnaryReactor* PollAssignments(grpc::CallbackServerContext* ctx,
                                            const v1::PollAssignmentsRequest* req,
                                            v1::PollAssignmentsResponse* resp) override;
  grpc::ServerUnaryReactor* ReportAttempt(grpc::CallbackServerContext* ctx,
                                          const v1::ReportAttemptRequest* req,
                                          v1::ReportAttemptResponse* resp) override;
  grpc::ServerUnaryReactor* Rendezvous(grpc::CallbackServerContext* ctx,
                                       const v1::RendezvousRequest* req,
                                       v1::RendezvousResponse* resp) override;

 private:
  Coordinator& core_;
  const TokenAuth& auth_;
  CoordinatorMetrics* metrics_;
};

//! Longest long poll a worker may ask for.
inline constexpr int64_t kMaxPollWaitMs = 60'000;

}  // namespace align::coordinator
