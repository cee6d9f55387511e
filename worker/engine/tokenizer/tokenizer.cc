// Tokenizer: finds the files, reads tokenizer_config.json, and forwards to a backend.
#include "worker/engine/tokenizer/tokenizer.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "worker/engine/tokenizer/backend.h"

namespace align::engine {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

absl::StatusOr<json> ReadJson(const std::string& path) {
  std::ifstream f(path);
  if (!f) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  json j = json::parse(f, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": not valid JSON; re-export the file"));
  }
  return j;
}

// bos_token etc. are a string, {"content": ...} (AddedToken form), or null.
std::optional<std::string> TokenString(const json& j) {
  if (j.is_string()) return j.get<std::string>();
  if (j.is_object() && j.contains("content") && j["content"].is_string()) return j["content"].get<std::string>();
  return std::nullopt;
}

}  // namespace

class TokenizerLoader {
 public:
  static absl::StatusOr<std::unique_ptr<Tokenizer>> Load(const std::string& dir_or_file) {
    std::unique_ptr<Tokenizer> t(new Tokenizer());
    std::error_code ec;
    fs::path p(dir_or_file);
    fs::path dir = p;
    std::string kind;
    if (fs::is_directory(p, ec)) {
      if (fs::exists(p / "tokenizer.json")) kind = "tokenizer.json";
      else if (fs::exists(p / "vocab.json") && fs::exists(p / "merges.txt")) kind = "vocab.json";
      else if (fs::exists(p / "tokenizer.model")) kind = "tokenizer.model";
      else {
        return absl::NotFoundError(absl::StrCat(
            dir_or_file, ": no tokenizer found; expected tokenizer.json, vocab.json + merges.txt, or "
                         "tokenizer.model in this directory"));
      }
    } else if (fs::is_regular_file(p, ec)) {
      dir = p.parent_path();
      std::string name = p.filename().string();
      if (p.extension() == ".json" && name != "vocab.json") kind = "file.json";
      else if (name == "vocab.json") kind = "vocab.json";
      else if (p.extension() == ".model" || name.find(".model") != std::string::npos) kind = "file.model";
      else {
        return absl::InvalidArgumentError(absl::StrCat(
            dir_or_file, ": unknown tokenizer file; give tokenizer.json, vocab.json, tokenizer.model "
                         "or the directory holding them"));
      }
    } else {
      return absl::NotFoundError(absl::StrCat(dir_or_file, ": no such tokenizer file or directory"));
    }

    // tokenizer_config.json (optional) and special_tokens_map.json (optional) sit beside it.
    json config = json::object();
    fs::path config_path = dir / "tokenizer_config.json";
    if (fs::exists(config_path)) {
      ASSIGN_OR_RETURN(config, ReadJson(config_path.string()));
      if (!config.is_object()) {
        return absl::InvalidArgumentError(absl::StrCat(config_path.string(), ": expected a JSON object"));
      }
      t->source_files_.push_back(config_path.string());
    }
    json special_map = json::object();
    fs::path map_path = dir / "special_tokens_map.json";
    if (fs::exists(map_path)) {
      auto m = ReadJson(map_path.string());
      if (m.ok() && m->is_object()) {
        special_map = *m;
        t->source_files_.push_back(map_path.string());
      }
    }

    if (kind == "tokenizer.json" || kind == "file.json") {
      fs::path tj = kind == "tokenizer.json" ? dir / "tokenizer.json" : p;
      ASSIGN_OR_RETURN(json j, ReadJson(tj.string()));
      ASSIGN_OR_RETURN(t->backend_, MakeHfBackend(j, tj.string()));
      t->format_ = TokenizerFormat::kTokenizerJson;
      t->source_files_.insert(t->source_files_.begin(), tj.string());
    } else if (kind == "vocab.json") {
      fs::path merges = dir / "merges.txt";
      ASSIGN_OR_RETURN(t->backend_, MakeGpt2Backend((dir / "vocab.json").string(), merges.string()));
      t->format_ = TokenizerFormat::kGpt2VocabMerges;
      t->source_files_.insert(t->source_files_.begin(), {(dir / "vocab.json").string(), merges.string()});
    } else {
      fs::path model = kind == "tokenizer.model" ? dir / "tokenizer.model" : p;
      bool add_bos = true, add_eos = false;  // LlamaTokenizer's defaults
      if (config.contains("add_bos_token") && config["add_bos_token"].is_boolean()) add_bos = config["add_bos_token"];
      if (config.contains("add_eos_token") && config["add_eos_token"].is_boolean()) add_eos = config["add_eos_token"];
      bool legacy = config.contains("legacy") && config["legacy"].is_boolean() && config["legacy"].get<bool>();
      ASSIGN_OR_RETURN(t->backend_, MakeSentencePieceBackend(model.string(), add_bos, add_eos, legacy));
      t->format_ = TokenizerFormat::kSentencePieceModel;
      t->source_files_.insert(t->source_files_.begin(), model.string());
    }
    RETURN_IF_ERROR(ReadConfig(config, special_map, config_path.string(), t.get()));
    return t;
  }

  static absl::Status ReadConfig(const json& config, const json& special_map, const std::string& path,
                                 Tokenizer* t) {
    auto pick = [&](const char* key) -> std::optional<std::string> {
      if (config.contains(key)) return TokenString(config[key]);  // explicit null means none
      if (special_map.contains(key)) return TokenString(special_map[key]);
      return std::nullopt;
    };
    auto resolve = [&](const char* key, std::string* str, std::optional<int32_t>* id) -> absl::Status {
      std::optional<std::string> s = pick(key);
      if (!s) return absl::OkStatus();
      std::optional<int32_t> i = t->backend_->TokenToId(*s);
      if (!i) {
        return absl::InvalidArgumentError(absl::StrCat(path, ": ", key, " '", *s,
                                                       "' is not in the tokenizer's vocabulary"));
      }
      *str = *s;
      *id = *i;
      return absl::OkStatus();
    };
    bool any = config.contains("bos_token") || config.contains("eos_token") ||
               special_map.contains("bos_token") || special_map.contains("eos_token");
    RETURN_IF_ERROR(resolve("bos_token", &t->bos_token_, &t->bos_id_));
    RETURN_IF_ERROR(resolve("eos_token", &t->eos_token_, &t->eos_id_));
    RETURN_IF_ERROR(resolve("pad_token", &t->pad_token_, &t->pad_id_));
    RETURN_IF_ERROR(resolve("unk_token", &t->unk_token_, &t->unk_id_));
    if (!any) {
      // No config: SentencePiece models name their own; GPT-2 uses <|endoftext|> for all three.
      SpmSpecials spm = SentencePieceSpecials(*t->backend_);
      auto set = [&](const std::string& s, std::string* str, std::optional<int32_t>* id) {
        if (s.empty() || str->size()) return;
        if (auto i = t->backend_->TokenToId(s)) {
          *str = s;
          *id = *i;
        }
      };
      set(spm.bos, &t->bos_token_, &t->bos_id_);
      set(spm.eos, &t->eos_token_, &t->eos_id_);
      set(spm.unk, &t->unk_token_, &t->unk_id_);
      set(spm.pad, &t->pad_token_, &t->pad_id_);
      if (t->format_ != TokenizerFormat::kSentencePieceModel && t->backend_->TokenToId("<|endoftext|>")) {
        set("<|endoftext|>", &t->bos_token_, &t->bos_id_);
        set("<|endoftext|>", &t->eos_token_, &t->eos_id_);
        set("<|endoftext|>", &t->unk_token_, &t->unk_id_);
      }
    }
    if (config.contains("chat_template")) {
      const json& ct = config["chat_template"];
      if (ct.is_string()) {
        t->chat_template_ = ct.get<std::string>();
      } else if (ct.is_array()) {
        for (const auto& e : ct) {
          if (!e.is_object() || !e.contains("name") || !e.contains("template") || !e["name"].is_string() ||
              !e["template"].is_string()) {
            return absl::InvalidArgumentError(absl::StrCat(
                path, ": chat_template list entries must be {\"name\": string, \"template\": string}"));
          }
          t->named_templates_.emplace_back(e["name"].get<std::string>(), e["template"].get<std::string>());
          if (e["name"] == "default") t->chat_template_ = e["template"].get<std::string>();
        }
      } else if (!ct.is_null()) {
        return absl::InvalidArgumentError(
            absl::StrCat(path, ": chat_template must be a string or a list of {name, template}"));
      }
    }
    if (config.contains("model_max_length") && config["model_max_length"].is_number()) {
      double v = config["model_max_length"].get<double>();
      // Hugging Face writes int(1e30) for "no limit".
      if (v > 0 && v < 1e18) t->model_max_length_ = static_cast<int64_t>(v);
    }
    if (config.contains("add_bos_token") && config["add_bos_token"].is_boolean()) {
      t->add_bos_override_ = config["add_bos_token"].get<bool>();
    }
    if (config.contains("add_eos_token") && config["add_eos_token"].is_boolean()) {
      t->add_eos_override_ = config["add_eos_token"].get<bool>();
    }
    return absl::OkStatus();
  }
};

Tokenizer::Tokenizer() = default;
Tokenizer::~Tokenizer() = default;

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::Load(const std::string& dir_or_file) {
  return TokenizerLoader::Load(dir_or_file);
}

std::vector<int32_t> Tokenizer::Encode(absl::string_view text, bool add_special_tokens) const {
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 4);
  backend_->Encode(text, add_special_tokens, &ids, nullptr);
  return ids;
}

std::vector<int32_t> Tokenizer::EncodeWithOffsets(
    absl::string_view text, bool add_special_tokens,
    std::vector<std::pair<uint32_t, uint32_t>>* offsets) const {
  std::vector<int32_t> ids;
  offsets->clear();
  backend_->Encode(text, add_special_tokens, &ids, offsets);
  return ids;
}

std::vector<std::vector<int32_t>> Tokenizer::EncodeBatch(const std::vector<std::string>& texts,
                                                         bool add_special_tokens, int threads) const {
  std::vector<std::vector<int32_t>> out(texts.size());
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  threads = std::min<int>(threads, static_cast<int>(texts.size()));
  if (threads <= 1) {
    for (size_t i = 0; i < texts.size(); ++i) out[i] = Encode(texts[i], add_special_tokens);
    return out;
  }
  // Interleaved assignment balances long and short texts without a shared queue.
  std::vector<std::thread> pool;
  for (int w = 0; w < threads; ++w) {
    pool.emplace_back([&, w] {
      for (size_t i = w; i < texts.size(); i += threads) out[i] = Encode(texts[i], add_special_tokens);
    });
  }
  for (auto& th : pool) th.join();
  return out;
}

std::string Tokenizer::Decode(const std::vector<int32_t>& ids, bool skip_special_tokens) const {
  return backend_->Decode(ids, skip_special_tokens);
}

std::optional<std::string> Tokenizer::IdToToken(int32_t id) const { return backend_->IdToToken(id); }
std::optional<int32_t> Tokenizer::TokenToId(absl::string_view token) const { return backend_->TokenToId(token); }
int32_t Tokenizer::VocabSize() const { return backend_->VocabSize(); }
bool Tokenizer::IsSpecial(int32_t id) const { return backend_->IsSpecial(id); }

bool Tokenizer::add_bos_token() const {
  auto prefix = backend_->SpecialPrefix();
  return bos_id_ && std::find(prefix.begin(), prefix.end(), *bos_id_) != prefix.end();
}
bool Tokenizer::add_eos_token() const {
  auto suffix = backend_->SpecialSuffix();
  return eos_id_ && std::find(suffix.begin(), suffix.end(), *eos_id_) != suffix.end();
}

std::optional<std::string> Tokenizer::named_chat_template(const std::string& name) const {
  for (const auto& [n, t] : named_templates_) {
    if (n == name) return t;
  }
  return std::nullopt;
}

absl::Status Tokenizer::SaveTo(const std::string& dir) const {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot create ", dir, ": ", ec.message()));
  for (const auto& src : source_files_) {
    fs::path dst = fs::path(dir) / fs::path(src).filename();
    if (fs::exists(dst) && fs::equivalent(dst, src, ec)) continue;
    fs::copy_file(src, dst, fs::copy_options::overwrite_existing, ec);
    if (ec) return absl::InternalError(absl::StrCat("cannot copy ", src, " to ", dst.string(), ": ", ec.message()));
  }
  return absl::OkStatus();
}

}  // namespace align::engine
