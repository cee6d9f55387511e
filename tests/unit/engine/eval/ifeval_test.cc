#include "worker/engine/eval/ifeval.h"

#include <fstream>

#include "common/testing/status_matchers.h"
#include "common/testing/test_data.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "worker/engine/eval/language_detect.h"

namespace align::engine::eval {
namespace {

using ::align::testing::DataPath;
using ::align::testing::StatusIs;

bool Check(const std::string& id, const nlohmann::json& kw, const std::string& response) {
  auto r = CheckInstruction(id, kw, response);
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() && *r;
}

TEST(IfEvalCheckers, AllTwentyFiveRegistered) {
  EXPECT_EQ(IfEvalInstructionIds().size(), 25u);
  EXPECT_THAT(CheckInstruction("keywords:nope", {}, "x"), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(CheckInstruction("length_constraints:number_words", {{"relation", "at least"}}, "x"),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

// Cases from the reference's instructions_test.py and hand-made edge cases.
TEST(IfEvalCheckers, Cases) {
  EXPECT_TRUE(Check("punctuation:no_comma", {}, "no commas here"));
  EXPECT_FALSE(Check("punctuation:no_comma", {}, "one, two"));
  EXPECT_FALSE(Check("punctuation:no_comma", {}, "   "));  // empty responses never follow
  EXPECT_TRUE(Check("detectable_content:number_placeholders", {{"num_placeholders", 2}},
                    "Dear [name], at [address]."));
  EXPECT_FALSE(Check("detectable_content:number_placeholders", {{"num_placeholders", 3}},
                     "Dear [name], at [address]."));
  EXPECT_TRUE(Check("detectable_format:number_bullet_lists", {{"num_bullets", 3}},
                    "Intro\n* one\n* two\n- three\n**bold** line"));
  EXPECT_TRUE(Check("detectable_format:number_highlighted_sections", {{"num_highlights", 2}},
                    "*first* and **second** and ** **"));
  EXPECT_FALSE(Check("detectable_format:number_highlighted_sections", {{"num_highlights", 2}},
                     "*first* and * *"));
  EXPECT_TRUE(Check("detectable_format:multiple_sections",
                    {{"section_spliter", "Section"}, {"num_sections", 2}},
                    "Section 1\nfoo\nSection 2\nbar"));
  EXPECT_FALSE(Check("detectable_format:multiple_sections",
                     {{"section_spliter", "SECTION"}, {"num_sections", 3}},
                     "SECTION 1\nfoo\nSECTION 2\nbar"));
  EXPECT_TRUE(Check("length_constraints:number_paragraphs", {{"num_paragraphs", 2}},
                    "para one\n***\npara two\n***"));
  EXPECT_FALSE(Check("length_constraints:number_paragraphs", {{"num_paragraphs", 2}},
                     "para one\n***\n***\npara two"));
  EXPECT_TRUE(Check("length_constraints:nth_paragraph_first_word",
                    {{"num_paragraphs", 2}, {"nth_paragraph", 2}, {"first_word", "Bob"}},
                    "Hello there.\n\n\"bob, said the cat\""));
  EXPECT_TRUE(Check("detectable_content:postscript", {{"postscript_marker", "P.S."}},
                    "Body text.\nP.S. see you"));
  EXPECT_TRUE(Check("detectable_content:postscript", {{"postscript_marker", "P.P.S"}},
                    "Body.\np. p. s. more"));
  EXPECT_FALSE(Check("detectable_content:postscript", {{"postscript_marker", "P.S."}}, "Body."));
  EXPECT_TRUE(Check("detectable_format:json_format", {}, "```json\n{\"a\": [1, 2]}\n```"));
  EXPECT_FALSE(Check("detectable_format:json_format", {}, "{a: 1}"));
  EXPECT_TRUE(Check("detectable_format:title", {}, "<<My Title>>\ntext"));
  EXPECT_FALSE(Check("detectable_format:title", {}, "<< >>\ntext"));
  EXPECT_TRUE(Check("combination:two_responses", {}, "first answer\n******\nsecond answer"));
  EXPECT_FALSE(Check("combination:two_responses", {}, "same\n******\nsame"));
  EXPECT_TRUE(Check("combination:repeat_prompt", {{"prompt_to_repeat", "Write a poem."}},
                    "  write a POEM. Here it is"));
  EXPECT_TRUE(Check("startend:end_checker", {{"end_phrase", "Any other questions?"}},
                    "Done. any other questions?\""));
  EXPECT_TRUE(Check("startend:quotation", {}, " \"quoted\" "));
  EXPECT_FALSE(Check("startend:quotation", {}, "\""));
  EXPECT_TRUE(Check("detectable_format:constrained_response", {}, "Well. My answer is no."));
  EXPECT_TRUE(Check("keywords:existence", {{"keywords", {"Apple", "pie"}}}, "apple PIE"));
  EXPECT_FALSE(Check("keywords:existence", {{"keywords", {"apple", "cake"}}}, "apple pie"));
  EXPECT_TRUE(Check("keywords:frequency", {{"keyword", "the"}, {"frequency", 3}, {"relation", "at least"}},
                    "The theme of the day"));
  EXPECT_TRUE(Check("keywords:frequency", {{"keyword", "dog"}, {"frequency", 2}, {"relation", "less than"}},
                    "one dog"));
  EXPECT_FALSE(Check("keywords:forbidden_words", {{"forbidden_words", {"cat"}}}, "A Cat sat"));
  EXPECT_TRUE(Check("keywords:forbidden_words", {{"forbidden_words", {"cat"}}}, "concatenate"));
  EXPECT_TRUE(Check("keywords:letter_frequency",
                    {{"letter", "z"}, {"let_frequency", 3}, {"let_relation", "at least"}}, "Zig zag Zoo"));
  EXPECT_TRUE(Check("length_constraints:number_words", {{"num_words", 4}, {"relation", "less than"}},
                    "three small words"));
  EXPECT_TRUE(Check("length_constraints:number_sentences", {{"num_sentences", 3}, {"relation", "at least"}},
                    "Dr. Smith came. He sat! Was it 3.5 hours? Yes."));
  EXPECT_FALSE(Check("length_constraints:number_sentences", {{"num_sentences", 4}, {"relation", "less than"}},
                     "Dr. Smith came. He sat! Was it 3.5 hours? Yes."));
  EXPECT_TRUE(Check("change_case:english_capital", {}, "THIS IS ALL CAPITALS AND IT IS ENGLISH."));
  EXPECT_FALSE(Check("change_case:english_capital", {}, "THIS IS Not."));
  EXPECT_TRUE(Check("change_case:english_lowercase", {}, "this is all lowercase and in english."));
  EXPECT_TRUE(Check("change_case:capital_word_frequency",
                    {{"capital_frequency", 3}, {"capital_relation", "at least"}},
                    "The USA and NASA DON'T mind."));
  EXPECT_TRUE(Check("language:response_language", {{"language", "de"}},
                    "Das ist ein kleiner Text, und er ist nicht auf Englisch geschrieben."));
}

TEST(IfEvalCheckers, SentenceSplitter) {
  EXPECT_EQ(SplitIntoSentences("Mr. Smith went to Washington. He saw the U.S.A. capital!"),
            (std::vector<std::string>{"Mr. Smith went to Washington.", "He saw the U.S.A. capital!"}));
}

TEST(LanguageDetect, Scripts) {
  EXPECT_EQ(DetectLanguage("The quick brown fox jumps over the lazy dog, and that is all."), "en");
  EXPECT_EQ(DetectLanguage("Это небольшой текст, который написан на русском языке."), "ru");
  EXPECT_EQ(DetectLanguage("यह एक छोटा सा पाठ है और यह हिंदी में है।"), "hi");
  EXPECT_EQ(DetectLanguage("한국어로 쓴 짧은 글입니다."), "ko");
  EXPECT_EQ(DetectLanguage("これは日本語の短い文章です。"), "ja");
  EXPECT_EQ(DetectLanguage("ข้อความสั้น ๆ เป็นภาษาไทย"), "th");
  EXPECT_EQ(DetectLanguage("Hii ni sentensi fupi kwa lugha ya Kiswahili na ni nzuri sana."), "sw");
  EXPECT_EQ(DetectLanguage("1234 !!"), "");
}

// The four accuracies over the 541 published GPT-4 responses (docs/evaluation.md). The figures
// are this implementation's; a change in any checker moves them, which is the point.
TEST(IfEvalGpt4, FourAccuracies) {
  ASSERT_OK_AND_ASSIGN(auto prompts, LoadIfEvalPrompts(DataPath("eval/ifeval/input_data.jsonl")));
  // The response file lists the prompts in input_data.jsonl's order. One prompt (key 2785) was
  // reworded upstream after the GPT-4 run ("at least one placeholder" -> "at least 3"), so
  // responses are paired by line and that one is scored against the current instruction.
  const std::string path = DataPath("eval/ifeval/input_response_data_gpt4_20231107_145030.jsonl");
  ASSERT_OK_AND_ASSIGN(auto by_prompt, LoadIfEvalResponses(path));
  std::ifstream in(path);
  std::vector<std::string> ordered;
  std::string line;
  int same_prompt = 0;
  while (std::getline(in, line)) {
    const auto j = nlohmann::json::parse(line);
    ASSERT_LT(ordered.size(), prompts.size());
    same_prompt += j["prompt"] == prompts[ordered.size()].prompt;
    ordered.push_back(j["response"].get<std::string>());
  }
  EXPECT_EQ(same_prompt, 540);
  EXPECT_EQ(by_prompt.count(prompts[339].prompt), 0u);
  EXPECT_EQ(prompts[339].key, 2785);
  ASSERT_OK_AND_ASSIGN(IfEvalScores s, ScoreIfEval(prompts, ordered));
  EXPECT_EQ(s.prompts, 541);
  EXPECT_EQ(s.instructions, 834);
  std::printf("IFEval GPT-4: prompt strict %.4f, instruction strict %.4f, prompt loose %.4f, "
              "instruction loose %.4f\n", s.prompt_strict, s.instruction_strict, s.prompt_loose,
              s.instruction_loose);
  for (const auto& [id, acc] : s.per_instruction_strict) std::printf("  %s %.4f\n", id.c_str(), acc);
  EXPECT_NEAR(s.prompt_strict, 412.0 / 541, 1e-9);
  EXPECT_NEAR(s.instruction_strict, 693.0 / 834, 1e-9);
  EXPECT_NEAR(s.prompt_loose, 427.0 / 541, 1e-9);
  EXPECT_NEAR(s.instruction_loose, 711.0 / 834, 1e-9);
}

}  // namespace
}  // namespace align::engine::eval
