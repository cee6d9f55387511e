#include "worker/engine/model/generate.h"

#include <algorithm>

#include "common/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/engine/model/test_util.h"

namespace align::engine::model {
namespace {

using ::align::testing::StatusIs;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;

class StoriesGenerateTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto m = CausalLM::Load(testutil::StoriesDir(), LoadOptions{});
    ASSERT_TRUE(m.ok()) << m.status();
    model_ = std::move(m).value().release();
  }
  static void TearDownTestSuite() {
    delete model_;
    model_ = nullptr;
  }
  static CausalLM* model_;
};
CausalLM* StoriesGenerateTest::model_ = nullptr;

TEST_F(StoriesGenerateTest, GreedyMatchesLlama2cGoldenAtBatch1) {
  for (const auto& run : testutil::StoriesGolden()) {
    GenerateOptions o;
    o.max_new_tokens = static_cast<int64_t>(run.generated_ids.size());
    o.use_default_eos = false;  // run.c only stops on its step count
    ASSERT_OK_AND_ASSIGN(auto results, Generate(*model_, {run.prompt_ids}, o));
    ASSERT_EQ(results.size(), 1u);
    EXPECT_THAT(results[0].tokens, ElementsAreArray(run.generated_ids));
    EXPECT_EQ(results[0].finish_reason, FinishReason::kLength);
  }
}

TEST_F(StoriesGenerateTest, GreedyMatchesGoldenInsideLeftPaddedBatchOf16) {
  // Row i's prompt is the golden prompt plus the first k_i golden tokens, so its greedy
  // continuation is the rest of the golden sequence; lengths vary from 1 to 61 tokens.
  const auto golden = testutil::StoriesGolden();
  std::vector<std::vector<int32_t>> prompts;
  std::vector<std::vector<int32_t>> expected;
  std::vector<int64_t> limits;
  for (int i = 0; i < 16; ++i) {
    const auto& run = golden[i % 2];
    const int k = i == 0 ? 0 : (i * 37) % 57;
    std::vector<int32_t> p = run.prompt_ids;
    p.insert(p.end(), run.generated_ids.begin(), run.generated_ids.begin() + k);
    const int n = i == 0 ? 200 : 20 + (i * 13) % 40;  // per-sequence lengths
    prompts.push_back(p);
    expected.emplace_back(run.generated_ids.begin() + k, run.generated_ids.begin() + k + n);
    limits.push_back(n);
  }
  GenerateOptions o;
  o.max_new_tokens_per_sequence = limits;
  o.use_default_eos = false;
  ASSERT_OK_AND_ASSIGN(auto results, Generate(*model_, prompts, o));
  ASSERT_EQ(results.size(), 16u);
  for (int i = 0; i < 16; ++i) {
    EXPECT_THAT(results[i].tokens, ElementsAreArray(expected[i])) << "row " << i;
  }
}

TEST_F(StoriesGenerateTest, GreedyLogprobsMatchSequenceLogProbs) {
  const auto run = testutil::StoriesGolden()[0];
  GenerateOptions o;
  o.max_new_tokens = 12;
  ASSERT_OK_AND_ASSIGN(auto results, Generate(*model_, {run.prompt_ids}, o));
  std::vector<int64_t> ids(run.prompt_ids.begin(), run.prompt_ids.end());
  ids.insert(ids.end(), results[0].tokens.begin(), results[0].tokens.end());
  const int64_t T = static_cast<int64_t>(ids.size());
  at::Tensor input = at::tensor(ids, at::kLong).view({1, T});
  at::Tensor mask = at::ones({1, T}, at::kLong);
  at::Tensor labels = at::zeros({1, T}, at::kLong);
  labels.narrow(1, static_cast<int64_t>(run.prompt_ids.size()), 12).fill_(1);
  double sum = 0;
  for (float lp : results[0].logprobs) {
    EXPECT_LE(lp, 0.0f);
    sum += lp;
  }
  at::Tensor seq = SequenceLogProbs(*model_, input, mask, labels);
  EXPECT_NEAR(seq.item<double>(), sum, 1e-3);
}

TEST_F(StoriesGenerateTest, SamplingIsSeededAndReproducible) {
  const auto run = testutil::StoriesGolden()[0];
  GenerateOptions o;
  o.max_new_tokens = 30;
  o.temperature = 1.0;
  o.top_p = 0.9;
  o.top_k = 50;
  o.seed = 7;
  std::vector<std::vector<int32_t>> prompts = {run.prompt_ids, {1}};
  ASSERT_OK_AND_ASSIGN(auto a, Generate(*model_, prompts, o));
  ASSERT_OK_AND_ASSIGN(auto b, Generate(*model_, prompts, o));
  EXPECT_EQ(a[0].tokens, b[0].tokens);
  EXPECT_EQ(a[1].tokens, b[1].tokens);
  EXPECT_EQ(a[0].logprobs, b[0].logprobs);
  o.seed = 8;
  ASSERT_OK_AND_ASSIGN(auto c, Generate(*model_, prompts, o));
  EXPECT_TRUE(a[0].tokens != c[0].tokens || a[1].tokens != c[1].tokens);
}

TEST_F(StoriesGenerateTest, TopK1EqualsGreedy) {
  const auto run = testutil::StoriesGolden()[0];
  GenerateOptions o;
  o.max_new_tokens = 25;
  o.temperature = 0.8;
  o.top_k = 1;
  o.use_default_eos = false;
  ASSERT_OK_AND_ASSIGN(auto r, Generate(*model_, {run.prompt_ids}, o));
  EXPECT_THAT(r[0].tokens,
              ElementsAreArray(run.generated_ids.begin(), run.generated_ids.begin() + 25));
}

TEST_F(StoriesGenerateTest, StopsOnEosAndStopStrings) {
  const auto run = testutil::StoriesGolden()[0];
  GenerateOptions o;
  o.max_new_tokens = 50;
  o.eos_ids = {run.generated_ids[3]};
  ASSERT_OK_AND_ASSIGN(auto r, Generate(*model_, {run.prompt_ids}, o));
  EXPECT_THAT(r[0].tokens, ElementsAreArray(run.generated_ids.begin(), run.generated_ids.begin() + 4));
  EXPECT_EQ(r[0].finish_reason, FinishReason::kEos);

  // A fake decoder: each token prints as "<id>"; stop once "<261>" (token 3) has appeared.
  GenerateOptions s;
  s.max_new_tokens = 50;
  s.stop_strings = {absl::StrCat("<", run.generated_ids[3], ">")};
  s.decode = [](const std::vector<int32_t>& ids) {
    std::string out;
    for (int32_t t : ids) out += absl::StrCat("<", t, ">");
    return out;
  };
  ASSERT_OK_AND_ASSIGN(auto r2, Generate(*model_, {run.prompt_ids}, s));
  EXPECT_EQ(r2[0].tokens.size(), 4u);
  EXPECT_EQ(r2[0].finish_reason, FinishReason::kStopString);
}

TEST_F(StoriesGenerateTest, RejectsBadPrompts) {
  GenerateOptions o;
  EXPECT_THAT(Generate(*model_, {{}}, o),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("prompt 0 is empty")));
  EXPECT_THAT(Generate(*model_, {{1, 600}}, o),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("600")));
}

}  // namespace
}  // namespace align::engine::model
