#include "worker/engine/model/config.h"

#include "common/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/engine/model/test_util.h"

namespace align::engine::model {
namespace {

using ::align::testing::StatusIs;
using ::testing::HasSubstr;

TEST(ModelConfigTest, ParsesStories260K) {
  ASSERT_OK_AND_ASSIGN(ModelConfig c, LoadModelConfig(testutil::StoriesDir()));
  EXPECT_EQ(c.family, ModelFamily::kLlama);
  EXPECT_EQ(c.hidden_size, 64);
  EXPECT_EQ(c.intermediate_size, 172);
  EXPECT_EQ(c.num_hidden_layers, 5);
  EXPECT_EQ(c.num_attention_heads, 8);
  EXPECT_EQ(c.num_key_value_heads, 4);
  EXPECT_EQ(c.head_dim, 8);
  EXPECT_EQ(c.vocab_size, 512);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-5);
  EXPECT_EQ(c.eos_token_ids, std::vector<int64_t>({2}));
  EXPECT_EQ(c.bos_token_id, 1);
  EXPECT_FALSE(c.sliding_window.has_value());
}

TEST(ModelConfigTest, UnknownArchitectureListsSupported) {
  auto c = ParseModelConfig(R"({"architectures":["GPT2LMHeadModel"],"model_type":"gpt2"})",
                            "m/config.json");
  EXPECT_THAT(c, StatusIs(absl::StatusCode::kInvalidArgument,
                          AllOf(HasSubstr("m/config.json"), HasSubstr("GPT2LMHeadModel"),
                                HasSubstr("LlamaForCausalLM"), HasSubstr("MistralForCausalLM"),
                                HasSubstr("Qwen2ForCausalLM"), HasSubstr("Qwen3ForCausalLM"))));
}

TEST(ModelConfigTest, FamilyDefaults) {
  ModelConfig mistral = testutil::TinyConfig(ModelFamily::kMistral);
  EXPECT_EQ(mistral.sliding_window, 4);
  ModelConfig qwen2 = testutil::TinyConfig(ModelFamily::kQwen2);
  EXPECT_TRUE(qwen2.attention_bias);
  EXPECT_FALSE(qwen2.sliding_window.has_value());
  ModelConfig qwen3 = testutil::TinyConfig(ModelFamily::kQwen3);
  EXPECT_TRUE(qwen3.qk_norm);
  EXPECT_EQ(qwen3.head_dim, 16);
  ModelConfig llama3 = testutil::TinyConfig(ModelFamily::kLlama);
  EXPECT_EQ(llama3.rope_scaling.type, RopeScalingType::kLlama3);
  EXPECT_DOUBLE_EQ(llama3.rope_scaling.factor, 8.0);
  EXPECT_EQ(llama3.rope_scaling.original_max_position_embeddings, 32);
}

TEST(ModelConfigTest, WrongFieldTypeNamesField) {
  auto c = ParseModelConfig(
      R"({"architectures":["LlamaForCausalLM"],"hidden_size":"64","intermediate_size":1,
          "num_hidden_layers":1,"num_attention_heads":1,"vocab_size":4})",
      "x/config.json");
  EXPECT_THAT(c, StatusIs(absl::StatusCode::kInvalidArgument,
                          AllOf(HasSubstr("x/config.json"), HasSubstr("hidden_size"))));
}

TEST(ModelConfigTest, JsonRoundTrip) {
  for (ModelFamily f : {ModelFamily::kLlama, ModelFamily::kMistral, ModelFamily::kQwen2,
                        ModelFamily::kQwen3}) {
    ModelConfig a = testutil::TinyConfig(f);
    ASSERT_OK_AND_ASSIGN(ModelConfig b, ParseModelConfig(ModelConfigToJson(a, false)));
    EXPECT_EQ(b.family, a.family);
    EXPECT_EQ(b.head_dim, a.head_dim);
    EXPECT_EQ(b.sliding_window, a.sliding_window);
    EXPECT_EQ(b.attention_bias, a.attention_bias);
    EXPECT_EQ(b.qk_norm, a.qk_norm);
    EXPECT_EQ(b.tie_word_embeddings, a.tie_word_embeddings);
    EXPECT_EQ(b.rope_scaling.type, a.rope_scaling.type);
    EXPECT_EQ(b.eos_token_ids, a.eos_token_ids);
    ASSERT_OK_AND_ASSIGN(ModelConfig s, ParseModelConfig(ModelConfigToJson(a, true)));
    EXPECT_TRUE(s.is_sequence_classification);
    EXPECT_EQ(s.num_labels, 1);
  }
}

}  // namespace
}  // namespace align::engine::model
