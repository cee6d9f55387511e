#include "coordinator/service/grpc_services.h"

#include <deque>
#include <functional>
#include <map>
#include <thread>
#include <vector>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "common/grpc_status.h"
#include "common/status_macros.h"

namespace align::coordinator {
namespace {

std::string Authorization(grpc::CallbackServerContext* ctx) {
  const auto& md = ctx->client_metadata();
  auto it = md.find("authorization");
  if (it == md.end()) return "";
  return std::string(it->second.data(), it->second.size());
}

std::string CodeName(absl::StatusCode code) { return absl::StatusCodeToString(code); }

// Handlers block on fsync (group commit), so they run on this pool instead of gRPC's few
// callback threads: many submits in flight at once share one commit.
class HandlerPool {
 public:
  explicit HandlerPool(int threads) {
    for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { Loop(); });
  }
  void Post(std::function<void()> f) {
    absl::MutexLock lock(&mu_);
    queue_.push_back(std::move(f));
  }
  static HandlerPool& Get() {
    static HandlerPool* pool = new HandlerPool(64);  // lives for the process
    return *pool;
  }

 private:
  void Loop() {
    for (;;) {
      std::function<void()> f;
      {
        absl::MutexLock lock(&mu_);
        auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !queue_.empty(); };
        mu_.Await(absl::Condition(&ready));
        f = std::move(queue_.front());
        queue_.pop_front();
      }
      f();
    }
  }
  absl::Mutex mu_;
  std::deque<std::function<void()>> queue_ ABSL_GUARDED_BY(mu_);
  std::vector<std::thread> threads_;
};

// Authenticates, runs `body` on the handler pool, records metrics and finishes the call.
grpc::ServerUnaryReactor* Unary(grpc::CallbackServerContext* ctx, const TokenAuth& auth,
                                CoordinatorMetrics* metrics, const char* method, Role role,
                                std::function<absl::Status(const std::string&)> body) {
  const absl::Time start = absl::Now();
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  absl::StatusOr<std::string> who = auth.Check(Authorization(ctx), role);
  auto finish = [reactor, metrics, method, start](const absl::Status& status) {
    if (metrics != nullptr) {
      metrics->ObserveRpc(method, CodeName(status.code()), absl::ToDoubleSeconds(absl::Now() - start));
    }
    reactor->Finish(ToGrpcStatus(status));
  };
  if (!who.ok()) {
    finish(who.status());
    return reactor;
  }
  HandlerPool::Get().Post([body = std::move(body), who = *who, finish]() { finish(body(who)); });
  return reactor;
}

// A server stream fed by a fetch function that returns what is new since its last call.
template <typename T>
class PollingWriter final : public grpc::ServerWriteReactor<T>, public StreamWaker {
 public:
  using Fetch = std::function<absl::StatusOr<std::vector<T>>(bool* finished)>;
  PollingWriter(StreamHub& hub, Fetch fetch, bool follow, CoordinatorMetrics* metrics, const char* method)
      : hub_(hub), fetch_(std::move(fetch)), follow_(follow), metrics_(metrics), method_(method) {
    Wake();
  }
  void Wake() override {
    absl::MutexLock lock(&mu_);
    if (finished_ || writing_) return;
    bool done = false;
    absl::StatusOr<std::vector<T>> items = fetch_(&done);
    if (!items.ok()) {
      FinishLocked(items.status());
      return;
    }
    for (T& x : *items) queue_.push_back(std::move(x));
    if (!queue_.empty()) {
      WriteNextLocked();
    } else if (done || !follow_) {
      FinishLocked(absl::OkStatus());
    } else {
      hub_.Park(this);
    }
  }
  void OnWriteDone(bool ok) override {
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      if (!ok) {
        FinishLocked(absl::CancelledError("client went away"));
        return;
      }
      if (!queue_.empty()) {
        WriteNextLocked();
        return;
      }
    }
    Wake();
  }
  void OnCancel() override {
    absl::MutexLock lock(&mu_);
    FinishLocked(absl::CancelledError("cancelled by the client"));
  }
  void OnDone() override {
    hub_.Forget(this);
    delete this;
  }

 private:
  void WriteNextLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    current_ = std::move(queue_.front());
    queue_.pop_front();
    writing_ = true;
    this->StartWrite(&current_);
  }
  void FinishLocked(const absl::Status& s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_) return;
    finished_ = true;
    if (metrics_ != nullptr) metrics_->ObserveRpc(method_, CodeName(s.code()), 0);
    this->Finish(ToGrpcStatus(s));
  }

  StreamHub& hub_;
  Fetch fetch_;
  const bool follow_;
  CoordinatorMetrics* metrics_;
  const char* method_;
  absl::Mutex mu_;
  std::deque<T> queue_ ABSL_GUARDED_BY(mu_);
  T current_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
};

template <typename T>
class ErrorWriter final : public grpc::ServerWriteReactor<T> {
 public:
  explicit ErrorWriter(const absl::Status& s) { this->Finish(ToGrpcStatus(s)); }
  void OnDone() override { delete this; }
};

}  // namespace

void StreamHub::Park(StreamWaker* w) {
  absl::MutexLock lock(&mu_);
  parked_.insert(w);
}

void StreamHub::WakeAll() {
  std::set<StreamWaker*> batch;
  {
    absl::MutexLock lock(&mu_);
    batch.swap(parked_);
    waking_ = batch;
  }
  for (StreamWaker* w : batch) {
    w->Wake();
    absl::MutexLock lock(&mu_);
    waking_.erase(w);
  }
}

void StreamHub::Forget(StreamWaker* w) {
  absl::MutexLock lock(&mu_);
  auto not_waking = [this, w]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return waking_.count(w) == 0; };
  mu_.Await(absl::Condition(&not_waking));
  parked_.erase(w);
}

// --- CoordinatorService --------------------------------------------------------------------

grpc::ServerUnaryReactor* CoordinatorServiceImpl::SubmitPipeline(
    grpc::CallbackServerContext* ctx, const v1::SubmitPipelineRequest* req,
    v1::SubmitPipelineResponse* resp) {
  return Unary(ctx, auth_, metrics_, "SubmitPipeline", Role::kUser, [this, req, resp](const std::string& who) {
    ASSIGN_OR_RETURN(*resp, core_.SubmitPipeline(*req, who));
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* CoordinatorServiceImpl::GetPipeline(grpc::CallbackServerContext* ctx,
                                                              const v1::GetPipelineRequest* req,
                                                              v1::PipelineStatus* resp) {
  return Unary(ctx, auth_, metrics_, "GetPipeline", Role::kUser, [this, req, resp](const std::string&) {
    ASSIGN_OR_RETURN(*resp, core_.GetPipeline(*req));
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* CoordinatorServiceImpl::ListPipelines(
    grpc::CallbackServerContext* ctx, const v1::ListPipelinesRequest* req,
    v1::ListPipelinesResponse* resp) {
  return Unary(ctx, auth_, metrics_, "ListPipelines", Role::kUser, [this, req, resp](const std::string&) {
    ASSIGN_OR_RETURN(*resp, core_.ListPipelines(*req));
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* CoordinatorServiceImpl::CancelPipeline(
    grpc::CallbackServerContext* ctx, const v1::CancelPipelineRequest* req,
    v1::CancelPipelineResponse* resp) {
  return Unary(ctx, auth_, metrics_, "CancelPipeline", Role::kUser, [this, req, resp](const std::string&) {
    ASSIGN_OR_RETURN(*resp, core_.CancelPipeline(*req));
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* CoordinatorServiceImpl::RetryStage(grpc::CallbackServerContext* ctx,
                                                             const v1::RetryStageRequest* req,
                                                             v1::RetryStageResponse* resp) {
  return Unary(ctx, auth_, metrics_, "RetryStage", Role::kUser, [this, req, resp](const std::string&) {
    ASSIGN_OR_RETURN(*resp, core_.RetryStage(*req));
    return absl::OkStatus();
  });
}

grpc::ServerWriteReactor<v1::Event>* CoordinatorServiceImpl::WatchPipeline(
    grpc::CallbackServerContext* ctx, const v1::WatchPipelineRequest* req) {
  absl::StatusOr<std::string> who = auth_.Check(Authorization(ctx), Role::kUser);
  if (!who.ok()) return new ErrorWriter<v1::Event>(who.status());
  auto cursor = std::make_shared<int64_t>(req->after_sequence());
  Coordinator* core = &core_;
  const std::string id = req->pipeline_id();
  return new PollingWriter<v1::Event>(
      hub_,
      [core, id, cursor](bool* finished) -> absl::StatusOr<std::vector<v1::Event>> {
        ASSIGN_OR_RETURN(std::vector<v1::Event> events, core->ReadEvents(id, *cursor, 256, finished));
        if (!events.empty()) {
          *cursor = events.back().sequence();
          *finished = false;  // drain everything before ending
        }
        return events;
      },
      /*follow=*/true, metrics_, "WatchPipeline");
}

grpc::ServerWriteReactor<v1::LogLine>* CoordinatorServiceImpl::StreamLogs(
    grpc::CallbackServerContext* ctx, const v1::StreamLogsRequest* req) {
  absl::StatusOr<std::string> who = auth_.Check(Authorization(ctx), Role::kUser);
  if (!who.ok()) return new ErrorWriter<v1::LogLine>(who.status());
  // Last offset sent per (attempt, rank): the stored tail is re-read and only new lines go out.
  auto seen = std::make_shared<std::map<std::pair<std::string, int>, int64_t>>();
  auto first = std::make_shared<bool>(true);
  Coordinator* core = &core_;
  v1::StreamLogsRequest request = *req;
  return new PollingWriter<v1::LogLine>(
      hub_,
      [core, request, seen, first](bool* finished) -> absl::StatusOr<std::vector<v1::LogLine>> {
        v1::StreamLogsRequest r = request;
        if (!*first) r.set_tail(0);
        *first = false;
        ASSIGN_OR_RETURN(std::vector<v1::LogLine> lines, core->ReadLogs(r, finished));
        std::vector<v1::LogLine> out;
        for (v1::LogLine& l : lines) {
          auto key = std::make_pair(l.attempt_id(), l.rank());
          auto it = seen->find(key);
          if (it != seen->end() && l.offset() <= it->second) continue;
          (*seen)[key] = l.offset();
          out.push_back(std::move(l));
        }
        if (!out.empty()) *finished = false;
        return out;
      },
      request.follow(), metrics_, "StreamLogs");
}

grpc::ServerUnaryReactor* CoordinatorServiceImpl::GetMetrics(grpc::CallbackServerContext* ctx,
                                                             const v1::GetMetricsRequest* req,
                                                             v1::GetMetricsResponse* resp) {
  return Unary(ctx, auth_, metrics_, "GetMetrics", Role::kUser, [this, req, resp](const std::string&) {
    ASSIGN_OR_RETURN(*resp, core_.GetMetrics(*req));
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* CoordinatorServiceImpl::ListWorkers(grpc::CallbackServerContext* ctx,
                                                              const v1::ListWorkersRequest* req,
                                                              v1::ListWorkersResponse* resp) {
  return Unary(ctx, auth_, metrics_, "ListWorkers", Role::kUser, [this, req, resp](const std::string&) {
    ASSIGN_OR_RETURN(*resp, core_.ListWorkers(*req));
    return absl::OkStatus();
  });
}

// --- WorkerService -------------------------------------------------------------------------

grpc::ServerUnaryReactor* WorkerServiceImpl::RegisterWorker(grpc::CallbackServerContext* ctx,
                                                            const v1::RegisterWorkerRequest* req,
                                                            v1::RegisterWorkerResponse* resp) {
  return Unary(ctx, auth_, metrics_, "RegisterWorker", Role::kWorker, [this, req, resp](const std::string&) {
    ASSIGN_OR_RETURN(*resp, core_.RegisterWorker(*req));
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* WorkerServiceImpl::Heartbeat(grpc::CallbackServerContext* ctx,
                                                       const v1::HeartbeatRequest* req,
                                                       v1::HeartbeatResponse* resp) {
  return Unary(ctx, auth_, metrics_, "Heartbeat", Role::kWorker, [this, req, resp](const std::string&) {
    ASSIGN_OR_RETURN(*resp, core_.Heartbeat(*req));
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* WorkerServiceImpl::PollAssignments(grpc::CallbackServerContext* ctx,
                                                             const v1::PollAssignmentsRequest* req,
                                                             v1::PollAssignmentsResponse* resp) {
  const absl::Time start = absl::Now();
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  absl::StatusOr<std::string> who = auth_.Check(Authorization(ctx), Role::kWorker);
  if (!who.ok()) {
    if (metrics_ != nullptr) metrics_->ObserveRpc("PollAssignments", CodeName(who.status().code()), 0);
    reactor->Finish(ToGrpcStatus(who.status()));
    return reactor;
  }
  const int64_t wait_ms = std::clamp<int64_t>(req->wait_ms(), 0, kMaxPollWaitMs);
  // Never wait past the client's own deadline.
  absl::Time deadline = start + absl::Milliseconds(wait_ms);
  const absl::Time client_deadline = absl::FromChrono(ctx->deadline());
  if (client_deadline < deadline) deadline = client_deadline - absl::Milliseconds(50);
  CoordinatorMetrics* metrics = metrics_;
  core_.PollAssignmentsAsync(
      *req, deadline,
      [reactor, resp, metrics, start](absl::StatusOr<v1::PollAssignmentsResponse> r) {
        absl::Status s = r.status();
        if (r.ok()) *resp = std::move(*r);
        if (metrics != nullptr) {
          metrics->ObserveRpc("PollAssignments", CodeName(s.code()),
                              absl::ToDoubleSeconds(absl::Now() - start));
        }
        reactor->Finish(ToGrpcStatus(s));
      });
  return reactor;
}

grpc::ServerUnaryReactor* WorkerServiceImpl::ReportAttempt(grpc::CallbackServerContext* ctx,
                                                           const v1::ReportAttemptRequest* req,
                                                           v1::ReportAttemptResponse* resp) {
  return Unary(ctx, auth_, metrics_, "ReportAttempt", Role::kWorker, [this, req, resp](const std::string&) {
    ASSIGN_OR_RETURN(*resp, core_.ReportAttempt(*req));
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* WorkerServiceImpl::Rendezvous(grpc::CallbackServerContext* ctx,
                                                        const v1::RendezvousRequest* req,
                                                        v1::RendezvousResponse* resp) {
  return Unary(ctx, auth_, metrics_, "Rendezvous", Role::kWorker, [this, req, resp](const std::string&) {
    ASSIGN_OR_RETURN(*resp, core_.Rendezvous(*req));
    return absl::OkStatus();
  });
}

}  // namespace align::coordinator
