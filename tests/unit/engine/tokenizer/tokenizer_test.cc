// Tokenizer ids against Hugging Face's own outputs (goldens/tokenize), llama.cpp's tricky-string
// vectors, and decode(encode(x)) == x on the real datasets.
#include "worker/engine/tokenizer/tokenizer.h"

#include <filesystem>
#include <functional>

#include "absl/strings/str_split.h"
#include "common/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/engine/tokenizer/test_util.h"
#include "worker/engine/tokenizer/unicode_util.h"
#include "absl/strings/match.h"

namespace align::engine {
namespace {

using ::align::testing::DataPath;
using ::align::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using testing::ReadFile;
using testing::ReadJsonLines;
using testing::SharedTokenizer;

struct GoldenCase {
  const char* tokenizer;  // data-relative
  const char* golden;     // goldens/tokenize/<name>
};

class GoldenTest : public ::testing::TestWithParam<GoldenCase> {};

TEST_P(GoldenTest, IdsMatchHuggingFace) {
  const Tokenizer& tok = SharedTokenizer(GetParam().tokenizer);
  for (bool with_special : {false, true}) {
    std::string path = DataPath(std::string("goldens/tokenize/") + GetParam().golden +
                                (with_special ? ".with_special.jsonl" : ".jsonl"));
    auto lines = ReadJsonLines(path);
    ASSERT_FALSE(lines.empty()) << path;
    int mismatches = 0;
    for (const auto& line : lines) {
      std::string text = line["text"];
      std::vector<int32_t> want = line["ids"].get<std::vector<int32_t>>();
      std::vector<int32_t> got = tok.Encode(text, with_special);
      if (got != want && ++mismatches <= 5) {
        ADD_FAILURE() << path << " text=" << nlohmann::json(text).dump()
                      << "\n want=" << nlohmann::json(want).dump() << "\n  got=" << nlohmann::json(got).dump();
      }
    }
    EXPECT_EQ(mismatches, 0) << path;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Tokenizers, GoldenTest,
    ::testing::Values(GoldenCase{"tokenizers/gpt2", "gpt2"}, GoldenCase{"tokenizers/gpt2/vocab.json", "gpt2"},
                      GoldenCase{"tokenizers/llama3", "llama3"}, GoldenCase{"tokenizers/qwen3", "qwen3"},
                      GoldenCase{"tokenizers/hf-mistral-v0.1", "mistral"},
                      GoldenCase{"models/stories260K", "stories260K"},
                      GoldenCase{"models/stories260K", "stories260K.zephyr_chat"}),
    [](const auto& info) {
      std::string n = std::string(info.param.golden) + (absl::EndsWith(info.param.tokenizer, ".json") ? "_vocab_merges" : "");
      for (char& c : n) {
        if (!isalnum(static_cast<unsigned char>(c))) c = '_';
      }
      return n;
    });

struct LlamaCppCase {
  const char* tokenizer;
  const char* vocab;
};

class LlamaCppTest : public ::testing::TestWithParam<LlamaCppCase> {};

TEST_P(LlamaCppTest, IdsMatchVectors) {
  const Tokenizer& tok = SharedTokenizer(GetParam().tokenizer);
  std::string base = DataPath(std::string("test-vectors/llama.cpp-tokenizer/ggml-vocab-") + GetParam().vocab + ".gguf");
  std::vector<std::string> inputs = absl::StrSplit(ReadFile(base + ".inp"), "\n__ggml_vocab_test__\n");
  std::vector<std::string> outputs = absl::StrSplit(ReadFile(base + ".out"), "\n");
  ASSERT_EQ(inputs.size(), outputs.size());
  ASSERT_GT(inputs.size(), 30u);
  int mismatches = 0;
  for (size_t i = 0; i + 1 < inputs.size(); ++i) {
    std::vector<int32_t> want;
    for (absl::string_view s : absl::StrSplit(outputs[i], ' ', absl::SkipEmpty())) want.push_back(std::stoi(std::string(s)));
    std::vector<int32_t> got = tok.Encode(inputs[i], /*add_special_tokens=*/false);
    if (got != want && ++mismatches <= 5) {
      ADD_FAILURE() << GetParam().vocab << " text=" << nlohmann::json(inputs[i]).dump()
                    << "\n want=" << nlohmann::json(want).dump() << "\n  got=" << nlohmann::json(got).dump();
    }
  }
  EXPECT_EQ(mismatches, 0);
}

INSTANTIATE_TEST_SUITE_P(Vocabs, LlamaCppTest,
                         ::testing::Values(LlamaCppCase{"tokenizers/gpt2", "gpt-2"},
                                           LlamaCppCase{"tokenizers/llama3", "llama-bpe"},
                                           LlamaCppCase{"tokenizers/qwen3", "qwen2"},
                                           LlamaCppCase{"tokenizers/llama2-spm", "llama-spm"}),
                         [](const auto& info) {
                           std::string n = info.param.vocab;
                           for (char& c : n) {
                             if (c == '-') c = '_';
                           }
                           return n;
                         });

class RoundTripTest : public ::testing::TestWithParam<const char*> {};

TEST_P(RoundTripTest, DecodeEncodeIsIdentityOnDatasets) {
  const Tokenizer& tok = SharedTokenizer(GetParam());
  std::vector<std::string> texts = testing::HhRlhfTexts(150);
  // Every message of the OpenAssistant trees (replies nest).
  std::function<void(const nlohmann::json&)> collect = [&](const nlohmann::json& m) {
    if (m.contains("text") && m["text"].is_string()) texts.push_back(m["text"]);
    for (const auto& r : m.value("replies", nlohmann::json::array())) collect(r);
  };
  for (const auto& tree : ReadJsonLines(DataPath("datasets/oasst/en_100_tree.jsonl"))) collect(tree["prompt"]);
  ASSERT_EQ(texts.size(), 300u + 1167u);
  int failures = 0;
  for (const auto& t : texts) {
    std::string back = tok.Decode(tok.Encode(t, true), /*skip_special_tokens=*/true);
    // Qwen's tokenizer.json normalizes to NFC first, so (as in Hugging Face) the round trip gives
    // the NFC form of a text that was not already NFC.
    std::string want = absl::StrContains(GetParam(), "qwen") ? unicode::Normalize(t, unicode::NormalForm::kNFC) : t;
    if (back != want && ++failures <= 3) {
      ADD_FAILURE() << GetParam() << " round trip differs for " << nlohmann::json(t).dump().substr(0, 200)
                    << "\n got " << nlohmann::json(back).dump().substr(0, 200);
    }
  }
  EXPECT_EQ(failures, 0);
}

INSTANTIATE_TEST_SUITE_P(Tokenizers, RoundTripTest,
                         ::testing::Values("tokenizers/gpt2", "tokenizers/llama3", "tokenizers/qwen3",
                                           "tokenizers/hf-mistral-v0.1", "models/stories260K",
                                           "tokenizers/llama2-spm"),
                         [](const auto& info) {
                           std::string n = info.param;
                           for (char& c : n) {
                             if (!isalnum(static_cast<unsigned char>(c))) c = '_';
                           }
                           return n;
                         });

TEST(TokenizerTest, StoriesSpecialTokensAndConfig) {
  const Tokenizer& tok = SharedTokenizer("models/stories260K");
  EXPECT_EQ(tok.bos_id(), 1);
  EXPECT_EQ(tok.eos_id(), 2);
  EXPECT_EQ(tok.unk_id(), 0);
  EXPECT_EQ(tok.pad_id(), std::nullopt);
  EXPECT_EQ(tok.bos_token(), "<s>");
  EXPECT_EQ(tok.eos_token(), "</s>");
  EXPECT_TRUE(tok.add_bos_token());
  EXPECT_FALSE(tok.add_eos_token());
  EXPECT_EQ(tok.VocabSize(), 512);
  EXPECT_EQ(tok.model_max_length(), 512);
  EXPECT_THAT(tok.chat_template(), HasSubstr("<|assistant|>"));
  EXPECT_EQ(tok.TokenToId("\xE2\x96\x81"), 410);
  EXPECT_EQ(tok.IdToToken(13), "<0x0A>");
  EXPECT_TRUE(tok.IsSpecial(2));
  EXPECT_FALSE(tok.IsSpecial(410));
}

TEST(TokenizerTest, TextRightAfterSpecialTokenGetsItsOwnPrefix) {
  const Tokenizer& tok = SharedTokenizer("models/stories260K");
  // "<s>uns": the special token is matched, and "uns" is encoded as a fresh segment ("▁uns").
  std::vector<int32_t> ids = tok.Encode("<s>uns", false);
  ASSERT_GE(ids.size(), 2u);
  EXPECT_EQ(ids[0], 1);
  std::vector<int32_t> alone = tok.Encode("uns", false);
  EXPECT_EQ(std::vector<int32_t>(ids.begin() + 1, ids.end()), alone);
  // The zephyr boundary from the data README: "</s>\n" -> 2, 410, 13.
  EXPECT_THAT(tok.Encode("</s>\n", false), ElementsAre(2, 410, 13));
  // With add_special_tokens the post-processor adds one BOS in front.
  EXPECT_THAT(tok.Encode("</s>\n", true), ElementsAre(1, 2, 410, 13));
}

TEST(TokenizerTest, DecodeEdgeCases) {
  const Tokenizer& tok = SharedTokenizer("models/stories260K");
  EXPECT_EQ(tok.Decode({}, false), "");
  // A lone UTF-8 lead byte (<0xE2> = id 229) becomes one U+FFFD per invalid byte.
  EXPECT_EQ(tok.Decode({229, 229}, false), "\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(tok.Decode({1, 2}, false), "<s></s>");
  EXPECT_EQ(tok.Decode({1, 2}, true), "");
  const Tokenizer& llama3 = SharedTokenizer("tokenizers/llama3");
  EXPECT_EQ(llama3.Decode(llama3.Encode("<|begin_of_text|>Hi there", false), false), "<|begin_of_text|>Hi there");
  EXPECT_EQ(llama3.Decode(llama3.Encode("<|begin_of_text|>Hi there", false), true), "Hi there");
}

TEST(TokenizerTest, Llama3ConfigAndNoPostProcessorBos) {
  const Tokenizer& tok = SharedTokenizer("tokenizers/llama3");
  EXPECT_EQ(tok.bos_id(), 128000);
  EXPECT_EQ(tok.eos_id(), 128001);
  EXPECT_FALSE(tok.add_bos_token());
  EXPECT_EQ(tok.model_max_length(), std::nullopt);  // the 1e30 "no limit" value
  EXPECT_EQ(tok.VocabSize(), 128256);
  EXPECT_EQ(tok.TokenToId("<|eot_id|>"), 128009);
  EXPECT_THAT(tok.Encode("<|begin_of_text|>Hello", true), ElementsAre(128000, 9906));
}

TEST(TokenizerTest, EncodeBatchMatchesEncode) {
  const Tokenizer& tok = SharedTokenizer("tokenizers/llama3");
  std::vector<std::string> texts = testing::HhRlhfTexts(20);
  auto batch = tok.EncodeBatch(texts, true, 2);
  ASSERT_EQ(batch.size(), texts.size());
  for (size_t i = 0; i < texts.size(); ++i) EXPECT_EQ(batch[i], tok.Encode(texts[i], true)) << i;
}

TEST(TokenizerTest, OffsetsPointIntoTheInput) {
  const Tokenizer& tok = SharedTokenizer("models/stories260K");
  std::string text = "Hi there</s>\nnext";
  std::vector<std::pair<uint32_t, uint32_t>> offsets;
  std::vector<int32_t> ids = tok.EncodeWithOffsets(text, true, &offsets);
  ASSERT_EQ(ids.size(), offsets.size());
  EXPECT_EQ(ids, tok.Encode(text, true));
  EXPECT_EQ(offsets[0], std::make_pair(0u, 0u));  // BOS
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] == 2) {
      EXPECT_EQ(offsets[i], std::make_pair(8u, 12u));
    }
  }
  EXPECT_EQ(offsets.back().second, text.size());
}

TEST(TokenizerTest, LoadErrorsNameTheProblem) {
  EXPECT_THAT(Tokenizer::Load("/nonexistent/tokenizer/dir"), StatusIs(absl::StatusCode::kNotFound));
  std::string dir = ::testing::TempDir() + "/tok_bad";
  std::filesystem::create_directories(dir);
  {
    std::ofstream f(dir + "/tokenizer.json");
    f << R"({"model": {"type": "Unigram", "vocab": []}, "normalizer": null})";
  }
  EXPECT_THAT(Tokenizer::Load(dir), StatusIs(absl::StatusCode::kUnimplemented, HasSubstr("Unigram")));
  {
    std::ofstream f(dir + "/tokenizer.json");
    f << R"({"model": {"type": "BPE", "vocab": {}, "merges": []}, "normalizer": {"type": "BertNormalizer"}})";
  }
  EXPECT_THAT(Tokenizer::Load(dir),
              StatusIs(absl::StatusCode::kUnimplemented, ::testing::AllOf(HasSubstr("BertNormalizer"), HasSubstr("NFKC"))));
  {
    std::ofstream f(dir + "/tokenizer.json");
    f << "{not json";
  }
  EXPECT_THAT(Tokenizer::Load(dir), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("tokenizer.json")));
}

TEST(TokenizerTest, SaveToCopiesSourceFiles) {
  const Tokenizer& tok = SharedTokenizer("models/stories260K");
  std::string dir = ::testing::TempDir() + "/tok_saved";
  ASSERT_OK(tok.SaveTo(dir));
  ASSERT_OK_AND_ASSIGN(auto again, Tokenizer::Load(dir));
  EXPECT_EQ(again->Encode("Once upon a time", true), tok.Encode("Once upon a time", true));
  EXPECT_EQ(again->chat_template(), tok.chat_template());
}

TEST(TokenizerTest, SentencePieceModel) {
  const Tokenizer& tok = SharedTokenizer("tokenizers/llama2-spm");
  EXPECT_EQ(tok.format(), TokenizerFormat::kSentencePieceModel);
  EXPECT_EQ(tok.bos_id(), 1);
  EXPECT_EQ(tok.eos_id(), 2);
  EXPECT_TRUE(tok.add_bos_token());
  EXPECT_THAT(tok.Encode("Hello world", true), ElementsAre(1, 15043, 3186));
  EXPECT_EQ(tok.VocabSize(), 32000);
}

}  // namespace
}  // namespace align::engine
