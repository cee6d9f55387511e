// Internal: the Jinja2-subset interpreter behind ChatTemplate. Values, lexer, parser and evaluator
// live in jinja.cc; this header exposes only what chat_template.cc needs.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"
#include "worker/engine/tokenizer/chat_template.h"

namespace align::engine::jinja {

//! Parses template source with Hugging Face's settings (trim_blocks, lstrip_blocks).
//! Errors: InvalidArgument "line L, column C: ...".
absl::StatusOr<std::shared_ptr<const Program>> ParseProgram(const std::string& source);

//! Renders with `context` (an object: messages, add_generation_prompt, bos_token, ...).
//! raise_exception(msg) -> InvalidArgument whose message is exactly msg.
absl::StatusOr<RenderResult> RenderProgram(const Program& program, const nlohmann::ordered_json& context);

bool HasGenerationBlocks(const Program& program);

}  // namespace align::engine::jinja
