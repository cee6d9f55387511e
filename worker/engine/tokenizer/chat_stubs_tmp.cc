// Temporary stubs so dependents can build against the public headers; replaced by the real
// implementation files.
#include "absl/status/status.h"
#include "worker/engine/tokenizer/chat_masks.h"
#include "worker/engine/tokenizer/chat_template.h"
#include "worker/engine/tokenizer/tokenizer.h"

namespace align::engine {

namespace jinja {
struct Program {};
}  // namespace jinja

ChatTemplate::ChatTemplate() = default;
ChatTemplate::~ChatTemplate() = default;
ChatTemplate::ChatTemplate(const ChatTemplate&) = default;
ChatTemplate& ChatTemplate::operator=(const ChatTemplate&) = default;
ChatTemplate::ChatTemplate(ChatTemplate&&) noexcept = default;
ChatTemplate& ChatTemplate::operator=(ChatTemplate&&) noexcept = default;
absl::StatusOr<ChatTemplate> ChatTemplate::Parse(const std::string&) {
  return absl::UnimplementedError("chat template: not implemented yet");
}
absl::StatusOr<std::string> ChatTemplate::Render(const nlohmann::json&, bool,
                                                 const nlohmann::json&) const {
  return absl::UnimplementedError("chat template: not implemented yet");
}
absl::StatusOr<RenderResult> ChatTemplate::RenderWithSpans(const nlohmann::json&, bool,
                                                           const nlohmann::json&) const {
  return absl::UnimplementedError("chat template: not implemented yet");
}
absl::StatusOr<RenderResult> ChatTemplate::RenderContext(const nlohmann::json&) const {
  return absl::UnimplementedError("chat template: not implemented yet");
}
bool ChatTemplate::has_generation_blocks() const { return false; }
std::vector<std::string> BuiltinChatTemplateNames() { return {}; }
absl::StatusOr<std::string> BuiltinChatTemplate(const std::string&) {
  return absl::UnimplementedError("chat template: not implemented yet");
}
absl::StatusOr<std::string> ResolveChatTemplate(const std::string&, const Tokenizer&) {
  return absl::UnimplementedError("chat template: not implemented yet");
}
nlohmann::json TemplateVarsFor(const Tokenizer&) { return nlohmann::json::object(); }

absl::StatusOr<EncodedChat> EncodeChatWithMask(const Tokenizer&, const ChatTemplate&,
                                               const nlohmann::json&, const ChatEncodeOptions&) {
  return absl::UnimplementedError("chat masks: not implemented yet");
}
std::vector<int32_t> EncodeRendered(const Tokenizer&, absl::string_view, bool) { return {}; }
std::vector<int32_t> EndOfTurnIds(const Tokenizer&) { return {}; }
absl::StatusOr<PromptCompletionIds> EncodePromptCompletion(const Tokenizer&, const ChatTemplate*,
                                                           const nlohmann::json&,
                                                           const nlohmann::json&,
                                                           const PromptCompletionOptions&) {
  return absl::UnimplementedError("prompt/completion: not implemented yet");
}

}  // namespace align::engine

