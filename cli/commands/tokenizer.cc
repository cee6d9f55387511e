// `alignctl tokenize` and `alignctl template render|mask`: local tools over the engine's tokenizer
// and chat templates (no coordinator needed). Output formats: docs/tokenizers.md ("CLI").
#include <unistd.h>

#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "cli/commands/commands.h"
#include "worker/engine/tokenizer/chat_masks.h"
#include "worker/engine/tokenizer/chat_template.h"
#include "worker/engine/tokenizer/tokenizer.h"

namespace align::cli {
namespace {

using engine::ChatTemplate;
using engine::Tokenizer;
using nlohmann::json;
using nlohmann::ordered_json;

struct TokenizeOptions {
  std::string tokenizer;
  std::string text;
  std::string input;
  bool no_special = false;
};

struct TemplateOptions {
  std::string tokenizer;
  std::string messages;
  std::string input;
  std::string template_name = "tokenizer";
  bool add_generation_prompt = false;
  bool no_special = false;
  std::string color = "auto";
  bool json_output = false;
};

std::string IdsJson(const std::vector<int32_t>& ids) { return json{{"ids", ids}}.dump(); }

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizer(const std::string& path) {
  auto tok = Tokenizer::Load(path);
  if (!tok.ok()) PrintError(tok.status().message());
  return tok;
}

int RunTokenize(const TokenizeOptions& o) {
  auto tok = LoadTokenizer(o.tokenizer);
  if (!tok.ok()) return 1;
  const bool special = !o.no_special;
  if (o.input.empty()) {
    std::cout << IdsJson((*tok)->Encode(o.text, special)) << "\n";
    return 0;
  }
  std::ifstream in(o.input);
  if (!in) {
    PrintError(absl::StrCat("cannot open ", o.input));
    return 1;
  }
  int rc = 0;
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    if (line.empty()) continue;
    json j = json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object() || !j.contains("text") || !j["text"].is_string()) {
      std::cout << json{{"error", absl::StrCat(o.input, ":", n, ": expected {\"text\": string}")}}.dump() << "\n";
      rc = 1;
      continue;
    }
    std::cout << IdsJson((*tok)->Encode(j["text"].get<std::string>(), special)) << "\n";
  }
  return rc;
}

absl::StatusOr<ChatTemplate> LoadTemplate(const TemplateOptions& o, const Tokenizer& tok) {
  auto source = engine::ResolveChatTemplate(o.template_name, tok);
  if (!source.ok()) return source.status();
  return ChatTemplate::Parse(*source);
}

// A messages file holds a JSON array, or an object with "messages" (and optionally tools, ...).
absl::StatusOr<ordered_json> ReadMessages(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::stringstream ss;
  ss << in.rdbuf();
  ordered_json j = ordered_json::parse(ss.str(), nullptr, false);
  if (j.is_discarded()) return absl::InvalidArgumentError(absl::StrCat(path, ": not valid JSON"));
  if (j.is_array()) return ordered_json{{"messages", j}};
  if (j.is_object() && j.contains("messages") && j["messages"].is_array()) return j;
  return absl::InvalidArgumentError(
      absl::StrCat(path, ": expected a JSON array of messages or an object with \"messages\""));
}

ordered_json VarsFor(const Tokenizer& tok, const ordered_json& doc) {
  ordered_json vars = ordered_json::parse(engine::TemplateVarsFor(tok).dump());
  for (auto it = doc.begin(); it != doc.end(); ++it) {
    if (it.key() != "messages" && it.key() != "add_generation_prompt") vars[it.key()] = it.value();
  }
  return vars;
}

int RunRender(const TemplateOptions& o) {
  if (o.messages.empty() == o.input.empty()) {
    PrintError("give exactly one of --messages FILE.json or --input FILE.jsonl");
    return 2;
  }
  auto tok = LoadTokenizer(o.tokenizer);
  if (!tok.ok()) return 1;
  auto tmpl = LoadTemplate(o, **tok);
  if (!tmpl.ok()) {
    PrintError(tmpl.status().message());
    return 1;
  }
  if (!o.messages.empty()) {
    auto doc = ReadMessages(o.messages);
    if (!doc.ok()) {
      PrintError(doc.status().message());
      return 1;
    }
    auto r = tmpl->RenderOrdered((*doc)["messages"], o.add_generation_prompt, VarsFor(**tok, *doc));
    if (!r.ok()) {
      PrintError(r.status().message());
      return 1;
    }
    std::cout << r->text;
    if (isatty(STDOUT_FILENO)) std::cout << "\n";
    return 0;
  }
  std::ifstream in(o.input);
  if (!in) {
    PrintError(absl::StrCat("cannot open ", o.input));
    return 1;
  }
  int rc = 0;
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    if (line.empty()) continue;
    ordered_json j = ordered_json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object() || !j.contains("messages") || !j["messages"].is_array()) {
      std::cout << json{{"error", absl::StrCat(o.input, ":", n, ": expected {\"messages\": [...], "
                                                                "\"add_generation_prompt\": bool}")}}.dump()
                << "\n";
      rc = 1;
      continue;
    }
    bool gen = j.contains("add_generation_prompt") && j["add_generation_prompt"].is_boolean()
                   ? j["add_generation_prompt"].get<bool>()
                   : o.add_generation_prompt;
    auto r = tmpl->RenderOrdered(j["messages"], gen, VarsFor(**tok, j));
    if (r.ok()) {
      std::cout << json{{"rendered", r->text}}.dump() << "\n";
    } else {
      std::cout << json{{"error", std::string(r.status().message())}}.dump() << "\n";
    }
  }
  return rc;
}

int RunMask(const TemplateOptions& o) {
  if (o.messages.empty()) {
    PrintError("--messages FILE.json is required");
    return 2;
  }
  auto tok = LoadTokenizer(o.tokenizer);
  if (!tok.ok()) return 1;
  auto tmpl = LoadTemplate(o, **tok);
  if (!tmpl.ok()) {
    PrintError(tmpl.status().message());
    return 1;
  }
  auto doc = ReadMessages(o.messages);
  if (!doc.ok()) {
    PrintError(doc.status().message());
    return 1;
  }
  engine::ChatEncodeOptions options;
  options.add_generation_prompt = o.add_generation_prompt;
  options.add_special_tokens = !o.no_special;
  options.extra_vars = json::parse(VarsFor(**tok, *doc).dump());
  auto chat = engine::EncodeChatWithMask(**tok, *tmpl, json::parse((*doc)["messages"].dump()), options);
  if (!chat.ok()) {
    PrintError(chat.status().message());
    return 1;
  }
  size_t trained = 0;
  for (uint8_t m : chat->mask) trained += m;
  if (o.json_output) {
    std::cout << json{{"ids", chat->ids}, {"mask", chat->mask}, {"rendered", chat->rendered}}.dump() << "\n";
    return 0;
  }
  // Highlight by byte ranges of the rendered text, so multi-byte characters split across tokens
  // still print whole.
  std::vector<std::pair<uint32_t, uint32_t>> offsets;
  std::vector<int32_t> ids = (*tok)->EncodeWithOffsets(chat->rendered, !o.no_special, &offsets);
  if (ids.size() == chat->ids.size() + 1) offsets.erase(offsets.begin());  // the dropped second BOS
  std::vector<uint8_t> hot(chat->rendered.size(), 0);
  std::string leading;  // tokens with no text (a BOS the post-processor added)
  for (size_t t = 0; t < chat->ids.size() && t < offsets.size(); ++t) {
    auto [b, e] = offsets[t];
    if (e <= b) {
      if (b == 0) leading += (*tok)->IdToToken(chat->ids[t]).value_or("");
      continue;
    }
    if (chat->mask[t]) {
      for (uint32_t k = b; k < e && k < hot.size(); ++k) hot[k] = 1;
    }
  }
  bool color = o.color == "always" || (o.color == "auto" && isatty(STDOUT_FILENO));
  const char* on = color ? "\x1b[1;32;4m" : "[";
  const char* off = color ? "\x1b[0m" : "]";
  std::string out = leading;
  for (size_t k = 0; k < chat->rendered.size(); ++k) {
    if (hot[k] && (k == 0 || !hot[k - 1])) out += on;
    out += chat->rendered[k];
    if (hot[k] && (k + 1 == hot.size() || !hot[k + 1])) out += off;
  }
  std::cout << out << "\n";
  std::cerr << chat->ids.size() << " tokens, " << trained << " trained ("
            << (color ? "highlighted" : "in [brackets]") << ")\n";
  return 0;
}

}  // namespace

void RegisterTokenizerCommands(CLI::App& app) {
  auto tk = std::make_shared<TokenizeOptions>();
  CLI::App* tokenize = app.add_subcommand(
      "tokenize", "Encode text with a model's tokenizer; prints {\"ids\":[...]} (one line per input line)");
  tokenize->add_option("--tokenizer", tk->tokenizer,
                       "tokenizer directory (tokenizer.json [+ tokenizer_config.json], vocab.json + "
                       "merges.txt, or tokenizer.model) or one of those files")
      ->required();
  auto* text = tokenize->add_option("--text", tk->text, "text to encode");
  auto* input = tokenize->add_option("--input", tk->input, "JSON-lines file of {\"text\": ...}");
  text->excludes(input);
  input->excludes(text);
  tokenize->add_flag("--no-special", tk->no_special,
                     "do not add the tokenizer's BOS/EOS (special-token strings in the text are still "
                     "matched)");
  tokenize->callback([tk, tokenize] {
    if (tk->text.empty() && tk->input.empty() && tokenize->count("--text") == 0) {
      PrintError("tokenize: give --text STR or --input FILE.jsonl");
      ExitCode() = 2;
      return;
    }
    ExitCode() = RunTokenize(*tk);
  });

  CLI::App* tmpl = app.add_subcommand("template", "Render chat templates and show loss masks");
  tmpl->require_subcommand(1);
  auto add_common = [](CLI::App* cmd, std::shared_ptr<TemplateOptions> o) {
    cmd->add_option("--tokenizer", o->tokenizer, "tokenizer directory (gives bos/eos and its own template)")
        ->required();
    cmd->add_option("--template", o->template_name,
                    "'tokenizer' (its own chat_template), a built-in (zephyr, chatml, llama-3, mistral), a "
                    "named template of the tokenizer, or a template file")
        ->capture_default_str();
    cmd->add_flag("--add-generation-prompt", o->add_generation_prompt,
                  "end with the assistant header, as for generation");
  };
  auto ro = std::make_shared<TemplateOptions>();
  CLI::App* render = tmpl->add_subcommand(
      "render", "Print a conversation rendered by the chat template (batch: one {\"rendered\"} or "
                "{\"error\"} JSON line per input line)");
  add_common(render, ro);
  auto* msgs = render->add_option("--messages", ro->messages,
                                  "JSON file: an array of {role, content} or {\"messages\": [...], tools: ...}");
  auto* batch = render->add_option("--input", ro->input,
                                   "JSON-lines file of {\"messages\": [...], \"add_generation_prompt\": bool}");
  msgs->excludes(batch);
  batch->excludes(msgs);
  render->callback([ro] { ExitCode() = RunRender(*ro); });

  auto mo = std::make_shared<TemplateOptions>();
  CLI::App* mask = tmpl->add_subcommand(
      "mask", "Show a conversation's rendering with the tokens the loss trains on highlighted (ANSI "
              "colour on a terminal, [brackets] otherwise); the counts go to stderr");
  add_common(mask, mo);
  mask->add_option("--messages", mo->messages, "JSON file: an array of {role, content} or {\"messages\": [...]}")
      ->required();
  mask->add_flag("--no-special", mo->no_special, "do not add the tokenizer's BOS/EOS");
  mask->add_option("--color", mo->color, "highlight with ANSI colours")
      ->check(CLI::IsMember({"auto", "always", "never"}))
      ->capture_default_str();
  mask->add_flag("--json", mo->json_output, "print {\"ids\", \"mask\", \"rendered\"} instead");
  mask->callback([mo] { ExitCode() = RunMask(*mo); });
}

}  // namespace align::cli
