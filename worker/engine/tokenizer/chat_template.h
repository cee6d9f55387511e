// Chat templates: a hand-written interpreter for the Jinja2 subset real chat templates use, with
// Hugging Face's settings (trim_blocks, lstrip_blocks, raise_exception, {% generation %}). Parse
// once, render many times; Render is const and safe from many threads.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"

namespace align::engine {

class Tokenizer;

namespace jinja {
struct Program;  // the parsed template (chat_template.cc)
}  // namespace jinja

//! A byte range [begin, end) of the rendered text that lies inside a {% generation %} block.
struct GenerationSpan {
  size_t begin = 0;
  size_t end = 0;
};

//! Output of a render that also records {% generation %} spans.
struct RenderResult {
  std::string text;
  std::vector<GenerationSpan> generation_spans;
};

class ChatTemplate {
 public:
  //! Parses template source. A syntax error is InvalidArgument with "line L, column C: ...".
  static absl::StatusOr<ChatTemplate> Parse(const std::string& source);

  ChatTemplate();
  ~ChatTemplate();
  ChatTemplate(const ChatTemplate&);
  ChatTemplate& operator=(const ChatTemplate&);
  ChatTemplate(ChatTemplate&&) noexcept;
  ChatTemplate& operator=(ChatTemplate&&) noexcept;

  //! Renders `messages` (a JSON array of {"role", "content", ...}). `extra_vars` is an object of
  //! further variables (bos_token, eos_token, tools, documents, enable_thinking, ...);
  //! add_generation_prompt is set from the argument. raise_exception(msg) in the template gives
  //! InvalidArgument with msg; a runtime error (unknown filter, bad operand) names line and column.
  absl::StatusOr<std::string> Render(const nlohmann::json& messages, bool add_generation_prompt,
                                     const nlohmann::json& extra_vars = nlohmann::json::object()) const;

  //! Like Render, and also reports the byte spans of {% generation %} blocks.
  absl::StatusOr<RenderResult> RenderWithSpans(const nlohmann::json& messages,
                                               bool add_generation_prompt,
                                               const nlohmann::json& extra_vars =
                                                   nlohmann::json::object()) const;

  //! Same with key order preserved (tojson prints objects in insertion order, as Python does;
  //! nlohmann::json sorts keys). Parse inputs with nlohmann::ordered_json to keep their order.
  absl::StatusOr<RenderResult> RenderOrdered(const nlohmann::ordered_json& messages,
                                             bool add_generation_prompt,
                                             const nlohmann::ordered_json& extra_vars) const;

  //! Renders with an arbitrary variable context (an object); for tests and uncommon templates.
  absl::StatusOr<RenderResult> RenderContext(const nlohmann::json& context) const;
  absl::StatusOr<RenderResult> RenderContextOrdered(const nlohmann::ordered_json& context) const;

  //! Whether the template contains a {% generation %} block.
  bool has_generation_blocks() const;
  const std::string& source() const { return source_; }

 private:
  std::string source_;
  std::shared_ptr<const jinja::Program> program_;  // immutable after Parse, shared by copies
};

//! Names of the built-in templates: "zephyr", "chatml", "llama-3", "mistral".
std::vector<std::string> BuiltinChatTemplateNames();
//! The source of a built-in template; NotFound (listing the names) for an unknown one.
absl::StatusOr<std::string> BuiltinChatTemplate(const std::string& name);

//! Resolves a pipeline spec's chat_template value to template source:
//! "" or "tokenizer" -> the tokenizer's own (FailedPrecondition when it has none: name a built-in);
//! a built-in name; a name of one of the tokenizer's list-form templates; else a file path.
absl::StatusOr<std::string> ResolveChatTemplate(const std::string& value, const Tokenizer& tokenizer);

//! The variables a tokenizer supplies to a template: bos_token, eos_token, pad_token, unk_token.
nlohmann::json TemplateVarsFor(const Tokenizer& tokenizer);

}  // namespace align::engine
