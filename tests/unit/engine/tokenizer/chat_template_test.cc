// Chat templates against Hugging Face's renderings (goldens/chat_templates.jsonl, TGI's cases with
// transformers' expected output), parser robustness on real templates, and interpreter semantics.
#include "worker/engine/tokenizer/chat_template.h"

#include <filesystem>

#include "common/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/engine/tokenizer/test_util.h"
#include "worker/engine/tokenizer/chat_masks.h"

namespace align::engine {
namespace {

using ::align::testing::DataPath;
using ::align::testing::StatusIs;
using ::testing::HasSubstr;
using nlohmann::json;
using testing::ReadFile;
using testing::ReadJsonLines;
using testing::SharedTokenizer;

std::string RenderOrDie(const std::string& source, const json& context) {
  auto t = ChatTemplate::Parse(source);
  if (!t.ok()) return "PARSE ERROR: " + std::string(t.status().message());
  auto r = t->RenderContext(context);
  if (!r.ok()) return "RENDER ERROR: " + std::string(r.status().message());
  return r->text;
}

TEST(ChatTemplateGoldenTest, EveryRenderingMatchesHuggingFaceByteForByte) {
  auto lines = ReadJsonLines(DataPath("goldens/chat_templates.jsonl"));
  ASSERT_EQ(lines.size(), 48u);
  int errors_expected = 0;
  for (const auto& g : lines) {
    SCOPED_TRACE(g["template_name"].get<std::string>() + "/" + g["conversation"].get<std::string>());
    ASSERT_OK_AND_ASSIGN(ChatTemplate t, ChatTemplate::Parse(g["template"]));
    json vars = {{"bos_token", g["bos_token"]}, {"eos_token", g["eos_token"]}};
    auto r = t.Render(g["messages"], g["add_generation_prompt"].get<bool>(), vars);
    if (g["rendered"].is_object()) {
      ++errors_expected;
      EXPECT_THAT(r, StatusIs(absl::StatusCode::kInvalidArgument));
      EXPECT_EQ(r.status().message(), g["rendered"]["error"].get<std::string>());
    } else {
      ASSERT_OK(r);
      EXPECT_EQ(*r, g["rendered"].get<std::string>());
    }
  }
  EXPECT_EQ(errors_expected, 1);
}

TEST(ChatTemplateGoldenTest, TgiCasesMatchTransformersRendering) {
  json doc = json::parse(ReadFile(DataPath("test-vectors/chat-templates/tgi_chat_template_cases.json")));
  ASSERT_EQ(doc["cases"].size(), 6u);
  for (const auto& c : doc["cases"]) {
    SCOPED_TRACE(c["name"].get<std::string>());
    ASSERT_OK_AND_ASSIGN(ChatTemplate t, ChatTemplate::Parse(c["chat_template"]));
    json vars = {{"bos_token", c["bos_token"]}, {"eos_token", c["eos_token"]}};
    ASSERT_OK_AND_ASSIGN(std::string r, t.Render(c["messages"], c["add_generation_prompt"].get<bool>(), vars));
    EXPECT_EQ(r, c["target_hf_transformers_jinja2"].get<std::string>());
  }
}

TEST(ChatTemplateGoldenTest, ExtraTemplatesAllParseAndRender) {
  json messages = json::array({{{"role", "system"}, {"content", "Be brief."}},
                               {{"role", "user"}, {"content", "Hi"}},
                               {{"role", "assistant"}, {"content", "Hello!"}},
                               {{"role", "user"}, {"content", "Bye"}}});
  int parsed = 0;
  for (const auto& entry : std::filesystem::directory_iterator(DataPath("test-vectors/chat-templates/extra-templates"))) {
    if (entry.path().extension() != ".jinja") continue;
    SCOPED_TRACE(entry.path().filename().string());
    ASSERT_OK_AND_ASSIGN(ChatTemplate t, ChatTemplate::Parse(ReadFile(entry.path().string())));
    ++parsed;
    // Rendering may legitimately raise (e.g. templates that reject a system role), but must not
    // fail for any other reason.
    auto r = t.Render(messages, true, {{"bos_token", "<s>"}, {"eos_token", "</s>"}});
    if (!r.ok()) {
      EXPECT_THAT(std::string(r.status().message()), ::testing::Not(HasSubstr("chat template error"))) << r.status();
    }
  }
  EXPECT_EQ(parsed, 18);
}

TEST(ChatTemplateTest, BuiltinsAndTokenizerTemplate) {
  EXPECT_THAT(BuiltinChatTemplateNames(), ::testing::ElementsAre("zephyr", "chatml", "llama-3", "mistral"));
  EXPECT_THAT(BuiltinChatTemplate("nope"), StatusIs(absl::StatusCode::kNotFound, HasSubstr("zephyr, chatml")));
  const Tokenizer& stories = SharedTokenizer("models/stories260K");
  ASSERT_OK_AND_ASSIGN(std::string own, ResolveChatTemplate("tokenizer", stories));
  ASSERT_OK_AND_ASSIGN(std::string zephyr, BuiltinChatTemplate("zephyr"));
  EXPECT_EQ(own, zephyr);  // stories260K ships zephyr-7b-beta's template
  const Tokenizer& gpt2 = SharedTokenizer("tokenizers/gpt2");
  EXPECT_THAT(ResolveChatTemplate("tokenizer", gpt2), StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(ResolveChatTemplate("/no/such/template.jinja", gpt2), StatusIs(absl::StatusCode::kNotFound));
  ASSERT_OK_AND_ASSIGN(std::string file, ResolveChatTemplate(DataPath("tokenizers/mistral-v1-spm/v1_spm.jinja"), gpt2));
  EXPECT_THAT(file, HasSubstr("[INST]"));

  json msgs = json::array({{{"role", "user"}, {"content", "Hi"}}, {{"role", "assistant"}, {"content", "Yo"}}});
  ASSERT_OK_AND_ASSIGN(auto chatml, ChatTemplate::Parse(*BuiltinChatTemplate("chatml")));
  EXPECT_EQ(*chatml.Render(msgs, true), "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nYo<|im_end|>\n<|im_start|>assistant\n");
  ASSERT_OK_AND_ASSIGN(auto llama3, ChatTemplate::Parse(*BuiltinChatTemplate("llama-3")));
  EXPECT_EQ(*llama3.Render(msgs, false, {{"bos_token", "<|begin_of_text|>"}}),
            "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nYo<|eot_id|>");
  ASSERT_OK_AND_ASSIGN(auto mistral, ChatTemplate::Parse(*BuiltinChatTemplate("mistral")));
  EXPECT_EQ(*mistral.Render(msgs, false, {{"bos_token", "<s>"}, {"eos_token", "</s>"}}), "<s>[INST] Hi [/INST]Yo</s>");
}

TEST(ChatTemplateTest, SyntaxErrorsReportLineAndColumn) {
  EXPECT_THAT(ChatTemplate::Parse("hello\n{% if x %}\nunclosed"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("expected {% endif %}")));
  EXPECT_THAT(ChatTemplate::Parse("line one\n  {{ a + }}"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("line 2, column 10")));
  EXPECT_THAT(ChatTemplate::Parse("{% frobnicate %}"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("line 1, column 4: unknown statement 'frobnicate'")));
  EXPECT_THAT(ChatTemplate::Parse("{{ 'abc }}"), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("unterminated string")));
  EXPECT_THAT(ChatTemplate::Parse("{% for x in y %}{{ x }}"), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("endfor")));
}

TEST(ChatTemplateTest, InterpreterSemantics) {
  json ctx = {{"messages", json::array({{{"role", "user"}, {"content", "  Hello World  "}}, {{"role", "assistant"}, {"content", "ok"}}})},
              {"n", 7}, {"s", "a,b,,c"}, {"tools", json::array({{{"name", "f"}, {"args", {{"x", 1}}}}})}};
  // trim_blocks + lstrip_blocks: block lines leave no whitespace behind.
  EXPECT_EQ(RenderOrDie("{% for m in messages %}\n  {% if m.role == 'user' %}\n[{{ m.content | trim }}]\n  {% endif %}\n{% endfor %}", ctx), "[Hello World]\n");
  EXPECT_EQ(RenderOrDie("a  {%- if true -%}  b  {%- endif -%}  c", ctx), "abc");
  EXPECT_EQ(RenderOrDie("{{ messages|length }} {{ messages[-1].content }} {{ messages[0]['role'] }}", ctx), "2 ok user");
  EXPECT_EQ(RenderOrDie("{% for m in messages %}{{ loop.index }}/{{ loop.length }}{% if loop.first %}F{% endif %}{% if loop.last %}L{% endif %} {% endfor %}", ctx), "1/2F 2/2L ");
  EXPECT_EQ(RenderOrDie("{% set ns = namespace(c=0) %}{% for m in messages %}{% set ns.c = ns.c + 1 %}{% endfor %}{{ ns.c }}", ctx), "2");
  // A plain set inside a loop does not leak out (Jinja2 scoping).
  EXPECT_EQ(RenderOrDie("{% set c = 0 %}{% for m in messages %}{% set c = c + 1 %}{% endfor %}{{ c }}", ctx), "0");
  EXPECT_EQ(RenderOrDie("{{ messages[::-1][0].role }} {{ 'abcdef'[1:4] }} {{ [1,2,3,4][-2:] }}", ctx), "assistant bcd [3, 4]");
  EXPECT_EQ(RenderOrDie("{{ s.split(',') }} {{ ' x '.strip() }}|{{ 'xxhixx'.strip('x') }} {{ 'Hi'.startswith('H') }} {{ 'Hi'.endswith(('a','i')) }}", ctx),
            "['a', 'b', '', 'c'] x|hi True True");
  EXPECT_EQ(RenderOrDie("{{ tools[0] | tojson }}", ctx), "{\"args\": {\"x\": 1}, \"name\": \"f\"}");
  EXPECT_EQ(RenderOrDie("{{ undefined_var is defined }} {{ n is defined }} {{ n is not none }} {{ undefined_var | default('d') }}", ctx), "False True True d");
  EXPECT_EQ(RenderOrDie("{{ n // 2 }} {{ n % 3 }} {{ n / 2 }} {{ -n }} {{ 2 ** 3 }} {{ 'a' ~ n }}", ctx), "3 1 3.5 -7 8 a7");
  EXPECT_EQ(RenderOrDie("{{ 'x' if n > 5 else 'y' }} {{ 'ell' in 'hello' }} {{ 3 not in [1,2] }} {{ none }} {{ true }}", ctx), "x True True None True");
  EXPECT_EQ(RenderOrDie("{% for k, v in {'a': 1, 'b': 2}.items() %}{{ k }}={{ v }};{% endfor %}", ctx), "a=1;b=2;");
  EXPECT_EQ(RenderOrDie("{% for m in messages if m.role == 'assistant' %}{{ m.content }}{% endfor %}", ctx), "ok");
  EXPECT_EQ(RenderOrDie("{% for i in range(5) %}{% if i == 3 %}{% break %}{% endif %}{% if i == 1 %}{% continue %}{% endif %}{{ i }}{% endfor %}", ctx), "02");
  EXPECT_EQ(RenderOrDie("{% macro greet(who, p='!') %}hi {{ who }}{{ p }}{% endmacro %}{{ greet('bob') }} {{ greet('al', p='?') }}", ctx), "hi bob! hi al?");
  EXPECT_EQ(RenderOrDie("{{ messages | map(attribute='role') | join(', ') }} {{ messages | selectattr('role', 'equalto', 'user') | list | length }}", ctx), "user, assistant 1");
  EXPECT_EQ(RenderOrDie("{# a comment #}\n{%- set x = 'A' %}{{ x | lower }}{{ 'b' | upper }}{{ 'hello world' | title }}", ctx), "aBHello World");
  EXPECT_EQ(RenderOrDie("{% raw %}{{ not rendered }}{% endraw %}", ctx), "{{ not rendered }}");
  EXPECT_EQ(RenderOrDie("{{ '\\u00e9\\n' | length }} {{ 'héllo'[1] }}", ctx), "2 é");
  EXPECT_EQ(RenderOrDie("{{ raise_exception('boom: ' + n|string) }}", ctx), "RENDER ERROR: boom: 7");
  EXPECT_THAT(RenderOrDie("{{ messages[0].nope.deeper }}", ctx), HasSubstr("line 1, column"));
  EXPECT_THAT(RenderOrDie("{{ 'a' + 1 }}", ctx), HasSubstr("unsupported operand"));
  EXPECT_THAT(RenderOrDie("{{ x | nosuchfilter }}", ctx), HasSubstr("no filter named 'nosuchfilter'"));
}

TEST(ChatTemplateTest, GenerationBlocksRecordSpans) {
  ASSERT_OK_AND_ASSIGN(auto t, ChatTemplate::Parse(
      "{% for m in messages %}{% if m.role == 'assistant' %}A: {% generation %}{{ m.content }}!{% endgeneration %}\n"
      "{% else %}U: {{ m.content }}\n{% endif %}{% endfor %}"));
  EXPECT_TRUE(t.has_generation_blocks());
  json msgs = json::array({{{"role", "user"}, {"content", "q"}}, {{"role", "assistant"}, {"content", "ans"}}});
  ASSERT_OK_AND_ASSIGN(RenderResult r, t.RenderWithSpans(msgs, false));
  EXPECT_EQ(r.text, "U: q\nA: ans!");  // trim_blocks eats the newline after endgeneration
  ASSERT_EQ(r.generation_spans.size(), 1u);
  EXPECT_EQ(r.text.substr(r.generation_spans[0].begin, r.generation_spans[0].end - r.generation_spans[0].begin), "ans!");
}

TEST(ChatTemplateTest, MistralSevenMessageChatMatchesReferenceIds) {
  const Tokenizer& tok = SharedTokenizer("tokenizers/mistral-v1-spm");
  json sample = json::parse(ReadFile(DataPath("tokenizers/mistral-v1-spm/no_tools_sample.json")));
  json want = json::parse(ReadFile(DataPath("tokenizers/mistral-v1-spm/no_tools_tokens_v1.json")))["tokens"];
  ASSERT_OK_AND_ASSIGN(auto t, ChatTemplate::Parse(ReadFile(DataPath("tokenizers/mistral-v1-spm/v1_spm.jinja"))));
  json vars = TemplateVarsFor(tok);
  vars["tools"] = sample["tools"];
  ASSERT_OK_AND_ASSIGN(std::string rendered, t.Render(sample["messages"], false, vars));
  EXPECT_EQ(EncodeRendered(tok, rendered, true), want.get<std::vector<int32_t>>());
  EXPECT_EQ(tok.Encode(rendered, false), want.get<std::vector<int32_t>>());
}

}  // namespace
}  // namespace align::engine
