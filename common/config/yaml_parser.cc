// YAML -> PipelineSpec. yaml-cpp parses (its nodes carry line/column marks); protobuf reflection
// maps keys to fields, so the schema lives only in pipeline.proto. Every problem is collected,
// with file:line:col and the YAML field path, before anything is returned.
#include <charconv>
#include <cstdint>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/parser.h>
#include <yaml-cpp/yaml.h>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/config/internal.h"
#include "common/config/pipeline_config.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/message.h"

namespace align::config {
namespace {

using align::v1::PipelineSpec;
using align::v1::StageSpec;
using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;

constexpr int kMaxDepth = 100;

// Where the node being converted came from: the file (with marks) or a --set argument.
struct Ctx {
  std::string source;
  bool marks = true;
};

std::string Describe(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Map: return "a mapping";
    case YAML::NodeType::Sequence: return "a list";
    case YAML::NodeType::Null: return "nothing (null)";
    case YAML::NodeType::Scalar: return absl::StrCat("\"", n.Scalar(), "\"");
    default: return "nothing";
  }
}

const char* TypeWords(const FieldDescriptor* f) {
  switch (f->cpp_type()) {
    case FieldDescriptor::CPPTYPE_INT32:
    case FieldDescriptor::CPPTYPE_INT64: return "an integer";
    case FieldDescriptor::CPPTYPE_UINT32:
    case FieldDescriptor::CPPTYPE_UINT64: return "a non-negative integer";
    case FieldDescriptor::CPPTYPE_DOUBLE:
    case FieldDescriptor::CPPTYPE_FLOAT: return "a number (e.g. 0.1 or 1e-5)";
    case FieldDescriptor::CPPTYPE_BOOL: return "true or false";
    case FieldDescriptor::CPPTYPE_ENUM: return "one of the listed names";
    case FieldDescriptor::CPPTYPE_STRING: return "a string";
    case FieldDescriptor::CPPTYPE_MESSAGE: return "a mapping";
  }
  return "a value";
}

const char* ListWords(const FieldDescriptor* f) {
  switch (f->cpp_type()) {
    case FieldDescriptor::CPPTYPE_STRING: return "strings";
    case FieldDescriptor::CPPTYPE_ENUM: return "names";
    case FieldDescriptor::CPPTYPE_BOOL: return "true/false values";
    case FieldDescriptor::CPPTYPE_DOUBLE:
    case FieldDescriptor::CPPTYPE_FLOAT: return "numbers";
    default: return "integers";
  }
}

bool IsConfigMessage(const Descriptor* d) {
  const auto* oneof = StageSpec::descriptor()->FindOneofByName("config");
  for (int i = 0; i < oneof->field_count(); ++i) {
    if (oneof->field(i)->message_type() == d) return true;
  }
  return false;
}

// The YAML keys a message accepts: its fields, less StageSpec's oneof members, plus "config".
std::vector<std::string> YamlKeys(const Descriptor* d) {
  std::vector<std::string> keys;
  for (int i = 0; i < d->field_count(); ++i) {
    if (d->field(i)->real_containing_oneof() != nullptr) continue;
    keys.push_back(d->field(i)->name());
  }
  if (d == StageSpec::descriptor()) keys.push_back("config");
  return keys;
}

class Converter {
 public:
  Converter(std::string file, std::vector<ConfigError>* errors, internal::LocationMap* locations)
      : file_(std::move(file)), errors_(errors), locations_(locations) {}

  //! Nodes that --set put in the tree, so that errors inside them name the --set argument.
  void AddOverrideNode(const YAML::Node& node, const std::string& argument) {
    overrides_.emplace_back(node, absl::StrCat("--set ", argument));
  }

  int utf8_errors() const { return utf8_errors_; }

  //! False when the document is not a mapping at all (nothing else is worth checking).
  bool ConvertRoot(const YAML::Node& root, PipelineSpec* spec) {
    Ctx ctx{file_, true};
    if (!root.IsDefined() || root.IsNull()) {
      Error(ctx, root, "", "empty document; expected a pipeline spec with apiVersion: align/v1, "
                           "kind: Pipeline, metadata and spec");
      return false;
    }
    if (!root.IsMap()) {
      Error(ctx, root, "", absl::StrCat("expected a mapping with apiVersion, kind, metadata and "
                                        "spec; got ", Describe(root)));
      return false;
    }
    bool saw_api = false, saw_kind = false;
    ForEachPair(root, "", ctx, false,
                [&](const std::string& key, const YAML::Node& key_node, const YAML::Node& value,
                    const Ctx& c) {
                  const Descriptor* d = PipelineSpec::descriptor();
                  if (key == "apiVersion") {
                    saw_api = true;
                    ConvertField(value, "apiVersion", spec, d->FindFieldByName("api_version"), c);
                  } else if (key == "kind") {
                    saw_kind = true;
                    ConvertField(value, "kind", spec, d->FindFieldByName("kind"), c);
                  } else if (key == "metadata") {
                    ConvertField(value, "metadata", spec, d->FindFieldByName("metadata"), c);
                  } else if (key == "spec") {
                    ConvertSpecBody(value, spec, c);
                  } else {
                    UnknownKey(c, key_node, key, key,
                               {"apiVersion", "kind", "metadata", "spec"}, "");
                  }
                });
    if (!saw_api) Error(ctx, root, "apiVersion", "required; expected apiVersion: align/v1");
    if (!saw_kind) Error(ctx, root, "kind", "required; expected kind: Pipeline");
    return true;
  }

 private:
  // ---- context, errors, locations ------------------------------------------------------------
  Ctx Enter(const YAML::Node& node, const Ctx& ctx) const {
    for (const auto& [override_node, argument] : overrides_) {
      if (node.is(override_node)) return Ctx{argument, false};
    }
    return ctx;
  }

  void Locate(const Ctx& ctx, const YAML::Node& at, int* line, int* column) const {
    *line = 0;
    *column = 0;
    if (!ctx.marks || !at.IsDefined()) return;
    const YAML::Mark mark = at.Mark();
    if (mark.line < 0) return;
    *line = mark.line + 1;
    *column = mark.column + 1;
  }

  void Error(const Ctx& ctx, const YAML::Node& at, const std::string& path, std::string message) {
    ConfigError e;
    e.source = ctx.source;
    Locate(ctx, at, &e.line, &e.column);
    e.field_path = path;
    e.message = std::move(message);
    errors_->push_back(std::move(e));
  }

  void Record(const Ctx& ctx, const YAML::Node& at, const std::string& path) {
    internal::Location loc;
    loc.source = ctx.source;
    Locate(ctx, at, &loc.line, &loc.column);
    (*locations_)[path] = std::move(loc);
  }

  void MarkInvalid(const std::string& path) { (*locations_)[path].invalid = true; }

  // Errors for a value that could not be converted: reported once, here.
  void ValueError(const Ctx& ctx, const YAML::Node& at, const std::string& path,
                  std::string message) {
    Error(ctx, at, path, std::move(message));
    MarkInvalid(path);
  }

  void UnknownKey(const Ctx& ctx, const YAML::Node& key_node, const std::string& path,
                  const std::string& key, const std::vector<std::string>& valid,
                  const std::string& hint) {
    std::string message = absl::StrCat("unknown key \"", key, "\"");
    if (key == "<<") {
      absl::StrAppend(&message, "; YAML merge keys are not supported: write the keys out (anchors "
                                "and aliases of whole values do work)");
    } else if (!hint.empty()) {
      absl::StrAppend(&message, "; ", hint);
    } else {
      absl::StrAppend(&message, "; expected one of: ", absl::StrJoin(valid, ", "),
                      internal::DidYouMean(key, valid));
    }
    Error(ctx, key_node, path, std::move(message));
  }

  bool CheckUtf8(const Ctx& ctx, const YAML::Node& at, const std::string& path,
                 const std::string& text) {
    size_t bad = 0;
    if (internal::IsValidUtf8(text, &bad)) return true;
    ++utf8_errors_;
    ValueError(ctx, at, path,
               absl::StrCat("invalid UTF-8 (byte 0x",
                            absl::Hex(static_cast<unsigned char>(text[bad]), absl::kZeroPad2),
                            " at offset ", bad, "); expected UTF-8 text"));
    return false;
  }

  // Calls fn(key, key_node, value, ctx) for each pair of a mapping, rejecting non-string and
  // duplicate keys. `bracket`: children are named path[key] (protobuf maps) not path.key.
  template <typename Fn>
  void ForEachPair(const YAML::Node& node, const std::string& path, const Ctx& ctx, bool bracket,
                   Fn fn) {
    absl::flat_hash_map<std::string, int> seen;  // key -> line of first occurrence
    for (auto it = node.begin(); it != node.end(); ++it) {
      const YAML::Node key_node = it->first;
      const YAML::Node value = it->second;
      const Ctx c = Enter(value, ctx);
      if (!key_node.IsScalar()) {
        Error(c, key_node, path, absl::StrCat("keys must be strings; got ", Describe(key_node)));
        continue;
      }
      const std::string& key = key_node.Scalar();
      const std::string child =
          bracket ? absl::StrCat(path, "[", key, "]") : (path.empty() ? key : path + "." + key);
      if (!CheckUtf8(c, key_node, child, key)) continue;
      int line = 0, column = 0;
      Locate(c, key_node, &line, &column);
      auto [first, inserted] = seen.emplace(key, line);
      if (!inserted) {
        Error(c, key_node, child,
              absl::StrCat("duplicate key \"", key, "\"",
                           first->second > 0 ? absl::StrCat(" (first at line ", first->second, ")")
                                             : std::string(),
                           "; each key may appear once"));
        continue;
      }
      fn(key, key_node, value, c);
    }
  }

  // ---- structure -----------------------------------------------------------------------------
  void ConvertSpecBody(const YAML::Node& node, PipelineSpec* spec, const Ctx& parent) {
    const Ctx ctx = Enter(node, parent);
    Record(ctx, node, "spec");
    if (node.IsNull()) return;
    if (!node.IsMap()) {
      ValueError(ctx, node, "spec",
                 absl::StrCat("expected a mapping with defaults and stages; got ", Describe(node)));
      return;
    }
    ForEachPair(node, "spec", ctx, false,
                [&](const std::string& key, const YAML::Node& key_node, const YAML::Node& value,
                    const Ctx& c) {
                  if (key == "defaults") {
                    ConvertField(value, "spec.defaults", spec,
                                 PipelineSpec::descriptor()->FindFieldByName("defaults"), c);
                  } else if (key == "stages") {
                    ConvertStages(value, spec, c);
                  } else {
                    UnknownKey(c, key_node, "spec." + key, key, {"defaults", "stages"},
                               key == "metadata" ? "metadata belongs at the top level, next to spec"
                                                 : "");
                  }
                });
  }

  void ConvertStages(const YAML::Node& node, PipelineSpec* spec, const Ctx& parent) {
    const Ctx ctx = Enter(node, parent);
    Record(ctx, node, "spec.stages");
    if (node.IsNull()) return;  // reported as an empty stage list by validation
    if (!node.IsSequence()) {
      ValueError(ctx, node, "spec.stages",
                 absl::StrCat("expected a list of stages (each \"- name: ...\"); got ",
                              Describe(node)));
      return;
    }
    for (size_t i = 0; i < node.size(); ++i) {
      ConvertStage(node[i], absl::StrCat("spec.stages[", i, "]"), spec->add_stages(), ctx);
    }
  }

  void ConvertStage(const YAML::Node& node, const std::string& path, StageSpec* stage,
                    const Ctx& parent) {
    const Ctx ctx = Enter(node, parent);
    Record(ctx, node, path);
    if (!node.IsMap()) {
      ValueError(ctx, node, path,
                 absl::StrCat("expected a stage (a mapping with name, type, ...); got ",
                              Describe(node)));
      return;
    }
    const Descriptor* d = StageSpec::descriptor();
    // The type decides how config is read, so it is converted first.
    for (auto it = node.begin(); it != node.end(); ++it) {
      if (it->first.IsScalar() && it->first.Scalar() == "type") {
        ConvertField(it->second, path + ".type", stage, d->FindFieldByName("type"),
                     Enter(it->second, ctx));
        break;
      }
    }
    const std::vector<std::string> keys = YamlKeys(d);
    ForEachPair(node, path, ctx, false,
                [&](const std::string& key, const YAML::Node& key_node, const YAML::Node& value,
                    const Ctx& c) {
                  const std::string child = path + "." + key;
                  if (key == "type") return;  // converted above
                  if (key == "config") {
                    ConvertStageConfig(value, child, stage, c);
                    return;
                  }
                  const FieldDescriptor* f = d->FindFieldByName(key);
                  if (f == nullptr || f->real_containing_oneof() != nullptr) {
                    std::string hint;
                    if (align::v1::TrainingConfig::descriptor()->FindFieldByName(key) != nullptr) {
                      hint = absl::StrCat(key, " belongs under training: (stage.training.", key, ")");
                    } else if (const Descriptor* cd = ConfigDescriptor(*stage);
                               cd != nullptr && cd->FindFieldByName(key) != nullptr) {
                      hint = absl::StrCat(key, " belongs under config: (stage.config.", key, ")");
                    }
                    UnknownKey(c, key_node, child, key, keys, hint);
                    return;
                  }
                  ConvertField(value, child, stage, f, c);
                });
  }

  const Descriptor* ConfigDescriptor(const StageSpec& stage) const {
    if (stage.type() == align::v1::STAGE_TYPE_UNSPECIFIED) return nullptr;
    const FieldDescriptor* member = StageSpec::descriptor()->FindFieldByName(StageTypeName(stage.type()));
    return member == nullptr ? nullptr : member->message_type();
  }

  void ConvertStageConfig(const YAML::Node& value, const std::string& path, StageSpec* stage,
                          const Ctx& parent) {
    const Ctx ctx = Enter(value, parent);
    if (stage->type() == align::v1::STAGE_TYPE_UNSPECIFIED) {
      // A missing type is reported by validation; an invalid one by the type field itself.
      Record(ctx, value, path);
      return;
    }
    const FieldDescriptor* member =
        StageSpec::descriptor()->FindFieldByName(StageTypeName(stage->type()));
    ConvertMessage(value, path, stage->GetReflection()->MutableMessage(stage, member), ctx);
  }

  // ---- fields --------------------------------------------------------------------------------
  void ConvertMessage(const YAML::Node& node, const std::string& path, Message* msg,
                      const Ctx& parent) {
    const Ctx ctx = Enter(node, parent);
    Record(ctx, node, path);
    if (node.IsNull()) return;  // "training:" with nothing under it: all defaults
    const Descriptor* d = msg->GetDescriptor();
    const std::vector<std::string> keys = YamlKeys(d);
    if (!node.IsMap()) {
      ValueError(ctx, node, path,
                 absl::StrCat("expected a mapping with keys from: ", absl::StrJoin(keys, ", "),
                              "; got ", Describe(node)));
      return;
    }
    if (++depth_ > kMaxDepth) {
      ValueError(ctx, node, path, "nested too deeply");
      --depth_;
      return;
    }
    ForEachPair(node, path, ctx, false,
                [&](const std::string& key, const YAML::Node& key_node, const YAML::Node& value,
                    const Ctx& c) {
                  const std::string child = path + "." + key;
                  const FieldDescriptor* f = d->FindFieldByName(key);
                  if (f == nullptr) {
                    std::string hint;
                    if (IsConfigMessage(d) &&
                        align::v1::TrainingConfig::descriptor()->FindFieldByName(key) != nullptr) {
                      hint = absl::StrCat(key, " is a training setting; it belongs under the "
                                               "stage's training: block, not config:");
                    } else if (d == align::v1::TrainingConfig::descriptor()) {
                      // The reverse: a stage-type setting (dpo beta, sft loss_on) under training:.
                      std::vector<std::string> types;
                      const auto* oneof = StageSpec::descriptor()->FindOneofByName("config");
                      for (int i = 0; oneof != nullptr && i < oneof->field_count(); ++i) {
                        const FieldDescriptor* block = oneof->field(i);
                        if (block->message_type() != nullptr &&
                            block->message_type()->FindFieldByName(key) != nullptr) {
                          types.push_back(block->name());
                        }
                      }
                      if (!types.empty()) {
                        hint = absl::StrCat(key, " is a ", absl::StrJoin(types, "/"),
                                            " setting; it belongs under the stage's config: "
                                            "block, not training:");
                      }
                    }
                    UnknownKey(c, key_node, child, key, keys, hint);
                    return;
                  }
                  ConvertField(value, child, msg, f, c);
                });
    --depth_;
  }

  void ConvertField(const YAML::Node& value, const std::string& path, Message* msg,
                    const FieldDescriptor* f, const Ctx& parent) {
    const Ctx ctx = Enter(value, parent);
    Record(ctx, value, path);
    const Reflection* r = msg->GetReflection();
    if (f->is_map()) {
      ConvertMap(value, path, msg, f, ctx);
    } else if (f->is_repeated()) {
      if (value.IsNull()) return;
      if (!value.IsSequence()) {
        ValueError(ctx, value, path,
                   absl::StrCat("expected a list",
                                f->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE
                                    ? " of mappings (e.g. [{path: ...}])"
                                    : absl::StrCat(" of ", ListWords(f), EnumChoices(f), " (e.g. [a, b])"),
                                "; got ", Describe(value)));
        return;
      }
      for (size_t i = 0; i < value.size(); ++i) {
        const YAML::Node element = value[i];
        const std::string element_path = absl::StrCat(path, "[", i, "]");
        const Ctx ec = Enter(element, ctx);
        if (f->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
          ConvertMessage(element, element_path, r->AddMessage(msg, f), ec);
        } else {
          Record(ec, element, element_path);
          ConvertScalar(element, element_path, msg, f, ec);
        }
      }
    } else if (f->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
      ConvertMessage(value, path, r->MutableMessage(msg, f), ctx);
    } else {
      ConvertScalar(value, path, msg, f, ctx);
    }
  }

  void ConvertMap(const YAML::Node& value, const std::string& path, Message* msg,
                  const FieldDescriptor* f, const Ctx& ctx) {
    if (value.IsNull()) return;
    if (!value.IsMap()) {
      ValueError(ctx, value, path,
                 absl::StrCat("expected a mapping of names to strings (e.g. {a: b}); got ",
                              Describe(value)));
      return;
    }
    const FieldDescriptor* key_field = f->message_type()->map_key();
    const FieldDescriptor* value_field = f->message_type()->map_value();
    ForEachPair(value, path, ctx, true,
                [&](const std::string& key, const YAML::Node&, const YAML::Node& v, const Ctx& c) {
                  const std::string child = absl::StrCat(path, "[", key, "]");
                  Record(c, v, child);
                  if (!v.IsScalar()) {
                    ValueError(c, v, child, absl::StrCat("expected a string value; got ",
                                                         Describe(v)));
                    return;
                  }
                  if (!CheckUtf8(c, v, child, v.Scalar())) return;
                  Message* entry = msg->GetReflection()->AddMessage(msg, f);
                  entry->GetReflection()->SetString(entry, key_field, key);
                  entry->GetReflection()->SetString(entry, value_field, v.Scalar());
                });
  }

  // Parses one scalar into field f (set, or appended when f is repeated).
  void ConvertScalar(const YAML::Node& node, const std::string& path, Message* msg,
                     const FieldDescriptor* f, const Ctx& ctx) {
    const Reflection* r = msg->GetReflection();
    const bool add = f->is_repeated();
    if (!node.IsScalar()) {
      ValueError(ctx, node, path,
                 absl::StrCat(node.IsNull() ? "missing value" : "wrong type", "; expected ",
                              TypeWords(f), EnumChoices(f), ", got ", Describe(node)));
      return;
    }
    const std::string& text = node.Scalar();
    // Plain (unquoted) scalars are tagged "?"; quoted ones "!".
    const bool plain = node.Tag() == "?";
    auto type_error = [&](const std::string& what) {
      ValueError(ctx, node, path, absl::StrCat(what, "; expected ", TypeWords(f), ", got ",
                                               Describe(node)));
    };
    switch (f->cpp_type()) {
      case FieldDescriptor::CPPTYPE_STRING: {
        if (!CheckUtf8(ctx, node, path, text)) return;
        add ? r->AddString(msg, f, text) : r->SetString(msg, f, text);
        return;
      }
      case FieldDescriptor::CPPTYPE_BOOL: {
        if (!plain || (text != "true" && text != "false")) return type_error("wrong type");
        add ? r->AddBool(msg, f, text == "true") : r->SetBool(msg, f, text == "true");
        return;
      }
      case FieldDescriptor::CPPTYPE_ENUM: {
        const std::vector<std::string> names = internal::EnumYamlNames(f->enum_type());
        for (const std::string& name : names) {
          if (name == text) {
            const int number = f->enum_type()->FindValueByName(absl::AsciiStrToUpper(name))->number();
            add ? r->AddEnumValue(msg, f, number) : r->SetEnumValue(msg, f, number);
            return;
          }
        }
        ValueError(ctx, node, path,
                   absl::StrCat("unknown value \"", text, "\"; expected one of: ",
                                absl::StrJoin(names, ", "), internal::DidYouMean(text, names)));
        return;
      }
      case FieldDescriptor::CPPTYPE_DOUBLE:
      case FieldDescriptor::CPPTYPE_FLOAT: {
        double v = 0;
        if (!ParseDouble(text, &v)) return type_error("not a number");
        if (!std::isfinite(v)) return type_error("not a finite number");
        if (f->cpp_type() == FieldDescriptor::CPPTYPE_FLOAT) {
          add ? r->AddFloat(msg, f, static_cast<float>(v)) : r->SetFloat(msg, f, static_cast<float>(v));
        } else {
          add ? r->AddDouble(msg, f, v) : r->SetDouble(msg, f, v);
        }
        return;
      }
      case FieldDescriptor::CPPTYPE_INT32:
      case FieldDescriptor::CPPTYPE_INT64:
      case FieldDescriptor::CPPTYPE_UINT32:
      case FieldDescriptor::CPPTYPE_UINT64: {
        int64_t i64 = 0;
        uint64_t u64 = 0;
        const bool is_unsigned = f->cpp_type() == FieldDescriptor::CPPTYPE_UINT32 ||
                                 f->cpp_type() == FieldDescriptor::CPPTYPE_UINT64;
        const bool ok = is_unsigned ? absl::SimpleAtoi(text, &u64) : absl::SimpleAtoi(text, &i64);
        if (!ok) {
          double d = 0;
          if (ParseDouble(text, &d)) {
            if (is_unsigned && d < 0 && std::floor(d) == d) return type_error("negative value");
            if (std::floor(d) != d) return type_error("not an integer");
            return type_error("out of range");
          }
          return type_error("not an integer");
        }
        switch (f->cpp_type()) {
          case FieldDescriptor::CPPTYPE_INT32:
            if (i64 < INT32_MIN || i64 > INT32_MAX) return type_error("out of range for int32");
            add ? r->AddInt32(msg, f, static_cast<int32_t>(i64))
                : r->SetInt32(msg, f, static_cast<int32_t>(i64));
            return;
          case FieldDescriptor::CPPTYPE_INT64:
            add ? r->AddInt64(msg, f, i64) : r->SetInt64(msg, f, i64);
            return;
          case FieldDescriptor::CPPTYPE_UINT32:
            if (u64 > UINT32_MAX) return type_error("out of range for uint32");
            add ? r->AddUInt32(msg, f, static_cast<uint32_t>(u64))
                : r->SetUInt32(msg, f, static_cast<uint32_t>(u64));
            return;
          default:
            add ? r->AddUInt64(msg, f, u64) : r->SetUInt64(msg, f, u64);
            return;
        }
      }
      case FieldDescriptor::CPPTYPE_MESSAGE:
        break;
    }
  }

  static std::string EnumChoices(const FieldDescriptor* f) {
    if (f->cpp_type() != FieldDescriptor::CPPTYPE_ENUM) return "";
    return absl::StrCat(" (", absl::StrJoin(internal::EnumYamlNames(f->enum_type()), ", "), ")");
  }

  static bool ParseDouble(absl::string_view text, double* out) {
    if (!text.empty() && text.front() == '+') text.remove_prefix(1);
    if (text.empty()) return false;
    const char* end = text.data() + text.size();
    auto [ptr, ec] = std::from_chars(text.data(), end, *out);
    return ec == std::errc() && ptr == end;
  }

  std::string file_;
  std::vector<ConfigError>* errors_;
  internal::LocationMap* locations_;
  std::vector<std::pair<YAML::Node, std::string>> overrides_;
  int utf8_errors_ = 0;
  int depth_ = 0;
};

// Streams parser events (no tree is built) and counts nodes as they would be with aliases
// expanded, stopping as soon as the budget or the depth limit is exceeded: an alias bomb or a
// multi-megabyte list is refused after reading a few hundred kilobytes, before yaml-cpp builds a
// node graph for it (which would take seconds and hundreds of MB).
class NodeBudget final : public YAML::EventHandler {
 public:
  struct Exceeded {
    bool depth;  // nesting, rather than node count
  };

  explicit NodeBudget(int64_t budget) : budget_(budget) {}

  void OnDocumentStart(const YAML::Mark&) override {}
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t anchor) override { Leaf(anchor); }
  void OnAlias(const YAML::Mark&, YAML::anchor_t anchor) override {
    auto it = sizes_.find(anchor);
    Add(it == sizes_.end() ? 1 : it->second);
  }
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t anchor,
                const std::string&) override {
    Leaf(anchor);
  }
  void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t anchor,
                       YAML::EmitterStyle::value) override {
    Open(anchor);
  }
  void OnSequenceEnd() override { Close(); }
  void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t anchor,
                  YAML::EmitterStyle::value) override {
    Open(anchor);
  }
  void OnMapEnd() override { Close(); }

 private:
  void Add(int64_t n) {
    total_ += n;
    if (total_ > budget_) throw Exceeded{false};
  }
  void Leaf(YAML::anchor_t anchor) {
    Add(1);
    if (anchor != YAML::NullAnchor) sizes_[anchor] = 1;
  }
  void Open(YAML::anchor_t anchor) {
    Add(1);
    open_.push_back({anchor, total_ - 1});
    if (static_cast<int>(open_.size()) > kMaxDepth) throw Exceeded{true};
  }
  void Close() {
    if (open_.empty()) return;
    const auto [anchor, start] = open_.back();
    open_.pop_back();
    if (anchor != YAML::NullAnchor) sizes_[anchor] = total_ - start;
  }

  int64_t budget_;
  int64_t total_ = 0;
  std::vector<std::pair<YAML::anchor_t, int64_t>> open_;  // open collections: anchor, total at start
  absl::flat_hash_map<YAML::anchor_t, int64_t> sizes_;   // anchor -> expanded size
};

// Counts nodes with aliases expanded; false once `*budget` is exhausted or nesting is too deep.
bool CountNodes(const YAML::Node& node, int depth, int* budget) {
  if (--*budget < 0 || depth > kMaxDepth) return false;
  if (node.IsMap()) {
    for (auto it = node.begin(); it != node.end(); ++it) {
      if (!CountNodes(it->first, depth + 1, budget) || !CountNodes(it->second, depth + 1, budget)) {
        return false;
      }
    }
  } else if (node.IsSequence()) {
    for (auto it = node.begin(); it != node.end(); ++it) {
      if (!CountNodes(*it, depth + 1, budget)) return false;
    }
  }
  return true;
}

// (line, column), 1-based, of byte `offset` in `text`.
std::pair<int, int> LineColumn(absl::string_view text, size_t offset) {
  int line = 1;
  size_t line_start = 0;
  for (size_t i = 0; i < offset && i < text.size(); ++i) {
    if (text[i] == '\n') {
      ++line;
      line_start = i + 1;
    }
  }
  return {line, static_cast<int>(offset - line_start) + 1};
}

// How many times `target` appears in the tree under `node` with aliases expanded (stops at 2).
void CountOccurrences(const YAML::Node& node, const YAML::Node& target, int* count) {
  if (*count > 1) return;
  if (node.is(target)) {
    ++*count;
    return;  // no node contains itself
  }
  if (node.IsMap()) {
    for (auto it = node.begin(); it != node.end() && *count < 2; ++it) {
      CountOccurrences(it->second, target, count);
    }
  } else if (node.IsSequence()) {
    for (auto it = node.begin(); it != node.end() && *count < 2; ++it) {
      CountOccurrences(*it, target, count);
    }
  }
}

// Applies one "--set path=value" on the YAML tree. The path names stages by their name:
// stages.<name>.<field>...; metadata.*, defaults.* (= spec.defaults.*), spec.*, apiVersion, kind.
void ApplyOverride(YAML::Node root, const std::string& argument, Converter* converter,
                   std::vector<ConfigError>* errors) {
  const std::string source = absl::StrCat("--set ", argument);
  auto fail = [&](const std::string& path, std::string message) {
    ConfigError e;
    e.source = source;
    e.field_path = path;
    e.message = std::move(message);
    errors->push_back(std::move(e));
  };
  const size_t eq = argument.find('=');
  if (eq == std::string::npos || eq == 0) {
    return fail("", "expected path=value, e.g. --set stages.dpo.config.beta=0.05");
  }
  const std::string path = argument.substr(0, eq);
  const std::string text = argument.substr(eq + 1);
  std::vector<std::string> parts = absl::StrSplit(path, '.');
  for (const std::string& p : parts) {
    if (p.empty()) return fail(path, "empty path component; expected e.g. stages.dpo.config.beta");
  }
  YAML::Node value;
  try {
    // Values are YAML: "0.05" is a number, "[mmlu, ifeval]" a list, "'5e-7'" a string.
    value = text.empty() ? YAML::Node(std::string()) : YAML::Load(text);
  } catch (const YAML::Exception& e) {
    return fail(path, absl::StrCat("the value is not valid YAML: ", e.msg));
  }
  if (!root.IsMap()) return fail(path, "the file is not a pipeline spec mapping");

  YAML::Node current;
  current.reset(root);
  std::string ypath;
  size_t k = 0;
  // yaml-cpp shares aliased nodes: changing one would change every place the alias appears,
  // so a --set through an anchor/alias is refused instead of silently applied twice.
  auto shared = [&](const YAML::Node& node, const std::string& where) {
    int count = 0;
    CountOccurrences(root, node, &count);
    if (count < 2) return false;
    fail(path, absl::StrCat(where.empty() ? std::string("the target") : where,
                            " is shared through a YAML alias (&anchor / *alias), so --set would "
                            "change every copy; edit the file instead"));
    return true;
  };
  auto descend_map = [&](const std::string& key) {
    YAML::Node child = current[key];
    if (!child.IsDefined() || child.IsNull()) {
      if (shared(current, ypath)) return false;
      YAML::Node created(YAML::NodeType::Map);
      current[key] = created;
      converter->AddOverrideNode(created, argument);
      child.reset(current[key]);
    }
    current.reset(child);
    ypath = ypath.empty() ? key : ypath + "." + key;
    return true;
  };
  const std::string& first = parts[0];
  if (first == "stages" || first == "defaults") {
    if (!descend_map("spec")) return;
  } else if (first == "spec") {
    if (!descend_map("spec")) return;
    k = 1;
  } else if (first != "metadata" && first != "apiVersion" && first != "kind") {
    const std::vector<std::string> roots = {"metadata", "defaults", "stages", "spec", "apiVersion",
                                            "kind"};
    return fail(path, absl::StrCat("unknown path \"", first, "\"; expected metadata.*, defaults.*, "
                                   "stages.<stage name>.* or spec.*",
                                   internal::DidYouMean(first, roots)));
  }
  if (k < parts.size() && parts[k] == "stages" && current.IsMap()) {
    const YAML::Node stages = current["stages"];
    if (!stages.IsDefined() || !stages.IsSequence()) return fail(path, "the spec has no stage list");
    if (k + 1 >= parts.size()) {
      return fail(path, "expected stages.<stage name>.<field>, e.g. stages.dpo.config.beta");
    }
    const std::string& name = parts[k + 1];
    std::vector<std::string> names;
    int found = -1;
    for (size_t i = 0; i < stages.size(); ++i) {
      const YAML::Node n = stages[i];
      if (n.IsMap() && n["name"].IsDefined() && n["name"].IsScalar()) {
        names.push_back(n["name"].Scalar());
        if (found < 0 && n["name"].Scalar() == name) found = static_cast<int>(i);
      }
    }
    if (found < 0) {
      return fail(path, absl::StrCat("no stage named \"", name, "\"; expected one of: ",
                                     absl::StrJoin(names, ", "), internal::DidYouMean(name, names)));
    }
    if (k + 2 >= parts.size()) {
      return fail(path, absl::StrCat("expected a field after stages.", name,
                                     ", e.g. stages.", name, ".training.learning_rate"));
    }
    current.reset(stages[found]);
    ypath = absl::StrCat("spec.stages[", found, "]");
    k += 2;
  }
  for (; k < parts.size(); ++k) {
    const std::string& part = parts[k];
    const bool last = k + 1 == parts.size();
    if (current.IsSequence()) {
      size_t index = 0;
      if (!absl::SimpleAtoi(part, &index) || index > current.size()) {
        return fail(path, absl::StrCat("\"", part, "\" is not an index of ", ypath, " (it has ",
                                       current.size(), " elements)"));
      }
      if (shared(current, ypath)) return;
      ypath = absl::StrCat(ypath, "[", index, "]");
      if (last) {
        if (index < current.size() && shared(current[index], ypath)) return;
        if (index == current.size()) {
          current.push_back(value);
        } else {
          YAML::Node slot = current[index];
          slot = value;
        }
        converter->AddOverrideNode(value, argument);
        return;
      }
      if (index == current.size()) {  // one past the end: a new element
        YAML::Node created(YAML::NodeType::Map);
        current.push_back(created);
        converter->AddOverrideNode(created, argument);
        current.reset(created);
        continue;
      }
      YAML::Node child = current[index];
      current.reset(child);
      continue;
    }
    if (!current.IsMap()) {
      return fail(path, absl::StrCat("cannot set \"", part, "\" inside ", ypath, ", which is ",
                                     Describe(current)));
    }
    if (last) {
      if (shared(current, ypath)) return;
      const YAML::Node existing = static_cast<const YAML::Node&>(current)[part];
      if (existing.IsDefined() && shared(existing, ypath + "." + part)) return;
      current[part] = value;
      converter->AddOverrideNode(value, argument);
      return;
    }
    if (!descend_map(part)) return;
  }
}

}  // namespace

std::vector<ConfigError> ParsePipelineYamlWithErrors(absl::string_view yaml_text,
                                                     absl::string_view source_name,
                                                     const std::vector<std::string>& set_overrides,
                                                     PipelineSpec* spec) {
  std::vector<ConfigError> errors;
  const std::string source(source_name);
  auto whole_file_error = [&](int line, int column, std::string message) {
    ConfigError e;
    e.source = source;
    e.line = line;
    e.column = column;
    e.message = std::move(message);
    errors.push_back(std::move(e));
  };
  spec->Clear();
  if (yaml_text.size() > kMaxSpecBytes) {
    whole_file_error(0, 0, absl::StrCat("file is ", yaml_text.size(),
                                        " bytes; a pipeline spec may be at most ", kMaxSpecBytes,
                                        " bytes (4 MiB)"));
    return errors;
  }
  size_t bad_utf8 = 0;
  const bool utf8_ok = internal::IsValidUtf8(yaml_text, &bad_utf8);

  const std::string bomb_message =
      absl::StrCat("the document expands to more than ", kMaxYamlNodes,
                   " nodes (aliases expanded); a pipeline spec is far smaller (YAML alias bomb?)");
  const std::string depth_message =
      absl::StrCat("the document nests deeper than ", kMaxDepth,
                   " levels; a pipeline spec is far shallower");
  std::vector<YAML::Node> documents;
  try {
    {
      std::istringstream stream{std::string(yaml_text)};
      YAML::Parser parser(stream);
      NodeBudget budget(kMaxYamlNodes);
      while (parser.HandleNextDocument(budget)) {
      }
    }
    documents = YAML::LoadAll(std::string(yaml_text));
  } catch (const NodeBudget::Exceeded& e) {
    whole_file_error(0, 0, e.depth ? depth_message : bomb_message);
    return errors;
  } catch (const YAML::Exception& e) {
    const int line = e.mark.line >= 0 ? e.mark.line + 1 : 0;
    const int column = e.mark.column >= 0 ? e.mark.column + 1 : 0;
    whole_file_error(line, column, absl::StrCat("YAML syntax error: ", e.msg));
    return errors;
  }
  if (documents.size() > 1) {
    whole_file_error(0, 0, absl::StrCat("expected one YAML document, found ", documents.size(),
                                        " (separated by ---)"));
    return errors;
  }
  YAML::Node root = documents.empty() ? YAML::Node() : documents[0];
  int budget = kMaxYamlNodes;
  if (!CountNodes(root, 0, &budget)) {  // the event pass should have caught it; belt and braces
    whole_file_error(0, 0, bomb_message);
    return errors;
  }

  internal::LocationMap locations;
  Converter converter(source, &errors, &locations);
  bool is_spec = false;
  try {
    for (const std::string& argument : set_overrides) {
      ApplyOverride(root, argument, &converter, &errors);
    }
    is_spec = converter.ConvertRoot(root, spec);
  } catch (const YAML::Exception& e) {
    // Every access above is guarded by a type check; this is a last line so that no input can
    // take a daemon down.
    whole_file_error(0, 0, absl::StrCat("cannot read the YAML structure: ", e.msg));
    return errors;
  }
  if (!utf8_ok && converter.utf8_errors() == 0) {
    // Outside any value (a comment, say): still refused, located by byte offset.
    const auto [line, column] = LineColumn(yaml_text, bad_utf8);
    whole_file_error(line, column,
                     absl::StrCat("invalid UTF-8 (byte 0x",
                                  absl::Hex(static_cast<unsigned char>(yaml_text[bad_utf8]),
                                            absl::kZeroPad2),
                                  "); the file must be UTF-8"));
  }
  internal::SemanticContext context;
  context.yaml_paths = true;
  context.locations = &locations;
  context.source = source;
  if (is_spec) internal::ValidateSemantics(*spec, context, &errors);
  if (errors.empty()) ApplyDefaults(spec);
  return errors;
}

absl::StatusOr<PipelineSpec> ParsePipelineYaml(absl::string_view yaml_text,
                                               absl::string_view source_name,
                                               const std::vector<std::string>& set_overrides) {
  PipelineSpec spec;
  std::vector<ConfigError> errors =
      ParsePipelineYamlWithErrors(yaml_text, source_name, set_overrides, &spec);
  if (!errors.empty()) return ErrorsToStatus(errors);
  return spec;
}

absl::StatusOr<PipelineSpec> LoadPipelineFile(const std::string& path,
                                              const std::vector<std::string>& set_overrides) {
  std::error_code ec;
  const auto status = std::filesystem::status(path, ec);
  if (ec || !std::filesystem::exists(status)) {
    return absl::NotFoundError(absl::StrCat(path, ": no such file"));
  }
  if (!std::filesystem::is_regular_file(status)) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a regular file"));
  }
  const uintmax_t size = std::filesystem::file_size(path, ec);
  if (!ec && size > kMaxSpecBytes) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": file is ", size,
                                                   " bytes; a pipeline spec may be at most ",
                                                   kMaxSpecBytes, " bytes (4 MiB)"));
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::PermissionDeniedError(absl::StrCat(path, ": cannot open for reading"));
  std::ostringstream buffer;
  buffer << in.rdbuf();
  return ParsePipelineYaml(buffer.str(), path, set_overrides);
}

}  // namespace align::config
