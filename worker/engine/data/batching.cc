#include "worker/engine/data/batching.h"

#include <algorithm>

namespace align::engine::data {

int64_t TokenizedExample::SupervisedTokens() const {
  int64_t n = 0;
  for (uint8_t m : mask) n += m != 0;
  return n;
}

const char* TruncationResultName(TruncationResult r) {
  switch (r) {
    case TruncationResult::kKept: return "kept";
    case TruncationResult::kNoSupervisedTokens: return "no_supervised_tokens_after_truncation";
    case TruncationResult::kEmptyCompletion: return "empty_completion_after_truncation";
    case TruncationResult::kIdenticalAfterTruncation: return "identical_after_truncation";
  }
  return "unknown";
}

TruncationResult TruncateExample(TokenizedExample& ex, int64_t max_length, TruncationSide side) {
  const int64_t n = static_cast<int64_t>(ex.ids.size());
  if (max_length > 0 && n > max_length) {
    if (side == TruncationSide::kRight) {
      ex.ids.resize(static_cast<size_t>(max_length));
      ex.mask.resize(static_cast<size_t>(max_length));
    } else {
      ex.ids.erase(ex.ids.begin(), ex.ids.begin() + (n - max_length));
      ex.mask.erase(ex.mask.begin(), ex.mask.begin() + (n - max_length));
    }
  }
  // The first token is never predicted (nothing precedes it), so it does not count.
  int64_t supervised = 0;
  for (size_t i = 1; i < ex.mask.size(); ++i) supervised += ex.mask[i] != 0;
  return supervised > 0 ? TruncationResult::kKept : TruncationResult::kNoSupervisedTokens;
}

TruncationResult TruncatePair(TokenizedPair& pair, int64_t max_length, int64_t max_prompt_length) {
  if (pair.chosen.empty() || pair.rejected.empty()) return TruncationResult::kEmptyCompletion;
  if (max_length > 0) {
    const int64_t longer = static_cast<int64_t>(std::max(pair.chosen.size(), pair.rejected.size()));
    const int64_t prompt = static_cast<int64_t>(pair.prompt.size());
    if (prompt + longer > max_length && max_prompt_length > 0 && prompt > max_prompt_length) {
      pair.prompt.erase(pair.prompt.begin(), pair.prompt.begin() + (prompt - max_prompt_length));
    }
    const int64_t room = max_length - static_cast<int64_t>(pair.prompt.size());
    if (room <= 0) return TruncationResult::kEmptyCompletion;
    if (static_cast<int64_t>(pair.chosen.size()) > room) pair.chosen.resize(static_cast<size_t>(room));
    if (static_cast<int64_t>(pair.rejected.size()) > room) {
      pair.rejected.resize(static_cast<size_t>(room));
    }
  }
  if (pair.chosen == pair.rejected) return TruncationResult::kIdenticalAfterTruncation;
  return TruncationResult::kKept;
}

int64_t Batch::SupervisedTokens() const {
  int64_t n = 0;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t t = 1; t < length; ++t) n += labels[static_cast<size_t>(r * length + t)] != kIgnoreIndex;
  }
  return n;
}

PackedRow ToRow(const TokenizedExample& ex) {
  PackedRow row;
  row.ids = ex.ids;
  const size_t n = ex.ids.size();
  row.labels.resize(n);
  row.position_ids.resize(n);
  row.sequence_ids.assign(n, 1);
  for (size_t i = 0; i < n; ++i) {
    const bool supervised = i < ex.mask.size() && ex.mask[i] != 0;
    row.labels[i] = supervised ? ex.ids[i] : kIgnoreIndex;
    row.position_ids[i] = static_cast<int64_t>(i);
  }
  return row;
}

std::vector<PackedRow> PackExamples(const std::vector<TokenizedExample>& examples,
                                    int64_t max_length) {
  std::vector<PackedRow> out;
  PackedRow cur;
  int64_t segment = 0;
  for (const auto& ex : examples) {
    PackedRow one = ToRow(ex);
    if (!cur.ids.empty() &&
        static_cast<int64_t>(cur.ids.size() + one.ids.size()) > max_length) {
      out.push_back(std::move(cur));
      cur = PackedRow();
      segment = 0;
    }
    ++segment;
    // The shifted loss would predict this example's first token from the previous example's last:
    // a prediction that does not exist unpacked, so it is masked.
    if (segment > 1 && !one.labels.empty()) one.labels[0] = kIgnoreIndex;
    cur.ids.insert(cur.ids.end(), one.ids.begin(), one.ids.end());
    cur.labels.insert(cur.labels.end(), one.labels.begin(), one.labels.end());
    cur.position_ids.insert(cur.position_ids.end(), one.position_ids.begin(),
                            one.position_ids.end());
    cur.sequence_ids.insert(cur.sequence_ids.end(), one.ids.size(), segment);
  }
  if (!cur.ids.empty()) out.push_back(std::move(cur));
  return out;
}

Batch Collate(const std::vector<PackedRow>& rows, int32_t pad_id) {
  Batch b;
  b.rows = static_cast<int64_t>(rows.size());
  for (const auto& r : rows) b.length = std::max<int64_t>(b.length, static_cast<int64_t>(r.ids.size()));
  const size_t total = static_cast<size_t>(b.rows * b.length);
  b.input_ids.assign(total, pad_id);
  b.attention_mask.assign(total, 0);
  b.labels.assign(total, kIgnoreIndex);
  b.position_ids.assign(total, 0);
  b.sequence_ids.assign(total, 0);
  for (int64_t r = 0; r < b.rows; ++r) {
    const auto& row = rows[static_cast<size_t>(r)];
    for (size_t t = 0; t < row.ids.size(); ++t) {
      const size_t k = static_cast<size_t>(r * b.length) + t;
      b.input_ids[k] = row.ids[t];
      b.attention_mask[k] = 1;
      b.labels[k] = row.labels[t];
      b.position_ids[k] = row.position_ids[t];
      b.sequence_ids[k] = row.sequence_ids[t];
    }
    // Padding keeps position ids increasing so rotary tables stay in range; it is masked anyway.
    for (int64_t t = static_cast<int64_t>(row.ids.size()); t < b.length; ++t) {
      b.position_ids[static_cast<size_t>(r * b.length + t)] = t;
    }
  }
  return b;
}

Batch CollatePairs(const std::vector<TokenizedPair>& pairs, int32_t pad_id) {
  std::vector<PackedRow> rows;
  rows.reserve(pairs.size() * 2);
  for (int side = 0; side < 2; ++side) {
    for (const auto& p : pairs) {
      TokenizedExample ex;
      const auto& completion = side == 0 ? p.chosen : p.rejected;
      ex.ids = p.prompt;
      ex.ids.insert(ex.ids.end(), completion.begin(), completion.end());
      ex.mask.assign(p.prompt.size(), 0);
      ex.mask.insert(ex.mask.end(), completion.size(), 1);
      rows.push_back(ToRow(ex));
    }
  }
  return Collate(rows, pad_id);
}

}  // namespace align::engine::data
