// `alignctl data preview -f pipeline.yaml --stage S [-n N]`: what a stage's data looks like to the
// trainer, without a coordinator: the first N examples rendered through the chat template and
// tokenized, with the trained tokens highlighted, and the data pipeline's drop report.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "cli/commands/client_support.h"
#include "cli/commands/commands.h"
#include "common/config/pipeline_config.h"
#include "common/status_macros.h"
#include "worker/engine/data/fetch.h"
#include "worker/engine/data/formats.h"
#include "worker/engine/data/sources.h"
#include "worker/engine/tokenizer/chat_masks.h"
#include "worker/engine/tokenizer/chat_template.h"
#include "worker/engine/tokenizer/tokenizer.h"

namespace align::cli {
namespace {

namespace fs = std::filesystem;
namespace data = ::align::engine::data;

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

absl::StatusOr<std::string> ResolvePath(const std::string& path, const std::string& sha256,
                                        const std::string& data_dir, const std::string& field) {
  if (absl::StrContains(path, "${stages.")) {
    return absl::FailedPreconditionError(absl::StrCat(
        field, " is \"", path,
        "\", an output of another stage; preview that stage, or run the pipeline first"));
  }
  return data::ResolveDataFile(path, sha256, data_dir);
}

// Tokens with the trained ones highlighted: reverse video on a terminal, [[...]] otherwise.
std::string Highlight(const engine::Tokenizer& tok, const engine::EncodedChat& enc, bool color) {
  std::string out;
  bool in_trained = false;
  for (size_t i = 0; i < enc.ids.size(); ++i) {
    bool trained = i < enc.mask.size() && enc.mask[i] != 0;
    if (trained != in_trained) {
      out += color ? (trained ? "\033[7m" : "\033[0m") : (trained ? "[[" : "]]");
      in_trained = trained;
    }
    out += tok.Decode({enc.ids[i]}, /*skip_special_tokens=*/false);
  }
  if (in_trained) out += color ? "\033[0m" : "]]";
  return out;
}

absl::Status Preview(const PreviewOptions& o) {
  ASSIGN_OR_RETURN(align::v1::PipelineSpec spec, config::LoadPipelineFile(o.file, o.sets));
  const align::v1::StageSpec* stage = nullptr;
  std::vector<std::string> names;
  for (const auto& s : spec.stages()) {
    names.push_back(s.name());
    if (s.name() == o.stage) stage = &s;
  }
  if (stage == nullptr) {
    return absl::NotFoundError(absl::StrCat(o.file, ": no stage \"", o.stage, "\"; stages are ",
                                            absl::StrJoin(names, ", ")));
  }
  const std::string data_dir = DataDir(o.data_dir);
  std::vector<data::SourceSpec> sources;
  for (int i = 0; i < stage->data_size(); ++i) {
    const auto& d = stage->data(i);
    data::SourceSpec s;
    ASSIGN_OR_RETURN(s.path, ResolvePath(d.path(), d.sha256(), data_dir,
                                         absl::StrCat("stages.", o.stage, ".data[", i, "].path")));
    std::string format = align::v1::DataFormat_Name(d.format());
    if (d.format() == align::v1::DATA_FORMAT_UNSPECIFIED) format = "";
    ASSIGN_OR_RETURN(s.format, data::ParseDataFormat(format));
    s.weight = d.weight() > 0 ? d.weight() : 1.0;
    s.max_examples = d.max_examples();
    s.on_bad_line = d.on_bad_line() == align::v1::SKIP ? data::OnBadLine::kSkip
                                                       : data::OnBadLine::kFail;
    s.language = d.language();
    sources.push_back(std::move(s));
  }
  if (sources.empty()) {
    return absl::FailedPreconditionError(absl::StrCat("stage ", o.stage, " has no data"));
  }

  const bool color = o.color || (!o.no_color && isatty(STDOUT_FILENO) != 0);
  const bool is_sft = stage->type() == align::v1::SFT;
  // Tokenizer: the stage's, else its model's directory (data:// resolved; references cannot be).
  std::string tok_path = !stage->tokenizer().empty() ? stage->tokenizer() : stage->model();
  std::unique_ptr<engine::Tokenizer> tok;
  std::unique_ptr<engine::ChatTemplate> tmpl;
  if (!tok_path.empty() && !absl::StrContains(tok_path, "${stages.")) {
    if (absl::StartsWith(tok_path, "data://")) tok_path = data_dir + "/" + tok_path.substr(7);
    ASSIGN_OR_RETURN(tok, engine::Tokenizer::Load(tok_path));
    ASSIGN_OR_RETURN(std::string source, engine::ResolveChatTemplate(stage->chat_template(), *tok));
    ASSIGN_OR_RETURN(engine::ChatTemplate t, engine::ChatTemplate::Parse(source));
    tmpl = std::make_unique<engine::ChatTemplate>(std::move(t));
  }
  auto show = [&](const std::string& title, const nlohmann::json& messages) -> absl::Status {
    std::printf("--- %s\n", title.c_str());
    if (tok == nullptr) {
      std::printf("%s\n", messages.dump(2).c_str());
      return absl::OkStatus();
    }
    ASSIGN_OR_RETURN(engine::EncodedChat enc, engine::EncodeChatWithMask(*tok, *tmpl, messages));
    int trained = 0;
    for (uint8_t m : enc.mask) trained += m;
    std::printf("%zu tokens, %d trained\n%s\n", enc.ids.size(), trained,
                Highlight(*tok, enc, color).c_str());
    return absl::OkStatus();
  };

  data::DataReport report;
  if (is_sft) {
    ASSIGN_OR_RETURN(auto per_source, data::LoadSftSources(sources, report));
    int shown = 0;
    for (size_t si = 0; si < per_source.size(); ++si) {
      for (const auto& ex : per_source[si]) {
        if (shown >= o.n) break;
        nlohmann::json messages;
        if (ex.conversational()) {
          messages = data::ToJson(ex.messages);
        } else if (ex.kind == data::SftExample::Kind::kPromptCompletion) {
          messages = nlohmann::json::array({{{"role", "user"}, {"content", ex.prompt}},
                                            {{"role", "assistant"}, {"content", ex.completion}}});
        } else {
          messages = nlohmann::json::array({{{"role", "assistant"}, {"content", ex.text}}});
        }
        RETURN_IF_ERROR(show(absl::StrCat("example ", ++shown, " (source ", si, ")"), messages));
      }
    }
  } else {
    ASSIGN_OR_RETURN(auto per_source, data::LoadPreferenceSources(sources, report));
    int shown = 0;
    for (size_t si = 0; si < per_source.size(); ++si) {
      for (const auto& pair : per_source[si]) {
        if (shown >= o.n) break;
        ++shown;
        nlohmann::json prompt = pair.conversational
                                    ? data::ToJson(pair.prompt)
                                    : nlohmann::json::array(
                                          {{{"role", "user"}, {"content", pair.prompt_text}}});
        auto side = [&](const data::Conversation& c, const std::string& text) {
          nlohmann::json m = prompt;
          if (pair.conversational) {
            for (const auto& x : data::ToJson(c)) m.push_back(x);
          } else {
            m.push_back({{"role", "assistant"}, {"content", text}});
          }
          return m;
        };
        RETURN_IF_ERROR(show(absl::StrCat("pair ", shown, " chosen"), side(pair.chosen, pair.chosen_text)));
        RETURN_IF_ERROR(
            show(absl::StrCat("pair ", shown, " rejected"), side(pair.rejected, pair.rejected_text)));
      }
    }
  }
  std::printf("--- drop report\n%s\n", report.ToJson().dump(2).c_str());
  return absl::OkStatus();
}

}  // namespace

void RegisterDataCommands(CLI::App& app) {
  auto o = std::make_shared<PreviewOptions>();
  CLI::App* data_cmd = app.add_subcommand("data", "Inspect a stage's data locally (no coordinator)");
  data_cmd->require_subcommand(1);
  CLI::App* sub = data_cmd->add_subcommand(
      "preview", "Show a stage's first examples rendered with its chat template and tokenized, "
                 "trained tokens highlighted, and the drop report");
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
