// The job file contract between the worker (which writes TrainJob as proto3 JSON with the proto
// field names, worker/supervisor/supervisor.cc) and align-train (which checks every key against
// its own copy of the schema, worker/engine/core/job.cc, and rejects unknown ones). Here because
// this test binary links both the protos and the engine.
#include <algorithm>
#include <string>

#include <google/protobuf/descriptor.h>
#include <google/protobuf/util/json_util.h>

#include "absl/strings/ascii.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "align/v1/job.pb.h"
#include "worker/engine/core/job.h"

namespace align {
namespace {

using google::protobuf::FieldDescriptor;
using google::protobuf::Message;

// Sets every field of `m`, recursively: scalars to a valid non-zero value where one is obvious,
// enums to their last value, repeated fields to one element, maps to one entry. Of each oneof
// (the stage's per-type config block) only member `pick` modulo the oneof's size is set.
void FillEveryField(Message& m, int pick, int depth = 0) {
  const auto* d = m.GetDescriptor();
  const auto* r = m.GetReflection();
  for (int i = 0; i < d->field_count(); ++i) {
    const FieldDescriptor* f = d->field(i);
    if (const auto* o = f->containing_oneof(); o != nullptr && o->field(pick % o->field_count()) != f) {
      continue;
    }
    if (f->is_map()) {
      Message* entry = r->AddMessage(&m, f);
      FillEveryField(*entry, pick, depth + 1);
      continue;
    }
    if (f->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
      if (depth > 6 || f->message_type()->full_name().rfind("google.protobuf.", 0) == 0) continue;
      Message* sub = f->is_repeated() ? r->AddMessage(&m, f) : r->MutableMessage(&m, f);
      FillEveryField(*sub, pick, depth + 1);
      continue;
    }
    const bool rep = f->is_repeated();
    switch (f->cpp_type()) {
      case FieldDescriptor::CPPTYPE_STRING:
        rep ? r->AddString(&m, f, "x") : r->SetString(&m, f, "x");
        break;
      case FieldDescriptor::CPPTYPE_INT32:
        rep ? r->AddInt32(&m, f, 1) : r->SetInt32(&m, f, 1);
        break;
      case FieldDescriptor::CPPTYPE_INT64:
        rep ? r->AddInt64(&m, f, 1) : r->SetInt64(&m, f, 1);
        break;
      case FieldDescriptor::CPPTYPE_UINT32:
        rep ? r->AddUInt32(&m, f, 1) : r->SetUInt32(&m, f, 1);
        break;
      case FieldDescriptor::CPPTYPE_UINT64:
        rep ? r->AddUInt64(&m, f, 1) : r->SetUInt64(&m, f, 1);
        break;
      case FieldDescriptor::CPPTYPE_DOUBLE:
        rep ? r->AddDouble(&m, f, 0.25) : r->SetDouble(&m, f, 0.25);
        break;
      case FieldDescriptor::CPPTYPE_FLOAT:
        rep ? r->AddFloat(&m, f, 0.25f) : r->SetFloat(&m, f, 0.25f);
        break;
      case FieldDescriptor::CPPTYPE_BOOL:
        rep ? r->AddBool(&m, f, true) : r->SetBool(&m, f, true);
        break;
      case FieldDescriptor::CPPTYPE_ENUM: {
        const auto* e = f->enum_type()->value(f->enum_type()->value_count() - 1);
        rep ? r->AddEnum(&m, f, e) : r->SetEnum(&m, f, e);
        break;
      }
      default:
        break;
    }
  }
}

// The largest oneof in the job's messages: StageSpec's per-type config block.
int LargestOneof(const google::protobuf::Descriptor* d, int depth = 0) {
  int n = 1;
  for (int i = 0; i < d->oneof_decl_count(); ++i) n = std::max(n, d->oneof_decl(i)->field_count());
  for (int i = 0; i < d->field_count() && depth < 6; ++i) {
    if (d->field(i)->message_type() != nullptr) {
      n = std::max(n, LargestOneof(d->field(i)->message_type(), depth + 1));
    }
  }
  return n;
}

TEST(JobFileContract, EveryFieldTheWorkerCanWriteIsKnownToTheEngine) {
  const int variants = LargestOneof(v1::TrainJob::descriptor());
  ASSERT_GE(variants, 5);  // sft, preference_format, reward_model, dpo, ppo, eval blocks
  for (int pick = 0; pick < variants; ++pick) {
    v1::TrainJob job;
    FillEveryField(job, pick);
    // The stage's type names its config block, as the coordinator's planner guarantees.
    const auto* oneof = v1::StageSpec::descriptor()->FindOneofByName("config");
    ASSERT_NE(oneof, nullptr);
    const auto* block = job.stage().GetReflection()->GetOneofFieldDescriptor(job.stage(), oneof);
    ASSERT_NE(block, nullptr);
    v1::StageType type = v1::STAGE_TYPE_UNSPECIFIED;
    ASSERT_TRUE(v1::StageType_Parse(absl::AsciiStrToUpper(block->name()), &type)) << block->name();
    job.mutable_stage()->set_type(type);
    std::string json;
    google::protobuf::util::JsonPrintOptions print;
    print.preserve_proto_field_names = true;  // as the supervisor writes it
    ASSERT_TRUE(google::protobuf::util::MessageToJsonString(job, &json, print).ok());
    // A proto field added without teaching job.cc its name and type would fail every job that
    // sets it; here every field is set, with a plausible value.
    EXPECT_TRUE(engine::ParseJob(json, "job.json").ok())
        << engine::ParseJob(json, "job.json").status() << "\n" << json;
  }
}

}  // namespace
}  // namespace align
