// Loss masks for conversations and separate prompt/completion tokenization. How spans are found:
// docs/tokenizers.md ("Loss masks").
#include "worker/engine/tokenizer/chat_masks.h"

#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace align::engine {
namespace {

using nlohmann::json;

// Strings that end a turn in the templates real models use.
std::vector<std::string> EndOfTurnStrings(const Tokenizer& tok) {
  std::vector<std::string> out;
  for (const char* s : {"<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>", "<|endoftext|>"}) {
    if (tok.TokenToId(s)) out.push_back(s);
  }
  if (!tok.eos_token().empty() &&
      std::find(out.begin(), out.end(), tok.eos_token()) == out.end()) {
    out.push_back(tok.eos_token());
  }
  return out;
}

size_t CommonPrefix(const std::string& a, const std::string& b) {
  size_t n = std::min(a.size(), b.size()), k = 0;
  while (k < n && a[k] == b[k]) ++k;
  return k;
}

// End of the last marker that lies entirely inside [begin, end), or npos.
size_t LastMarkerEnd(const std::string& text, size_t begin, size_t end, const std::vector<std::string>& markers) {
  size_t best = std::string::npos;
  for (const auto& m : markers) {
    if (m.empty() || end < begin + m.size()) continue;
    size_t p = text.rfind(m, end - m.size());
    if (p != std::string::npos && p >= begin) {
      size_t e = p + m.size();
      if (best == std::string::npos || e > best) best = e;
    }
  }
  return best;
}

// End of the first marker at or after `from`, or npos.
size_t FirstMarkerEnd(const std::string& text, size_t from, const std::vector<std::string>& markers) {
  size_t best = std::string::npos, best_pos = std::string::npos;
  for (const auto& m : markers) {
    if (m.empty()) continue;
    size_t p = text.find(m, from);
    if (p != std::string::npos && (best_pos == std::string::npos || p < best_pos)) {
      best_pos = p;
      best = p + m.size();
    }
  }
  return best;
}

json MergedVars(const Tokenizer& tok, const json& extra) {
  json vars = TemplateVarsFor(tok);
  if (extra.is_object()) {
    for (auto it = extra.begin(); it != extra.end(); ++it) vars[it.key()] = it.value();
  }
  return vars;
}

absl::Status CheckMessages(const json& messages) {
  if (!messages.is_array()) return absl::InvalidArgumentError("messages must be a JSON array of {role, content}");
  for (size_t i = 0; i < messages.size(); ++i) {
    const json& m = messages[i];
    if (!m.is_object() || !m.contains("role") || !m["role"].is_string()) {
      return absl::InvalidArgumentError(absl::StrCat("messages[", i, "] must be an object with a string 'role'"));
    }
    if (!m.contains("content")) {
      return absl::InvalidArgumentError(absl::StrCat("messages[", i, "] (role '", m["role"].get<std::string>(),
                                                     "') has no 'content'"));
    }
  }
  return absl::OkStatus();
}

json Slice(const json& messages, size_t n) {
  json out = json::array();
  for (size_t i = 0; i < n && i < messages.size(); ++i) out.push_back(messages[i]);
  return out;
}

}  // namespace

std::vector<int32_t> EndOfTurnIds(const Tokenizer& tokenizer) {
  std::vector<int32_t> ids;
  for (const auto& s : EndOfTurnStrings(tokenizer)) {
    if (auto id = tokenizer.TokenToId(s)) ids.push_back(*id);
  }
  return ids;
}

std::vector<int32_t> EncodeRendered(const Tokenizer& tokenizer, absl::string_view text, bool add_special_tokens) {
  std::vector<std::pair<uint32_t, uint32_t>> offsets;
  std::vector<int32_t> ids = tokenizer.EncodeWithOffsets(text, add_special_tokens, &offsets);
  auto bos = tokenizer.bos_id();
  if (add_special_tokens && bos && ids.size() >= 2 && ids[0] == *bos && ids[1] == *bos &&
      offsets[0].first == offsets[0].second) {
    ids.erase(ids.begin());  // the template rendered BOS itself: drop the post-processor's copy
  }
  return ids;
}

absl::StatusOr<EncodedChat> EncodeChatWithMask(const Tokenizer& tokenizer, const ChatTemplate& chat_template,
                                               const json& messages, const ChatEncodeOptions& options) {
  RETURN_IF_ERROR(CheckMessages(messages));
  json vars = MergedVars(tokenizer, options.extra_vars);
  ASSIGN_OR_RETURN(RenderResult full, chat_template.RenderWithSpans(messages, options.add_generation_prompt, vars));
  const std::string& text = full.text;

  std::vector<std::pair<size_t, size_t>> spans;
  if (chat_template.has_generation_blocks()) {
    for (const auto& s : full.generation_spans) {
      if (s.end > s.begin) spans.emplace_back(s.begin, s.end);
    }
  } else {
    std::vector<std::string> markers = EndOfTurnStrings(tokenizer);
    for (size_t i = 0; i < messages.size(); ++i) {
      std::string role = messages[i]["role"];
      if (std::find(options.trained_roles.begin(), options.trained_roles.end(), role) == options.trained_roles.end()) {
        continue;
      }
      // Start: where the conversation so far plus the generation prompt stops matching.
      std::string content = messages[i]["content"].is_string() ? messages[i]["content"].get<std::string>() : "";
      size_t start;
      auto before = chat_template.Render(Slice(messages, i), /*add_generation_prompt=*/true, vars);
      if (before.ok()) {
        start = CommonPrefix(text, *before);
      } else {
        size_t p = content.empty() ? std::string::npos : text.find(content);
        if (p == std::string::npos) {
          return absl::InvalidArgumentError(absl::StrCat("cannot locate assistant message ", i,
                                                         " in the rendered conversation: ", before.status().message()));
        }
        start = p;
      }
      // End: the turn's end-of-turn marker (not the newline or next header after it).
      size_t end = std::string::npos;
      auto through = chat_template.Render(Slice(messages, i + 1), /*add_generation_prompt=*/false, vars);
      if (through.ok()) {
        size_t limit = CommonPrefix(text, *through);
        if (limit > start) {
          end = LastMarkerEnd(text, start, limit, markers);
          if (end == std::string::npos && limit == through->size()) end = limit;  // no terminator
        }
      }
      if (end == std::string::npos) {
        size_t from = start;
        if (!content.empty()) {
          size_t p = text.find(content, start);
          if (p != std::string::npos) from = p + content.size();
        }
        end = FirstMarkerEnd(text, from, markers);
        if (end == std::string::npos) {
          if (i + 1 == messages.size()) end = text.size();
          else {
            return absl::InvalidArgumentError(absl::StrCat(
                "cannot find where assistant message ", i,
                " ends in the rendered conversation (no end-of-turn marker); add {% generation %} blocks to the "
                "template"));
          }
        }
      }
      if (end > start) spans.emplace_back(start, end);
    }
  }

  EncodedChat out;
  out.rendered = text;
  std::vector<std::pair<uint32_t, uint32_t>> offsets;
  out.ids = tokenizer.EncodeWithOffsets(text, options.add_special_tokens, &offsets);
  auto bos = tokenizer.bos_id();
  if (options.add_special_tokens && bos && out.ids.size() >= 2 && out.ids[0] == *bos && out.ids[1] == *bos &&
      offsets[0].first == offsets[0].second) {
    out.ids.erase(out.ids.begin());
    offsets.erase(offsets.begin());
  }
  out.mask.assign(out.ids.size(), 0);
  for (size_t t = 0; t < out.ids.size(); ++t) {
    auto [b, e] = offsets[t];
    if (e <= b) continue;  // tokens the post-processor added
    for (const auto& [sb, se] : spans) {
      if (b < se && e > sb) {
        out.mask[t] = 1;
        break;
      }
    }
  }
  return out;
}

absl::StatusOr<PromptCompletionIds> EncodePromptCompletion(const Tokenizer& tokenizer,
                                                           const ChatTemplate* chat_template, const json& prompt,
                                                           const json& completion,
                                                           const PromptCompletionOptions& options) {
  PromptCompletionIds out;
  std::vector<std::string> markers = EndOfTurnStrings(tokenizer);
  if (prompt.is_string()) {
    if (!completion.is_string()) {
      return absl::InvalidArgumentError("a plain-text prompt needs a plain-text completion");
    }
    out.prompt_text = prompt.get<std::string>();
    out.completion_text = completion.get<std::string>();
  } else if (prompt.is_array()) {
    if (chat_template == nullptr) {
      return absl::InvalidArgumentError("a conversational prompt (messages) needs a chat template");
    }
    json answer = completion;
    if (completion.is_string()) {
      answer = json::array({{{"role", "assistant"}, {"content", completion.get<std::string>()}}});
    } else if (completion.is_object()) {
      answer = json::array({completion});
    }
    RETURN_IF_ERROR(CheckMessages(prompt));
    RETURN_IF_ERROR(CheckMessages(answer));
    json vars = MergedVars(tokenizer, options.extra_vars);
    ASSIGN_OR_RETURN(out.prompt_text, chat_template->Render(prompt, /*add_generation_prompt=*/true, vars));
    json all = prompt;
    for (const auto& m : answer) all.push_back(m);
    ASSIGN_OR_RETURN(std::string full, chat_template->Render(all, /*add_generation_prompt=*/false, vars));
    if (full.compare(0, out.prompt_text.size(), out.prompt_text) != 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "the chat template renders the prompt differently once the answer follows (they agree for ",
          CommonPrefix(full, out.prompt_text), " of ", out.prompt_text.size(),
          " bytes), so the completion cannot be split off; use a template whose generation prompt is the start of "
          "the assistant turn"));
    }
    out.completion_text = full.substr(out.prompt_text.size());
    // Keep the completion up to its (last) end-of-turn marker: the newline after <|im_end|> and the
    // like belong to the next turn.
    size_t cut = LastMarkerEnd(out.completion_text, 0, out.completion_text.size(), markers);
    if (cut != std::string::npos) out.completion_text.resize(cut);
  } else {
    return absl::InvalidArgumentError("prompt must be a string or a messages array");
  }
  out.prompt_ids = EncodeRendered(tokenizer, out.prompt_text, options.add_special_tokens);
  out.completion_ids = tokenizer.Encode(out.completion_text, /*add_special_tokens=*/false);
  if (options.append_eos && tokenizer.eos_id()) {
    std::vector<int32_t> eot = EndOfTurnIds(tokenizer);
    bool ends = !out.completion_ids.empty() &&
                std::find(eot.begin(), eot.end(), out.completion_ids.back()) != eot.end();
    if (!ends) out.completion_ids.push_back(*tokenizer.eos_id());
  }
  return out;
}

}  // namespace align::engine
