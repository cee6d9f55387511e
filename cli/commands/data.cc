// `alignctl data preview -f pipeline.yaml --stage S [-n N]`: what a stage's data looks like to the
// trainer, without a coordinator. The stage becomes the job the worker would hand align-train, and
// the engine's own code reads it: downloads and checksums (FetchJobData), sources (SourcesFromJob,
// LoadSftSources / LoadPreferenceSources), training settings (SettingsFromJob), the chat template,
// tokenization and the truncation policy. It prints the first N examples as the trainer sees them,
// trained tokens highlighted, then the drop report over every row: what loading dropped per source
// and what tokenization and truncation would drop.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <google/protobuf/util/json_util.h>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "align/v1/job.pb.h"
#include "cli/commands/client_support.h"
#include "cli/commands/commands.h"
#include "common/config/pipeline_config.h"
#include "common/status_macros.h"
#include "worker/engine/core/events.h"
#include "worker/engine/core/job.h"
#include "worker/engine/data/batching.h"
#include "worker/engine/data/fetch.h"
#include "worker/engine/data/formats.h"
#include "worker/engine/data/sources.h"
#include "worker/engine/tokenizer/chat_masks.h"
#include "worker/engine/tokenizer/chat_template.h"
#include "worker/engine/tokenizer/tokenizer.h"
#include "worker/engine/train/trainer.h"

namespace align::cli {
namespace {

namespace fs = std::filesystem;
namespace data = ::align::engine::data;
using data::TokenizedExample;

struct PreviewOptions {
  std::string file;
  std::vector<std::string> sets;
  std::string stage;
  int n = 3;
  std::string data_dir;
  bool color = false;
  bool no_color = false;
};

std::string DataDir(const std::string& flag) {
  if (!flag.empty()) return flag;
  if (const char* env = std::getenv("ALIGN_DATA_DIR"); env != nullptr && *env != '\0') return env;
  std::error_code ec;
  if (fs::is_directory("../shared/data", ec)) return "../shared/data";
  return "";
}

// "${stages.X.outputs.Y}" -> X, else "".
std::string ReferencedStage(const std::string& value) {
  constexpr char kPrefix[] = "${stages.";
  size_t at = value.find(kPrefix);
  if (at == std::string::npos) return "";
  size_t begin = at + sizeof(kPrefix) - 1;
  size_t end = value.find('.', begin);
  return end == std::string::npos ? "" : value.substr(begin, end - begin);
}

const align::v1::StageSpec* FindStage(const align::v1::PipelineSpec& spec, const std::string& name) {
  for (const auto& s : spec.stages()) {
    if (s.name() == name) return &s;
  }
  return nullptr;
}

// The tokenizer a stage uses: its tokenizer, else its model, else the defaults'. A model that is
// another stage's output (${stages.sft.outputs.model}) carries that stage's tokenizer, so the
// reference is followed to the model it was trained from. `via` names the stages followed.
absl::StatusOr<std::string> TokenizerFor(const align::v1::PipelineSpec& spec,
                                         const align::v1::StageSpec& stage, std::string* via) {
  const align::v1::StageSpec* s = &stage;
  for (int depth = 0; depth < 16; ++depth) {
    std::string path = !s->tokenizer().empty()   ? s->tokenizer()
                       : !s->model().empty()     ? s->model()
                       : !spec.defaults().tokenizer().empty() ? spec.defaults().tokenizer()
                                                              : spec.defaults().model();
    const std::string ref = ReferencedStage(path);
    if (ref.empty()) return path;
    s = FindStage(spec, ref);
    if (s == nullptr) {
      return absl::NotFoundError(absl::StrCat("stages.", stage.name(), ": \"", path,
                                              "\" names no stage of the pipeline"));
    }
    *via += absl::StrCat(via->empty() ? "" : ", ", "stage ", ref, "'s base model");
  }
  return absl::FailedPreconditionError("stage model references form a cycle");
}

// Prints the engine's download progress when stderr is not a terminal (on one, FetchToCache
// draws its bar there): one line when a download starts and one when it ends.
class PreviewEvents final : public engine::EventSink {
 public:
  void Emit(const std::string& type, nlohmann::json fields) override {
    if (type != "phase" || fields.value("phase", "") != "download") return;
    if (isatty(STDERR_FILENO) != 0) return;
    if (fields.value("bytes", int64_t{0}) > 0 && !fields.value("done", false)) return;
    std::fprintf(stderr, "%s\n", fields.value("message", "").c_str());
  }
};

// Tokens as text with the trained ones highlighted: reverse video on a terminal, [[...]] otherwise.
// Decoding runs of tokens one by one would lose SentencePiece's leading spaces, so each run is the
// difference between the decoded prefix up to its end and the decoded prefix before it.
std::string Highlight(const engine::Tokenizer& tok, const std::vector<int32_t>& ids,
                      const std::vector<uint8_t>& mask, bool color) {
  std::string out, decoded;
  size_t begin = 0;
  while (begin < ids.size()) {
    const bool trained = begin < mask.size() && mask[begin] != 0;
    size_t end = begin;
    while (end < ids.size() && (end < mask.size() && mask[end] != 0) == trained) ++end;
    std::string upto = tok.Decode(std::vector<int32_t>(ids.begin(), ids.begin() + end),
                                  /*skip_special_tokens=*/false);
    std::string piece = absl::StartsWith(upto, decoded)
                            ? upto.substr(decoded.size())
                            : tok.Decode(std::vector<int32_t>(ids.begin() + begin, ids.begin() + end),
                                         false);
    decoded = std::move(upto);
    if (trained) {
      absl::StrAppend(&out, color ? "\033[7m" : "[[", piece, color ? "\033[0m" : "]]");
    } else {
      out += piece;
    }
    begin = end;
  }
  return out;
}

int Trained(const std::vector<uint8_t>& mask) {
  int n = 0;
  for (uint8_t m : mask) n += m != 0;
  return n;
}

std::string DropsText(const std::map<std::string, int64_t>& dropped) {
  if (dropped.empty()) return "none dropped";
  std::vector<std::string> parts;
  int64_t total = 0;
  for (const auto& [k, v] : dropped) {
    parts.push_back(absl::StrCat(k, " ", v));
    total += v;
  }
  return absl::StrCat(total, " dropped (", absl::StrJoin(parts, ", "), ")");
}

absl::Status Preview(const PreviewOptions& o) {
  ASSIGN_OR_RETURN(align::v1::PipelineSpec spec, config::LoadPipelineFile(o.file, o.sets));
  const align::v1::StageSpec* stage = FindStage(spec, o.stage);
  if (stage == nullptr) {
    std::vector<std::string> names;
    for (const auto& s : spec.stages()) names.push_back(s.name());
    return absl::NotFoundError(absl::StrCat(o.file, ": no stage \"", o.stage, "\"; stages are ",
                                            absl::StrJoin(names, ", ")));
  }
  const auto type = stage->type();
  const bool is_sft = type == align::v1::SFT;
  if (!is_sft && type != align::v1::DPO && type != align::v1::REWARD_MODEL &&
      type != align::v1::PREFERENCE_FORMAT && type != align::v1::EVAL) {
    return absl::UnimplementedError(absl::StrCat(
        "stage ", o.stage, " is a ", absl::AsciiStrToLower(align::v1::StageType_Name(type)),
        " stage; data preview shows sft, preference_format, reward_model, dpo and eval data"));
  }
  if (stage->data_size() == 0) {
    return absl::FailedPreconditionError(absl::StrCat("stage ", o.stage, " has no data"));
  }
  for (int i = 0; i < stage->data_size(); ++i) {
    const std::string& path = stage->data(i).path();
    const std::string ref = ReferencedStage(path);
    if (ref.empty()) continue;
    return absl::FailedPreconditionError(absl::StrCat(
        "stages.", o.stage, ".data[", i, "].path is ", path, ", which stage ", ref,
        " writes when the pipeline runs: preview stage ", ref, " (its input), or give a file with "
        "--set stages.", o.stage, ".data.", i, ".path=FILE"));
  }

  // The job the worker would write for this stage (references to other stages resolved by hand).
  std::string via;
  ASSIGN_OR_RETURN(std::string tokenizer_path, TokenizerFor(spec, *stage, &via));
  if (tokenizer_path.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "stage ", o.stage, " has no model or tokenizer to tokenize with: set stages.", o.stage,
        ".model or defaults.model"));
  }
  const std::string data_dir = DataDir(o.data_dir);
  align::v1::TrainJob job_proto;
  *job_proto.mutable_stage() = *stage;
  job_proto.mutable_stage()->set_tokenizer(tokenizer_path);
  if (!ReferencedStage(stage->model()).empty()) job_proto.mutable_stage()->set_model(tokenizer_path);
  *job_proto.mutable_defaults() = spec.defaults();
  job_proto.set_data_dir(data_dir.empty() ? "" : fs::absolute(data_dir).string());
  std::string json;
  google::protobuf::util::JsonPrintOptions print;
  print.preserve_proto_field_names = true;
  if (auto s = google::protobuf::util::MessageToJsonString(job_proto, &json, print); !s.ok()) {
    return absl::InternalError(absl::StrCat("cannot encode the stage as a job: ", s.ToString()));
  }
  ASSIGN_OR_RETURN(engine::JobSpec job, engine::ParseJob(json, o.file));
  // The engine names fields from the stage ("stage.data[0].path"); here they are the YAML's.
  auto in_yaml = [&](const absl::Status& st) {
    std::string m(st.message());
    if (absl::StartsWith(m, "stage.")) m = absl::StrCat("stages.", o.stage, m.substr(5));
    return absl::Status(st.code(), m);
  };
  PreviewEvents events;
  if (absl::Status st = data::FetchJobData(job, events); !st.ok()) return in_yaml(st);
  auto sources = data::SourcesFromJob(job);
  if (!sources.ok()) return in_yaml(sources.status());
  auto settings_or = engine::train::SettingsFromJob(job);
  if (!settings_or.ok()) return in_yaml(settings_or.status());
  const engine::train::TrainSettings& settings = *settings_or;

  ASSIGN_OR_RETURN(std::unique_ptr<engine::Tokenizer> tok,
                   engine::Tokenizer::Load(engine::ResolveDataPath(tokenizer_path, job.data_dir)));
  const std::string template_name = job.StageOrDefault("chat_template", "tokenizer");
  std::optional<engine::ChatTemplate> tmpl;
  if (auto source = engine::ResolveChatTemplate(template_name, *tok); source.ok()) {
    ASSIGN_OR_RETURN(engine::ChatTemplate t, engine::ChatTemplate::Parse(*source));
    tmpl = std::move(t);
  } else if (template_name != "tokenizer") {
    return source.status();
  }

  // What the trainer truncates to: SFT and DPO/reward model rows; formatting and eval stages
  // do not truncate.
  const bool truncates = is_sft || type == align::v1::DPO || type == align::v1::REWARD_MODEL;
  int64_t max_prompt = settings.max_length / 2;
  if (type == align::v1::DPO) {
    const auto configured = static_cast<int64_t>(job.ConfigNumber("max_prompt_length", 0));
    if (configured > 0) max_prompt = configured;
  }
  const std::string loss_on = absl::AsciiStrToLower(job.ConfigString("loss_on", "assistant"));

  std::printf("stage %s (%s): %d source(s); tokenizer %s%s; chat template %s",
              o.stage.c_str(), absl::AsciiStrToLower(align::v1::StageType_Name(type)).c_str(),
              static_cast<int>(sources->size()), tokenizer_path.c_str(),
              via.empty() ? "" : absl::StrCat(" (", via, ")").c_str(), template_name.c_str());
  if (truncates) {
    std::printf("; max_length %lld", static_cast<long long>(settings.max_length));
    if (!is_sft) std::printf(", max_prompt_length %lld", static_cast<long long>(max_prompt));
  }
  std::printf("\n");

  const bool color = o.color || (!o.no_color && isatty(STDOUT_FILENO) != 0);
  data::DataReport report;
  int shown = 0;
  int64_t rows = 0;
  if (is_sft) {
    ASSIGN_OR_RETURN(auto per_source, data::LoadSftSources(*sources, report));
    for (size_t si = 0; si < per_source.size(); ++si) {
      for (size_t k = 0; k < per_source[si].size(); ++k) {
        const data::SftExample& ex = per_source[si][k];
        ++rows;
        // The trainer's tokenization (RunSftStage).
        TokenizedExample t;
        if (ex.kind == data::SftExample::Kind::kMessages) {
          if (!tmpl) {
            return absl::FailedPreconditionError(
                "conversational SFT data needs a chat template: set chat_template (e.g. zephyr)");
          }
          auto enc = engine::EncodeChatWithMask(*tok, *tmpl, data::ToJson(ex.messages));
          if (!enc.ok()) {
            report.DroppedLater("tokenization_error");
            continue;
          }
          t.ids = enc->ids;
          t.mask = enc->mask;
        } else if (ex.kind == data::SftExample::Kind::kPromptCompletion) {
          auto enc = engine::EncodePromptCompletion(*tok, nullptr, ex.prompt, ex.completion);
          if (!enc.ok()) {
            report.DroppedLater("tokenization_error");
            continue;
          }
          t.ids = enc->prompt_ids;
          t.ids.insert(t.ids.end(), enc->completion_ids.begin(), enc->completion_ids.end());
          t.mask.assign(enc->prompt_ids.size(), 0);
          t.mask.insert(t.mask.end(), enc->completion_ids.size(), 1);
        } else {
          t.ids = tok->Encode(ex.text, true);
          if (tok->eos_id() && (t.ids.empty() || t.ids.back() != *tok->eos_id())) {
            t.ids.push_back(*tok->eos_id());
          }
          t.mask.assign(t.ids.size(), 1);
        }
        if (loss_on == "all") t.mask.assign(t.ids.size(), 1);
        const size_t full = t.ids.size();
        auto r = data::TruncateExample(t, settings.max_length, settings.truncation_side);
        if (shown < o.n) {
          ++shown;
          std::printf("--- example %d (source %zu, row %zu): %zu tokens%s, %d trained%s\n%s\n",
                      shown, si, k + 1, t.ids.size(),
                      full != t.ids.size() ? absl::StrCat(" (truncated from ", full, ")").c_str()
                                           : "",
                      Trained(t.mask),
                      r != data::TruncationResult::kKept
                          ? absl::StrCat("; DROPPED: ", data::TruncationResultName(r)).c_str()
                          : "",
                      Highlight(*tok, t.ids, t.mask, color).c_str());
        }
        if (r != data::TruncationResult::kKept) report.DroppedLater(data::TruncationResultName(r));
      }
    }
  } else {
    ASSIGN_OR_RETURN(auto per_source, data::LoadPreferenceSources(*sources, report));
    for (size_t si = 0; si < per_source.size(); ++si) {
      for (size_t k = 0; k < per_source[si].size(); ++k) {
        const data::PreferencePair& p = per_source[si][k];
        ++rows;
        // The trainer's tokenization (TokenizePairs): the prompt once, each completion after it.
        const engine::ChatTemplate* t = p.conversational && tmpl ? &*tmpl : nullptr;
        if (p.conversational && t == nullptr) {
          return absl::FailedPreconditionError(
              "conversational pairs need a chat template: set chat_template (e.g. zephyr)");
        }
        nlohmann::json prompt = p.conversational ? data::ToJson(p.prompt) : nlohmann::json(p.prompt_text);
        auto ec = engine::EncodePromptCompletion(
            *tok, t, prompt, p.conversational ? data::ToJson(p.chosen) : nlohmann::json(p.chosen_text));
        auto er = engine::EncodePromptCompletion(
            *tok, t, prompt,
            p.conversational ? data::ToJson(p.rejected) : nlohmann::json(p.rejected_text));
        if (!ec.ok() || !er.ok()) {
          report.DroppedLater("tokenization_error");
          continue;
        }
        data::TokenizedPair pair{ec->prompt_ids, ec->completion_ids, er->completion_ids};
        const size_t full_prompt = pair.prompt.size();
        auto r = truncates ? data::TruncatePair(pair, settings.max_length, max_prompt)
                           : data::TruncationResult::kKept;
        if (shown < o.n) {
          ++shown;
          std::printf("--- pair %d (source %zu, row %zu): prompt %zu tokens%s%s\n", shown, si,
                      k + 1, pair.prompt.size(),
                      full_prompt != pair.prompt.size()
                          ? absl::StrCat(" (truncated from ", full_prompt, ")").c_str()
                          : "",
                      r != data::TruncationResult::kKept
                          ? absl::StrCat("; DROPPED: ", data::TruncationResultName(r)).c_str()
                          : "");
          for (const auto& [label, completion] :
               {std::pair<const char*, const std::vector<int32_t>*>{"chosen", &pair.chosen},
                {"rejected", &pair.rejected}}) {
            std::vector<int32_t> ids = pair.prompt;
            ids.insert(ids.end(), completion->begin(), completion->end());
            std::vector<uint8_t> mask(pair.prompt.size(), 0);
            mask.insert(mask.end(), completion->size(), 1);
            std::printf("%s: %zu completion tokens (trained)\n%s\n", label, completion->size(),
                        Highlight(*tok, ids, mask, color).c_str());
          }
        }
        if (r != data::TruncationResult::kKept) report.DroppedLater(data::TruncationResultName(r));
      }
    }
  }

  // The drop report: per source as loaded, then what tokenization and truncation drop.
  const nlohmann::json j = report.ToJson();
  std::printf("--- drop report\n");
  for (size_t i = 0; i < j["sources"].size(); ++i) {
    const auto& s = j["sources"][i];
    std::printf("source %zu: %s (%s): %lld lines, %lld bad lines skipped, %lld kept, %s\n", i,
                s["path"].get<std::string>().c_str(),
                absl::AsciiStrToLower(s["format"].get<std::string>()).c_str(),
                static_cast<long long>(s["lines"].get<int64_t>()),
                static_cast<long long>(s["bad_lines_skipped"].get<int64_t>()),
                static_cast<long long>(s["kept"].get<int64_t>()),
                DropsText(s["dropped"].get<std::map<std::string, int64_t>>()).c_str());
  }
  std::map<std::string, int64_t> later = j["dropped"].get<std::map<std::string, int64_t>>();
  for (const auto& s : j["sources"]) {
    for (const auto& [k, v] : s["dropped"].items()) later[k] -= v.get<int64_t>();
  }
  std::erase_if(later, [](const auto& kv) { return kv.second == 0; });
  int64_t dropped_later = 0;
  for (const auto& [k, v] : later) dropped_later += v;
  std::printf("%s: %lld rows, %s\n",
              truncates ? absl::StrCat("tokenized, truncated to ", settings.max_length).c_str()
                        : "tokenized",
              static_cast<long long>(rows), DropsText(later).c_str());
  std::printf("total: %lld %s kept for the stage\n", static_cast<long long>(rows - dropped_later),
              is_sft ? "examples" : "pairs");
  return absl::OkStatus();
}

}  // namespace

void RegisterDataCommands(CLI::App& app) {
  auto o = std::make_shared<PreviewOptions>();
  CLI::App* data_cmd = app.add_subcommand("data", "Inspect a stage's data locally (no coordinator)");
  data_cmd->require_subcommand(1);
  CLI::App* sub = data_cmd->add_subcommand(
      "preview", "Show a stage's first examples as the trainer sees them (rendered with the chat "
                 "template, tokenized, truncated), trained tokens highlighted, and the drop report");
  sub->add_option("-f,--file", o->file, "Pipeline YAML file")->required();
  sub->add_option("--stage", o->stage, "Stage name")->required();
  sub->add_option("-n", o->n, "How many examples (pairs for preference data)")->capture_default_str();
  sub->add_option("--set", o->sets, "Override a field, e.g. --set stages.sft.data.0.max_examples=10");
  sub->add_option("--data-dir", o->data_dir,
                  "Data directory for data:// paths (default: $ALIGN_DATA_DIR, else ../shared/data)");
  sub->add_flag("--color", o->color, "Highlight with ANSI colors even when not on a terminal");
  sub->add_flag("--no-color", o->no_color, "Highlight trained tokens as [[...]]");
  sub->callback([o] {
    absl::Status s = Preview(*o);
    if (!s.ok()) Fail(s);
  });
}

}  // namespace align::cli
