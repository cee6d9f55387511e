// Helpers for coordinator tests: small valid pipeline specs and a fake worker that talks to a
// Coordinator's handler methods directly (no server, no threads).
#pragma once

#include <string>
#include <vector>

#include "align/v1/coordinator.pb.h"
#include "align/v1/worker.pb.h"
#include "coordinator/coordinator.h"
#include "gtest/gtest.h"

namespace align::coordinator::testing {

//! sft -> dpo (the DPO policy is the SFT model), like the handbook's first two steps.
inline v1::PipelineSpec SftDpoSpec(const std::string& name = "tiny") {
  v1::PipelineSpec spec;
  spec.set_api_version("align/v1");
  spec.set_kind("Pipeline");
  spec.mutable_metadata()->set_name(name);
  spec.mutable_defaults()->set_model("data://models/stories260K");
  v1::StageSpec* sft = spec.add_stages();
  sft->set_name("sft");
  sft->set_type(v1::SFT);
  sft->add_data()->set_path("data://datasets/oasst/en_100_tree.jsonl");
  sft->mutable_data(0)->set_format(v1::OASST_TREE);
  v1::StageSpec* dpo = spec.add_stages();
  dpo->set_name("dpo");
  dpo->set_type(v1::DPO);
  dpo->set_model("${stages.sft.outputs.model}");
  dpo->add_data()->set_path("data://datasets/hh-rlhf/harmless-base-test.jsonl.gz");
  dpo->mutable_data(0)->set_format(v1::HH_RLHF);
  return spec;
}

//! One SFT stage.
inline v1::PipelineSpec SftSpec(const std::string& name = "one") {
  v1::PipelineSpec spec = SftDpoSpec(name);
  spec.mutable_stages()->RemoveLast();
  return spec;
}

inline v1::SubmitPipelineRequest Submit(const v1::PipelineSpec& spec, const std::string& rid = "") {
  v1::SubmitPipelineRequest r;
  *r.mutable_spec() = spec;
  r.set_client_request_id(rid);
  return r;
}

//! A worker driven by hand: Register, Heartbeat, Poll, Report.
class FakeWorker {
 public:
  FakeWorker(Coordinator& c, std::string id, int cpu_slots = 4, int gpus = 0, int64_t incarnation = 1)
      : c_(c), id_(std::move(id)), cpu_slots_(cpu_slots), gpus_(gpus), incarnation_(incarnation) {}

  absl::StatusOr<v1::RegisterWorkerResponse> Register(std::vector<std::string> running = {}) {
    v1::RegisterWorkerRequest r;
    r.set_worker_id(id_);
    r.set_incarnation(incarnation_);
    r.mutable_inventory()->set_hostname(id_);
    r.mutable_inventory()->set_address("10.0.0." + std::to_string(id_.size()));
    r.mutable_inventory()->set_cpu_slots(cpu_slots_);
    for (int g = 0; g < gpus_; ++g) r.mutable_inventory()->add_gpus()->set_index(g);
    for (const std::string& a : running) r.add_running()->set_attempt_id(a);
    return c_.RegisterWorker(r);
  }
  absl::StatusOr<v1::HeartbeatResponse> Heartbeat(std::vector<std::string> running) {
    v1::HeartbeatRequest r;
    r.set_worker_id(id_);
    r.set_incarnation(incarnation_);
    for (const std::string& a : running) r.add_running()->set_attempt_id(a);
    return c_.Heartbeat(r);
  }
  std::vector<v1::Assignment> Poll() {
    v1::PollAssignmentsRequest r;
    r.set_worker_id(id_);
    r.set_incarnation(incarnation_);
    auto resp = c_.PollAssignments(r);
    EXPECT_TRUE(resp.ok()) << resp.status();
    if (!resp.ok()) return {};
    return {resp->assignments().begin(), resp->assignments().end()};
  }
  absl::StatusOr<v1::ReportAttemptResponse> Report(v1::ReportAttemptRequest r) {
    r.set_worker_id(id_);
    r.set_incarnation(incarnation_);
    return c_.ReportAttempt(r);
  }
  absl::StatusOr<v1::ReportAttemptResponse> Succeed(const std::string& attempt,
                                                    const std::string& artifact_name = "model",
                                                    const std::string& path = "/art/model",
                                                    const std::string& sha = "abc") {
    v1::ReportAttemptRequest r;
    r.set_attempt_id(attempt);
    r.set_report_id(attempt + "-exit");
    v1::Artifact* a = r.add_artifacts();
    a->set_name(artifact_name);
    a->set_uri("file://" + path);
    a->set_sha256(sha);
    a->set_kind("model");
    r.mutable_exit()->set_state(v1::ATTEMPT_SUCCEEDED);
    return Report(r);
  }
  absl::StatusOr<v1::ReportAttemptResponse> Fail(const std::string& attempt, v1::FailureClass fc,
                                                 const std::string& reason) {
    v1::ReportAttemptRequest r;
    r.set_attempt_id(attempt);
    r.set_report_id(attempt + "-fail");
    r.mutable_exit()->set_state(v1::ATTEMPT_FAILED);
    r.mutable_exit()->set_failure_class(fc);
    r.mutable_exit()->set_reason(reason);
    r.mutable_exit()->set_exit_code(3);
    return Report(r);
  }
  void set_incarnation(int64_t i) { incarnation_ = i; }
  const std::string& id() const { return id_; }

 private:
  Coordinator& c_;
  std::string id_;
  int cpu_slots_;
  int gpus_;
  int64_t incarnation_;
};

inline const v1::StageStatus& StageOf(const v1::PipelineStatus& p, const std::string& name) {
  for (const auto& s : p.stages()) {
    if (s.name() == name) return s;
  }
  static v1::StageStatus none;
  ADD_FAILURE() << "no stage " << name;
  return none;
}

}  // namespace align::coordinator::testing
