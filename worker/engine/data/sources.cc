#include "worker/engine/data/sources.h"

#include <algorithm>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "worker/engine/core/failure.h"
#include "worker/engine/data/mixer.h"

namespace align::engine::data {
namespace fs = std::filesystem;

absl::StatusOr<std::vector<SourceSpec>> SourcesFromJob(const JobSpec& job) {
  std::vector<SourceSpec> out;
  auto it = job.stage.find("data");
  if (it == job.stage.end() || !it->is_array() || it->empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "stage '", job.stage_name, "': field 'data' is empty; list at least one data source"));
  }
  for (size_t i = 0; i < it->size(); ++i) {
    const nlohmann::json& d = (*it)[i];
    const std::string field = absl::StrCat("stage.data[", i, "]");
    SourceSpec s;
    if (auto in = job.inputs.find(absl::StrCat("data/", i)); in != job.inputs.end()) {
      s.path = in->second;  // ParseJob already resolved data:// inputs
    } else {
      s.path = ResolveDataPath(d.value("path", ""), job.data_dir);
    }
    if (s.path.empty()) return absl::InvalidArgumentError(absl::StrCat(field, ".path: is empty"));
    auto fmt = ParseDataFormat(d.value("format", ""));
    if (!fmt.ok()) return absl::InvalidArgumentError(absl::StrCat(field, ".", fmt.status().message()));
    s.format = *fmt;
    s.weight = JsonNumber(d, "weight").value_or(1.0);
    if (s.weight == 0) s.weight = 1.0;
    if (s.weight < 0) return absl::InvalidArgumentError(absl::StrCat(field, ".weight: must be > 0"));
    s.max_examples = static_cast<int64_t>(JsonNumber(d, "max_examples").value_or(0));
    auto obl = ParseOnBadLine(d.value("on_bad_line", ""));
    if (!obl.ok()) return absl::InvalidArgumentError(absl::StrCat(field, ".", obl.status().message()));
    s.on_bad_line = *obl;
    s.language = d.value("language", "");
    out.push_back(std::move(s));
  }
  return out;
}

void DataReport::SetRead(size_t source, const SourceSpec& spec, const ReadStats& stats) {
  auto& p = sources_[source];
  p.path = spec.path;
  p.format = DataFormatName(spec.format);
  p.lines = stats.lines;
  p.skipped = stats.skipped;
  p.bad_lines = stats.bad_lines;
}

int64_t DataReport::TotalKept() const {
  int64_t n = 0;
  for (const auto& [i, p] : sources_) n += p.kept;
  return n;
}

nlohmann::json DataReport::ToJson() const {
  nlohmann::json j = nlohmann::json::object();
  nlohmann::json srcs = nlohmann::json::array();
  std::map<std::string, int64_t> dropped = later_;
  int64_t kept = 0, skipped = 0;
  for (const auto& [i, p] : sources_) {
    srcs.push_back({{"path", p.path}, {"format", p.format}, {"lines", p.lines},
                    {"bad_lines_skipped", p.skipped}, {"bad_line_examples", p.bad_lines},
                    {"kept", p.kept}, {"dropped", p.dropped}});
    kept += p.kept;
    skipped += p.skipped;
    for (const auto& [k, v] : p.dropped) dropped[k] += v;
  }
  j["sources"] = srcs;
  j["kept"] = kept;
  j["bad_lines_skipped"] = skipped;
  j["dropped"] = dropped;
  return j;
}

namespace {

// Row-level failures: malformed rows follow on_bad_line; well-formed but unusable rows are
// dropped and counted (FailedPrecondition carries the reason).
absl::Status HandleRow(const absl::Status& s, const SourceSpec& spec, size_t idx,
                       DataReport& report) {
  if (s.code() == absl::StatusCode::kFailedPrecondition) {
    report.Dropped(idx, std::string(s.message()));
    return absl::OkStatus();
  }
  if (spec.on_bad_line == OnBadLine::kSkip) {
    report.Dropped(idx, "malformed");
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(
      absl::StrCat(s.message(), " (set on_bad_line: SKIP to skip and count such rows)"));
}

template <typename T, typename F>
absl::StatusOr<std::vector<std::vector<T>>> LoadAll(const std::vector<SourceSpec>& sources,
                                                    DataReport& report, F per_row) {
  std::vector<std::vector<T>> out(sources.size());
  for (size_t i = 0; i < sources.size(); ++i) {
    const SourceSpec& spec = sources[i];
    SourceSpec resolved = spec;
    auto stats = ReadJsonl(spec.path, spec.on_bad_line, [&](nlohmann::json&& row, int64_t) -> absl::Status {
      if (resolved.format == DataFormat::kUnspecified) {
        ASSIGN_OR_RETURN(resolved.format, InferDataFormat(row));
      }
      return per_row(row, resolved, i, out[i]);
    }, /*max_rows=*/spec.max_examples);  // max_examples counts source rows (an OASST tree is one)
    if (!stats.ok()) return MarkInputError(stats.status());
    report.SetRead(i, resolved, *stats);
  }
  return out;
}

}  // namespace

absl::StatusOr<std::vector<std::vector<SftExample>>> LoadSftSources(
    const std::vector<SourceSpec>& sources, DataReport& report) {
  return LoadAll<SftExample>(
      sources, report,
      [&](const nlohmann::json& row, const SourceSpec& spec, size_t idx,
          std::vector<SftExample>& out) -> absl::Status {
        if (spec.format == DataFormat::kOasstTree) {
          auto r = ConvertOasstTree(row, spec.language);
          if (!r.ok()) return HandleRow(r.status(), spec, idx, report);
          for (const auto& [k, v] : r->skipped) {
            if (k == "no_reply" || k == "language") report.Dropped(idx, "oasst_" + k, v);
          }
          for (auto& c : r->conversations) {
            SftExample ex;
            ex.kind = SftExample::Kind::kMessages;
            ex.messages = std::move(c);
            out.push_back(std::move(ex));
            report.Kept(idx);
          }
          return absl::OkStatus();
        }
        auto ex = ParseSftRow(row, spec.format);
        if (!ex.ok()) return HandleRow(ex.status(), spec, idx, report);
        out.push_back(*std::move(ex));
        report.Kept(idx);
        return absl::OkStatus();
      });
}

absl::StatusOr<std::vector<std::vector<PreferencePair>>> LoadPreferenceSources(
    const std::vector<SourceSpec>& sources, DataReport& report) {
  return LoadAll<PreferencePair>(
      sources, report,
      [&](const nlohmann::json& row, const SourceSpec& spec, size_t idx,
          std::vector<PreferencePair>& out) -> absl::Status {
        if (spec.format == DataFormat::kOasstTree) {
          auto r = ConvertOasstTree(row, spec.language);
          if (!r.ok()) return HandleRow(r.status(), spec, idx, report);
          for (const auto& [k, v] : r->skipped) {
            if (k != "no_reply") report.Dropped(idx, "oasst_" + k, v);
          }
          for (auto& p : r->pairs) {
            out.push_back(std::move(p));
            report.Kept(idx);
          }
          return absl::OkStatus();
        }
        auto p = ParsePreferenceRow(row, spec.format);
        if (!p.ok()) return HandleRow(p.status(), spec, idx, report);
        out.push_back(*std::move(p));
        report.Kept(idx);
        return absl::OkStatus();
      });
}

absl::StatusOr<std::string> PathSha256(const std::string& path, int64_t* size_bytes) {
  std::error_code ec;
  int64_t size = 0;
  std::string sha;
  if (fs::is_directory(path, ec)) {
    std::vector<std::string> files;
    for (const auto& e : fs::recursive_directory_iterator(path, ec)) {
      if (e.is_regular_file()) files.push_back(e.path().string());
    }
    std::sort(files.begin(), files.end());
    std::string manifest;
    for (const auto& f : files) {
      int64_t n = 0;
      ASSIGN_OR_RETURN(std::string h, Sha256File(f, &n));
      size += n;
      manifest += absl::StrCat(fs::relative(f, path).string(), " ", h, "\n");
    }
    sha = Sha256Hex(manifest);
  } else {
    ASSIGN_OR_RETURN(sha, Sha256File(path, &size));
  }
  if (size_bytes != nullptr) *size_bytes = size;
  return sha;
}

absl::Status EmitArtifact(EventSink& events, const std::string& name, const std::string& path,
                          const std::string& kind) {
  int64_t size = 0;
  ASSIGN_OR_RETURN(std::string sha, PathSha256(path, &size));
  events.Emit("artifact", {{"name", name}, {"path", path}, {"kind", kind}, {"sha256", sha},
                           {"size_bytes", size}});
  return absl::OkStatus();
}

absl::StatusOr<nlohmann::json> RunPreferenceFormatStage(const JobSpec& job, EventSink& events) {
  events.Emit("phase", {{"phase", "load"}, {"message", "reading preference sources"}});
  ASSIGN_OR_RETURN(std::vector<SourceSpec> sources, SourcesFromJob(job));
  const double test_fraction = job.ConfigNumber("test_fraction", 0.1);
  if (test_fraction < 0 || test_fraction >= 1) {
    return absl::InvalidArgumentError("stage.preference_format.test_fraction: must be in [0, 1)");
  }
  const int64_t max_pairs = static_cast<int64_t>(job.ConfigNumber("max_pairs", 0));
  DataReport report;
  ASSIGN_OR_RETURN(auto per_source, LoadPreferenceSources(sources, report));
  std::vector<double> weights;
  for (const auto& s : sources) weights.push_back(s.weight);
  std::vector<PreferencePair> mixed = MixSources(per_source, weights, job.Seed());
  if (max_pairs > 0 && static_cast<int64_t>(mixed.size()) > max_pairs) {
    report.DroppedLater("over_max_pairs", static_cast<int64_t>(mixed.size()) - max_pairs);
    mixed.resize(static_cast<size_t>(max_pairs));
  }
  if (mixed.empty()) {
    return MarkInputError(absl::FailedPreconditionError(absl::StrCat(
        "no preference pairs left after conversion: ", report.ToJson().dump())));
  }
  auto [train, test] = SplitHeldOut(std::move(mixed), test_fraction);
  if (job.output_dir.empty()) return absl::InvalidArgumentError("job: output_dir is empty");
  std::error_code ec;
  fs::create_directories(job.output_dir, ec);
  if (ec) return absl::UnavailableError(absl::StrCat(job.output_dir, ": ", ec.message()));
  std::vector<nlohmann::json> train_rows, test_rows;
  for (const auto& p : train) train_rows.push_back(p.ToJson());
  for (const auto& p : test) test_rows.push_back(p.ToJson());
  const std::string train_path = job.output_dir + "/train.jsonl";
  const std::string test_path = job.output_dir + "/test.jsonl";
  const std::string report_path = job.output_dir + "/report.json";
  RETURN_IF_ERROR(WriteJsonl(train_path, train_rows));
  RETURN_IF_ERROR(WriteJsonl(test_path, test_rows));
  nlohmann::json rep = report.ToJson();
  rep["train"] = train_rows.size();
  rep["test"] = test_rows.size();
  rep["seed"] = job.Seed();
  rep["test_fraction"] = test_fraction;
  RETURN_IF_ERROR(WriteFileAtomic(report_path, rep.dump(2) + "\n"));
  RETURN_IF_ERROR(EmitArtifact(events, "train", train_path, "dataset"));
  RETURN_IF_ERROR(EmitArtifact(events, "test", test_path, "dataset"));
  RETURN_IF_ERROR(EmitArtifact(events, "report", report_path, "report"));
  return nlohmann::json{{"pairs/train", train_rows.size()}, {"pairs/test", test_rows.size()},
                        {"kept", rep["kept"]}, {"bad_lines_skipped", rep["bad_lines_skipped"]}};
}

}  // namespace align::engine::data
