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
#include "common/logging.h"
#include "common/status_macros.h"
#include "common/version.h"
#include "worker/engine/data/jsonl.h"
#include "worker/engine/data/sources.h"
#include "worker/engine/eval/gates.h"
#include "worker/engine/eval/ifeval.h"
#include "worker/engine/eval/loglik.h"
#include "worker/engine/eval/multiple_choice.h"
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

struct EvalConfig {
  std::vector<std::string> suites;
  int mmlu_shots = 5;
  std::vector<std::string> mmlu_subjects;
  int64_t limit = 0;
  std::map<std::string, std::string> gates;
  nlohmann::json judge = nlohmann::json::object();
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
  if (auto it = c.find("judge"); it != c.end() && it->is_object()) cfg.judge = *it;
  return cfg;
}

// The models the stage was given, by role: job.inputs[role] (or "models/<role>"), else
// stage.models[role] resolved against the data dir; "model" falls back to stage/defaults.model.
std::map<std::string, std::string> ModelPaths(const JobSpec& job) {
  std::map<std::string, std::string> out;
  for (const auto& [key, path] : job.inputs) {
    std::string role = key;
    if (role.rfind("models/", 0) == 0) role = role.substr(7);
    if (role.rfind("data/", 0) == 0 || role == "reference_model" || path.empty()) continue;
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

absl::StatusOr<Loaded> LoadModel(const JobSpec& job, const std::string& role, const std::string& path,
                                 model::HeadKind head) {
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
    auto src = ResolveChatTemplate(job.StageOrDefault("chat_template", "tokenizer"), *m.tokenizer);
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

// Renders a one-turn chat prompt and encodes it (BOS added unless the template wrote it).
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

absl::StatusOr<std::vector<std::string>> GenerateAnswers(const Loaded& m, const EvalConfig& cfg,
                                                         const std::vector<std::string>& prompts) {
  std::vector<std::vector<int32_t>> encoded;
  const int64_t max_len = m.lm->config().max_position_embeddings;
  for (const auto& p : prompts) {
    ASSIGN_OR_RETURN(auto ids, ChatPrompt(m, nlohmann::json::array({{{"role", "user"}, {"content", p}}})));
    const int64_t room = max_len - cfg.max_new_tokens;
    if (room > 0 && static_cast<int64_t>(ids.size()) > room) {
      ids.erase(ids.begin(), ids.end() - room);  // keep the end: the generation prompt
    }
    encoded.push_back(std::move(ids));
  }
  model::GenerateOptions go;
  go.max_new_tokens = std::min<int64_t>(cfg.max_new_tokens, std::max<int64_t>(1, max_len - 1));
  go.batch_size = cfg.batch_size;
  go.temperature = 0.0;
  go.pad_id = m.tokenizer->pad_id().value_or(0);
  if (m.tokenizer->eos_id().has_value()) go.eos_ids = {*m.tokenizer->eos_id()};
  std::vector<int64_t> caps;
  for (const auto& e : encoded) {
    caps.push_back(std::max<int64_t>(1, std::min<int64_t>(go.max_new_tokens, max_len - static_cast<int64_t>(e.size()))));
  }
  go.max_new_tokens_per_sequence = caps;
  ASSIGN_OR_RETURN(auto results, model::Generate(*m.lm, encoded, go));
  std::vector<std::string> out;
  for (const auto& r : results) out.push_back(m.tokenizer->Decode(r.tokens, /*skip_special_tokens=*/true));
  return out;
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

  std::map<std::string, Loaded> loaded;
  auto get = [&](const std::string& role, model::HeadKind head) -> absl::StatusOr<const Loaded*> {
    auto it = loaded.find(role);
    if (it != loaded.end()) return &it->second;
    auto p = paths.find(role);
    if (p == paths.end()) {
      return absl::InvalidArgumentError(absl::StrCat("stage '", job.stage_name, "': the suites need a '",
                                                     role, "' model; add it to the stage's models"));
    }
    events.Emit("phase", {{"phase", "load"}, {"message", absl::StrCat("loading ", role, " from ", p->second)}});
    ASSIGN_OR_RETURN(Loaded m, LoadModel(job, role, p->second, head));
    return &loaded.emplace(role, std::move(m)).first->second;
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
                                                                   {.batch_size = cfg.batch_size})));
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
                                                                                       {.batch_size = cfg.batch_size})));
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
          ASSIGN_OR_RETURN(auto ll, ScoreLoglik(*m->lm, *m->tokenizer, reqs, {.batch_size = cfg.batch_size}));
          std::vector<double> margin;
          double wins = 0;
          for (size_t i = 0; i < ex.size(); ++i) {
            margin.push_back(ll[2 * i].loglik - ll[2 * i + 1].loglik);
            wins += margin.back() > 0 ? 1.0 : 0.0;
          }
          pa[role] = ex.empty() ? 0.0 : wins / ex.size();
          pa["pairs"] = ex.size();
          margins[role] = margin;
          rec = BaseRecord(cfg, *m);
          rec["dataset_files"] = files;
          rec["template_sha256"] = data::Sha256Hex(m->template_source);
        }
        const std::string policy = paths.count("candidate") ? "candidate" : "model";
        if (margins.count(policy) && margins.count("baseline") &&
            margins[policy].size() == margins["baseline"].size() && !margins[policy].empty()) {
          double wins = 0;
          for (size_t i = 0; i < margins[policy].size(); ++i) {
            wins += margins[policy][i] - margins["baseline"][i] > 0 ? 1.0 : 0.0;
          }
          pa["implicit_reward"] = wins / margins[policy].size();
        }
        rec["shots"] = 0;
        rec["models"] = paths;
        scores["preference_accuracy"] = pa;
        records["preference_accuracy"] = rec;
      } else if (suite == "winrate") {
        ASSIGN_OR_RETURN(const Loaded* cand, get(primary_role, model::HeadKind::kCausalLM));
        ASSIGN_OR_RETURN(const Loaded* rm, get("reward_model", model::HeadKind::kScalar));
        nlohmann::json files = nlohmann::json::array();
        ASSIGN_OR_RETURN(auto ex, LoadPreferenceExamples(job, *cand, cfg.limit, &files));
        std::vector<std::string> prompts;
        for (const auto& e : ex) prompts.push_back(e.prompt_text);
        ASSIGN_OR_RETURN(auto cand_answers, GenerateAnswers(*cand, cfg, prompts));
        ASSIGN_OR_RETURN(auto cand_scores, RewardScores(*rm, prompts, cand_answers, cfg.batch_size));
        nlohmann::json rec = BaseRecord(cfg, *cand);
        rec["dataset_files"] = files;
        rec["reward_model"] = rm->path;
        rec["generation"] = {{"temperature", 0.0}, {"max_new_tokens", cfg.max_new_tokens}};
        for (const auto& [role, path] : paths) {
          if (role == primary_role || role == "reward_model") continue;
          ASSIGN_OR_RETURN(const Loaded* base, get(role, model::HeadKind::kCausalLM));
          ASSIGN_OR_RETURN(auto base_answers, GenerateAnswers(*base, cfg, prompts));
          ASSIGN_OR_RETURN(auto base_scores, RewardScores(*rm, prompts, base_answers, cfg.batch_size));
          double wins = 0;
          for (size_t i = 0; i < prompts.size(); ++i) {
            wins += cand_scores[i] > base_scores[i] ? 1.0 : cand_scores[i] == base_scores[i] ? 0.5 : 0.0;
          }
          scores["winrate_vs_" + role] = prompts.empty() ? 0.0 : wins / prompts.size();
        }
        records["winrate"] = rec;
      } else if (suite == "mt_bench") {
        return absl::UnimplementedError(
            "suite mt_bench: judged generation is not implemented by this align-train yet; the rating "
            "parser exists (eval/scoring.h) but the judge client does not");
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
    return absl::FailedPreconditionError(absl::StrCat("stage '", job.stage_name, "': eval gates failed\n", report));
  }
  return absl::OkStatus();
}

}  // namespace align::engine::eval
