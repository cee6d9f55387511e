// Loss masks and prompt/completion tokenization: the boundary cases behind real alignment bugs
// (double BOS, terminators never trained, prompts that merge into the answer).
#include "worker/engine/tokenizer/chat_masks.h"

#include <algorithm>

#include "absl/strings/match.h"
#include "common/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/engine/tokenizer/test_util.h"

namespace align::engine {
namespace {

using ::align::testing::StatusIs;
using ::testing::ElementsAre;
using nlohmann::json;
using testing::SharedTokenizer;

// Decoded runs of consecutive trained tokens.
std::vector<std::string> TrainedRuns(const Tokenizer& tok, const EncodedChat& chat) {
  std::vector<std::string> runs;
  std::vector<int32_t> cur;
  for (size_t i = 0; i <= chat.ids.size(); ++i) {
    if (i < chat.ids.size() && chat.mask[i]) {
      cur.push_back(chat.ids[i]);
    } else if (!cur.empty()) {
      runs.push_back(tok.Decode(cur, false));
      cur.clear();
    }
  }
  return runs;
}

json ThreeExchanges() {
  return json::array({{{"role", "system"}, {"content", "Be kind."}},
                      {{"role", "user"}, {"content", "What is 2+2?"}},
                      {{"role", "assistant"}, {"content", "2+2 = 4."}},
                      {{"role", "user"}, {"content", "And 3+3?"}},
                      {{"role", "assistant"}, {"content", "3+3 = 6."}},
                      {{"role", "user"}, {"content", "Thanks!"}},
                      {{"role", "assistant"}, {"content", "You are welcome."}}});
}

ChatTemplate Builtin(const std::string& name) { return *ChatTemplate::Parse(*BuiltinChatTemplate(name)); }

TEST(ChatMasksTest, MultiTurnZephyrTrainsEveryAssistantTurnAndItsEos) {
  const Tokenizer& tok = SharedTokenizer("models/stories260K");
  ASSERT_OK_AND_ASSIGN(auto tmpl, ChatTemplate::Parse(tok.chat_template()));
  ASSERT_OK_AND_ASSIGN(EncodedChat chat, EncodeChatWithMask(tok, tmpl, ThreeExchanges()));
  ASSERT_EQ(chat.ids.size(), chat.mask.size());
  EXPECT_EQ(chat.ids, EncodeRendered(tok, chat.rendered, true));
  EXPECT_EQ(chat.ids[0], 1);
  EXPECT_EQ(std::count(chat.ids.begin(), chat.ids.end(), 1), 1);
  EXPECT_EQ(chat.mask[0], 0);
  EXPECT_THAT(TrainedRuns(tok, chat), ElementsAre("2+2 = 4.</s>", "3+3 = 6.</s>", "You are welcome.</s>"));
  // Every </s> of an assistant turn is trained; user/system </s> are not.
  int trained_eos = 0, eos = 0;
  for (size_t i = 0; i < chat.ids.size(); ++i) {
    if (chat.ids[i] == 2) {
      ++eos;
      trained_eos += chat.mask[i];
    }
  }
  EXPECT_EQ(eos, 7);
  EXPECT_EQ(trained_eos, 3);
}

TEST(ChatMasksTest, QwenImEndNewlineHasOneTrainedTerminatorPerTurn) {
  const Tokenizer& tok = SharedTokenizer("tokenizers/qwen3");
  int32_t im_end = *tok.TokenToId("<|im_end|>");
  ChatTemplate chatml = Builtin("chatml");
  ASSERT_OK_AND_ASSIGN(EncodedChat chat, EncodeChatWithMask(tok, chatml, ThreeExchanges()));
  EXPECT_THAT(TrainedRuns(tok, chat),
              ElementsAre("2+2 = 4.<|im_end|>", "3+3 = 6.<|im_end|>", "You are welcome.<|im_end|>"));
  for (size_t i = 0; i + 1 < chat.ids.size(); ++i) {
    if (chat.ids[i] == im_end && chat.mask[i]) {
      EXPECT_EQ(chat.mask[i + 1], 0) << "the newline after <|im_end|>";
    }
  }
  // Qwen3's own template (thinking, tools) works with the prefix method too.
  ASSERT_OK_AND_ASSIGN(auto own, ChatTemplate::Parse(tok.chat_template()));
  ASSERT_OK_AND_ASSIGN(EncodedChat chat3, EncodeChatWithMask(tok, own, ThreeExchanges()));
  std::vector<std::string> runs = TrainedRuns(tok, chat3);
  ASSERT_EQ(runs.size(), 3u);
  EXPECT_EQ(runs[0], "2+2 = 4.<|im_end|>");
  EXPECT_EQ(runs[1], "3+3 = 6.<|im_end|>");
  EXPECT_EQ(runs[2], "<think>\n\n</think>\n\nYou are welcome.<|im_end|>");

  ASSERT_OK_AND_ASSIGN(PromptCompletionIds pc,
                       EncodePromptCompletion(tok, &chatml, json::array({{{"role", "user"}, {"content", "Hi"}}}), "Hello!"));
  EXPECT_EQ(pc.completion_text, "Hello!<|im_end|>");
  EXPECT_EQ(pc.completion_ids.back(), im_end);
  EXPECT_EQ(std::count(pc.completion_ids.begin(), pc.completion_ids.end(), im_end), 1);
  EXPECT_EQ(pc.prompt_text, "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
}

TEST(ChatMasksTest, TemplateThatRendersBosWithAddSpecialGivesOneBos) {
  // stories260K's post-processor adds <s>; the mistral template renders bos_token itself.
  const Tokenizer& tok = SharedTokenizer("models/stories260K");
  json msgs = json::array({{{"role", "user"}, {"content", "Hi"}}, {{"role", "assistant"}, {"content", "Hello"}}});
  ASSERT_OK_AND_ASSIGN(EncodedChat chat, EncodeChatWithMask(tok, Builtin("mistral"), msgs));
  ASSERT_TRUE(absl::StartsWith(chat.rendered, "<s>[INST]"));
  EXPECT_EQ(chat.ids[0], 1);
  EXPECT_EQ(std::count(chat.ids.begin(), chat.ids.end(), 1), 1);
  EXPECT_THAT(TrainedRuns(tok, chat), ElementsAre("Hello</s>"));
  // Llama-3: no BOS from the post-processor, one from the template.
  const Tokenizer& llama3 = SharedTokenizer("tokenizers/llama3");
  ASSERT_OK_AND_ASSIGN(auto own, ChatTemplate::Parse(llama3.chat_template()));
  ASSERT_OK_AND_ASSIGN(EncodedChat c3, EncodeChatWithMask(llama3, own, ThreeExchanges()));
  EXPECT_EQ(c3.ids[0], 128000);
  EXPECT_EQ(std::count(c3.ids.begin(), c3.ids.end(), 128000), 1);
  // The original Llama-3 template always appends the generation prompt; masks still stop at <|eot_id|>.
  EXPECT_THAT(TrainedRuns(llama3, c3), ElementsAre("2+2 = 4.<|eot_id|>", "3+3 = 6.<|eot_id|>", "You are welcome.<|eot_id|>"));
  // Without special tokens nothing is added, and a template BOS stays single.
  ChatEncodeOptions no_special;
  no_special.add_special_tokens = false;
  ASSERT_OK_AND_ASSIGN(EncodedChat ns, EncodeChatWithMask(tok, Builtin("mistral"), msgs, no_special));
  EXPECT_EQ(std::count(ns.ids.begin(), ns.ids.end(), 1), 1);
  EXPECT_EQ(EncodeRendered(tok, "<s>[INST] Hi", true), EncodeRendered(tok, "<s>[INST] Hi", false));
}

TEST(ChatMasksTest, GenerationSpanEndingAtTokenZeroMarksOnlyTokenZero) {
  // Transformers once masked the whole sequence when a span ended at token 0 (`if end_token`).
  const Tokenizer& tok = SharedTokenizer("tokenizers/gpt2");
  ASSERT_OK_AND_ASSIGN(auto tmpl, ChatTemplate::Parse(
      "{% for m in messages %}{% if m.role == 'assistant' %}{% generation %}{{ m.content }}{% endgeneration %}"
      "{% else %}{{ m.content }}{% endif %}{% endfor %}"));
  json msgs = json::array({{{"role", "assistant"}, {"content", "Hi"}}, {{"role", "user"}, {"content", " there friend"}}});
  ASSERT_OK_AND_ASSIGN(EncodedChat chat, EncodeChatWithMask(tok, tmpl, msgs));
  EXPECT_EQ(chat.rendered, "Hi there friend");
  EXPECT_THAT(chat.ids, ElementsAre(17250, 612, 1545));
  EXPECT_THAT(chat.mask, ElementsAre(1, 0, 0));
  // An empty generation block trains nothing.
  json empty = json::array({{{"role", "assistant"}, {"content", ""}}, {{"role", "user"}, {"content", "x"}}});
  ASSERT_OK_AND_ASSIGN(EncodedChat e, EncodeChatWithMask(tok, tmpl, empty));
  EXPECT_THAT(e.mask, ElementsAre(0));
}

TEST(ChatMasksTest, GenerationBlocksAreUsedWhenPresent) {
  const Tokenizer& tok = SharedTokenizer("tokenizers/qwen3");
  ASSERT_OK_AND_ASSIGN(auto tmpl, ChatTemplate::Parse(
      "{% for m in messages %}{{ '<|im_start|>' + m.role + '\\n' }}{% if m.role == 'assistant' %}{% generation %}"
      "{{ m.content + '<|im_end|>' }}{% endgeneration %}{{ '\\n' }}{% else %}{{ m.content + '<|im_end|>\\n' }}{% endif %}"
      "{% endfor %}"));
  ASSERT_OK_AND_ASSIGN(EncodedChat chat, EncodeChatWithMask(tok, tmpl, ThreeExchanges()));
  EXPECT_THAT(TrainedRuns(tok, chat),
              ElementsAre("2+2 = 4.<|im_end|>", "3+3 = 6.<|im_end|>", "You are welcome.<|im_end|>"));
}

TEST(ChatMasksTest, PromptEndingInSpaceIsTokenizedApartFromTheAnswer) {
  for (const char* name : {"tokenizers/llama3", "models/stories260K", "tokenizers/gpt2"}) {
    SCOPED_TRACE(name);
    const Tokenizer& tok = SharedTokenizer(name);
    std::string prompt = "\n\nHuman: What is the capital of France?\n\nAssistant: ";
    ASSERT_OK_AND_ASSIGN(auto chosen, EncodePromptCompletion(tok, nullptr, prompt, "Paris."));
    ASSERT_OK_AND_ASSIGN(auto rejected, EncodePromptCompletion(tok, nullptr, prompt, "London, I think."));
    EXPECT_EQ(chosen.prompt_ids, rejected.prompt_ids);
    EXPECT_EQ(chosen.prompt_ids, tok.Encode(prompt, true));  // the trailing space stays in the prompt
    EXPECT_EQ(chosen.completion_ids.back(), *tok.eos_id());
    std::vector<int32_t> answer(chosen.completion_ids.begin(), chosen.completion_ids.end() - 1);
    EXPECT_EQ(answer, tok.Encode("Paris.", false));
  }
}

TEST(ChatMasksTest, ChatPromptCompletionSharesPromptIds) {
  const Tokenizer& tok = SharedTokenizer("models/stories260K");
  ASSERT_OK_AND_ASSIGN(auto tmpl, ChatTemplate::Parse(tok.chat_template()));
  json prompt = json::array({{{"role", "user"}, {"content", "Tell me a story."}}});
  ASSERT_OK_AND_ASSIGN(auto a, EncodePromptCompletion(tok, &tmpl, prompt, "Once upon a time."));
  ASSERT_OK_AND_ASSIGN(auto b, EncodePromptCompletion(tok, &tmpl, prompt, "No."));
  EXPECT_EQ(a.prompt_ids, b.prompt_ids);
  EXPECT_EQ(a.prompt_text, "<|user|>\nTell me a story.</s>\n<|assistant|>\n");
  EXPECT_EQ(a.completion_text, "Once upon a time.</s>");
  EXPECT_EQ(a.prompt_ids[0], 1);
  EXPECT_EQ(std::count(a.completion_ids.begin(), a.completion_ids.end(), 2), 1);
  EXPECT_EQ(a.completion_ids.back(), 2);
}

TEST(ChatMasksTest, BadMessagesAreClearErrors) {
  const Tokenizer& tok = SharedTokenizer("models/stories260K");
  ChatTemplate z = Builtin("zephyr");
  EXPECT_THAT(EncodeChatWithMask(tok, z, json::array({{{"content", "x"}}})),
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::HasSubstr("messages[0]")));
  EXPECT_THAT(EncodeChatWithMask(tok, z, json::object()), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(EncodePromptCompletion(tok, nullptr, json::array(), "x"), StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace align::engine
