// PipelineSpec -> YAML (the schema the parser reads) and JSON.
#include <algorithm>
#include <charconv>
#include <string>
#include <utility>
#include <vector>

#include <yaml-cpp/yaml.h>

#include "absl/strings/str_cat.h"
#include "common/config/internal.h"
#include "common/config/pipeline_config.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/message.h"
#include "nlohmann/json.hpp"

namespace align::config {
namespace {

using google::protobuf::FieldDescriptor;
using google::protobuf::Message;

// Shortest text that parses back to the same double.
std::string DoubleText(double v) {
  char buffer[64];
  auto [ptr, ec] = std::to_chars(buffer, buffer + sizeof(buffer), v);
  return ec == std::errc() ? std::string(buffer, ptr) : absl::StrCat(v);
}

void EmitMessage(YAML::Emitter& out, const Message& msg);

void EmitScalar(YAML::Emitter& out, const Message& msg, const FieldDescriptor* f, int index) {
  const auto* r = msg.GetReflection();
  const bool rep = index >= 0;
  switch (f->cpp_type()) {
    case FieldDescriptor::CPPTYPE_STRING:
      out << YAML::DoubleQuoted << (rep ? r->GetRepeatedString(msg, f, index) : r->GetString(msg, f));
      break;
    case FieldDescriptor::CPPTYPE_BOOL:
      out << ((rep ? r->GetRepeatedBool(msg, f, index) : r->GetBool(msg, f)) ? "true" : "false");
      break;
    case FieldDescriptor::CPPTYPE_ENUM:
      out << internal::EnumYamlName(rep ? r->GetRepeatedEnum(msg, f, index) : r->GetEnum(msg, f));
      break;
    case FieldDescriptor::CPPTYPE_INT32:
      out << absl::StrCat(rep ? r->GetRepeatedInt32(msg, f, index) : r->GetInt32(msg, f));
      break;
    case FieldDescriptor::CPPTYPE_INT64:
      out << absl::StrCat(rep ? r->GetRepeatedInt64(msg, f, index) : r->GetInt64(msg, f));
      break;
    case FieldDescriptor::CPPTYPE_UINT32:
      out << absl::StrCat(rep ? r->GetRepeatedUInt32(msg, f, index) : r->GetUInt32(msg, f));
      break;
    case FieldDescriptor::CPPTYPE_UINT64:
      out << absl::StrCat(rep ? r->GetRepeatedUInt64(msg, f, index) : r->GetUInt64(msg, f));
      break;
    case FieldDescriptor::CPPTYPE_DOUBLE:
      out << DoubleText(rep ? r->GetRepeatedDouble(msg, f, index) : r->GetDouble(msg, f));
      break;
    case FieldDescriptor::CPPTYPE_FLOAT:
      out << DoubleText(rep ? r->GetRepeatedFloat(msg, f, index) : r->GetFloat(msg, f));
      break;
    case FieldDescriptor::CPPTYPE_MESSAGE:
      EmitMessage(out, rep ? r->GetRepeatedMessage(msg, f, index) : r->GetMessage(msg, f));
      break;
  }
}

void EmitField(YAML::Emitter& out, const Message& msg, const FieldDescriptor* f) {
  const auto* r = msg.GetReflection();
  if (f->is_map()) {
    std::vector<std::pair<std::string, std::string>> entries;
    for (int i = 0; i < r->FieldSize(msg, f); ++i) {
      const Message& e = r->GetRepeatedMessage(msg, f, i);
      const auto* er = e.GetReflection();
      entries.emplace_back(er->GetString(e, f->message_type()->map_key()),
                           er->GetString(e, f->message_type()->map_value()));
    }
    std::sort(entries.begin(), entries.end());  // protobuf maps have no stable order
    out << YAML::Key << f->name() << YAML::Value << YAML::BeginMap;
    for (const auto& [k, v] : entries) out << YAML::Key << k << YAML::Value << YAML::DoubleQuoted << v;
    out << YAML::EndMap;
  } else if (f->is_repeated()) {
    const bool scalars = f->cpp_type() != FieldDescriptor::CPPTYPE_MESSAGE;
    out << YAML::Key << f->name() << YAML::Value;
    if (scalars) out << YAML::Flow;
    out << YAML::BeginSeq;
    for (int i = 0; i < r->FieldSize(msg, f); ++i) EmitScalar(out, msg, f, i);
    out << YAML::EndSeq;
  } else {
    out << YAML::Key << f->name() << YAML::Value;
    EmitScalar(out, msg, f, -1);
  }
}

bool Present(const Message& msg, const FieldDescriptor* f) {
  const auto* r = msg.GetReflection();
  return f->is_repeated() ? r->FieldSize(msg, f) > 0 : r->HasField(msg, f);
}

void EmitMessage(YAML::Emitter& out, const Message& msg) {
  const auto* d = msg.GetDescriptor();
  const auto* r = msg.GetReflection();
  out << YAML::BeginMap;
  const FieldDescriptor* config = nullptr;
  for (int i = 0; i < d->field_count(); ++i) {
    const FieldDescriptor* f = d->field(i);
    if (!Present(msg, f)) continue;
    if (f->real_containing_oneof() != nullptr && d == align::v1::StageSpec::descriptor()) {
      config = f;  // StageSpec's oneof member is written as "config"
      continue;
    }
    EmitField(out, msg, f);
  }
  if (config != nullptr) {
    out << YAML::Key << "config" << YAML::Value;
    EmitMessage(out, r->GetMessage(msg, config));
  }
  out << YAML::EndMap;
}

// SpecToYaml's output as JSON. Strings are emitted double-quoted, which yaml-cpp reports with the
// non-specific tag "!"; the other scalars are numbers, booleans or enum names.
nlohmann::ordered_json YamlToJson(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Map: {
      nlohmann::ordered_json out = nlohmann::ordered_json::object();
      for (const auto& kv : node) out[kv.first.as<std::string>()] = YamlToJson(kv.second);
      return out;
    }
    case YAML::NodeType::Sequence: {
      nlohmann::ordered_json out = nlohmann::ordered_json::array();
      for (const auto& item : node) out.push_back(YamlToJson(item));
      return out;
    }
    case YAML::NodeType::Scalar: {
      const std::string& text = node.Scalar();
      if (node.Tag() == "!") return text;
      if (text == "true" || text == "false") return text == "true";
      int64_t i = 0;
      if (auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), i);
          ec == std::errc() && p == text.data() + text.size()) {
        return i;
      }
      double d = 0;
      if (auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), d);
          ec == std::errc() && p == text.data() + text.size()) {
        return d;
      }
      return text;
    }
    default:
      return nullptr;
  }
}

}  // namespace

std::string SpecToYaml(const align::v1::PipelineSpec& spec) {
  YAML::Emitter out;
  out.SetOutputCharset(YAML::EmitNonAscii);
  out << YAML::BeginMap;
  out << YAML::Key << "apiVersion" << YAML::Value
      << (spec.api_version().empty() ? std::string("align/v1") : spec.api_version());
  out << YAML::Key << "kind" << YAML::Value
      << (spec.kind().empty() ? std::string("Pipeline") : spec.kind());
  out << YAML::Key << "metadata" << YAML::Value;
  EmitMessage(out, spec.metadata());
  out << YAML::Key << "spec" << YAML::Value << YAML::BeginMap;
  if (spec.has_defaults()) {
    out << YAML::Key << "defaults" << YAML::Value;
    EmitMessage(out, spec.defaults());
  }
  out << YAML::Key << "stages" << YAML::Value << YAML::BeginSeq;
  for (const auto& stage : spec.stages()) EmitMessage(out, stage);
  out << YAML::EndSeq << YAML::EndMap << YAML::EndMap;
  return std::string(out.c_str()) + "\n";
}

absl::StatusOr<std::string> SpecToJson(const align::v1::PipelineSpec& spec) {
  // The YAML form converted node by node, so the JSON is in the schema the parser reads
  // (apiVersion/kind/metadata/spec, lower-case enums, `config:`) and reads back as the same spec.
  try {
    return YamlToJson(YAML::Load(SpecToYaml(spec))).dump(2) + "\n";
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("cannot print the spec as JSON: ", e.what()));
  }
}

}  // namespace align::config
