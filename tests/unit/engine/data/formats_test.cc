#include "worker/engine/data/formats.h"

#include "common/testing/status_matchers.h"
#include "common/testing/test_data.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "worker/engine/data/jsonl.h"

namespace align::engine::data {
namespace {

using ::align::testing::IsOk;
using ::align::testing::StatusIs;
using ::testing::HasSubstr;

TEST(HhRlhfTest, DifferOnlyInLastTurnGivesEarlierTurnsAsPrompt) {
  nlohmann::json row = {
      {"chosen", "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: joke?\n\nAssistant: a good one"},
      {"rejected", "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: joke?\n\nAssistant: no"}};
  ASSERT_OK_AND_ASSIGN(PreferencePair p, ParsePreferenceRow(row, DataFormat::kHhRlhf));
  ASSERT_EQ(p.prompt.size(), 3u);
  EXPECT_EQ(p.prompt[0], (Message{"user", "hi"}));
  EXPECT_EQ(p.prompt[1], (Message{"assistant", "hello"}));
  EXPECT_EQ(p.prompt[2], (Message{"user", "joke?"}));
  ASSERT_EQ(p.chosen.size(), 1u);
  EXPECT_EQ(p.chosen[0], (Message{"assistant", "a good one"}));
  EXPECT_EQ(p.rejected[0], (Message{"assistant", "no"}));
  EXPECT_EQ(p.ToJson()["prompt"][2]["content"], "joke?");
}

TEST(HhRlhfTest, EmptyLastAssistantTurnIsDropped) {
  nlohmann::json row = {{"chosen", "\n\nHuman: hi\n\nAssistant: hello"},
                        {"rejected", "\n\nHuman: hi\n\nAssistant:"}};
  EXPECT_THAT(ParsePreferenceRow(row, DataFormat::kHhRlhf),
              StatusIs(absl::StatusCode::kFailedPrecondition, kDropEmptyCompletion));
}

TEST(HhRlhfTest, IdenticalIsDropped) {
  nlohmann::json row = {{"chosen", "\n\nHuman: hi\n\nAssistant: hello"},
                        {"rejected", "\n\nHuman: hi\n\nAssistant: hello"}};
  EXPECT_THAT(ParsePreferenceRow(row, DataFormat::kHhRlhf),
              StatusIs(absl::StatusCode::kFailedPrecondition, kDropIdentical));
}

TEST(HhRlhfTest, RealFileParses) {
  int64_t kept = 0, dropped = 0;
  auto stats = ReadJsonl(::align::testing::DataPath("datasets/hh-rlhf/harmless-base-test.jsonl.gz"), OnBadLine::kFail, [&](nlohmann::json&& row, int64_t) {
    auto p = ParsePreferenceRow(row, DataFormat::kUnspecified);
    if (p.ok()) {
      ++kept;
      EXPECT_EQ(p->prompt.back().role, "user");
      EXPECT_EQ(p->chosen.back().role, "assistant");
    } else {
      EXPECT_EQ(p.status().code(), absl::StatusCode::kFailedPrecondition) << p.status();
      ++dropped;
    }
    return absl::OkStatus();
  });
  ASSERT_OK(stats.status());
  EXPECT_EQ(stats->rows, 2312);
  EXPECT_EQ(kept + dropped, 2312);
  EXPECT_GT(kept, 2200);
}

TEST(ImplicitPromptTest, TextSharedPrefixBacksOffSpace) {
  ASSERT_OK_AND_ASSIGN(PreferencePair p, SplitImplicitText("The sky is blue.", "The sky is green."));
  EXPECT_FALSE(p.conversational);
  EXPECT_EQ(p.prompt_text, "The sky is");
  EXPECT_EQ(p.chosen_text, " blue.");
  EXPECT_EQ(p.rejected_text, " green.");
}

TEST(UltraFeedbackTest, RowSplitsAndTiesDrop) {
  nlohmann::json row = {
      {"prompt", "q"},
      {"chosen", {{{"role", "user"}, {"content", "q"}}, {{"role", "assistant"}, {"content", "good"}}}},
      {"rejected", {{{"role", "user"}, {"content", "q"}}, {{"role", "assistant"}, {"content", "bad"}}}},
      {"score_chosen", 8.0},
      {"score_rejected", 3.0}};
  ASSERT_OK_AND_ASSIGN(auto fmt, InferDataFormat(row));
  EXPECT_EQ(fmt, DataFormat::kUltraFeedback);
  ASSERT_OK_AND_ASSIGN(PreferencePair p, ParsePreferenceRow(row, fmt));
  EXPECT_EQ(p.prompt.size(), 1u);
  EXPECT_EQ(p.chosen[0].content, "good");
  row["score_rejected"] = 8.0;
  EXPECT_THAT(ParsePreferenceRow(row, fmt), StatusIs(absl::StatusCode::kFailedPrecondition, kDropTie));
}

nlohmann::json Reply(const std::string& text, nlohmann::json rank, bool deleted = false) {
  return {{"text", text}, {"role", "assistant"}, {"lang", "en"}, {"deleted", deleted},
          {"rank", rank}, {"replies", nlohmann::json::array()}};
}

TEST(OasstTest, FiveRepliesGiveExactlyTwoPairs) {
  nlohmann::json tree = {
      {"message_tree_id", "t"},
      {"prompt",
       {{"text", "q"}, {"role", "prompter"}, {"lang", "en"}, {"deleted", false},
        {"replies",
         {Reply("r0", 0), Reply("r1a", 1), Reply("r1b", 1), Reply("rnull", nullptr),
          Reply("r2", 2, /*deleted=*/true)}}}}};
  ASSERT_OK_AND_ASSIGN(OasstResult r, ConvertOasstTree(tree, "en"));
  ASSERT_EQ(r.pairs.size(), 2u);
  EXPECT_EQ(r.pairs[0].chosen[0].content, "r0");
  EXPECT_EQ(r.pairs[0].rejected[0].content, "r1a");
  EXPECT_EQ(r.pairs[1].chosen[0].content, "r0");
  EXPECT_EQ(r.pairs[1].rejected[0].content, "r1b");
  EXPECT_EQ(r.pairs[0].prompt.size(), 1u);
  EXPECT_EQ(r.skipped["deleted"], 1);
  EXPECT_EQ(r.skipped["null_rank"], 1);
  EXPECT_EQ(r.skipped["tie"], 1);
  ASSERT_EQ(r.conversations.size(), 1u);
  ASSERT_EQ(r.conversations[0].size(), 2u);
  EXPECT_EQ(r.conversations[0][1].content, "r0");
}

TEST(OasstTest, LanguageFilterSkipsTree) {
  nlohmann::json tree = {{"prompt",
                          {{"text", "q"}, {"role", "prompter"}, {"lang", "de"},
                           {"replies", {Reply("a", 0)}}}}};
  ASSERT_OK_AND_ASSIGN(OasstResult r, ConvertOasstTree(tree, "en"));
  EXPECT_TRUE(r.pairs.empty());
  EXPECT_TRUE(r.conversations.empty());
  EXPECT_EQ(r.skipped["language"], 1);
}

TEST(OasstTest, RealTreesGiveRankedPairs) {
  int64_t pairs = 0, convs = 0;
  ASSERT_OK_AND_ASSIGN(auto rows, ReadJsonlRows(::align::testing::DataPath(
                                                    "datasets/oasst/en_100_tree.jsonl"),
                                                OnBadLine::kFail));
  ASSERT_EQ(rows.size(), 100u);
  for (const auto& row : rows) {
    ASSERT_OK_AND_ASSIGN(OasstResult r, ConvertOasstTree(row, "en"));
    pairs += static_cast<int64_t>(r.pairs.size());
    convs += static_cast<int64_t>(r.conversations.size());
  }
  EXPECT_EQ(convs, 100);
  EXPECT_GT(pairs, 300);
  EXPECT_LE(pairs, 754);  // the README's count of ranked pairs (ties and empties excluded here)
}

TEST(SftRowTest, FormatsParse) {
  ASSERT_OK_AND_ASSIGN(auto a, ParseSftRow({{"text", "hello"}}, DataFormat::kUnspecified));
  EXPECT_EQ(a.kind, SftExample::Kind::kText);
  ASSERT_OK_AND_ASSIGN(auto b, ParseSftRow({{"prompt", "p"}, {"completion", "c"}},
                                           DataFormat::kUnspecified));
  EXPECT_EQ(b.kind, SftExample::Kind::kPromptCompletion);
  EXPECT_THAT(ParseSftRow({{"messages", "x"}}, DataFormat::kMessages),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("messages")));
}

}  // namespace
}  // namespace align::engine::data
