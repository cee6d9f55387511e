#include "worker/engine/train/stages.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include <ATen/core/grad_mode.h>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "worker/engine/core/failure.h"
#include "worker/engine/data/mixer.h"
#include "worker/engine/data/sources.h"
#include "worker/engine/model/generate.h"
#include "worker/engine/tokenizer/chat_masks.h"
#include "worker/engine/tokenizer/chat_template.h"
#include "worker/engine/tokenizer/tokenizer.h"
#include "worker/engine/train/trainer.h"
#include "common/logging.h"

namespace align::engine::train {
namespace fs = std::filesystem;

namespace {

// Everything a training stage needs before the loop.
struct Common {
  TrainSettings settings;
  std::string model_dir;
  std::string tokenizer_dir;
  std::unique_ptr<Tokenizer> tokenizer;
  std::optional<ChatTemplate> chat_template;
  std::string template_source;
  int32_t pad_id = 0;
  std::optional<std::string> resume;
  TrainPaths paths;
  // Data parallel group (world size 1 unless WORLD_SIZE > 1); only rank 0 writes outputs.
  std::unique_ptr<Collective> collective;
  bool writer() const { return collective->rank() == 0; }
};

absl::StatusOr<Common> Prepare(const JobSpec& job, EventSink& events) {
  Common c;
  ASSIGN_OR_RETURN(c.settings, SettingsFromJob(job));
  auto in = job.inputs.find("model");
  c.model_dir = in != job.inputs.end() ? in->second
                                       : ResolveDataPath(job.StageOrDefault("model", ""), job.data_dir);
  if (c.model_dir.empty()) {
    return absl::InvalidArgumentError("stage.model: no model given (set stage.model or defaults.model)");
  }
  if (std::error_code ec; !std::filesystem::is_directory(c.model_dir, ec)) {
    // Checked before the tokenizer, which is read from the model directory by default.
    return MarkInputError(absl::NotFoundError(absl::StrCat(
        "stage.model: ", c.model_dir, ": no such model directory (a Hugging Face directory with "
        "config.json and model.safetensors)")));
  }
  auto tin = job.inputs.find("tokenizer");
  c.tokenizer_dir = tin != job.inputs.end()
                        ? tin->second
                        : ResolveDataPath(job.StageOrDefault("tokenizer", c.model_dir), job.data_dir);
  events.Emit("phase", {{"phase", "load"}, {"message", absl::StrCat("tokenizer ", c.tokenizer_dir)}});
  auto tok = Tokenizer::Load(c.tokenizer_dir);
  if (!tok.ok()) return MarkInputError(tok.status());
  c.tokenizer = std::move(*tok);
  const std::string tmpl_name = job.StageOrDefault("chat_template", "tokenizer");
  auto src = ResolveChatTemplate(tmpl_name, *c.tokenizer);
  if (src.ok()) {
    auto parsed = ChatTemplate::Parse(*src);
    if (!parsed.ok()) return MarkInputError(parsed.status());
    c.chat_template = std::move(*parsed);
    c.template_source = *src;
  } else if (tmpl_name != "tokenizer") {
    return src.status();
  }
  if (c.tokenizer->pad_id()) {
    c.pad_id = *c.tokenizer->pad_id();
  } else if (c.tokenizer->eos_id()) {
    c.pad_id = *c.tokenizer->eos_id();  // pad == eos: labels use the mask, never the id
  }
  const std::string work = job.work_dir.empty() ? job.output_dir + "/.work" : job.work_dir;
  c.paths.checkpoint_root = work + "/checkpoints";
  c.paths.resume_from = job.resume_from;
  c.paths.output_model_dir = job.output_dir.empty() ? "" : job.output_dir + "/model";
  c.paths.tokenizer_source_dir = c.tokenizer_dir;
  ASSIGN_OR_RETURN(c.resume, ResolveResumeCheckpoint(job.resume_from));
  if (job.world_size > 1) {
    events.Emit("phase", {{"phase", "rendezvous"},
                          {"message", absl::StrCat("rank ", job.rank, " of ", job.world_size)}});
  }
  ASSIGN_OR_RETURN(c.collective, CollectiveFromEnv(job.rank, job.world_size));
  return c;
}

absl::StatusOr<std::unique_ptr<model::CausalLM>> LoadPolicy(const Common& c, model::HeadKind head,
                                                            uint64_t seed) {
  model::LoadOptions o;
  o.trainable = true;
  o.head = head;
  o.seed = seed;
  const std::string dir = c.resume ? *c.resume : c.model_dir;
  auto m = model::CausalLM::Load(dir, o);
  if (!m.ok()) return MarkInputError(m.status());
  return std::move(*m);
}

nlohmann::json PromptJson(const data::PreferencePair& p) {
  return p.conversational ? data::ToJson(p.prompt) : nlohmann::json(p.prompt_text);
}

// Tokenizes pairs (prompt once, completions separately), applying the truncation policy.
absl::StatusOr<std::vector<data::TokenizedPair>> TokenizePairs(
    const Common& c, const std::vector<data::PreferencePair>& pairs, int64_t max_prompt_length,
    data::DataReport& report) {
  std::vector<data::TokenizedPair> out;
  for (const auto& p : pairs) {
    const ChatTemplate* tmpl = p.conversational && c.chat_template ? &*c.chat_template : nullptr;
    if (p.conversational && tmpl == nullptr) {
      return absl::FailedPreconditionError(
          "conversational pairs need a chat template: set chat_template (e.g. zephyr)");
    }
    nlohmann::json prompt = PromptJson(p);
    auto chosen = data::ToJson(p.chosen);
    auto rejected = data::ToJson(p.rejected);
    auto ec = EncodePromptCompletion(*c.tokenizer, tmpl, prompt,
                                     p.conversational ? chosen : nlohmann::json(p.chosen_text));
    auto er = EncodePromptCompletion(*c.tokenizer, tmpl, prompt,
                                     p.conversational ? rejected : nlohmann::json(p.rejected_text));
    if (!ec.ok() || !er.ok()) {
      report.DroppedLater("tokenization_error");
      continue;
    }
    data::TokenizedPair t{ec->prompt_ids, ec->completion_ids, er->completion_ids};
    auto r = data::TruncatePair(t, c.settings.max_length, max_prompt_length);
    if (r != data::TruncationResult::kKept) {
      report.DroppedLater(data::TruncationResultName(r));
      continue;
    }
    out.push_back(std::move(t));
  }
  return out;
}

absl::StatusOr<std::pair<std::vector<data::PreferencePair>, std::vector<data::PreferencePair>>>
LoadPairs(const JobSpec& job, const Common& c, data::DataReport& report) {
  ASSIGN_OR_RETURN(auto sources, data::SourcesFromJob(job));
  ASSIGN_OR_RETURN(auto per_source, data::LoadPreferenceSources(sources, report));
  std::vector<double> weights;
  for (const auto& s : sources) weights.push_back(s.weight);
  auto mixed = data::MixSources(per_source, weights, c.settings.seed);
  return data::SplitHeldOut(std::move(mixed), c.settings.eval_fraction);
}

nlohmann::json Finish(const TrainResult& r, const data::DataReport& report) {
  nlohmann::json m = r.last_metrics;
  for (const auto& [k, v] : r.eval_metrics) m["eval/" + k] = v;
  m["steps"] = r.steps;
  m["data"] = report.ToJson();
  return m;
}

// Greedy generation on held-out prompts: the share that ends the turn with EOS. A fresh
// stories260K never emits </s>; SFT on chat data must teach it.
absl::StatusOr<double> EosRate(const Common& c, const model::CausalLM& policy,
                               const std::vector<data::SftExample>& eval, size_t limit) {
  if (!c.chat_template || !c.tokenizer->eos_id()) return -1.0;
  std::vector<std::vector<int32_t>> prompts;
  for (const auto& ex : eval) {
    if (prompts.size() >= limit) break;
    if (!ex.conversational() || ex.messages.size() < 2) continue;
    data::Conversation prompt(ex.messages.begin(), ex.messages.end() - 1);
    if (prompt.back().role == "assistant") continue;
    ChatEncodeOptions o;
    o.add_generation_prompt = true;
    auto enc = EncodeChatWithMask(*c.tokenizer, *c.chat_template, data::ToJson(prompt), o);
    if (!enc.ok() || enc->ids.empty()) continue;
    if (static_cast<int64_t>(enc->ids.size()) > c.settings.max_length / 2) {
      enc->ids.erase(enc->ids.begin() + 1, enc->ids.end() - c.settings.max_length / 2 + 1);
    }
    prompts.push_back(enc->ids);
  }
  if (prompts.empty()) return -1.0;
  model::GenerateOptions g;
  g.max_new_tokens = 128;
  g.eos_ids = {*c.tokenizer->eos_id()};
  g.use_default_eos = false;
  g.pad_id = c.pad_id;
  g.batch_size = 8;
  at::NoGradGuard no_grad;
  ASSIGN_OR_RETURN(auto results, model::Generate(policy, prompts, g));
  int ended = 0;
  for (const auto& r : results) ended += r.finish_reason == model::FinishReason::kEos;
  return static_cast<double>(ended) / static_cast<double>(results.size());
}

}  // namespace

absl::StatusOr<nlohmann::json> RunSftStage(const JobSpec& job, EventSink& events) {
  ASSIGN_OR_RETURN(Common c, Prepare(job, events));
  events.Emit("phase", {{"phase", "tokenize"}, {"message", "reading and tokenizing SFT data"}});
  ASSIGN_OR_RETURN(auto sources, data::SourcesFromJob(job));
  data::DataReport report;
  ASSIGN_OR_RETURN(auto per_source, data::LoadSftSources(sources, report));
  std::vector<double> weights;
  for (const auto& s : sources) weights.push_back(s.weight);
  auto [train_ex, eval_ex] = data::SplitHeldOut(data::MixSources(per_source, weights, c.settings.seed),
                                                c.settings.eval_fraction);
  const std::string loss_on = absl::AsciiStrToLower(job.ConfigString("loss_on", "assistant"));
  if (loss_on != "assistant" && loss_on != "completion" && loss_on != "all" &&
      loss_on != "loss_on_unspecified") {
    return absl::InvalidArgumentError(absl::StrCat(
        "stage.sft.loss_on: '", loss_on, "' is not one of ASSISTANT, COMPLETION, ALL"));
  }
  const bool packing = job.ConfigBool("packing", false);
  auto tokenize = [&](const std::vector<data::SftExample>& exs)
      -> absl::StatusOr<std::vector<data::TokenizedExample>> {
    std::vector<data::TokenizedExample> out;
    for (const auto& ex : exs) {
      data::TokenizedExample t;
      if (ex.kind == data::SftExample::Kind::kMessages) {
        if (!c.chat_template) {
          return absl::FailedPreconditionError(
              "conversational SFT data needs a chat template: set chat_template (e.g. zephyr)");
        }
        auto enc = EncodeChatWithMask(*c.tokenizer, *c.chat_template, data::ToJson(ex.messages));
        if (!enc.ok()) {
          report.DroppedLater("tokenization_error");
          continue;
        }
        t.ids = enc->ids;
        t.mask = enc->mask;
      } else if (ex.kind == data::SftExample::Kind::kPromptCompletion) {
        auto enc = EncodePromptCompletion(*c.tokenizer, nullptr, ex.prompt, ex.completion);
        if (!enc.ok()) {
          report.DroppedLater("tokenization_error");
          continue;
        }
        t.ids = enc->prompt_ids;
        t.ids.insert(t.ids.end(), enc->completion_ids.begin(), enc->completion_ids.end());
        t.mask.assign(enc->prompt_ids.size(), 0);
        t.mask.insert(t.mask.end(), enc->completion_ids.size(), 1);
      } else {
        t.ids = c.tokenizer->Encode(ex.text, true);
        if (c.tokenizer->eos_id() && (t.ids.empty() || t.ids.back() != *c.tokenizer->eos_id())) {
          t.ids.push_back(*c.tokenizer->eos_id());
        }
        t.mask.assign(t.ids.size(), 1);
      }
      if (loss_on == "all") t.mask.assign(t.ids.size(), 1);
      auto r = data::TruncateExample(t, c.settings.max_length, c.settings.truncation_side);
      if (r != data::TruncationResult::kKept) {
        report.DroppedLater(data::TruncationResultName(r));
        continue;
      }
      out.push_back(std::move(t));
    }
    return out;
  };
  ASSIGN_OR_RETURN(auto train_tok, tokenize(train_ex));
  ASSIGN_OR_RETURN(auto eval_tok, tokenize(eval_ex));
  auto to_rows = [&](const std::vector<data::TokenizedExample>& v) {
    if (packing) return data::PackExamples(v, c.settings.max_length);
    std::vector<data::PackedRow> rows;
    for (const auto& t : v) rows.push_back(data::ToRow(t));
    return rows;
  };
  SftObjective objective(to_rows(train_tok), to_rows(eval_tok), c.pad_id, packing,
                         c.settings.batch_size);
  if (c.tokenizer->eos_id()) objective.set_eos_id(*c.tokenizer->eos_id());
  ASSIGN_OR_RETURN(auto policy, LoadPolicy(c, model::HeadKind::kCausalLM, c.settings.seed));
  try {
    std::map<std::string, double> before;
    double eos_before = -1;
    if (!c.resume) {
      ASSIGN_OR_RETURN(before, objective.Evaluate(*policy));
      ASSIGN_OR_RETURN(eos_before, EosRate(c, *policy, eval_ex, 16));
      nlohmann::json em;
      for (const auto& [k, v] : before) em["eval/" + k] = v;
      if (eos_before >= 0) em["eval/eos_rate"] = eos_before;
      if (c.writer()) events.Emit("eval", {{"step", 0}, {"metrics", em}});
    }
    ASSIGN_OR_RETURN(TrainResult r, RunTraining(*policy, objective, c.settings, c.paths, events,
                                                        c.collective.get()));
    ASSIGN_OR_RETURN(double eos_after, EosRate(c, *policy, eval_ex, 16));
    nlohmann::json m = Finish(r, report);
    if (eos_after >= 0) m["eval/eos_rate"] = eos_after;
    if (before.count("loss")) m["eval/loss_before"] = before["loss"];
    if (before.count("eos_prob")) m["eval/eos_prob_before"] = before["eos_prob"];
    if (eos_before >= 0) m["eval/eos_rate_before"] = eos_before;
    if (eos_after >= 0 && c.writer()) events.Emit("eval", {{"step", r.steps}, {"metrics", {{"eval/eos_rate", eos_after}}}});
    if (!r.final_model_dir.empty() && c.writer()) {
      RETURN_IF_ERROR(data::EmitArtifact(events, "model", r.final_model_dir, "model"));
    }
    return m;
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("sft: ", e.what_without_backtrace()));
  }
}

absl::StatusOr<nlohmann::json> RunDpoStage(const JobSpec& job, EventSink& events) {
  DpoOptions o;
  o.beta = job.ConfigNumber("beta", 0.1);
  if (o.beta == 0) o.beta = 0.1;
  ASSIGN_OR_RETURN(o.loss_type, ParseDpoLossType(job.ConfigString("loss_type", "")));
  o.label_smoothing = job.ConfigNumber("label_smoothing", 0);
  o.sft_weight = job.ConfigNumber("sft_weight", 0);
  o.simpo_gamma = job.ConfigNumber("simpo_gamma", 0);
  if (absl::Status v = ValidateDpoOptions(o); !v.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("stage.", v.message()));
  }
  // Config errors first: they must not wait for the tokenizer and data to load.
  ASSIGN_OR_RETURN(Common c, Prepare(job, events));
  int64_t max_prompt = static_cast<int64_t>(job.ConfigNumber("max_prompt_length", 0));
  if (max_prompt <= 0) max_prompt = c.settings.max_length / 2;
  events.Emit("phase", {{"phase", "tokenize"}, {"message", "reading and tokenizing preference pairs"}});
  data::DataReport report;
  ASSIGN_OR_RETURN(auto split, LoadPairs(job, c, report));
  ASSIGN_OR_RETURN(auto train_pairs, TokenizePairs(c, split.first, max_prompt, report));
  ASSIGN_OR_RETURN(auto eval_pairs, TokenizePairs(c, split.second, max_prompt, report));
  DpoObjective objective(train_pairs, eval_pairs, c.pad_id, o, c.settings.batch_size);
  ASSIGN_OR_RETURN(auto policy, LoadPolicy(c, model::HeadKind::kCausalLM, c.settings.seed));
  std::unique_ptr<model::CausalLM> reference;
  try {
    if (o.NeedsReference()) {
      std::string ref_dir = job.ConfigString("reference_model", "");
      if (auto it = job.inputs.find("reference_model"); it != job.inputs.end()) ref_dir = it->second;
      ref_dir = ref_dir.empty() ? c.model_dir : ResolveDataPath(ref_dir, job.data_dir);
      model::LoadOptions lo;
      auto ref = model::CausalLM::Load(ref_dir, lo);
      if (!ref.ok()) return MarkInputError(ref.status());
      reference = std::move(*ref);
      if (job.ConfigBool("precompute_ref_log_probs", false)) {
        // Cache key: the reference weights, the tokenized pairs, the template and the
        // micro-batching (batch size and the epoch-0 order's seed): the log-probs are computed in
        // the trainer's own epoch-0 micro-batches so that at step 0 they equal the policy's bit
        // for bit, and other batches would change their last bits.
        int64_t unused = 0;
        std::string model_hash;
        for (const char* f : {"/model.safetensors", "/model.safetensors.index.json", "/config.json"}) {
          auto h = data::Sha256File(ref_dir + f, &unused);
          if (h.ok()) model_hash += *h;
        }
        std::string data_blob;
        for (const auto* v : {&train_pairs, &eval_pairs}) {
          for (const auto& p : *v) {
            for (const auto* s : {&p.prompt, &p.chosen, &p.rejected}) {
              data_blob.append(reinterpret_cast<const char*>(s->data()), s->size() * sizeof(int32_t));
              data_blob.push_back('|');
            }
          }
          data_blob.push_back('#');
        }
        const std::string batching =
            absl::StrCat("batch_size=", c.settings.batch_size, ";seed=", c.settings.seed);
        const std::string key =
            data::Sha256Hex(model_hash + data::Sha256Hex(data_blob) +
                            data::Sha256Hex(c.template_source) + data::Sha256Hex(batching));
        const std::string work = job.work_dir.empty() ? job.output_dir + "/.work" : job.work_dir;
        const std::string cache = absl::StrCat(work, "/ref_logps-", key.substr(0, 16), ".json");
        std::error_code ec;
        fs::create_directories(work, ec);
        RefLogps tr, ev;
        bool loaded = false;
        if (std::ifstream in(cache); in) {
          nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
          if (!j.is_discarded() && j.value("key", "") == key) {
            tr.chosen = j["train"]["chosen"].get<std::vector<float>>();
            tr.rejected = j["train"]["rejected"].get<std::vector<float>>();
            ev.chosen = j["eval"]["chosen"].get<std::vector<float>>();
            ev.rejected = j["eval"]["rejected"].get<std::vector<float>>();
            loaded = tr.chosen.size() == train_pairs.size() && ev.chosen.size() == eval_pairs.size();
          }
        }
        if (!loaded) {
          events.Emit("phase", {{"phase", "reference"}, {"message", "precomputing reference log-probs"}});
          // Training pairs in the trainer's epoch-0 micro-batches, held-out pairs in Evaluate's.
          ASSIGN_OR_RETURN(
              tr, ComputeReferenceLogps(
                      *reference, train_pairs, c.pad_id, c.settings.batch_size,
                      EpochOrder(static_cast<int64_t>(train_pairs.size()), c.settings.seed, 0)));
          ASSIGN_OR_RETURN(ev, ComputeReferenceLogps(*reference, eval_pairs, c.pad_id,
                                                     c.settings.batch_size));
          nlohmann::json j = {{"key", key},
                              {"batching", batching},
                              {"train", {{"chosen", tr.chosen}, {"rejected", tr.rejected}}},
                              {"eval", {{"chosen", ev.chosen}, {"rejected", ev.rejected}}}};
          // Every rank computes the same log-probs itself; rank 0 writes the cache.
          if (c.writer()) RETURN_IF_ERROR(data::WriteFileAtomic(cache, j.dump()));
        }
        if (c.writer()) {
          RETURN_IF_ERROR(data::EmitArtifact(events, "reference_logps", cache, "cache"));
        }
        objective.SetPrecomputed(std::move(tr), std::move(ev));
        reference.reset();
      } else {
        objective.SetReferenceModel(reference.get());
      }
    }
    ASSIGN_OR_RETURN(TrainResult r, RunTraining(*policy, objective, c.settings, c.paths, events,
                                                        c.collective.get()));
    nlohmann::json m = Finish(r, report);
    if (!r.final_model_dir.empty() && c.writer()) {
      RETURN_IF_ERROR(data::EmitArtifact(events, "model", r.final_model_dir, "model"));
    }
    return m;
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("dpo: ", e.what_without_backtrace()));
  }
}

absl::StatusOr<nlohmann::json> RunRewardModelStage(const JobSpec& job, EventSink& events) {
  ASSIGN_OR_RETURN(Common c, Prepare(job, events));
  const double center = job.ConfigNumber("center_rewards_coefficient", 0);
  events.Emit("phase", {{"phase", "tokenize"}, {"message", "reading and tokenizing preference pairs"}});
  data::DataReport report;
  ASSIGN_OR_RETURN(auto split, LoadPairs(job, c, report));
  ASSIGN_OR_RETURN(auto train_pairs, TokenizePairs(c, split.first, c.settings.max_length / 2, report));
  ASSIGN_OR_RETURN(auto eval_pairs, TokenizePairs(c, split.second, c.settings.max_length / 2, report));
  RewardObjective objective(train_pairs, eval_pairs, c.pad_id, center, c.settings.batch_size);
  ASSIGN_OR_RETURN(auto policy, LoadPolicy(c, model::HeadKind::kScalar, c.settings.seed));
  try {
    ASSIGN_OR_RETURN(TrainResult r, RunTraining(*policy, objective, c.settings, c.paths, events,
                                                        c.collective.get()));
    nlohmann::json m = Finish(r, report);
    if (!r.final_model_dir.empty() && c.writer()) {
      RETURN_IF_ERROR(data::EmitArtifact(events, "model", r.final_model_dir, "model"));
    }
    return m;
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("reward_model: ", e.what_without_backtrace()));
  }
}

}  // namespace align::engine::train
