// Tokenized examples, the truncation policy, SFT packing and padded collation. Torch-free: the
// trainers turn Batch vectors into tensors. Labels follow Hugging Face: unshifted token ids, -100
// where no loss is taken; the loss shifts them. Padding is marked by the attention mask, never by
// comparing token ids (pad may equal eos).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace align::engine::data {

inline constexpr int64_t kIgnoreIndex = -100;

//! TrainingConfig.truncation_side.
enum class TruncationSide { kRight, kLeft };

//! One tokenized sequence with its per-token loss mask (1 = supervised).
struct TokenizedExample {
  std::vector<int32_t> ids;
  std::vector<uint8_t> mask;
  int64_t SupervisedTokens() const;
};

//! One tokenized preference pair: shared prompt ids and the two completions.
struct TokenizedPair {
  std::vector<int32_t> prompt;
  std::vector<int32_t> chosen;
  std::vector<int32_t> rejected;
};

//! Why a row was dropped during truncation (counted in the stage report).
enum class TruncationResult { kKept, kNoSupervisedTokens, kEmptyCompletion, kIdenticalAfterTruncation };
const char* TruncationResultName(TruncationResult r);

//! SFT policy: a sequence longer than `max_length` keeps its first (right truncation) or last
//! (left truncation) max_length tokens; a row left with no supervised token is dropped
//! (kNoSupervisedTokens). Prompt 10 + completion 5 at max_length 8, right: dropped.
TruncationResult TruncateExample(TokenizedExample& ex, int64_t max_length, TruncationSide side);

//! Preference policy (TRL's order): when prompt + the longer completion exceeds max_length, the
//! prompt is first cut to max_prompt_length keeping its END (the latest turns matter most); then
//! each completion is cut to max_length - prompt on the right. A pair with an empty completion is
//! kEmptyCompletion; one whose completions became identical is kIdenticalAfterTruncation.
TruncationResult TruncatePair(TokenizedPair& pair, int64_t max_length, int64_t max_prompt_length);

//! A collated batch, row-major [rows, length].
struct Batch {
  int64_t rows = 0;
  int64_t length = 0;
  std::vector<int64_t> input_ids;
  std::vector<int64_t> attention_mask;  // 1 real token, 0 padding
  std::vector<int64_t> labels;          // token id where supervised, else -100
  std::vector<int64_t> position_ids;    // restart at 0 for each packed example
  std::vector<int64_t> sequence_ids;    // packed example index (1-based), 0 on padding
  int64_t SupervisedTokens() const;     // labels != -100, excluding each segment's first token
};

//! One packed (or unpacked) row before padding.
struct PackedRow {
  std::vector<int32_t> ids;
  std::vector<int64_t> labels;
  std::vector<int64_t> position_ids;
  std::vector<int64_t> sequence_ids;
};

//! An unpacked row: labels from the mask, positions 0.., one segment.
PackedRow ToRow(const TokenizedExample& ex);

//! Greedy packing in order: examples are appended to the current row while they fit in
//! `max_length`; position ids restart per example and sequence ids number the examples, so
//! attention never crosses an example boundary. Examples longer than max_length must be truncated
//! first. a=[1,2,3], b=[4,5,6,7,8] -> positions [0,1,2,0,1,2,3,4], sequence ids [1,1,1,2,2,2,2,2].
std::vector<PackedRow> PackExamples(const std::vector<TokenizedExample>& examples,
                                    int64_t max_length);

//! Right-pads rows to the longest with `pad_id`; labels are -100 on padding by the mask.
Batch Collate(const std::vector<PackedRow>& rows, int32_t pad_id);

//! The chosen and rejected sequences of pairs as one batch: rows [c0, c1, ..., r0, r1, ...],
//! labels -100 on prompt tokens and padding.
Batch CollatePairs(const std::vector<TokenizedPair>& pairs, int32_t pad_id);

}  // namespace align::engine::data
