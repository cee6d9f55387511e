// Dataset row formats as TRL names them (language modeling {text}/{messages}, prompt-completion,
// preference standard/conversational, implicit-prompt preference) and their standardized C++
// forms. No torch: used by the preference_format stage, the trainers and eval.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"

namespace align::engine::data {

//! DataSource.format (proto/align/v1/pipeline.proto DataFormat).
enum class DataFormat {
  kUnspecified,  // inferred from the first row's columns
  kText,
  kMessages,
  kPromptCompletion,
  kPreference,
  kImplicitPreference,
  kHhRlhf,
  kOasstTree,
  kUltraFeedback,
};

//! Parses proto enum names ("MESSAGES", "hh_rlhf", ...); "" -> kUnspecified.
absl::StatusOr<DataFormat> ParseDataFormat(const std::string& text);
std::string DataFormatName(DataFormat format);
//! Guesses the format from a row's columns; InvalidArgument listing the known column sets.
absl::StatusOr<DataFormat> InferDataFormat(const nlohmann::json& row);

struct Message {
  std::string role;  // "system", "user", "assistant"
  std::string content;
  bool operator==(const Message& o) const { return role == o.role && content == o.content; }
};
using Conversation = std::vector<Message>;

nlohmann::json ToJson(const Conversation& conversation);
//! Parses [{role, content}, ...]; `field` names the column in errors.
absl::StatusOr<Conversation> ConversationFromJson(const nlohmann::json& value,
                                                  const std::string& field);

//! One SFT example. Conversational rows render through the chat template; standard rows do not.
struct SftExample {
  enum class Kind { kText, kMessages, kPromptCompletion };
  Kind kind = Kind::kMessages;
  std::string text;            // kText
  Conversation messages;       // kMessages (and conversational prompt-completion: prompt+completion)
  size_t prompt_messages = 0;  // conversational prompt-completion: how many leading messages are prompt
  std::string prompt;          // standard prompt-completion
  std::string completion;
  bool conversational() const { return kind == Kind::kMessages; }
};

//! One preference pair, standardized. Conversational pairs hold messages; standard pairs strings.
struct PreferencePair {
  bool conversational = true;
  Conversation prompt, chosen, rejected;
  std::string prompt_text, chosen_text, rejected_text;
  //! The standardized JSONL row: {"prompt": [...], "chosen": [...], "rejected": [...]} (or strings).
  nlohmann::json ToJson() const;
};

//! Parses an SFT row of `format` (text, messages, prompt-completion standard or conversational).
absl::StatusOr<SftExample> ParseSftRow(const nlohmann::json& row, DataFormat format);

//! Parses a preference row: explicit or implicit prompt (standard or conversational),
//! HH-RLHF transcripts, UltraFeedback rows. A row that is well-formed but unusable (empty
//! completion, identical sides) is FailedPrecondition with the drop reason as its message, so
//! callers can count drops separately from malformed rows (InvalidArgument).
absl::StatusOr<PreferencePair> ParsePreferenceRow(const nlohmann::json& row, DataFormat format);

//! Drop reasons used in reports.
inline constexpr char kDropEmptyCompletion[] = "empty_completion";
inline constexpr char kDropIdentical[] = "identical";
inline constexpr char kDropNoPrompt[] = "no_prompt";
inline constexpr char kDropTie[] = "tied_scores";

//! Splits an implicit-prompt conversational pair: the longest shared message prefix ending before
//! the first differing turn is the prompt (trimmed back to end on a non-assistant turn).
absl::StatusOr<PreferencePair> SplitImplicitConversation(const Conversation& chosen,
                                                         const Conversation& rejected);
//! Same for standard strings: the longest common character prefix (backed off a trailing space,
//! as TRL does) is the prompt.
absl::StatusOr<PreferencePair> SplitImplicitText(const std::string& chosen,
                                                 const std::string& rejected);

//! Splits an Anthropic "\n\nHuman: ...\n\nAssistant: ..." transcript into turns.
absl::StatusOr<Conversation> ParseHhTranscript(const std::string& text);

//! OpenAssistant message trees: the best-ranked conversation and the ranked sibling pairs.
struct OasstResult {
  std::vector<Conversation> conversations;  // SFT: one per tree, along the best-ranked path
  std::vector<PreferencePair> pairs;        // sibling assistant replies ordered by rank
  std::map<std::string, int64_t> skipped;   // "deleted", "null_rank", "language", "tie", ...
};
//! `tree` is one line of the official *_tree.jsonl export ({"prompt": {..., "replies": [...]}});
//! `language` ("" = any) filters messages by their "lang".
absl::StatusOr<OasstResult> ConvertOasstTree(const nlohmann::json& tree, const std::string& language);

}  // namespace align::engine::data
