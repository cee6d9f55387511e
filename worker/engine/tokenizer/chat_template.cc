// ChatTemplate: parse once, render many times; built-in templates; the spec's chat_template
// resolver. The interpreter itself is in jinja.cc.
#include "worker/engine/tokenizer/chat_template.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "worker/engine/tokenizer/jinja.h"
#include "worker/engine/tokenizer/tokenizer.h"

namespace align::engine {
namespace {

// The templates as their models ship them on the Hugging Face hub (byte for byte), except that
// llama-3's generation prompt is conditional (the original 8B-Instruct template always adds it).
constexpr char kZephyr[] =
    "{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\\n' + message['content'] + "
    "eos_token }}\n{% elif message['role'] == 'system' %}\n{{ '<|system|>\\n' + message['content'] + eos_token "
    "}}\n{% elif message['role'] == 'assistant' %}\n{{ '<|assistant|>\\n'  + message['content'] + eos_token "
    "}}\n{% endif %}\n{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% "
    "endfor %}";
constexpr char kChatml[] =
    "{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% endif %}{% for "
    "message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + "
    "'\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
constexpr char kLlama3[] =
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
    "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + "
    "'<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% "
    "endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif "
    "%}";
constexpr char kMistral[] =
    "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) "
    "%}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif "
    "%}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif "
    "message['role'] == 'assistant' %}{{ message['content'] + eos_token}}{% else %}{{ raise_exception('Only "
    "user and assistant roles are supported!') }}{% endif %}{% endfor %}";

struct Builtin {
  const char* name;
  const char* source;
};
constexpr Builtin kBuiltins[] = {{"zephyr", kZephyr}, {"chatml", kChatml}, {"llama-3", kLlama3}, {"mistral", kMistral}};

nlohmann::ordered_json ToOrdered(const nlohmann::json& j) { return nlohmann::ordered_json::parse(j.dump()); }

}  // namespace

ChatTemplate::ChatTemplate() = default;
ChatTemplate::~ChatTemplate() = default;
ChatTemplate::ChatTemplate(const ChatTemplate&) = default;
ChatTemplate& ChatTemplate::operator=(const ChatTemplate&) = default;
ChatTemplate::ChatTemplate(ChatTemplate&&) noexcept = default;
ChatTemplate& ChatTemplate::operator=(ChatTemplate&&) noexcept = default;

absl::StatusOr<ChatTemplate> ChatTemplate::Parse(const std::string& source) {
  ChatTemplate t;
  t.source_ = source;
  ASSIGN_OR_RETURN(t.program_, jinja::ParseProgram(source));
  return t;
}

absl::StatusOr<std::string> ChatTemplate::Render(const nlohmann::json& messages, bool add_generation_prompt,
                                                 const nlohmann::json& extra_vars) const {
  ASSIGN_OR_RETURN(RenderResult r, RenderWithSpans(messages, add_generation_prompt, extra_vars));
  return std::move(r.text);
}

absl::StatusOr<RenderResult> ChatTemplate::RenderWithSpans(const nlohmann::json& messages,
                                                           bool add_generation_prompt,
                                                           const nlohmann::json& extra_vars) const {
  return RenderOrdered(ToOrdered(messages), add_generation_prompt, ToOrdered(extra_vars));
}

absl::StatusOr<RenderResult> ChatTemplate::RenderOrdered(const nlohmann::ordered_json& messages,
                                                         bool add_generation_prompt,
                                                         const nlohmann::ordered_json& extra_vars) const {
  if (!messages.is_array()) {
    return absl::InvalidArgumentError("chat template: messages must be a JSON array of {role, content}");
  }
  nlohmann::ordered_json context = nlohmann::ordered_json::object();
  context["messages"] = messages;
  if (extra_vars.is_object()) {
    for (auto it = extra_vars.begin(); it != extra_vars.end(); ++it) context[it.key()] = it.value();
  }
  context["add_generation_prompt"] = add_generation_prompt;
  return RenderContextOrdered(context);
}

absl::StatusOr<RenderResult> ChatTemplate::RenderContext(const nlohmann::json& context) const {
  return RenderContextOrdered(ToOrdered(context));
}

absl::StatusOr<RenderResult> ChatTemplate::RenderContextOrdered(const nlohmann::ordered_json& context) const {
  if (!program_) return absl::FailedPreconditionError("chat template: not parsed (use ChatTemplate::Parse)");
  return jinja::RenderProgram(*program_, context);
}

bool ChatTemplate::has_generation_blocks() const { return program_ && jinja::HasGenerationBlocks(*program_); }

std::vector<std::string> BuiltinChatTemplateNames() {
  std::vector<std::string> names;
  for (const auto& b : kBuiltins) names.push_back(b.name);
  return names;
}

absl::StatusOr<std::string> BuiltinChatTemplate(const std::string& name) {
  for (const auto& b : kBuiltins) {
    if (name == b.name) return std::string(b.source);
  }
  return absl::NotFoundError(absl::StrCat("no built-in chat template named '", name,
                                          "'; built-in: ", absl::StrJoin(BuiltinChatTemplateNames(), ", ")));
}

absl::StatusOr<std::string> ResolveChatTemplate(const std::string& value, const Tokenizer& tokenizer) {
  if (value.empty() || value == "tokenizer") {
    if (tokenizer.chat_template().empty()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "chat_template: the tokenizer has no chat template (no chat_template in tokenizer_config.json); set "
          "chat_template to a built-in (", absl::StrJoin(BuiltinChatTemplateNames(), ", "), ") or a file"));
    }
    return tokenizer.chat_template();
  }
  if (auto b = BuiltinChatTemplate(value); b.ok()) return b;
  if (auto named = tokenizer.named_chat_template(value)) return *named;
  std::error_code ec;
  if (std::filesystem::is_regular_file(value, ec)) {
    std::ifstream f(value, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    std::string text = ss.str();
    // A tokenizer_config.json may be given instead of a bare template file.
    if (value.size() > 5 && value.compare(value.size() - 5, 5, ".json") == 0) {
      auto j = nlohmann::json::parse(text, nullptr, false);
      if (!j.is_discarded() && j.is_object() && j.contains("chat_template") && j["chat_template"].is_string()) {
        return j["chat_template"].get<std::string>();
      }
    }
    return text;
  }
  return absl::NotFoundError(absl::StrCat("chat_template '", value, "' is not 'tokenizer', a built-in (",
                                          absl::StrJoin(BuiltinChatTemplateNames(), ", "),
                                          "), a named template of the tokenizer, or an existing file"));
}

nlohmann::json TemplateVarsFor(const Tokenizer& tokenizer) {
  nlohmann::json vars = nlohmann::json::object();
  auto put = [&](const char* key, const std::string& value) {
    vars[key] = value.empty() ? nlohmann::json(nullptr) : nlohmann::json(value);
  };
  put("bos_token", tokenizer.bos_token());
  put("eos_token", tokenizer.eos_token());
  put("pad_token", tokenizer.pad_token());
  put("unk_token", tokenizer.unk_token());
  return vars;
}

}  // namespace align::engine
