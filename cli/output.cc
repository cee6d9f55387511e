#include "cli/output.h"

#include <google/protobuf/timestamp.pb.h>
#include <google/protobuf/util/json_util.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace align::cli {
namespace {

size_t DisplayWidth(const std::string& s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80 ? 1 : 0;
  return n;
}

std::string EnumSuffix(const std::string& name, absl::string_view prefix) {
  std::string s = name;
  if (absl::StartsWith(s, prefix)) s = s.substr(prefix.size());
  return absl::AsciiStrToLower(s);
}

void EmitYaml(YAML::Emitter& out, const nlohmann::json& v) {
  switch (v.type()) {
    case nlohmann::json::value_t::object:
      out << YAML::BeginMap;
      for (auto it = v.begin(); it != v.end(); ++it) {
        out << YAML::Key << it.key() << YAML::Value;
        EmitYaml(out, it.value());
      }
      out << YAML::EndMap;
      break;
    case nlohmann::json::value_t::array:
      out << YAML::BeginSeq;
      for (const auto& e : v) EmitYaml(out, e);
      out << YAML::EndSeq;
      break;
    case nlohmann::json::value_t::string:
      out << YAML::DoubleQuoted << v.get<std::string>();
      break;
    case nlohmann::json::value_t::boolean:
      out << v.get<bool>();
      break;
    case nlohmann::json::value_t::number_integer:
      out << v.get<int64_t>();
      break;
    case nlohmann::json::value_t::number_unsigned:
      out << v.get<uint64_t>();
      break;
    case nlohmann::json::value_t::number_float:
      out << v.get<double>();
      break;
    default:
      out << YAML::Null;
  }
}

}  // namespace

absl::StatusOr<OutputFormat> ParseOutputFormat(const std::string& text) {
  if (text.empty() || text == "table" || text == "wide") return OutputFormat::kTable;
  if (text == "json") return OutputFormat::kJson;
  if (text == "yaml") return OutputFormat::kYaml;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown output format \"", text, "\"; expected json, yaml or table"));
}

std::string RenderTable(const std::vector<std::string>& headers,
                        const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> widths(headers.size(), 0);
  for (size_t i = 0; i < headers.size(); ++i) widths[i] = DisplayWidth(headers[i]);
  for (const auto& r : rows) {
    for (size_t i = 0; i < r.size() && i < widths.size(); ++i) {
      widths[i] = std::max(widths[i], DisplayWidth(r[i]));
    }
  }
  std::string out;
  auto emit = [&](const std::vector<std::string>& cells) {
    std::string line;
    for (size_t i = 0; i < widths.size(); ++i) {
      const std::string cell = i < cells.size() ? cells[i] : "";
      line += cell;
      if (i + 1 < widths.size()) line.append(widths[i] - DisplayWidth(cell) + 3, ' ');
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out += line + "\n";
  };
  emit(headers);
  for (const auto& r : rows) emit(r);
  return out;
}

std::string ProtoToJson(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = true;
  options.preserve_proto_field_names = true;
  std::string out;
  (void)google::protobuf::util::MessageToJsonString(message, &out, options);
  return out;
}

nlohmann::json ProtoToJsonValue(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  std::string out;
  if (!google::protobuf::util::MessageToJsonString(message, &out, options).ok()) return {};
  return nlohmann::json::parse(out, nullptr, /*allow_exceptions=*/false);
}

std::string JsonToYaml(const nlohmann::json& value) {
  YAML::Emitter out;
  EmitYaml(out, value);
  return std::string(out.c_str()) + "\n";
}

std::string FormatMessage(const google::protobuf::Message& message, OutputFormat format) {
  if (format == OutputFormat::kYaml) return JsonToYaml(ProtoToJsonValue(message));
  std::string s = ProtoToJson(message);
  if (s.empty() || s.back() != '\n') s += "\n";
  return s;
}

std::string PipelineStateName(align::v1::PipelineState state) {
  return EnumSuffix(align::v1::PipelineState_Name(state), "PIPELINE_");
}
std::string StageStateName(align::v1::StageState state) {
  return EnumSuffix(align::v1::StageState_Name(state), "STAGE_");
}
std::string AttemptStateName(align::v1::AttemptState state) {
  return EnumSuffix(align::v1::AttemptState_Name(state), "ATTEMPT_");
}
std::string WorkerStateName(align::v1::WorkerState state) {
  return EnumSuffix(align::v1::WorkerState_Name(state), "WORKER_");
}
std::string FailureClassName(align::v1::FailureClass failure_class) {
  if (failure_class == align::v1::FAILURE_CLASS_UNSPECIFIED) return "";
  return absl::AsciiStrToLower(align::v1::FailureClass_Name(failure_class));
}

bool ParsePipelineState(const std::string& text, align::v1::PipelineState* state) {
  std::string upper = absl::AsciiStrToUpper(text);
  if (align::v1::PipelineState_Parse(upper, state)) return true;
  return align::v1::PipelineState_Parse(absl::StrCat("PIPELINE_", upper), state);
}

bool IsTerminal(align::v1::PipelineState state) {
  return state == align::v1::PIPELINE_SUCCEEDED || state == align::v1::PIPELINE_FAILED ||
         state == align::v1::PIPELINE_CANCELLED;
}

std::string HumanDuration(absl::Duration d) {
  if (d < absl::ZeroDuration()) d = absl::ZeroDuration();
  int64_t s = absl::ToInt64Seconds(d);
  if (s < 60) return absl::StrCat(s, "s");
  if (s < 3600) return absl::StrFormat("%dm%02ds", s / 60, s % 60);
  if (s < 86400) return absl::StrFormat("%dh%02dm", s / 3600, (s % 3600) / 60);
  return absl::StrFormat("%dd%02dh", s / 86400, (s % 86400) / 3600);
}

std::string FormatCount(double v) {
  double a = std::fabs(v);
  if (a >= 1e9) return absl::StrFormat("%.1fG", v / 1e9);
  if (a >= 1e6) return absl::StrFormat("%.1fM", v / 1e6);
  if (a >= 1e3) return absl::StrFormat("%.1fk", v / 1e3);
  return absl::StrFormat("%.0f", v);
}

std::string FormatMetric(double v) {
  if (v == 0) return "0";
  if (!std::isfinite(v)) return std::isnan(v) ? "nan" : (v > 0 ? "inf" : "-inf");
  if (std::fabs(v) < 1e-3 || std::fabs(v) >= 1e6) return absl::StrFormat("%.3e", v);
  return absl::StrFormat("%.4g", v);
}

absl::Time ToTime(const google::protobuf::Timestamp& ts) {
  if (ts.seconds() == 0 && ts.nanos() == 0) return absl::InfinitePast();
  return absl::FromUnixSeconds(ts.seconds()) + absl::Nanoseconds(ts.nanos());
}

std::string RenderStageProgress(const align::v1::StageStatus& stage, int name_width,
                                int bar_width) {
  const align::v1::Progress& p = stage.progress();
  std::string name = stage.name();
  if (static_cast<int>(DisplayWidth(name)) < name_width) {
    name.append(name_width - DisplayWidth(name), ' ');
  }
  std::string state = StageStateName(stage.state());
  const bool done =
      stage.state() == align::v1::STAGE_SUCCEEDED || stage.state() == align::v1::STAGE_CACHED;
  std::string line = absl::StrFormat("%s  %-10s", name, state);
  if (p.total_steps() > 0) {
    double frac = std::clamp(static_cast<double>(p.step()) / static_cast<double>(p.total_steps()),
                             0.0, 1.0);
    if (done) frac = 1.0;
    int filled = static_cast<int>(std::floor(frac * bar_width));
    std::string bar(filled, '#');
    bar.append(bar_width - filled, '.');
    int64_t step = done ? p.total_steps() : p.step();
    // Training bars count steps; other work (eval suites) says what it counts, and once the stage
    // is done its last phase's count (say the last suite's 40/40) would misread as the stage's.
    const bool phase_count = !p.phase().empty() && p.phase() != "train" && p.phase() != "done";
    absl::StrAppend(&line, " [", bar, "]");
    if (!(done && phase_count)) absl::StrAppend(&line, " ", step, "/", p.total_steps());
    if (phase_count && !done) absl::StrAppend(&line, " ", p.phase());
    if (auto it = p.metrics().find("loss"); it != p.metrics().end()) {
      absl::StrAppend(&line, "  loss ", FormatMetric(it->second));
    }
    if (auto it = p.metrics().find("rewards/margins"); it != p.metrics().end()) {
      absl::StrAppend(&line, "  margin ", FormatMetric(it->second));
    }
    if (p.tokens_per_second() > 0) {
      absl::StrAppend(&line, "  ", FormatCount(p.tokens_per_second()), " tok/s");
    }
    if (p.eta_seconds() > 0 && stage.state() == align::v1::STAGE_RUNNING) {
      absl::StrAppend(&line, "  ETA ", HumanDuration(absl::Seconds(p.eta_seconds())));
    }
  } else if (!p.phase().empty() && stage.state() == align::v1::STAGE_RUNNING) {
    absl::StrAppend(&line, " ", p.phase());
  }
  if (stage.state() == align::v1::STAGE_QUEUED && !stage.waiting_reason().empty()) {
    absl::StrAppend(&line, " (", stage.waiting_reason(), ")");
  }
  if ((stage.state() == align::v1::STAGE_FAILED) && !stage.reason().empty()) {
    absl::StrAppend(&line, " ", stage.reason());
  }
  while (!line.empty() && line.back() == ' ') line.pop_back();
  return line;
}

}  // namespace align::cli
