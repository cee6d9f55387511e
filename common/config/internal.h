// Internals of common/config shared by its .cc files (not for use outside common/config and its
// tests): suggestions, UTF-8 checks, enum spellings, and the semantic validator that both the
// YAML parser and ValidatePipelineSpec run.
#pragma once

#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "align/v1/pipeline.pb.h"
#include "common/config/pipeline_config.h"
#include "common/suggest.h"
#include "google/protobuf/descriptor.h"

namespace align::config::internal {

// Suggestions ("did you mean"), shared with the engine: common/suggest.h.
using ::align::DidYouMean;
using ::align::EditDistance;
using ::align::NearestMatch;

//! True when `text` is well-formed UTF-8 (no overlongs, surrogates or code points > U+10FFFF);
//! otherwise *bad_offset is the byte offset of the first bad sequence.
bool IsValidUtf8(absl::string_view text, size_t* bad_offset = nullptr);

//! YAML spelling of an enum value: its name in lower case.
std::string EnumYamlName(const google::protobuf::EnumValueDescriptor* value);
//! The YAML spellings of every value of `type` except the *_UNSPECIFIED one.
std::vector<std::string> EnumYamlNames(const google::protobuf::EnumDescriptor* type);

//! Where a YAML field came from.
struct Location {
  std::string source;
  int line = 0;  // 1-based; 0 = unknown
  int column = 0;
  bool invalid = false;  // the value was written but could not be converted (already reported)
};
//! YAML field path ("spec.stages[1].config.beta") -> where it was written.
using LocationMap = absl::flat_hash_map<std::string, Location>;

//! How the semantic validator names fields and finds their source.
struct SemanticContext {
  bool yaml_paths = false;           // "spec.stages[i].config.x" instead of "stages[i].dpo.x"
  const LocationMap* locations = nullptr;  // YAML only
  std::string source;                // file name for errors without a recorded location
};

//! Semantic rules over a converted (not yet defaulted) spec: required fields, names, ranges,
//! references, dependencies and cycles, eval gates. Appends to *errors.
void ValidateSemantics(const align::v1::PipelineSpec& spec, const SemanticContext& context,
                       std::vector<ConfigError>* errors);

//! Stage names forming a dependency cycle, first name repeated at the end ("a", "b", "a"); empty
//! when there is none. Unknown dependency names and self-dependencies (reported on their own)
//! are ignored.
std::vector<std::string> FindDependencyCycle(const align::v1::PipelineSpec& spec);

//! Valid eval suite names.
const std::vector<std::string>& EvalSuites();

//! True when `text` is an http(s) URL.
bool IsUrl(absl::string_view text);

//! Parses an eval gate ">= 0.25" into its operator and threshold.
bool ParseGate(absl::string_view text, std::string* op, double* threshold);

}  // namespace align::config::internal
