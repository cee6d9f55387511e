#include "worker/engine/eval/eval_stage.h"

#include <ATen/core/grad_mode.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <memory>
#include <set>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "common/version.h"
#include "worker/engine/core/failure.h"
#include "worker/engine/data/jsonl.h"
#include "worker/engine/data/sources.h"
#include "worker/engine/eval/gates.h"
#include "worker/engine/eval/ifeval.h"
#include "worker/engine/eval/judge.h"
#include "worker/engine/eval/loglik.h"
#include "worker/engine/eval/mt_bench.h"
#include "worker/engine/eval/multiple_choice.h"
#include "worker/engine/eval/scoring.h"
#include "worker/engine/model/generate.h"
#include "worker/engine/model/model.h"
#include "worker/engine/tokenizer/chat_template.h"
#include "worker/engine/tokenizer/tokenizer.h"

namespace align::engine::eval {
namespace fs = std::filesystem;
namespace {

const std::set<std::string>& KnownSuites() {
  static const auto* s = new std::set<std::string>{"mmlu", "truthfulqa", "ifeval",
                                                   "preference_accuracy", "winrate", "mt_bench"};
  return *s;
}

// config.judge (JudgeConfig): an engine-run model or an OpenAI-compatible endpoint.
struct JudgeSettings {
  std::string model;           // a model directory (config judge.model, or job.inputs.judge_model)
  std::string endpoint;        // base URL (.../v1)
  std::string endpoint_model;
  std::string api_key_env;     // the NAME of the variable; the key itself is never stored
  int64_t max_tokens = 2048;   // FastChat's judge max_tokens
  double timeout_seconds = 120;
};

struct EvalConfig {
  std::vector<std::string> suites;
  int mmlu_shots = 5;
  std::vector<std::string> mmlu_subjects;
  int64_t limit = 0;
  std::map<std::string, std::string> gates;
  JudgeSettings judge;
  std::vector<std::string> mt_bench_categories;
  int batch_size = 16;
  int64_t max_new_tokens = 256;
};

absl::StatusOr<std::vector<std::string>> StringList(const nlohmann::json& c, const std::string& key) {
  std::vector<std::string> out;
  auto it = c.find(key);
  if (it == c.end() || it->is_null()) return out;
  if (!it->is_array()) {
    return absl::InvalidArgumentError(absl::StrCat("stage.config.", key, ": expected a list of strings"));
  }
  for (const auto& v : *it) {
    if (!v.is_string()) {
      return absl::InvalidArgumentError(absl::StrCat("stage.config.", key, ": expected a list of strings, found ", v.dump()));
    }
    out.push_back(v.get<std::string>());
  }
  return out;
}

absl::StatusOr<EvalConfig> ParseEvalConfig(const JobSpec& job) {
  const nlohmann::json& c = job.Config();
  EvalConfig cfg;
  ASSIGN_OR_RETURN(cfg.suites, StringList(c, "suites"));
  if (cfg.suites.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "stage '", job.stage_name, "': config.suites is empty; list one or more of ",
        absl::StrJoin(KnownSuites(), ", ")));
  }
  for (const auto& s : cfg.suites) {
    if (!KnownSuites().count(s)) {
      return absl::InvalidArgumentError(absl::StrCat("stage.config.suites: unknown suite '", s,
                                                     "'; known: ", absl::StrJoin(KnownSuites(), ", ")));
    }
  }
  ASSIGN_OR_RETURN(cfg.mmlu_subjects, StringList(c, "mmlu_subjects"));
  cfg.mmlu_shots = static_cast<int>(job.ConfigNumber("mmlu_shots", 5));
  cfg.limit = static_cast<int64_t>(job.ConfigNumber("limit", 0));
  cfg.batch_size = static_cast<int>(job.ConfigNumber("batch_size", 16));
  cfg.max_new_tokens = static_cast<int64_t>(job.ConfigNumber("max_new_tokens", 256));
  if (cfg.batch_size <= 0) cfg.batch_size = 16;
  if (cfg.max_new_tokens <= 0) cfg.max_new_tokens = 256;
  if (cfg.limit < 0) {
    return absl::InvalidArgumentError("stage.config.limit: expected 0 (all) or a positive number");
  }
  if (auto it = c.find("gates"); it != c.end() && !it->is_null()) {
    if (!it->is_object()) {
      return absl::InvalidArgumentError("stage.config.gates: expected a map like {\"mmlu.acc\": \">= 0.25\"}");
    }
    for (const auto& [k, v] : it->items()) {
      if (!v.is_string()) {
        return absl::InvalidArgumentError(absl::StrCat("stage.config.gates.", k, ": expected a string like \">= 0.25\""));
      }
      cfg.gates[k] = v.get<std::string>();
    }
  }
  ASSIGN_OR_RETURN(cfg.mt_bench_categories, StringList(c, "mt_bench_categories"));
  if (auto it = c.find("judge"); it != c.end() && !it->is_null()) {
    if (!it->is_object()) {
      return absl::InvalidArgumentError(
          "stage.config.judge: expected {model: <dir>} or {endpoint: <url>, endpoint_model: <name>, api_key_env: <VAR>}");
    }
    for (auto [field, out] : {std::pair{"model", &cfg.judge.model}, std::pair{"endpoint", &cfg.judge.endpoint},
                              std::pair{"endpoint_model", &cfg.judge.endpoint_model},
                              std::pair{"api_key_env", &cfg.judge.api_key_env}}) {
      if (auto f = it->find(field); f != it->end() && !f->is_null()) {
        if (!f->is_string()) {
          return absl::InvalidArgumentError(absl::StrCat("stage.config.judge.", field, ": expected a string"));
        }
        *out = f->get<std::string>();
      }
    }
    cfg.judge.max_tokens = static_cast<int64_t>(JsonNumber(*it, "max_tokens").value_or(2048));
    cfg.judge.timeout_seconds = JsonNumber(*it, "timeout_seconds").value_or(120);
    if (cfg.judge.max_tokens <= 0) cfg.judge.max_tokens = 2048;
    if (cfg.judge.timeout_seconds <= 0) cfg.judge.timeout_seconds = 120;
  }
  if (auto in = job.inputs.find("judge_model"); in != job.inputs.end() && !in->second.empty()) {
    cfg.judge.model = in->second;  // the coordinator's resolved copy of judge.model
  } else if (!cfg.judge.model.empty()) {
    cfg.judge.model = ResolveDataPath(cfg.judge.model, job.data_dir);
  }
  if (std::find(cfg.suites.begin(), cfg.suites.end(), "mt_bench") != cfg.suites.end()) {
    if (cfg.judge.model.empty() && cfg.judge.endpoint.empty()) {
      return absl::InvalidArgumentError(
          "stage.config.judge: suite mt_bench needs a judge; set judge.model (a model directory the "
          "engine runs) or judge.endpoint + judge.endpoint_model (an OpenAI-compatible server)");
    }
    if (!cfg.judge.model.empty() && !cfg.judge.endpoint.empty()) {
      return absl::InvalidArgumentError(
          "stage.config.judge: set judge.model or judge.endpoint, not both");
    }
    if (!cfg.judge.endpoint.empty() && cfg.judge.endpoint_model.empty()) {
      return absl::InvalidArgumentError(
          "stage.config.judge.endpoint_model: required with judge.endpoint; the model name the endpoint serves");
    }
  }
  return cfg;
}

// The models the stage was given, by role: job.inputs[role] (or "models/<role>"), else
// stage.models[role] resolved against the data dir; "model" falls back to stage/defaults.model.
std::map<std::string, std::string> ModelPaths(const JobSpec& job) {
  std::map<std::string, std::string> out;
  for (const auto& [key, path] : job.inputs) {
    std::string role = key;
    if (role.rfind("models/", 0) == 0) role = role.substr(7);
    // Not models under evaluation: data, the DPO reference, the tokenizer override, the judge.
    if (role.rfind("data/", 0) == 0 || role == "reference_model" || role == "tokenizer" ||
        role == "judge_model" || path.empty()) {
      continue;
    }
    out[role] = path;
  }
  if (auto it = job.stage.find("models"); it != job.stage.end() && it->is_object()) {
    for (const auto& [role, v] : it->items()) {
      if (v.is_string() && !out.count(role)) out[role] = ResolveDataPath(v.get<std::string>(), job.data_dir);
    }
  }
  if (!out.count("model") && !out.count("candidate")) {
    const std::string m = job.StageOrDefault("model", "");
    if (!m.empty()) out["model"] = ResolveDataPath(m, job.data_dir);
  }
  return out;
}

struct Loaded {
  std::string path;
  std::unique_ptr<Tokenizer> tokenizer;
  std::unique_ptr<model::CausalLM> lm;
  std::optional<ChatTemplate> chat_template;
  std::string template_source;
};

// `template_spec`: the chat template to use ("tokenizer" = the model's own; see ResolveChatTemplate).
absl::StatusOr<Loaded> LoadModel(const std::string& template_spec, const std::string& role,
                                 const std::string& path, model::HeadKind head) {
  Loaded m;
  m.path = path;
  auto tok = Tokenizer::Load(path);
  if (!tok.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("eval model '", role, "' (", path,
                                                   "): tokenizer: ", tok.status().message()));
  }
  m.tokenizer = *std::move(tok);
  model::LoadOptions lo;
  lo.head = head;
  lo.device = model::DefaultDevice();
  auto lm = model::CausalLM::Load(path, lo);
  if (!lm.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("eval model '", role, "' (", path, "): ",
                                                   lm.status().message()));
  }
  m.lm = *std::move(lm);
  if (head == model::HeadKind::kCausalLM) {
    auto src = ResolveChatTemplate(template_spec, *m.tokenizer);
    if (src.ok()) {
      auto parsed = ChatTemplate::Parse(*src);
      if (parsed.ok()) {
        m.chat_template = *std::move(parsed);
        m.template_source = *src;
      }
    }
  }
  return m;
}

absl::StatusOr<nlohmann::json> FileRecord(const std::string& path) {
  int64_t size = 0;
  ASSIGN_OR_RETURN(std::string sha, data::Sha256File(path, &size));
  return nlohmann::json{{"path", path}, {"sha256", sha}, {"size_bytes", size}};
}

nlohmann::json BaseRecord(const EvalConfig& cfg, const Loaded& m) {
  return {{"engine_version", kEngineVersion}, {"model", m.path}, {"batch_size", cfg.batch_size},
          {"limit", cfg.limit}};
}

// Renders a conversation with the generation prompt and encodes it (BOS added unless the
// template wrote it).
absl::StatusOr<std::vector<int32_t>> ChatPrompt(const Loaded& m, const nlohmann::json& messages) {
  if (!m.chat_template.has_value()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "model ", m.path, " has no chat template; set stage chat_template to a built-in name (",
        absl::StrJoin(BuiltinChatTemplateNames(), ", "), ")"));
  }
  ASSIGN_OR_RETURN(std::string text, m.chat_template->Render(messages, true, TemplateVarsFor(*m.tokenizer)));
  const bool has_bos = !m.tokenizer->bos_token().empty() && text.rfind(m.tokenizer->bos_token(), 0) == 0;
  std::vector<int32_t> ids = m.tokenizer->Encode(text, !has_bos);
  if (m.tokenizer->add_eos_token() && !ids.empty()) ids.pop_back();
  return ids;
}

struct ChatGeneration {
  int64_t max_new_tokens = 256;
  int batch_size = 16;
  double temperature = 0.0;  // 0 = greedy
  uint64_t seed = 0;
  bool strip = false;            // strip surrounding whitespace (FastChat's answers do)
  int64_t* truncated = nullptr;  // counts prompts cut from the left to fit the context
};

// Answers each conversation with the model's chat template; prompts longer than the context
// minus max_new_tokens keep their end (the generation prompt). Decoded without special tokens.
absl::StatusOr<std::vector<std::string>> GenerateChat(const Loaded& m, const std::vector<nlohmann::json>& conversations,
                                                      const ChatGeneration& gen) {
  std::vector<std::vector<int32_t>> encoded;
  const int64_t max_len = m.lm->config().max_position_embeddings;
  for (const auto& messages : conversations) {
    ASSIGN_OR_RETURN(auto ids, ChatPrompt(m, messages));
    const int64_t room = max_len - gen.max_new_tokens;
    if (room > 0 && static_cast<int64_t>(ids.size()) > room) {
      ids.erase(ids.begin(), ids.end() - room);  // keep the end: the generation prompt
      if (gen.truncated != nullptr) ++*gen.truncated;
    }
    encoded.push_back(std::move(ids));
  }
  if (encoded.empty()) return std::vector<std::string>{};
  model::GenerateOptions go;
  go.max_new_tokens = std::min<int64_t>(gen.max_new_tokens, std::max<int64_t>(1, max_len - 1));
  go.batch_size = gen.batch_size;
  go.temperature = gen.temperature;
  go.seed = gen.seed;
  go.pad_id = m.tokenizer->pad_id().value_or(0);
  if (m.tokenizer->eos_id().has_value()) go.eos_ids = {*m.tokenizer->eos_id()};
  std::vector<int64_t> caps;
  for (const auto& e : encoded) {
    caps.push_back(std::max<int64_t>(1, std::min<int64_t>(go.max_new_tokens, max_len - static_cast<int64_t>(e.size()))));
  }
  go.max_new_tokens_per_sequence = caps;
  ASSIGN_OR_RETURN(auto results, model::Generate(*m.lm, encoded, go));
  std::vector<std::string> out;
  for (const auto& r : results) {
    std::string text = m.tokenizer->Decode(r.tokens, /*skip_special_tokens=*/true);
    out.push_back(gen.strip ? std::string(absl::StripAsciiWhitespace(text)) : std::move(text));
  }
  return out;
}

// Greedy single-turn answers (IFEval, win rate).
absl::StatusOr<std::vector<std::string>> GenerateAnswers(const Loaded& m, const EvalConfig& cfg,
                                                         const std::vector<std::string>& prompts) {
  std::vector<nlohmann::json> conversations;
  for (const auto& p : prompts) conversations.push_back(nlohmann::json::array({{{"role", "user"}, {"content", p}}}));
  return GenerateChat(m, conversations, {.max_new_tokens = cfg.max_new_tokens, .batch_size = cfg.batch_size});
}

// Conversations scored by the reward model: prompt + answer rendered with the RM's template.
absl::StatusOr<std::vector<double>> RewardScores(const Loaded& rm, const std::vector<std::string>& prompts,
                                                 const std::vector<std::string>& answers, int batch_size) {
  std::vector<std::vector<int32_t>> rows;
  for (size_t i = 0; i < prompts.size(); ++i) {
    std::string text;
    nlohmann::json messages = nlohmann::json::array(
        {{{"role", "user"}, {"content", prompts[i]}}, {{"role", "assistant"}, {"content", answers[i]}}});
    auto src = ResolveChatTemplate("tokenizer", *rm.tokenizer);
    if (src.ok()) {
      auto t = ChatTemplate::Parse(*src);
      if (t.ok()) {
        auto r = t->Render(messages, false, TemplateVarsFor(*rm.tokenizer));
        if (r.ok()) text = *r;
      }
    }
    if (text.empty()) text = prompts[i] + "\n" + answers[i];
    std::vector<int32_t> ids = rm.tokenizer->Encode(text, true);
    const int64_t max_len = rm.lm->config().max_position_embeddings;
    if (static_cast<int64_t>(ids.size()) > max_len) ids.resize(max_len);
    rows.push_back(std::move(ids));
  }
  std::vector<double> out(rows.size());
  at::NoGradGuard no_grad;
  for (size_t start = 0; start < rows.size(); start += batch_size) {
    const size_t end = std::min(rows.size(), start + batch_size);
    int64_t t = 0;
    for (size_t i = start; i < end; ++i) t = std::max<int64_t>(t, rows[i].size());
    at::Tensor ids = at::zeros({static_cast<int64_t>(end - start), t}, at::kLong);
    at::Tensor mask = at::zeros_like(ids);
    for (size_t i = start; i < end; ++i) {
      for (size_t k = 0; k < rows[i].size(); ++k) {
        ids[i - start][k] = rows[i][k];
        mask[i - start][k] = 1;
      }
    }
    model::ForwardOptions fo;
    fo.attention_mask = mask.to(rm.lm->device());
    at::Tensor scores = model::LastTokenScores(rm.lm->Forward(ids.to(rm.lm->device()), fo), fo.attention_mask)
                            .to(at::kCPU).to(at::kDouble);
    for (size_t i = start; i < end; ++i) out[i] = scores[i - start].item<double>();
  }
  return out;
}

struct PrefExample {
  std::string context, chosen, rejected, prompt_text;
};

absl::StatusOr<std::vector<PrefExample>> LoadPreferenceExamples(const JobSpec& job, const Loaded& m,
                                                                int64_t limit, nlohmann::json* files) {
  ASSIGN_OR_RETURN(auto sources, data::SourcesFromJob(job));
  if (sources.empty()) {
    return absl::InvalidArgumentError(
        "suite preference_accuracy/winrate needs held-out preference pairs: set stage.data "
        "(for example ${stages.prefs.outputs.test})");
  }
  data::DataReport report;
  ASSIGN_OR_RETURN(auto per_source, data::LoadPreferenceSources(sources, report));
  for (const auto& s : sources) {
    ASSIGN_OR_RETURN(auto rec, FileRecord(s.path));
    files->push_back(rec);
  }
  std::vector<PrefExample> out;
  for (const auto& pairs : per_source) {
    for (const auto& p : pairs) {
      if (limit > 0 && static_cast<int64_t>(out.size()) >= limit) break;
      PrefExample e;
      if (p.conversational && !p.prompt.empty() && m.chat_template.has_value()) {
        nlohmann::json messages = nlohmann::json::array();
        for (const auto& msg : p.prompt) messages.push_back({{"role", msg.role}, {"content", msg.content}});
        ASSIGN_OR_RETURN(e.context, m.chat_template->Render(messages, true, TemplateVarsFor(*m.tokenizer)));
        e.chosen = p.chosen.empty() ? p.chosen_text : p.chosen.back().content;
        e.rejected = p.rejected.empty() ? p.rejected_text : p.rejected.back().content;
        e.prompt_text = p.prompt.back().content;
      } else {
        e.context = p.prompt_text;
        e.chosen = p.chosen_text;
        e.rejected = p.rejected_text;
        e.prompt_text = p.prompt_text;
      }
      out.push_back(std::move(e));
    }
  }
  return out;
}

}  // namespace

namespace {

// Turns a scorer's (done, total) callbacks into `progress` events for one suite: at most one a
// second, plus the last, so a long MMLU run shows a bar and an ETA instead of silence.
std::function<void(int64_t, int64_t)> ProgressReporter(EventSink& events, const std::string& suite) {
  auto last = std::make_shared<absl::Time>(absl::InfinitePast());
  const absl::Time started = absl::Now();
  return [&events, suite, last, started](int64_t done, int64_t total) {
    const absl::Time now = absl::Now();
    if (done < total && now - *last < absl::Seconds(1)) return;
    *last = now;
    nlohmann::json f = {{"phase", "eval"}, {"suite", suite}, {"done", done}, {"total", total}};
    const double elapsed = absl::ToDoubleSeconds(now - started);
    if (done > 0 && done < total) f["eta_seconds"] = elapsed * static_cast<double>(total - done) / done;
    events.Emit("progress", std::move(f));
  };
}

}  // namespace

absl::Status RunEvalStage(const JobSpec& job, EventSink& events) {
  ASSIGN_OR_RETURN(EvalConfig cfg, ParseEvalConfig(job));
  ASSIGN_OR_RETURN(std::vector<Gate> gates, ParseGates(cfg.gates));
  const std::map<std::string, std::string> paths = ModelPaths(job);
  const std::string primary_role = paths.count("candidate") ? "candidate" : "model";
  if (!paths.count(primary_role)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "stage '", job.stage_name, "': no model to evaluate; set models.candidate (or model)"));
  }
  const std::string eval_dir = ResolveDataPath("data://eval", job.data_dir);
  nlohmann::json results = {{"stage", job.stage_name}, {"engine_version", kEngineVersion},
                            {"models", paths}, {"scores", nlohmann::json::object()},
                            {"records", nlohmann::json::object()}};
  nlohmann::json& scores = results["scores"];
  nlohmann::json& records = results["records"];

  // The models the suites load, by role; "judge" is config.judge.model (not evaluated itself).
  std::map<std::string, std::string> load_paths = paths;
  if (!cfg.judge.model.empty()) load_paths["judge"] = cfg.judge.model;
  std::map<std::pair<std::string, model::HeadKind>, Loaded> loaded;
  auto get = [&](const std::string& role, model::HeadKind head) -> absl::StatusOr<const Loaded*> {
    auto it = loaded.find({role, head});
    if (it != loaded.end()) return &it->second;
    auto p = load_paths.find(role);
    if (p == load_paths.end()) {
      return absl::InvalidArgumentError(absl::StrCat("stage '", job.stage_name, "': the suites need a '",
                                                     role, "' model; add it to the stage's models"));
    }
    events.Emit("phase", {{"phase", "load"}, {"message", absl::StrCat("loading ", role, " from ", p->second)}});
    // Evaluated models use the stage's chat template; a judge uses its own.
    const std::string template_spec =
        role == "judge" ? "tokenizer" : job.StageOrDefault("chat_template", "tokenizer");
    ASSIGN_OR_RETURN(Loaded m, LoadModel(template_spec, role, p->second, head));
    return &loaded.emplace(std::pair{role, head}, std::move(m)).first->second;
  };

  try {
    for (const std::string& suite : cfg.suites) {
      events.Emit("phase", {{"phase", "eval"}, {"message", suite}});
      LOG(INFO) << "eval suite " << suite;
      if (suite == "mmlu") {
        ASSIGN_OR_RETURN(const Loaded* m, get(primary_role, model::HeadKind::kCausalLM));
        MmluOptions mo;
        mo.shots = cfg.mmlu_shots;
        mo.subjects = cfg.mmlu_subjects;
        mo.limit = cfg.limit;
        const std::string dir = eval_dir + "/mmlu";
        ASSIGN_OR_RETURN(MmluScores s, RunMmlu(dir, mo, MakeLoglikFn(*m->lm, *m->tokenizer,
                                                                   {.batch_size = cfg.batch_size,
                                                                    .progress = ProgressReporter(events, suite)})));
        scores["mmlu"] = s.ToJson();
        nlohmann::json rec = BaseRecord(cfg, *m);
        rec["shots"] = cfg.mmlu_shots;
        rec["template_sha256"] = data::Sha256Hex(s.template_text);
        rec["dataset_files"] = nlohmann::json::array();
        for (const auto& f : s.files) {
          ASSIGN_OR_RETURN(auto fr, FileRecord(f));
          rec["dataset_files"].push_back(fr);
        }
        ASSIGN_OR_RETURN(auto cats, FileRecord(dir + "/categories.json"));
        rec["dataset_files"].push_back(cats);
        records["mmlu"] = rec;
      } else if (suite == "truthfulqa") {
        ASSIGN_OR_RETURN(const Loaded* m, get(primary_role, model::HeadKind::kCausalLM));
        const std::string csv = eval_dir + "/truthfulqa/TruthfulQA.csv";
        ASSIGN_OR_RETURN(auto qs, LoadTruthfulQa(csv));
        ASSIGN_OR_RETURN(TruthfulQaScores s, RunTruthfulQa(qs, cfg.limit, MakeLoglikFn(*m->lm, *m->tokenizer,
                                                                                       {.batch_size = cfg.batch_size,
                                                                                        .progress = ProgressReporter(events, suite)})));
        scores["truthfulqa"] = s.ToJson();
        nlohmann::json rec = BaseRecord(cfg, *m);
        rec["shots"] = 6;  // the QA primer
        rec["template_sha256"] = data::Sha256Hex(TruthfulQaContext("{question}"));
        ASSIGN_OR_RETURN(auto fr, FileRecord(csv));
        rec["dataset_files"] = nlohmann::json::array({fr});
        records["truthfulqa"] = rec;
      } else if (suite == "ifeval") {
        ASSIGN_OR_RETURN(const Loaded* m, get(primary_role, model::HeadKind::kCausalLM));
        const std::string input = eval_dir + "/ifeval/input_data.jsonl";
        ASSIGN_OR_RETURN(auto prompts, LoadIfEvalPrompts(input));
        if (cfg.limit > 0 && static_cast<int64_t>(prompts.size()) > cfg.limit) prompts.resize(cfg.limit);
        std::vector<std::string> texts;
        for (const auto& p : prompts) texts.push_back(p.prompt);
        ASSIGN_OR_RETURN(auto answers, GenerateAnswers(*m, cfg, texts));
        ASSIGN_OR_RETURN(IfEvalScores s, ScoreIfEval(prompts, answers));
        scores["ifeval"] = {{"prompt_strict", s.prompt_strict}, {"instruction_strict", s.instruction_strict},
                            {"prompt_loose", s.prompt_loose}, {"instruction_loose", s.instruction_loose},
                            {"prompts", s.prompts}, {"instructions", s.instructions}};
        nlohmann::json rec = BaseRecord(cfg, *m);
        rec["shots"] = 0;
        rec["template_sha256"] = data::Sha256Hex(m->template_source);
        rec["generation"] = {{"temperature", 0.0}, {"max_new_tokens", cfg.max_new_tokens}};
        ASSIGN_OR_RETURN(auto fr, FileRecord(input));
        rec["dataset_files"] = nlohmann::json::array({fr});
        records["ifeval"] = rec;
      } else if (suite == "preference_accuracy") {
        // Log-likelihood preference: a model prefers `chosen` when log p(chosen | prompt) >
        // log p(rejected | prompt). With a baseline too, the DPO implicit reward
        // (log-ratio against the baseline) decides for "implicit_reward".
        nlohmann::json pa = nlohmann::json::object();
        nlohmann::json rec;
        std::map<std::string, std::vector<double>> margins;
        for (const std::string role : {"candidate", "model", "baseline"}) {
          if (!paths.count(role)) continue;
          ASSIGN_OR_RETURN(const Loaded* m, get(role, model::HeadKind::kCausalLM));
          nlohmann::json files = nlohmann::json::array();
          ASSIGN_OR_RETURN(auto ex, LoadPreferenceExamples(job, *m, cfg.limit, &files));
          std::vector<LoglikRequest> reqs;
          for (const auto& e : ex) {
            reqs.push_back({e.context, e.chosen});
            reqs.push_back({e.context, e.rejected});
          }
          ASSIGN_OR_RETURN(auto ll, ScoreLoglik(*m->lm, *m->tokenizer, reqs,
                                                    {.batch_size = cfg.batch_size,
                                                     .progress = ProgressReporter(events, suite + " " + role)}));
          std::vector<double> margin;
          for (size_t i = 0; i < ex.size(); ++i) margin.push_back(ll[2 * i].loglik - ll[2 * i + 1].loglik);
          ASSIGN_OR_RETURN(pa[role], PreferenceAccuracy(margin));
          pa["pairs"] = ex.size();
          margins[role] = margin;
          rec = BaseRecord(cfg, *m);
          rec["dataset_files"] = files;
          rec["template_sha256"] = data::Sha256Hex(m->template_source);
        }
        const std::string policy = paths.count("candidate") ? "candidate" : "model";
        if (margins.count(policy) && margins.count("baseline") &&
            margins[policy].size() == margins["baseline"].size() && !margins[policy].empty()) {
          std::vector<double> implicit;
          for (size_t i = 0; i < margins[policy].size(); ++i) implicit.push_back(margins[policy][i] - margins["baseline"][i]);
          ASSIGN_OR_RETURN(pa["implicit_reward"], PreferenceAccuracy(implicit));
        }
        rec["shots"] = 0;
        rec["models"] = paths;
        scores["preference_accuracy"] = pa;
        records["preference_accuracy"] = rec;
      } else if (suite == "winrate") {
        ASSIGN_OR_RETURN(const Loaded* cand, get(primary_role, model::HeadKind::kCausalLM));
        // The reward model: models.reward_model, else config.judge.model.
        const std::string rm_role = paths.count("reward_model") || cfg.judge.model.empty() ? "reward_model" : "judge";
        ASSIGN_OR_RETURN(const Loaded* rm, get(rm_role, model::HeadKind::kScalar));
        nlohmann::json files = nlohmann::json::array();
        ASSIGN_OR_RETURN(auto ex, LoadPreferenceExamples(job, *cand, cfg.limit, &files));
        std::vector<std::string> prompts;
        for (const auto& e : ex) prompts.push_back(e.prompt_text);
        ASSIGN_OR_RETURN(auto cand_answers, GenerateAnswers(*cand, cfg, prompts));
        ASSIGN_OR_RETURN(auto cand_scores, RewardScores(*rm, prompts, cand_answers, cfg.batch_size));
        nlohmann::json rec = BaseRecord(cfg, *cand);
        rec["dataset_files"] = files;
        rec["reward_model"] = rm->path;
        int compared = 0;
        rec["generation"] = {{"temperature", 0.0}, {"max_new_tokens", cfg.max_new_tokens}};
        for (const auto& [role, path] : paths) {
          if (role == primary_role || role == "reward_model") continue;
          ++compared;
          ASSIGN_OR_RETURN(const Loaded* base, get(role, model::HeadKind::kCausalLM));
          ASSIGN_OR_RETURN(auto base_answers, GenerateAnswers(*base, cfg, prompts));
          ASSIGN_OR_RETURN(auto base_scores, RewardScores(*rm, prompts, base_answers, cfg.batch_size));
          ASSIGN_OR_RETURN(scores["winrate_vs_" + role], WinRate(cand_scores, base_scores));
        }
        if (compared == 0) {
          return absl::InvalidArgumentError(absl::StrCat(
              "stage '", job.stage_name, "': suite winrate compares the candidate with other models; add one "
              "to the stage's models (e.g. baseline: ${stages.sft.outputs.model})"));
        }
        records["winrate"] = rec;
      } else if (suite == "mt_bench") {
        ASSIGN_OR_RETURN(const Loaded* m, get(primary_role, model::HeadKind::kCausalLM));
        const std::string dir = eval_dir + "/mt-bench";
        ASSIGN_OR_RETURN(auto all_questions, LoadMtBench(dir));
        ASSIGN_OR_RETURN(auto judge_prompts, LoadJudgePrompts(dir));
        ASSIGN_OR_RETURN(auto questions, SelectMtBenchQuestions(all_questions, cfg.mt_bench_categories, cfg.limit));
        nlohmann::json rec = BaseRecord(cfg, *m);
        rec["shots"] = 0;
        rec["template_sha256"] = data::Sha256Hex(m->template_source);
        rec["dataset_files"] = nlohmann::json::array();
        for (const char* f : {"question.jsonl", "reference_answer_gpt-4.jsonl", "judge_prompts.jsonl"}) {
          ASSIGN_OR_RETURN(auto fr, FileRecord(dir + "/" + f));
          rec["dataset_files"].push_back(fr);
        }
        nlohmann::json temperatures = nlohmann::json::object();
        for (const auto& q : questions) temperatures[q.category] = MtBenchTemperature(q.category);
        rec["categories"] = cfg.mt_bench_categories;
        rec["generation"] = {{"temperatures", temperatures}, {"max_new_tokens", cfg.max_new_tokens},
                             {"seed", job.Seed()}};
        int64_t answers_truncated = 0;
        int64_t judge_prompts_truncated = 0;
        ChatGenerateFn generate = [&](const std::vector<nlohmann::json>& conversations, double temperature) {
          return GenerateChat(*m, conversations,
                              {.max_new_tokens = cfg.max_new_tokens, .batch_size = cfg.batch_size,
                               .temperature = temperature, .seed = job.Seed(), .strip = true,
                               .truncated = &answers_truncated});
        };
        BatchJudgeFn judge;
        nlohmann::json judge_rec = {{"temperature", 0.0}, {"max_tokens", cfg.judge.max_tokens}};
        ASSIGN_OR_RETURN(judge_rec["prompt_sha256"], SingleJudgePromptsSha256(judge_prompts));
        if (!cfg.judge.endpoint.empty()) {
          EndpointJudgeOptions eo{.base_url = cfg.judge.endpoint, .model = cfg.judge.endpoint_model,
                                  .api_key_env = cfg.judge.api_key_env,
                                  .timeout_seconds = cfg.judge.timeout_seconds,
                                  .max_tokens = static_cast<int>(cfg.judge.max_tokens)};
          ASSIGN_OR_RETURN(JudgeFn one, MakeEndpointJudge(eo));
          judge = SequentialJudge(std::move(one));
          judge_rec["identity"] = EndpointJudgeIdentity(eo);
          judge_rec["endpoint"] = cfg.judge.endpoint;
          judge_rec["endpoint_model"] = cfg.judge.endpoint_model;
          judge_rec["api_key_env"] = cfg.judge.api_key_env;  // the variable's name, never its value
        } else {
          ASSIGN_OR_RETURN(const Loaded* jm, get("judge", model::HeadKind::kCausalLM));
          ASSIGN_OR_RETURN(std::string model_sha, data::PathSha256(jm->path));
          judge_rec["identity"] = absl::StrCat("model:", jm->path);
          judge_rec["model_sha256"] = model_sha;
          judge_rec["template_sha256"] = data::Sha256Hex(jm->template_source);
          // The engine judge answers greedily with its own chat template (system + user).
          judge = [&, jm](const std::vector<std::pair<std::string, std::string>>& prompts) {
            std::vector<nlohmann::json> conversations;
            for (const auto& [system, user] : prompts) {
              nlohmann::json messages = nlohmann::json::array();
              if (!system.empty()) messages.push_back({{"role", "system"}, {"content", system}});
              messages.push_back({{"role", "user"}, {"content", user}});
              conversations.push_back(std::move(messages));
            }
            return GenerateChat(*jm, conversations,
                                {.max_new_tokens = cfg.judge.max_tokens, .batch_size = cfg.batch_size,
                                 .temperature = 0.0, .truncated = &judge_prompts_truncated});
          };
        }
        rec["judge"] = judge_rec;
        ASSIGN_OR_RETURN(MtBenchResult r, RunMtBench(questions, judge_prompts, generate, judge));
        nlohmann::json s = r.ToJson();
        s["answers_truncated"] = answers_truncated;
        s["judge_prompts_truncated"] = judge_prompts_truncated;
        scores["mt_bench"] = s;
        std::error_code ec;
        fs::create_directories(job.output_dir, ec);
        const std::string detail = (fs::path(job.output_dir) / "mt_bench.jsonl").string();
        RETURN_IF_ERROR(data::WriteFileAtomic(detail, r.ToJsonl()));
        rec["judgments_file"] = detail;
        records["mt_bench"] = rec;
        if (s["parse_failures"].get<int64_t>() > 0) {
          LOG(WARNING) << "mt_bench: " << s["parse_failures"].get<int64_t>() << " of " << s["judged"].get<int64_t>()
                       << " judgments had no valid [[rating]]; they are excluded from the means (see " << detail << ")";
        }
      }
    }
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("eval stage '", job.stage_name, "': ", e.what_without_backtrace()));
  }

  const std::vector<GateResult> gate_results = EvaluateGates(gates, scores);
  results["gates"] = nlohmann::json::array();
  for (const auto& g : gate_results) {
    results["gates"].push_back({{"gate", g.gate.key}, {"condition", g.gate.text},
                                {"value", g.found ? nlohmann::json(g.value) : nlohmann::json(nullptr)},
                                {"passed", g.passed}});
  }
  std::error_code ec;
  fs::create_directories(job.output_dir, ec);
  const std::string out_path = (fs::path(job.output_dir) / "results.json").string();
  RETURN_IF_ERROR(data::WriteFileAtomic(out_path, results.dump(2) + "\n"));
  RETURN_IF_ERROR(data::EmitArtifact(events, "results", out_path, "eval_results"));
  events.Emit("eval", {{"step", 0}, {"metrics", scores}});
  const std::string report = GateReport(gate_results);
  if (!report.empty()) {
    // One line: it becomes the stage's reason in tables and the run summary.
    return MarkGateFailure(absl::FailedPreconditionError(absl::StrCat(
        "stage '", job.stage_name, "': eval gates failed: ", absl::StrReplaceAll(report, {{"\n", "; "}}))));
  }
  return absl::OkStatus();
}

}  // namespace align::engine::eval
