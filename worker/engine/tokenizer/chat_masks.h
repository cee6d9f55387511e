// Token ids plus loss masks for conversations (SFT), and prompt/completion tokenization for
// preference data (DPO, reward models). The mask trains every assistant turn's content and its
// end-of-turn marker (</s>, <|im_end|>, <|eot_id|>, <end_of_turn>), never role headers or
// user/system text; there is exactly one BOS, at position 0, when the tokenizer uses one.
// Method: docs/tokenizers.md ("Loss masks").
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "worker/engine/tokenizer/chat_template.h"
#include "worker/engine/tokenizer/tokenizer.h"

namespace align::engine {

struct EncodedChat {
  std::vector<int32_t> ids;
  std::vector<uint8_t> mask;  // same length as ids; 1 = the loss is computed on this token
  std::string rendered;       // the rendered template text the ids encode
};

struct ChatEncodeOptions {
  //! Append the generation prompt (for inference; nothing after it is trained).
  bool add_generation_prompt = false;
  //! Let the tokenizer's post-processor add its BOS/EOS. Never gives two BOS: a BOS the template
  //! already rendered is kept and the post-processor's is dropped.
  bool add_special_tokens = true;
  //! Variables for the template beyond bos_token/eos_token (which come from the tokenizer):
  //! tools, documents, enable_thinking, ... Values here override the tokenizer's.
  nlohmann::json extra_vars = nlohmann::json::object();
  //! Which roles are trained (default: "assistant" only).
  std::vector<std::string> trained_roles = {"assistant"};
};

//! Renders and tokenizes `messages` (a JSON array of {"role", "content"}) and marks trained tokens.
//! Uses the template's {% generation %} spans when it has them, else renders successive prefixes of
//! the conversation to find where each assistant turn starts and ends. Errors: template errors,
//! a template whose prefixes do not extend each other, a message without role/content.
absl::StatusOr<EncodedChat> EncodeChatWithMask(const Tokenizer& tokenizer,
                                               const ChatTemplate& chat_template,
                                               const nlohmann::json& messages,
                                               const ChatEncodeOptions& options = {});

//! Encodes already-rendered text so that it starts with exactly one BOS when
//! `add_special_tokens` and the tokenizer adds BOS (a rendered "<s>" plus the post-processor's
//! would otherwise give two), or keeps whatever BOS the text itself contains when not.
std::vector<int32_t> EncodeRendered(const Tokenizer& tokenizer, absl::string_view text,
                                    bool add_special_tokens);

//! The end-of-turn markers a template/tokenizer uses, found among the tokenizer's special tokens
//! (<|im_end|>, <|eot_id|>, <end_of_turn>, </s> = eos). Used to cut completions after their marker.
std::vector<int32_t> EndOfTurnIds(const Tokenizer& tokenizer);

//! A prompt and a completion tokenized SEPARATELY, so the prompt ids do not depend on the
//! completion (chosen and rejected share them exactly) and nothing merges across the boundary.
struct PromptCompletionIds {
  std::vector<int32_t> prompt_ids;      // starts with the one BOS (when the tokenizer uses one)
  std::vector<int32_t> completion_ids;  // ends with the end-of-turn marker / EOS
  std::string prompt_text;              // what prompt_ids encode (rendered when chat)
  std::string completion_text;          // what completion_ids encode (before an appended EOS)
};

struct PromptCompletionOptions {
  bool add_special_tokens = true;   // BOS on the prompt (never doubled)
  //! For plain-text completions (and chat templates without a terminator): append EOS when the
  //! completion does not already end with an end-of-turn marker.
  bool append_eos = true;
  nlohmann::json extra_vars = nlohmann::json::object();
};

//! `prompt` is a string or a messages array; `completion` is a string or a messages array (the
//! assistant turn(s)). With messages, the prompt is rendered with add_generation_prompt=true and
//! the completion is the text the full conversation adds after it, cut after its end-of-turn
//! marker (the newline a template puts after <|im_end|> is not part of the completion).
//! `chat_template` may be null for plain-text prompts.
absl::StatusOr<PromptCompletionIds> EncodePromptCompletion(const Tokenizer& tokenizer,
                                                           const ChatTemplate* chat_template,
                                                           const nlohmann::json& prompt,
                                                           const nlohmann::json& completion,
                                                           const PromptCompletionOptions& options = {});

}  // namespace align::engine
