#include "worker/engine/data/batching.h"

#include <cstdio>
#include <fstream>

#include "common/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "worker/engine/data/jsonl.h"
#include "worker/engine/data/mixer.h"

namespace align::engine::data {
namespace {

using ::align::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(CollateTest, PadEqualsEosMasksOnlyPadding) {
  PackedRow a = ToRow({{1, 8, 2}, {1, 1, 1}});
  PackedRow b = ToRow({{1, 8, 9, 9, 2}, {1, 1, 1, 1, 1}});
  Batch batch = Collate({a, b}, /*pad_id=*/2);
  ASSERT_EQ(batch.length, 5);
  std::vector<int64_t> ids0(batch.input_ids.begin(), batch.input_ids.begin() + 5);
  std::vector<int64_t> labels0(batch.labels.begin(), batch.labels.begin() + 5);
  std::vector<int64_t> mask0(batch.attention_mask.begin(), batch.attention_mask.begin() + 5);
  EXPECT_THAT(ids0, ElementsAre(1, 8, 2, 2, 2));
  EXPECT_THAT(labels0, ElementsAre(1, 8, 2, -100, -100));
  EXPECT_THAT(mask0, ElementsAre(1, 1, 1, 0, 0));
}

TEST(PackingTest, PositionIdsRestartPerExample) {
  std::vector<TokenizedExample> ex = {{{1, 2, 3}, {1, 1, 1}}, {{4, 5, 6, 7, 8}, {1, 1, 1, 1, 1}}};
  auto rows = PackExamples(ex, 8);
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_THAT(rows[0].position_ids, ElementsAre(0, 1, 2, 0, 1, 2, 3, 4));
  EXPECT_THAT(rows[0].sequence_ids, ElementsAre(1, 1, 1, 2, 2, 2, 2, 2));
  // The boundary token is not predicted from the previous example.
  EXPECT_THAT(rows[0].labels, ElementsAre(1, 2, 3, -100, 5, 6, 7, 8));
  auto split = PackExamples(ex, 7);
  EXPECT_EQ(split.size(), 2u);
}

TEST(TruncationTest, PromptLongerThanMaxLengthIsDropped) {
  TokenizedExample ex;
  for (int i = 0; i < 15; ++i) {
    ex.ids.push_back(10 + i);
    ex.mask.push_back(i >= 10 ? 1 : 0);
  }
  TokenizedExample right = ex;
  EXPECT_EQ(TruncateExample(right, 8, TruncationSide::kRight), TruncationResult::kNoSupervisedTokens);
  TokenizedExample left = ex;
  EXPECT_EQ(TruncateExample(left, 8, TruncationSide::kLeft), TruncationResult::kKept);
  EXPECT_EQ(left.ids.size(), 8u);
  EXPECT_EQ(left.ids.back(), 24);
}

TEST(TruncationTest, PairsIdenticalAfterTruncationDropped) {
  TokenizedPair p{{1, 2, 3, 4, 5, 6}, {7, 8, 9, 9, 9}, {7, 8, 9, 9, 10}};
  EXPECT_EQ(TruncatePair(p, 8, 4), TruncationResult::kIdenticalAfterTruncation);
  EXPECT_THAT(p.prompt, ElementsAre(3, 4, 5, 6));
  TokenizedPair q{{1, 2, 3, 4, 5, 6, 7, 8}, {7}, {8}};
  EXPECT_EQ(TruncatePair(q, 8, 0), TruncationResult::kEmptyCompletion);
  TokenizedPair ok{{1, 2}, {7}, {8}};
  EXPECT_EQ(TruncatePair(ok, 8, 4), TruncationResult::kKept);
}

TEST(CollatePairsTest, PromptMasked) {
  Batch b = CollatePairs({{{1, 5}, {6, 2}, {7, 7, 2}}}, 0);
  ASSERT_EQ(b.rows, 2);
  ASSERT_EQ(b.length, 5);
  std::vector<int64_t> l(b.labels.begin(), b.labels.end());
  EXPECT_THAT(l, ElementsAre(-100, -100, 6, 2, -100, -100, -100, 7, 7, 2));
}

TEST(MixerTest, WeightsShuffleAndSplit) {
  std::vector<std::vector<int>> sources = {{1, 2, 3, 4}, {10, 20}};
  auto mixed = MixSources(sources, {0.5, 2.0}, 42);
  EXPECT_EQ(mixed.size(), 6u);
  int tens = 0;
  for (int v : mixed) tens += v >= 10;
  EXPECT_EQ(tens, 4);
  EXPECT_EQ(mixed, MixSources(sources, {0.5, 2.0}, 42));
  auto [train, test] = SplitHeldOut(mixed, 0.34);
  EXPECT_EQ(test.size(), 2u);
  EXPECT_EQ(train.size(), 4u);
  EXPECT_EQ(HeldOutCount(100, 0.05), 5);
  EXPECT_EQ(HeldOutCount(1, 0.5), 0);
}

TEST(JsonlTest, BadLineFailsWithFileAndLineOrIsSkipped) {
  const std::string path = ::testing::TempDir() + "/bad.jsonl";
  {
    std::ofstream out(path);
    out << "{\"text\": \"a\"}\n\n[1,2]\n{oops\n{\"text\": \"b\"}\n";
  }
  EXPECT_THAT(ReadJsonlRows(path, OnBadLine::kFail),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("bad.jsonl:3")));
  ReadStats stats;
  ASSERT_OK_AND_ASSIGN(auto rows, ReadJsonlRows(path, OnBadLine::kSkip, &stats));
  EXPECT_EQ(rows.size(), 2u);
  EXPECT_EQ(stats.skipped, 2);
  EXPECT_THAT(stats.bad_lines[1], HasSubstr("bad.jsonl:4"));
}

TEST(JsonlTest, Sha256) {
  EXPECT_EQ(Sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(Sha256Hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

}  // namespace
}  // namespace align::engine::data
