// Stage-output references ("${stages.X.outputs.Y}"), the dependency edges they imply, and the
// topological order of a pipeline's stages.
#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/config/internal.h"
#include "common/config/pipeline_config.h"

namespace align::config {
namespace {

using align::v1::PipelineSpec;
using align::v1::StageSpec;
using align::v1::StageType;

bool IsNameChar(char c) {
  return absl::ascii_islower(c) || absl::ascii_isdigit(c) || c == '_' || c == '-';
}

// Parses the inside of "${...}"; false when it is not "stages.<name>.outputs.<output>".
bool ParseInner(absl::string_view inner, StageRef* ref) {
  constexpr absl::string_view kPrefix = "stages.";
  constexpr absl::string_view kMiddle = ".outputs.";
  if (!absl::StartsWith(inner, kPrefix)) return false;
  inner.remove_prefix(kPrefix.size());
  const size_t middle = inner.find(kMiddle);
  if (middle == absl::string_view::npos || middle == 0) return false;
  const absl::string_view stage = inner.substr(0, middle);
  const absl::string_view output = inner.substr(middle + kMiddle.size());
  if (output.empty()) return false;
  for (char c : stage) {
    if (!IsNameChar(c)) return false;
  }
  for (char c : output) {
    if (!IsNameChar(c)) return false;
  }
  ref->stage = std::string(stage);
  ref->output = std::string(output);
  return true;
}

}  // namespace

std::string StageRef::ToString() const { return StageOutputRef(stage, output); }

std::string StageOutputRef(absl::string_view stage, absl::string_view output) {
  return absl::StrCat("${stages.", stage, ".outputs.", output, "}");
}

std::optional<StageRef> ParseStageRef(absl::string_view text) {
  if (!absl::StartsWith(text, "${") || !absl::EndsWith(text, "}")) return std::nullopt;
  StageRef ref;
  if (!ParseInner(text.substr(2, text.size() - 3), &ref)) return std::nullopt;
  ref.begin = 0;
  ref.end = text.size();
  return ref;
}

absl::StatusOr<std::vector<StageRef>> FindStageRefs(absl::string_view text) {
  std::vector<StageRef> refs;
  size_t pos = 0;
  while ((pos = text.find("${", pos)) != absl::string_view::npos) {
    const size_t close = text.find('}', pos);
    StageRef ref;
    if (close == absl::string_view::npos || !ParseInner(text.substr(pos + 2, close - pos - 2), &ref)) {
      const absl::string_view bad =
          close == absl::string_view::npos ? text.substr(pos) : text.substr(pos, close - pos + 1);
      return absl::InvalidArgumentError(
          absl::StrCat("malformed reference \"", bad,
                       "\"; expected ${stages.<stage>.outputs.<output>}"));
    }
    ref.begin = pos;
    ref.end = close + 1;
    refs.push_back(std::move(ref));
    pos = close + 1;
  }
  return refs;
}

absl::StatusOr<std::string> SubstituteStageRefs(
    absl::string_view text,
    const std::function<absl::StatusOr<std::string>(const StageRef&)>& resolve) {
  auto refs = FindStageRefs(text);
  if (!refs.ok()) return refs.status();
  std::string out;
  size_t last = 0;
  for (const StageRef& ref : *refs) {
    absl::StrAppend(&out, text.substr(last, ref.begin - last));
    auto value = resolve(ref);
    if (!value.ok()) return value.status();
    out += *value;
    last = ref.end;
  }
  absl::StrAppend(&out, text.substr(last));
  return out;
}

const std::vector<std::string>& StageOutputs(StageType type) {
  static const auto* model = new std::vector<std::string>{"model"};
  static const auto* prefs = new std::vector<std::string>{"train", "test"};
  static const auto* results = new std::vector<std::string>{"results"};
  static const auto* none = new std::vector<std::string>{};
  switch (type) {
    case align::v1::SFT:
    case align::v1::REWARD_MODEL:
    case align::v1::DPO:
    case align::v1::PPO:
      return *model;
    case align::v1::PREFERENCE_FORMAT:
      return *prefs;
    case align::v1::EVAL:
      return *results;
    default:
      return *none;
  }
}

std::vector<StageRefField> StageReferenceFields(const StageSpec& stage) {
  std::vector<StageRefField> fields;
  fields.push_back({"model", &stage.model()});
  // std::map for a stable order (protobuf maps iterate in unspecified order).
  std::map<std::string, const std::string*> models;
  for (const auto& [name, value] : stage.models()) models[name] = &value;
  for (const auto& [name, value] : models) fields.push_back({absl::StrCat("models[", name, "]"), value});
  for (int i = 0; i < stage.data_size(); ++i) {
    fields.push_back({absl::StrCat("data[", i, "].path"), &stage.data(i).path()});
  }
  fields.push_back({"tokenizer", &stage.tokenizer()});
  fields.push_back({"chat_template", &stage.chat_template()});
  if (stage.has_dpo()) fields.push_back({"dpo.reference_model", &stage.dpo().reference_model()});
  if (stage.has_ppo()) fields.push_back({"ppo.reward_model", &stage.ppo().reward_model()});
  if (stage.has_eval() && stage.eval().has_judge()) {
    fields.push_back({"eval.judge.model", &stage.eval().judge().model()});
  }
  return fields;
}

std::vector<std::string> StageDependencies(const StageSpec& stage) {
  std::vector<std::string> deps;
  absl::flat_hash_set<std::string> seen;
  for (const std::string& d : stage.depends_on()) {
    if (seen.insert(d).second) deps.push_back(d);
  }
  for (const StageRefField& field : StageReferenceFields(stage)) {
    auto refs = FindStageRefs(*field.value);
    if (!refs.ok()) continue;  // malformed references are reported by validation
    for (const StageRef& ref : *refs) {
      if (seen.insert(ref.stage).second) deps.push_back(ref.stage);
    }
  }
  return deps;
}

absl::StatusOr<std::vector<int>> TopologicalOrder(const PipelineSpec& spec) {
  const int n = spec.stages_size();
  absl::flat_hash_map<std::string, int> index;
  for (int i = 0; i < n; ++i) index.emplace(spec.stages(i).name(), i);
  std::vector<std::vector<int>> dependents(n);
  std::vector<int> pending(n, 0);
  for (int i = 0; i < n; ++i) {
    for (const std::string& dep : StageDependencies(spec.stages(i))) {
      auto it = index.find(dep);
      if (it == index.end()) {
        return absl::InvalidArgumentError(absl::StrCat("stage \"", spec.stages(i).name(),
                                                       "\" depends on unknown stage \"", dep, "\""));
      }
      dependents[it->second].push_back(i);
      ++pending[i];
    }
  }
  // Kahn's algorithm, always taking the lowest ready index so that independent stages keep
  // the order the user wrote them in.
  std::vector<int> order;
  std::vector<bool> done(n, false);
  while (static_cast<int>(order.size()) < n) {
    int next = -1;
    for (int i = 0; i < n; ++i) {
      if (!done[i] && pending[i] == 0) {
        next = i;
        break;
      }
    }
    if (next < 0) {
      std::vector<std::string> cycle = internal::FindDependencyCycle(spec);
      if (cycle.empty()) {  // only self-dependencies are left
        for (int i = 0; i < n; ++i) {
          if (!done[i]) cycle = {spec.stages(i).name(), spec.stages(i).name()};
        }
      }
      return absl::InvalidArgumentError(
          absl::StrCat("cycle in stage dependencies: ", absl::StrJoin(cycle, " -> ")));
    }
    done[next] = true;
    order.push_back(next);
    for (int d : dependents[next]) --pending[d];
  }
  return order;
}

std::string StageTypeName(StageType type) {
  const auto* value = align::v1::StageType_descriptor()->FindValueByNumber(type);
  return value == nullptr ? absl::StrCat(static_cast<int>(type)) : internal::EnumYamlName(value);
}

std::optional<StageType> ParseStageType(absl::string_view name) {
  for (const std::string& n : internal::EnumYamlNames(align::v1::StageType_descriptor())) {
    if (n == name) {
      return static_cast<StageType>(
          align::v1::StageType_descriptor()->FindValueByName(absl::AsciiStrToUpper(name))->number());
    }
  }
  return std::nullopt;
}

namespace internal {

std::vector<std::string> FindDependencyCycle(const PipelineSpec& spec) {
  const int n = spec.stages_size();
  absl::flat_hash_map<std::string, int> index;
  for (int i = 0; i < n; ++i) index.emplace(spec.stages(i).name(), i);
  std::vector<std::vector<int>> deps(n);
  for (int i = 0; i < n; ++i) {
    for (const std::string& d : StageDependencies(spec.stages(i))) {
      auto it = index.find(d);
      if (it != index.end() && it->second != i) deps[i].push_back(it->second);
    }
  }
  // Iterative DFS with colours; the stack holds the current path.
  enum class Colour { kWhite, kGrey, kBlack };
  std::vector<Colour> colour(n, Colour::kWhite);
  for (int start = 0; start < n; ++start) {
    if (colour[start] != Colour::kWhite) continue;
    std::vector<std::pair<int, size_t>> stack{{start, 0}};
    colour[start] = Colour::kGrey;
    while (!stack.empty()) {
      auto& [node, next] = stack.back();
      if (next < deps[node].size()) {
        const int d = deps[node][next++];
        if (colour[d] == Colour::kGrey) {
          std::vector<std::string> cycle;
          size_t k = 0;
          while (stack[k].first != d) ++k;
          for (; k < stack.size(); ++k) cycle.push_back(spec.stages(stack[k].first).name());
          cycle.push_back(spec.stages(d).name());
          return cycle;
        }
        if (colour[d] == Colour::kWhite) {
          colour[d] = Colour::kGrey;
          stack.push_back({d, 0});
        }
      } else {
        colour[node] = Colour::kBlack;
        stack.pop_back();
      }
    }
  }
  return {};
}

}  // namespace internal
}  // namespace align::config
