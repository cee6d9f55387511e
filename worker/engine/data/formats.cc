#include "worker/engine/data/formats.h"

#include <algorithm>
#include <limits>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"

namespace align::engine::data {
namespace {

bool Has(const nlohmann::json& row, const char* key) {
  auto it = row.find(key);
  return it != row.end() && !it->is_null();
}

absl::StatusOr<std::string> StringField(const nlohmann::json& row, const char* key) {
  auto it = row.find(key);
  if (it == row.end() || !it->is_string()) {
    return absl::InvalidArgumentError(absl::StrCat("column '", key, "': expected a string"));
  }
  return it->get<std::string>();
}

bool BlankText(const std::string& s) { return absl::StripAsciiWhitespace(s).empty(); }

bool BlankCompletion(const Conversation& c) {
  if (c.empty()) return true;
  for (const auto& m : c) {
    if (!BlankText(m.content)) return false;
  }
  return true;
}

absl::Status Drop(const char* reason) { return absl::FailedPreconditionError(reason); }

absl::StatusOr<PreferencePair> CheckPair(PreferencePair p) {
  if (p.conversational) {
    if (BlankCompletion(p.chosen) || BlankCompletion(p.rejected)) return Drop(kDropEmptyCompletion);
    if (p.chosen.back().role == "assistant" && BlankText(p.chosen.back().content)) {
      return Drop(kDropEmptyCompletion);
    }
    if (p.rejected.back().role == "assistant" && BlankText(p.rejected.back().content)) {
      return Drop(kDropEmptyCompletion);
    }
    if (p.chosen == p.rejected) return Drop(kDropIdentical);
  } else {
    if (BlankText(p.chosen_text) || BlankText(p.rejected_text)) return Drop(kDropEmptyCompletion);
    if (p.chosen_text == p.rejected_text) return Drop(kDropIdentical);
  }
  return p;
}

}  // namespace

absl::StatusOr<DataFormat> ParseDataFormat(const std::string& text) {
  const std::string t = absl::AsciiStrToLower(text);
  if (t.empty() || t == "data_format_unspecified") return DataFormat::kUnspecified;
  if (t == "text") return DataFormat::kText;
  if (t == "messages") return DataFormat::kMessages;
  if (t == "prompt_completion") return DataFormat::kPromptCompletion;
  if (t == "preference") return DataFormat::kPreference;
  if (t == "implicit_preference") return DataFormat::kImplicitPreference;
  if (t == "hh_rlhf") return DataFormat::kHhRlhf;
  if (t == "oasst_tree") return DataFormat::kOasstTree;
  if (t == "ultrafeedback") return DataFormat::kUltraFeedback;
  return absl::InvalidArgumentError(absl::StrCat(
      "format: '", text,
      "' is not one of TEXT, MESSAGES, PROMPT_COMPLETION, PREFERENCE, IMPLICIT_PREFERENCE, "
      "HH_RLHF, OASST_TREE, ULTRAFEEDBACK"));
}

std::string DataFormatName(DataFormat format) {
  switch (format) {
    case DataFormat::kUnspecified: return "UNSPECIFIED";
    case DataFormat::kText: return "TEXT";
    case DataFormat::kMessages: return "MESSAGES";
    case DataFormat::kPromptCompletion: return "PROMPT_COMPLETION";
    case DataFormat::kPreference: return "PREFERENCE";
    case DataFormat::kImplicitPreference: return "IMPLICIT_PREFERENCE";
    case DataFormat::kHhRlhf: return "HH_RLHF";
    case DataFormat::kOasstTree: return "OASST_TREE";
    case DataFormat::kUltraFeedback: return "ULTRAFEEDBACK";
  }
  return "UNKNOWN";
}

absl::StatusOr<DataFormat> InferDataFormat(const nlohmann::json& row) {
  if (Has(row, "message_tree_id") || (Has(row, "prompt") && row["prompt"].is_object())) {
    return DataFormat::kOasstTree;
  }
  if (Has(row, "chosen") && Has(row, "rejected")) {
    if (Has(row, "score_chosen") && Has(row, "prompt")) return DataFormat::kUltraFeedback;
    if (Has(row, "prompt")) return DataFormat::kPreference;
    if (row["chosen"].is_string() &&
        row["chosen"].get<std::string>().find("\n\nHuman:") != std::string::npos) {
      return DataFormat::kHhRlhf;
    }
    return DataFormat::kImplicitPreference;
  }
  if (Has(row, "prompt") && Has(row, "completion")) return DataFormat::kPromptCompletion;
  if (Has(row, "messages")) return DataFormat::kMessages;
  if (Has(row, "text")) return DataFormat::kText;
  std::vector<std::string> keys;
  for (auto& [k, v] : row.items()) keys.push_back(k);
  return absl::InvalidArgumentError(absl::StrCat(
      "cannot infer the data format from columns [", absl::StrJoin(keys, ", "),
      "]; expected {text}, {messages}, {prompt, completion}, {prompt, chosen, rejected}, "
      "{chosen, rejected}, an OpenAssistant tree, or set the source's format"));
}

nlohmann::json ToJson(const Conversation& conversation) {
  nlohmann::json a = nlohmann::json::array();
  for (const auto& m : conversation) a.push_back({{"role", m.role}, {"content", m.content}});
  return a;
}

absl::StatusOr<Conversation> ConversationFromJson(const nlohmann::json& value,
                                                  const std::string& field) {
  if (!value.is_array()) {
    return absl::InvalidArgumentError(
        absl::StrCat("column '", field, "': expected a list of {role, content} messages"));
  }
  Conversation c;
  for (size_t i = 0; i < value.size(); ++i) {
    const auto& m = value[i];
    if (!m.is_object() || !m.contains("role") || !m["role"].is_string()) {
      return absl::InvalidArgumentError(
          absl::StrCat("column '", field, "'[", i, "]: expected an object with a string 'role'"));
    }
    Message msg;
    msg.role = m["role"].get<std::string>();
    if (auto it = m.find("content"); it != m.end() && it->is_string()) {
      msg.content = it->get<std::string>();
    } else if (it != m.end() && !it->is_null()) {
      return absl::InvalidArgumentError(
          absl::StrCat("column '", field, "'[", i, "].content: expected a string"));
    }
    c.push_back(std::move(msg));
  }
  return c;
}

nlohmann::json PreferencePair::ToJson() const {
  if (conversational) {
    return {{"prompt", data::ToJson(prompt)},
            {"chosen", data::ToJson(chosen)},
            {"rejected", data::ToJson(rejected)}};
  }
  return {{"prompt", prompt_text}, {"chosen", chosen_text}, {"rejected", rejected_text}};
}

absl::StatusOr<SftExample> ParseSftRow(const nlohmann::json& row, DataFormat format) {
  if (format == DataFormat::kUnspecified) {
    ASSIGN_OR_RETURN(format, InferDataFormat(row));
  }
  SftExample ex;
  switch (format) {
    case DataFormat::kText: {
      ex.kind = SftExample::Kind::kText;
      ASSIGN_OR_RETURN(ex.text, StringField(row, "text"));
      return ex;
    }
    case DataFormat::kMessages: {
      ex.kind = SftExample::Kind::kMessages;
      if (!row.contains("messages")) {
        return absl::InvalidArgumentError("column 'messages' is missing");
      }
      ASSIGN_OR_RETURN(ex.messages, ConversationFromJson(row["messages"], "messages"));
      return ex;
    }
    case DataFormat::kPromptCompletion: {
      if (!row.contains("prompt") || !row.contains("completion")) {
        return absl::InvalidArgumentError("expected columns 'prompt' and 'completion'");
      }
      if (row["prompt"].is_array()) {
        ex.kind = SftExample::Kind::kMessages;
        ASSIGN_OR_RETURN(ex.messages, ConversationFromJson(row["prompt"], "prompt"));
        ex.prompt_messages = ex.messages.size();
        ASSIGN_OR_RETURN(Conversation completion,
                         ConversationFromJson(row["completion"], "completion"));
        ex.messages.insert(ex.messages.end(), completion.begin(), completion.end());
        return ex;
      }
      ex.kind = SftExample::Kind::kPromptCompletion;
      ASSIGN_OR_RETURN(ex.prompt, StringField(row, "prompt"));
      ASSIGN_OR_RETURN(ex.completion, StringField(row, "completion"));
      return ex;
    }
    default:
      return absl::InvalidArgumentError(absl::StrCat(
          "format ", DataFormatName(format),
          " is not an SFT format (use TEXT, MESSAGES, PROMPT_COMPLETION or OASST_TREE)"));
  }
}

absl::StatusOr<Conversation> ParseHhTranscript(const std::string& text) {
  static const std::string kHuman = "\n\nHuman:";
  static const std::string kAssistant = "\n\nAssistant:";
  Conversation turns;
  // Some transcripts lack the leading blank lines; accept "Human:" at the very start too.
  std::string t = text;
  if (t.rfind("Human:", 0) == 0) t = "\n\n" + t;
  size_t pos = t.find(kHuman);
  if (pos == std::string::npos) {
    return absl::InvalidArgumentError("HH-RLHF transcript has no \"\\n\\nHuman:\" turn");
  }
  while (pos != std::string::npos) {
    const bool human = t.compare(pos, kHuman.size(), kHuman) == 0;
    const size_t start = pos + (human ? kHuman.size() : kAssistant.size());
    size_t nh = t.find(kHuman, start);
    size_t na = t.find(kAssistant, start);
    size_t next = std::min(nh, na);
    std::string content(absl::StripAsciiWhitespace(
        t.substr(start, next == std::string::npos ? std::string::npos : next - start)));
    turns.push_back({human ? "user" : "assistant", std::move(content)});
    pos = next;
  }
  return turns;
}

absl::StatusOr<PreferencePair> SplitImplicitConversation(const Conversation& chosen,
                                                         const Conversation& rejected) {
  size_t k = 0;
  const size_t limit = std::min(chosen.size(), rejected.size());
  while (k < limit && chosen[k] == rejected[k]) ++k;
  if (k == chosen.size() && k == rejected.size()) return Drop(kDropIdentical);
  // The prompt must end on a user (or system) turn: the completion starts with the reply.
  while (k > 0 && chosen[k - 1].role == "assistant") --k;
  if (k == 0) return Drop(kDropNoPrompt);
  PreferencePair p;
  p.conversational = true;
  p.prompt.assign(chosen.begin(), chosen.begin() + static_cast<long>(k));
  p.chosen.assign(chosen.begin() + static_cast<long>(k), chosen.end());
  p.rejected.assign(rejected.begin() + static_cast<long>(k), rejected.end());
  return CheckPair(std::move(p));
}

absl::StatusOr<PreferencePair> SplitImplicitText(const std::string& chosen,
                                                 const std::string& rejected) {
  if (chosen == rejected) return Drop(kDropIdentical);
  size_t idx = 0;
  const size_t limit = std::min(chosen.size(), rejected.size());
  while (idx < limit && chosen[idx] == rejected[idx]) ++idx;
  // Never split inside a UTF-8 sequence; keep a separating space with the completion (TRL).
  while (idx > 0 && (static_cast<unsigned char>(chosen[idx]) & 0xC0) == 0x80) --idx;
  if (idx > 0 && chosen[idx - 1] == ' ') --idx;
  PreferencePair p;
  p.conversational = false;
  p.prompt_text = chosen.substr(0, idx);
  p.chosen_text = chosen.substr(idx);
  p.rejected_text = rejected.substr(idx);
  return CheckPair(std::move(p));
}

absl::StatusOr<PreferencePair> ParsePreferenceRow(const nlohmann::json& row, DataFormat format) {
  if (format == DataFormat::kUnspecified) {
    ASSIGN_OR_RETURN(format, InferDataFormat(row));
  }
  if (!row.contains("chosen") || !row.contains("rejected")) {
    return absl::InvalidArgumentError("expected columns 'chosen' and 'rejected'");
  }
  switch (format) {
    case DataFormat::kHhRlhf: {
      ASSIGN_OR_RETURN(std::string c, StringField(row, "chosen"));
      ASSIGN_OR_RETURN(std::string r, StringField(row, "rejected"));
      ASSIGN_OR_RETURN(Conversation ct, ParseHhTranscript(c));
      ASSIGN_OR_RETURN(Conversation rt, ParseHhTranscript(r));
      return SplitImplicitConversation(ct, rt);
    }
    case DataFormat::kUltraFeedback: {
      ASSIGN_OR_RETURN(Conversation c, ConversationFromJson(row["chosen"], "chosen"));
      ASSIGN_OR_RETURN(Conversation r, ConversationFromJson(row["rejected"], "rejected"));
      auto sc = row.find("score_chosen");
      auto sr = row.find("score_rejected");
      if (sc != row.end() && sr != row.end() && sc->is_number() && sr->is_number() &&
          sc->get<double>() == sr->get<double>()) {
        return Drop(kDropTie);
      }
      return SplitImplicitConversation(c, r);
    }
    case DataFormat::kImplicitPreference: {
      if (row["chosen"].is_string()) {
        ASSIGN_OR_RETURN(std::string c, StringField(row, "chosen"));
        ASSIGN_OR_RETURN(std::string r, StringField(row, "rejected"));
        return SplitImplicitText(c, r);
      }
      ASSIGN_OR_RETURN(Conversation c, ConversationFromJson(row["chosen"], "chosen"));
      ASSIGN_OR_RETURN(Conversation r, ConversationFromJson(row["rejected"], "rejected"));
      return SplitImplicitConversation(c, r);
    }
    case DataFormat::kPreference: {
      if (!row.contains("prompt")) return absl::InvalidArgumentError("column 'prompt' is missing");
      PreferencePair p;
      if (row["prompt"].is_array()) {
        p.conversational = true;
        ASSIGN_OR_RETURN(p.prompt, ConversationFromJson(row["prompt"], "prompt"));
        ASSIGN_OR_RETURN(p.chosen, ConversationFromJson(row["chosen"], "chosen"));
        ASSIGN_OR_RETURN(p.rejected, ConversationFromJson(row["rejected"], "rejected"));
        if (p.prompt.empty()) return Drop(kDropNoPrompt);
      } else {
        p.conversational = false;
        ASSIGN_OR_RETURN(p.prompt_text, StringField(row, "prompt"));
        ASSIGN_OR_RETURN(p.chosen_text, StringField(row, "chosen"));
        ASSIGN_OR_RETURN(p.rejected_text, StringField(row, "rejected"));
      }
      return CheckPair(std::move(p));
    }
    default:
      return absl::InvalidArgumentError(absl::StrCat(
          "format ", DataFormatName(format),
          " is not a preference format (use PREFERENCE, IMPLICIT_PREFERENCE, HH_RLHF, "
          "ULTRAFEEDBACK or OASST_TREE)"));
  }
}

namespace {

struct OasstWalker {
  const std::string& language;
  OasstResult& out;

  bool Usable(const nlohmann::json& node) {
    if (node.value("deleted", false)) {
      ++out.skipped["deleted"];
      return false;
    }
    if (!language.empty()) {
      auto it = node.find("lang");
      if (it != node.end() && it->is_string() && it->get<std::string>() != language) {
        ++out.skipped["language"];
        return false;
      }
    }
    return true;
  }

  static Message ToMessage(const nlohmann::json& node) {
    Message m;
    m.role = node.value("role", "") == "assistant" ? "assistant" : "user";
    auto it = node.find("text");
    if (it != node.end() && it->is_string()) m.content = it->get<std::string>();
    return m;
  }

  static std::optional<double> Rank(const nlohmann::json& node) {
    auto it = node.find("rank");
    if (it == node.end() || !it->is_number()) return std::nullopt;
    return it->get<double>();
  }

  static const nlohmann::json& Replies(const nlohmann::json& node) {
    static const nlohmann::json* kEmpty = new nlohmann::json(nlohmann::json::array());
    auto it = node.find("replies");
    return (it != node.end() && it->is_array()) ? *it : *kEmpty;
  }

  // Pairs at a prompter node, then recursion into every usable child.
  void Walk(const nlohmann::json& prompter, Conversation history) {
    history.push_back(ToMessage(prompter));
    struct Ranked {
      const nlohmann::json* node;
      double rank;
    };
    std::vector<Ranked> ranked;
    std::vector<const nlohmann::json*> usable;
    for (const auto& reply : Replies(prompter)) {
      if (!Usable(reply)) continue;
      usable.push_back(&reply);
      auto r = Rank(reply);
      if (!r) {
        ++out.skipped["null_rank"];
        continue;
      }
      ranked.push_back({&reply, *r});
    }
    for (size_t i = 0; i < ranked.size(); ++i) {
      for (size_t j = 0; j < ranked.size(); ++j) {
        if (i == j) continue;
        if (ranked[i].rank == ranked[j].rank) {
          if (i < j) ++out.skipped["tie"];
          continue;
        }
        if (ranked[i].rank > ranked[j].rank) continue;
        PreferencePair p;
        p.conversational = true;
        p.prompt = history;
        p.chosen = {ToMessage(*ranked[i].node)};
        p.rejected = {ToMessage(*ranked[j].node)};
        auto checked = CheckPair(std::move(p));
        if (checked.ok()) {
          out.pairs.push_back(*std::move(checked));
        } else {
          ++out.skipped[std::string(checked.status().message())];
        }
      }
    }
    for (const nlohmann::json* reply : usable) {
      Conversation h = history;
      h.push_back(ToMessage(*reply));
      for (const auto& next : Replies(*reply)) {
        if (!Usable(next)) continue;
        Walk(next, h);
      }
    }
  }

  // Best child: the lowest rank; unranked children come after ranked ones, in file order.
  const nlohmann::json* Best(const nlohmann::json& node) {
    const nlohmann::json* best = nullptr;
    double best_rank = std::numeric_limits<double>::infinity();
    for (const auto& reply : Replies(node)) {
      if (reply.value("deleted", false)) continue;
      if (!language.empty() && reply.contains("lang") && reply["lang"].is_string() &&
          reply["lang"].get<std::string>() != language) {
        continue;
      }
      const double r = Rank(reply).value_or(std::numeric_limits<double>::infinity());
      if (best == nullptr || r < best_rank) {
        best = &reply;
        best_rank = r;
      }
    }
    return best;
  }
};

}  // namespace

absl::StatusOr<OasstResult> ConvertOasstTree(const nlohmann::json& tree,
                                             const std::string& language) {
  const nlohmann::json* root = &tree;
  if (auto it = tree.find("prompt"); it != tree.end() && it->is_object()) root = &*it;
  if (!root->contains("text") || !root->contains("role")) {
    return absl::InvalidArgumentError(
        "expected an OpenAssistant tree: {\"prompt\": {\"text\", \"role\", \"replies\": [...]}}");
  }
  OasstResult out;
  OasstWalker w{language, out};
  if (!w.Usable(*root)) return out;
  w.Walk(*root, {});
  // The SFT conversation along the best-ranked path.
  Conversation conv;
  const nlohmann::json* node = root;
  while (node != nullptr) {
    conv.push_back(OasstWalker::ToMessage(*node));
    node = w.Best(*node);
  }
  while (!conv.empty() && conv.back().role != "assistant") conv.pop_back();
  if (conv.size() >= 2) {
    out.conversations.push_back(std::move(conv));
  } else {
    ++out.skipped["no_reply"];
  }
  return out;
}

}  // namespace align::engine::data
