// Output helpers shared by alignctl's verbs: human tables, proto -> JSON/YAML for `-o json|yaml`,
// state names, durations and the one-line stage progress bar. Pure functions, unit-tested.
#pragma once

#include <string>
#include <vector>

#include <google/protobuf/message.h>
#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "align/v1/state.pb.h"

namespace align::cli {

enum class OutputFormat { kTable, kJson, kYaml };

//! "" or "table" -> kTable, "json", "yaml"; anything else is InvalidArgument.
absl::StatusOr<OutputFormat> ParseOutputFormat(const std::string& text);

//! Left-aligned columns separated by three spaces, header first (kubectl style). Widths count
//! UTF-8 code points, so non-ASCII names line up.
std::string RenderTable(const std::vector<std::string>& headers,
                        const std::vector<std::vector<std::string>>& rows);

//! Proto3 JSON with the proto field names (the YAML keys), pretty-printed.
std::string ProtoToJson(const google::protobuf::Message& message);
//! The same as a JSON value.
nlohmann::json ProtoToJsonValue(const google::protobuf::Message& message);
//! Block-style YAML of a JSON value (keys in their JSON order).
std::string JsonToYaml(const nlohmann::json& value);
//! A message in the requested machine format (kJson or kYaml), newline-terminated.
std::string FormatMessage(const google::protobuf::Message& message, OutputFormat format);

//! Lower-case state names without the enum prefix: "running", "succeeded", "queued", ...
std::string PipelineStateName(align::v1::PipelineState state);
std::string StageStateName(align::v1::StageState state);
std::string AttemptStateName(align::v1::AttemptState state);
std::string WorkerStateName(align::v1::WorkerState state);
std::string FailureClassName(align::v1::FailureClass failure_class);
//! Parses a pipeline state name as PipelineStateName prints it (or the enum name).
bool ParsePipelineState(const std::string& text, align::v1::PipelineState* state);

bool IsTerminal(align::v1::PipelineState state);

//! "45s", "3m07s", "2h05m", "3d04h"; negative durations print as "0s".
std::string HumanDuration(absl::Duration d);
//! 1234.5 -> "1.2k", 2.5e6 -> "2.5M".
std::string FormatCount(double value);
//! Compact number for a metric value: 4 significant digits, scientific below 1e-3.
std::string FormatMetric(double value);
//! Seconds since the epoch of a proto Timestamp as absl::Time (InfinitePast when unset).
absl::Time ToTime(const google::protobuf::Timestamp& ts);

//! The progress bar of one stage, `width` characters of bar, e.g.
//! "sft    running    [#########...........]  120/400  loss 1.234  1.2k tok/s  ETA 42s".
//! Stages without a step count show their state and phase only.
std::string RenderStageProgress(const align::v1::StageStatus& stage, int name_width,
                                int bar_width = 24);

}  // namespace align::cli
