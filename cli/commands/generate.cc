// `alignctl generate --model DIR (--prompt STR | --input FILE.jsonl) [--chat] ...`: local text
// generation with the engine's model and tokenizer. Prints each continuation (without the prompt)
// on its own line, or one {"ids":[...],"text":...} JSON object per line with --json.
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "cli/commands/commands.h"
#include "nlohmann/json.hpp"
#include "worker/engine/model/generate.h"
#include "worker/engine/model/model.h"
#include "worker/engine/tokenizer/chat_template.h"
#include "worker/engine/tokenizer/tokenizer.h"

namespace align::cli {
namespace {

namespace model = align::engine::model;

struct GenerateFlags {
  std::string model_dir;
  std::string prompt;
  std::string input;
  bool chat = false;
  std::string chat_template;
  int64_t max_new_tokens = 128;
  double temperature = 0.0;
  double top_p = 1.0;
  int64_t top_k = 0;
  uint64_t seed = 0;
  bool json = false;
  int threads = 0;
  int64_t batch_size = 16;
  std::vector<std::string> stop;
};

// One request: plain text, or chat messages (from --chat or a "messages" field).
struct Request {
  std::string text;
  nlohmann::json messages;  // null unless chat
};

absl::StatusOr<std::vector<Request>> ReadRequests(const GenerateFlags& f) {
  std::vector<Request> out;
  if (!f.prompt.empty() || f.input.empty()) {
    Request r;
    r.text = f.prompt;
    if (f.chat) r.messages = nlohmann::json::array({{{"role", "user"}, {"content", f.prompt}}});
    out.push_back(std::move(r));
    return out;
  }
  std::ifstream in(f.input);
  if (!in) return absl::NotFoundError(absl::StrCat(f.input, ": cannot open"));
  std::string line;
  int line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object()) {
      return absl::InvalidArgumentError(
          absl::StrCat(f.input, ":", line_no, ": expected a JSON object per line"));
    }
    Request r;
    if (auto it = j.find("messages"); it != j.end() && it->is_array()) {
      r.messages = *it;
    } else {
      auto p = j.find("prompt");
      if (p == j.end()) p = j.find("text");
      if (p == j.end() || !p->is_string()) {
        return absl::InvalidArgumentError(absl::StrCat(
            f.input, ":", line_no, ": expected a string field \"prompt\" (or \"text\"), or a "
            "\"messages\" array"));
      }
      r.text = p->get<std::string>();
      if (f.chat) r.messages = nlohmann::json::array({{{"role", "user"}, {"content", r.text}}});
    }
    out.push_back(std::move(r));
  }
  if (out.empty()) return absl::InvalidArgumentError(absl::StrCat(f.input, ": no prompts"));
  return out;
}

int RunGenerate(const GenerateFlags& f) {
  model::SetComputeThreads(f.threads);
  if (std::error_code ec; !std::filesystem::is_directory(f.model_dir, ec)) {
    PrintError(absl::StrCat("generate: ", f.model_dir,
                            ": no such model directory (a Hugging Face directory with "
                            "config.json and model.safetensors)"));
    return 1;
  }
  auto tokenizer = align::engine::Tokenizer::Load(f.model_dir);
  if (!tokenizer.ok()) {
    PrintError(absl::StrCat("generate: ", tokenizer.status().message()));
    return 1;
  }
  auto requests = ReadRequests(f);
  if (!requests.ok()) {
    PrintError(absl::StrCat("generate: ", requests.status().message()));
    return 1;
  }
  std::optional<align::engine::ChatTemplate> chat_template;
  std::vector<std::vector<int32_t>> prompts;
  for (const Request& r : *requests) {
    if (!r.messages.is_null()) {
      if (!chat_template) {
        auto source = align::engine::ResolveChatTemplate(f.chat_template, **tokenizer);
        if (!source.ok()) {
          PrintError(absl::StrCat("generate: ", source.status().message()));
          return 1;
        }
        auto parsed = align::engine::ChatTemplate::Parse(*source);
        if (!parsed.ok()) {
          PrintError(absl::StrCat("generate: chat template: ", parsed.status().message()));
          return 1;
        }
        chat_template = std::move(*parsed);
      }
      auto text = chat_template->Render(r.messages, /*add_generation_prompt=*/true,
                                        align::engine::TemplateVarsFor(**tokenizer));
      if (!text.ok()) {
        PrintError(absl::StrCat("generate: chat template: ", text.status().message()));
        return 1;
      }
      // The template writes BOS itself, as Hugging Face's apply_chat_template assumes.
      prompts.push_back((*tokenizer)->Encode(*text, /*add_special_tokens=*/false));
    } else {
      prompts.push_back((*tokenizer)->Encode(r.text, /*add_special_tokens=*/true));
    }
    if (prompts.back().empty() && (*tokenizer)->bos_id()) prompts.back().push_back(*(*tokenizer)->bos_id());
  }
  model::LoadOptions lo;
  lo.device = model::DefaultDevice();
  auto lm = model::CausalLM::Load(f.model_dir, lo);
  if (!lm.ok()) {
    PrintError(absl::StrCat("generate: ", lm.status().message()));
    return 1;
  }
  model::GenerateOptions o;
  o.max_new_tokens = f.max_new_tokens;
  o.temperature = f.temperature;
  o.top_p = f.top_p;
  o.top_k = f.top_k;
  o.seed = f.seed;
  o.batch_size = f.batch_size;
  o.stop_strings = f.stop;
  const align::engine::Tokenizer& tok = **tokenizer;
  o.decode = [&tok](const std::vector<int32_t>& ids) { return tok.Decode(ids, true); };
  if ((*lm)->generation_config().eos_token_ids.empty() && tok.eos_id()) o.eos_ids = {*tok.eos_id()};
  auto results = model::Generate(**lm, prompts, o);
  if (!results.ok()) {
    PrintError(absl::StrCat("generate: ", results.status().message()));
    return 1;
  }
  for (const auto& r : *results) {
    std::string text = tok.Decode(r.tokens, /*skip_special_tokens=*/true);
    if (r.finish_reason == model::FinishReason::kStopString) {
      for (const auto& s : f.stop) {
        if (auto pos = text.find(s); pos != std::string::npos) text.resize(pos);
      }
    }
    if (f.json) {
      nlohmann::json j = {{"ids", r.tokens}, {"text", text}};
      std::cout << j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
    } else {
      std::cout << text << "\n";
    }
  }
  return 0;
}

}  // namespace

void RegisterGenerateCommand(CLI::App& app) {
  auto f = std::make_shared<GenerateFlags>();
  CLI::App* cmd = app.add_subcommand(
      "generate", "Generate text locally from a Hugging Face model directory (prints the "
                  "continuation without the prompt)");
  cmd->add_option("--model", f->model_dir, "model directory (config.json, safetensors, tokenizer)")
      ->required();
  auto* prompt = cmd->add_option("--prompt", f->prompt, "prompt text");
  auto* input = cmd->add_option("--input", f->input,
                                "JSONL file: one {\"prompt\": ...} or {\"messages\": [...]} per line");
  prompt->excludes(input);
  cmd->add_flag("--chat", f->chat, "wrap each prompt as a user message and apply the chat template");
  cmd->add_option("--chat-template", f->chat_template,
                  "chat template: the tokenizer's (default), a built-in name, or a file");
  cmd->add_option("--max-new-tokens", f->max_new_tokens, "new tokens per prompt")
      ->check(CLI::NonNegativeNumber)->capture_default_str();
  cmd->add_option("--temperature", f->temperature, "0 = greedy")
      ->check(CLI::NonNegativeNumber)->capture_default_str();
  cmd->add_option("--top-p", f->top_p, "nucleus sampling mass")->check(CLI::Range(0.0, 1.0))->capture_default_str();
  cmd->add_option("--top-k", f->top_k, "sample among the k most likely tokens (0 = all)")
      ->check(CLI::NonNegativeNumber)->capture_default_str();
  cmd->add_option("--seed", f->seed, "sampling seed")->capture_default_str();
  cmd->add_option("--stop", f->stop, "stop string (repeatable); the text is cut before it");
  cmd->add_option("--batch-size", f->batch_size, "prompts per batch")->check(CLI::PositiveNumber)->capture_default_str();
  cmd->add_option("--threads", f->threads, "torch intra-op threads (0 = default)");
  cmd->add_flag("--json", f->json, "print {\"ids\":[...],\"text\":...} per prompt");
  cmd->callback([f] {
    if (f->prompt.empty() && f->input.empty()) {
      PrintError("generate: give --prompt or --input");
      ExitCode() = 2;
      return;
    }
    ExitCode() = RunGenerate(*f);
  });
}

}  // namespace align::cli
