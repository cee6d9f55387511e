#include "worker/engine/train/trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <ATen/core/grad_mode.h>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "worker/engine/data/jsonl.h"
#include "worker/engine/data/mixer.h"
#include "worker/engine/model/generate.h"
#include "worker/engine/model/safetensors.h"
#include "worker/engine/train/checkpoint.h"
#include "common/logging.h"

namespace align::engine::train {
namespace fs = std::filesystem;

namespace {

constexpr char kTrainerState[] = "trainer_state.json";
constexpr char kOptimizerFile[] = "optimizer.safetensors";

absl::Status TorchError(const c10::Error& e, const std::string& where) {
  return absl::InternalError(absl::StrCat(where, ": ", e.what_without_backtrace()));
}

std::vector<int64_t> Slice(const std::vector<int64_t>& v, size_t begin, size_t end) {
  return std::vector<int64_t>(v.begin() + static_cast<long>(begin),
                              v.begin() + static_cast<long>(std::min(end, v.size())));
}

struct TensorBatch {
  at::Tensor input_ids, attention_mask, labels, position_ids, sequence_ids;
  int64_t real_tokens = 0;
};

TensorBatch ToTensors(const data::Batch& b, bool packed) {
  TensorBatch t;
  t.input_ids = ToTensor(b.input_ids, b.rows, b.length);
  t.attention_mask = ToTensor(b.attention_mask, b.rows, b.length);
  t.labels = ToTensor(b.labels, b.rows, b.length);
  t.position_ids = ToTensor(b.position_ids, b.rows, b.length);
  if (packed) t.sequence_ids = ToTensor(b.sequence_ids, b.rows, b.length);
  for (int64_t m : b.attention_mask) t.real_tokens += m;
  return t;
}

at::Tensor RunModel(const model::CausalLM& m, const TensorBatch& t, bool gradient_checkpointing) {
  model::ForwardOptions fo;
  fo.attention_mask = t.attention_mask;
  fo.position_ids = t.position_ids;
  fo.sequence_ids = t.sequence_ids;
  fo.gradient_checkpointing = gradient_checkpointing;
  return m.Forward(t.input_ids, fo);
}

void AddScaled(std::map<std::string, double>& into, const std::map<std::string, double>& m,
               double scale) {
  for (const auto& [k, v] : m) into[k] += v * scale;
}

// Data parallel: sums this rank's gradients, loss, token count and (additive) metrics with the
// other ranks' in one exchange per dtype, so every rank clips and steps on the global batch's
// gradient. A rank without examples this step (a short last batch) contributes zeros; it learns
// the metric names from a no-grad pass over the batch's first example.
absl::Status SumOverRanks(Collective& collective, Objective& objective, const model::CausalLM& policy,
                          const std::vector<at::Tensor>& params, const std::vector<int64_t>& indices,
                          bool idle, double& loss_value, int64_t& tokens,
                          std::map<std::string, double>& metrics) {
  if (idle && !indices.empty()) {
    at::NoGradGuard no_grad;
    ASSIGN_OR_RETURN(MicroStep probe, objective.Micro(policy, {indices[0]}, 1));
    for (const auto& [k, v] : probe.metrics) metrics[k] = 0.0;
  }
  std::vector<at::Tensor> buffers;
  for (const at::Tensor& p : params) {
    if (!p.grad().defined()) const_cast<at::Tensor&>(p).mutable_grad() = at::zeros_like(p);
    buffers.push_back(p.grad());
  }
  std::vector<double> figures{loss_value, static_cast<double>(tokens)};
  for (const auto& [k, v] : metrics) figures.push_back(v);
  buffers.push_back(at::tensor(figures, at::kDouble));
  RETURN_IF_ERROR(collective.AllReduceSum(buffers));
  at::Tensor summed = buffers.back().contiguous();
  const double* f = summed.data_ptr<double>();
  loss_value = f[0];
  tokens = static_cast<int64_t>(std::llround(f[1]));
  size_t i = 2;
  for (auto& [k, v] : metrics) v = f[i++];
  return absl::OkStatus();
}

}  // namespace

at::Tensor ToTensor(const std::vector<int64_t>& values, int64_t rows, int64_t length) {
  return at::from_blob(const_cast<int64_t*>(values.data()), {rows, length}, at::kLong).clone();
}

std::vector<int64_t> EpochOrder(int64_t n, uint64_t seed, int64_t epoch) {
  return data::SeededPermutation(n, seed + static_cast<uint64_t>(epoch));
}

absl::StatusOr<TrainSettings> SettingsFromJob(const JobSpec& job) {
  TrainSettings s;
  s.learning_rate = job.TrainingNumber("learning_rate", s.learning_rate);
  if (s.learning_rate == 0) s.learning_rate = 2e-5;
  s.epochs = static_cast<int64_t>(job.TrainingNumber("epochs", 1));
  if (s.epochs <= 0) s.epochs = 1;
  s.max_steps = static_cast<int64_t>(job.TrainingNumber("max_steps", 0));
  s.batch_size = static_cast<int64_t>(job.TrainingNumber("batch_size", 8));
  if (s.batch_size <= 0) s.batch_size = 8;
  s.gradient_accumulation_steps =
      std::max<int64_t>(1, static_cast<int64_t>(job.TrainingNumber("gradient_accumulation_steps", 1)));
  s.max_length = static_cast<int64_t>(job.TrainingNumber("max_length", 512));
  if (s.max_length <= 0) s.max_length = 512;
  std::string sched;
  if (auto it = job.stage.find("training"); it != job.stage.end() && it->is_object()) {
    sched = it->value("lr_scheduler", "");
    const std::string side = it->value("truncation_side", "");
    if (side == "LEFT" || side == "left") s.truncation_side = data::TruncationSide::kLeft;
    s.gradient_checkpointing = it->value("gradient_checkpointing", false);
  }
  ASSIGN_OR_RETURN(s.schedule, ParseLrSchedule(sched));
  s.warmup_ratio = job.TrainingNumber("warmup_ratio", 0);
  s.warmup_steps = static_cast<int64_t>(job.TrainingNumber("warmup_steps", 0));
  s.adam.weight_decay = job.TrainingNumber("weight_decay", 0);
  s.adam.beta1 = job.TrainingNumber("adam_beta1", 0.9);
  s.adam.beta2 = job.TrainingNumber("adam_beta2", 0.999);
  s.adam.eps = job.TrainingNumber("adam_epsilon", 0);
  if (s.adam.eps <= 0) s.adam.eps = 1e-8;
  s.max_grad_norm = job.TrainingNumber("max_grad_norm", 1.0);
  s.save_steps = static_cast<int64_t>(job.TrainingNumber("save_steps", 0));
  s.save_total_limit = static_cast<int64_t>(job.TrainingNumber("save_total_limit", 2));
  s.logging_steps = std::max<int64_t>(1, static_cast<int64_t>(job.TrainingNumber("logging_steps", 1)));
  s.eval_steps = static_cast<int64_t>(job.TrainingNumber("eval_steps", 0));
  s.eval_fraction = job.TrainingNumber("eval_fraction", 0.05);
  s.seed = job.Seed();
  if (s.learning_rate < 0) {
    return absl::InvalidArgumentError("stage.training.learning_rate: must be > 0");
  }
  if (s.warmup_ratio < 0 || s.warmup_ratio >= 1) {
    return absl::InvalidArgumentError("stage.training.warmup_ratio: must be in [0, 1)");
  }
  if (s.eval_fraction < 0 || s.eval_fraction >= 1) {
    return absl::InvalidArgumentError("stage.training.eval_fraction: must be in [0, 1)");
  }
  return s;
}

absl::StatusOr<std::optional<std::string>> ResolveResumeCheckpoint(const std::string& resume_from) {
  if (resume_from.empty()) return std::optional<std::string>();
  if (CheckpointManager::IsComplete(resume_from)) return std::optional<std::string>(resume_from);
  for (const std::string& root : {resume_from, resume_from + "/checkpoints"}) {
    CheckpointManager m(root, 0);
    if (auto latest = m.LatestComplete()) return std::optional<std::string>(*latest);
  }
  return absl::NotFoundError(absl::StrCat(
      "resume_from: ", resume_from,
      " holds no complete checkpoint (a directory with a COMPLETE marker); start fresh instead"));
}

absl::StatusOr<TrainResult> RunTraining(model::CausalLM& policy, Objective& objective,
                                        const TrainSettings& s, const TrainPaths& paths,
                                        EventSink& events, Collective* collective) {
  TrainResult result;
  std::unique_ptr<Collective> single;
  if (collective == nullptr) {
    single = SingleProcessCollective();
    collective = single.get();
  }
  // Data parallel: every rank holds all the examples and reads the same global batches; rank r
  // runs examples r, r + world, ... of each, gradients and figures are summed over ranks, and
  // only rank 0 writes files and step/eval/checkpoint events (docs/training.md, "Data parallel").
  const int rank = collective->rank();
  const int world = collective->world_size();
  const bool writer = rank == 0;
  const int64_t n = objective.NumExamples();
  if (n <= 0) {
    return absl::FailedPreconditionError(
        "no training examples left after formatting and truncation; check the data and max_length");
  }
  const int64_t global = s.batch_size * s.gradient_accumulation_steps;
  const int64_t steps_per_epoch = (n + global - 1) / global;
  const int64_t total = s.max_steps > 0 ? s.max_steps : s.epochs * steps_per_epoch;
  const int64_t warmup = s.warmup_steps > 0
                             ? s.warmup_steps
                             : static_cast<int64_t>(std::ceil(s.warmup_ratio * static_cast<double>(total)));
  AdamW opt(policy.NamedParameters(), s.adam);
  std::vector<at::Tensor> params = policy.Parameters();
  CheckpointManager ckpt(paths.checkpoint_root, static_cast<int>(s.save_total_limit));

  int64_t start_step = 0;
  ASSIGN_OR_RETURN(std::optional<std::string> resume, ResolveResumeCheckpoint(paths.resume_from));
  if (resume) {
    std::ifstream in(*resume + "/" + kTrainerState);
    nlohmann::json st = nlohmann::json::parse(in, nullptr, false);
    if (st.is_discarded() || !st.is_object()) {
      return absl::DataLossError(absl::StrCat(*resume, "/", kTrainerState, ": missing or not JSON"));
    }
    start_step = st.value("global_step", int64_t{0});
    if (st.value("num_examples", int64_t{-1}) != n || st.value("seed", uint64_t{0}) != s.seed ||
        st.value("global_batch", int64_t{-1}) != global) {
      return absl::FailedPreconditionError(absl::StrCat(
          *resume, ": trainer state was written for different data or settings (examples ",
          st.value("num_examples", int64_t{-1}), " vs ", n,
          "); resume needs the same data, seed and batch size"));
    }
    ASSIGN_OR_RETURN(auto tensors, model::ReadSafetensors(*resume + "/" + kOptimizerFile, at::kFloat));
    RETURN_IF_ERROR(opt.LoadState(tensors, st.value("optimizer_step", start_step)));
    result.resumed_from = *resume;
    LOG(INFO) << "resuming from " << *resume << " at step " << start_step;
  }

  auto write_checkpoint = [&](int64_t step) -> absl::Status {
    events.Emit("phase", {{"phase", "save"}, {"message", absl::StrCat("checkpoint at step ", step)}});
    auto saved = ckpt.Save(step, [&](const std::string& dir) -> absl::Status {
      model::SaveOptions so;
      so.tokenizer_source_dir = paths.tokenizer_source_dir;
      RETURN_IF_ERROR(policy.Save(dir, so));
      RETURN_IF_ERROR(model::WriteSafetensors(dir + "/" + kOptimizerFile, opt.StateTensors()));
      nlohmann::json st = {{"global_step", step},
                           {"optimizer_step", opt.step()},
                           {"epoch", static_cast<double>(step) / static_cast<double>(steps_per_epoch)},
                           {"num_examples", n},
                           {"global_batch", global},
                           {"seed", s.seed},
                           {"total_steps", total},
                           // Data order is a pure function of (seed, epoch): the permutation of
                           // epoch e is SeededPermutation(n, seed + e); position = step % steps.
                           {"data_order", {{"epoch", step / steps_per_epoch},
                                           {"position", step % steps_per_epoch}}}};
      return data::WriteFileAtomic(dir + "/" + kTrainerState, st.dump(2));
    });
    if (!saved.ok()) return saved.status();
    events.Emit("checkpoint", {{"step", step}, {"path", *saved}});
    return absl::OkStatus();
  };
  // Rank 0 writes; no rank goes on (or exits) before the checkpoint is complete.
  auto save_checkpoint = [&](int64_t step) -> absl::Status {
    const absl::Status saved = writer ? write_checkpoint(step) : absl::OkStatus();
    RETURN_IF_ERROR(collective->Barrier());
    return saved;
  };

  events.Emit("phase", {{"phase", "train"},
                        {"message", absl::StrCat(n, " examples, ", total, " steps of ", global,
                                                 " (", s.batch_size, " x ",
                                                 s.gradient_accumulation_steps, ")",
                                                 world > 1 ? absl::StrCat(" over ", world, " ranks")
                                                           : std::string())}});
  std::vector<int64_t> perm;
  int64_t perm_epoch = -1;
  std::map<std::string, double> eval_metrics;
  bool evaluated_at_end = false;
  for (int64_t step = start_step; step < total; ++step) {
    const auto t0 = std::chrono::steady_clock::now();
    const int64_t epoch = step / steps_per_epoch;
    const int64_t pos = step % steps_per_epoch;
    if (epoch != perm_epoch) {
      perm = EpochOrder(n, s.seed, epoch);
      perm_epoch = epoch;
    }
    const std::vector<int64_t> indices =
        Slice(perm, static_cast<size_t>(pos * global), static_cast<size_t>((pos + 1) * global));
    // The global batch's denominator (every rank holds all the examples, so no exchange).
    const int64_t denom = objective.Denominator(indices);
    std::vector<int64_t> mine;  // this rank's share: every world-th example of the global batch
    for (size_t i = static_cast<size_t>(rank); i < indices.size(); i += static_cast<size_t>(world)) {
      mine.push_back(indices[i]);
    }
    std::map<std::string, double> metrics;
    int64_t tokens = 0;
    double loss_value = 0;
    double grad_norm = 0;
    const double lr = LearningRateAt(s.schedule, s.learning_rate, step, total, warmup);
    try {
      opt.ZeroGrad();
      for (size_t b = 0; b < mine.size(); b += static_cast<size_t>(s.batch_size)) {
        auto micro_idx = Slice(mine, b, b + static_cast<size_t>(s.batch_size));
        ASSIGN_OR_RETURN(MicroStep ms, objective.Micro(policy, micro_idx, denom));
        loss_value += ms.loss.item<double>();
        if (ms.loss.requires_grad()) ms.loss.backward();
        AddScaled(metrics, ms.metrics, 1.0);
        tokens += ms.tokens;
      }
      if (world > 1) {
        RETURN_IF_ERROR(SumOverRanks(*collective, objective, policy, params, indices, mine.empty(),
                                     loss_value, tokens, metrics));
      }
      grad_norm = ClipGradNorm(params, s.max_grad_norm);
      opt.Step(lr);
    } catch (const c10::Error& e) {
      return TorchError(e, absl::StrCat("training step ", step + 1));
    }
    if (!std::isfinite(loss_value)) {
      return absl::InternalError(absl::StrCat("loss is ", loss_value, " at step ", step + 1,
                                              "; lower the learning rate or check the data"));
    }
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    metrics["loss"] = loss_value;
    metrics["learning_rate"] = lr;
    metrics["grad_norm"] = grad_norm;
    result.losses.push_back(loss_value);
    result.last_metrics = metrics;
    result.steps = step + 1;
    if (writer && ((step + 1) % s.logging_steps == 0 || step + 1 == total)) {
      events.Emit("step", {{"step", step + 1},
                           {"total_steps", total},
                           {"epoch", static_cast<double>(step + 1) / static_cast<double>(steps_per_epoch)},
                           {"metrics", metrics},
                           {"tokens_per_second", secs > 0 ? static_cast<double>(tokens) / secs : 0.0},
                           {"step_seconds", secs}});
      LOG(INFO) << "step " << step + 1 << "/" << total << " loss " << loss_value << " lr " << lr
                << " grad_norm " << grad_norm << " " << static_cast<int64_t>(tokens / std::max(secs, 1e-9))
                << " tok/s";
    }
    const bool last = step + 1 == total;
    // Every eval_steps steps (or every epoch when eval_steps <= 0), and always after the last
    // step, so the result carries held-out figures for the final model.
    const bool eval_now = last || (s.eval_steps > 0 && (step + 1) % s.eval_steps == 0) ||
                          (s.eval_steps <= 0 && (step + 1) % steps_per_epoch == 0);
    if (eval_now) {
      absl::StatusOr<std::map<std::string, double>> ev;
      try {
        ev = objective.Evaluate(policy);
      } catch (const c10::Error& e) {
        return TorchError(e, "evaluation");
      }
      if (!ev.ok()) return ev.status();
      if (!ev->empty() && writer) {
        nlohmann::json em;
        for (const auto& [k, v] : *ev) em["eval/" + k] = v;
        events.Emit("eval", {{"step", step + 1}, {"metrics", em}});
        LOG(INFO) << "eval at step " << step + 1 << ": " << em.dump();
      }
      if (!ev->empty()) eval_metrics = *ev;
      evaluated_at_end = last;
    }
    if (s.stop_after_steps > 0 && step + 1 - start_step >= s.stop_after_steps && !last) {
      // Simulated kill (tests): checkpoints written so far stay, nothing else is saved.
      return result;
    }
    if (last || (s.save_steps > 0 && (step + 1) % s.save_steps == 0)) {
      RETURN_IF_ERROR(save_checkpoint(step + 1));
    }
  }
  if (!evaluated_at_end && total == start_step) {
    // Resumed at the very end: evaluate so the result still carries held-out figures.
    auto ev = objective.Evaluate(policy);
    if (ev.ok()) eval_metrics = *ev;
  }
  result.eval_metrics = eval_metrics;
  if (!paths.output_model_dir.empty()) {
    absl::Status saved = absl::OkStatus();
    if (writer) {
      events.Emit("phase", {{"phase", "save"}, {"message", "final model"}});
      model::SaveOptions so;
      so.tokenizer_source_dir = paths.tokenizer_source_dir;
      saved = policy.Save(paths.output_model_dir, so);
      if (saved.ok()) result.final_model_dir = paths.output_model_dir;
    }
    RETURN_IF_ERROR(collective->Barrier());
    RETURN_IF_ERROR(saved);
  }
  return result;
}

// ---------------- SFT ----------------

SftObjective::SftObjective(std::vector<data::PackedRow> train, std::vector<data::PackedRow> eval,
                           int32_t pad_id, bool packed, int64_t eval_batch_size)
    : train_(std::move(train)), eval_(std::move(eval)), pad_id_(pad_id), packed_(packed),
      eval_batch_size_(std::max<int64_t>(1, eval_batch_size)) {}

namespace {
int64_t RowTokens(const data::PackedRow& r) {
  int64_t c = 0;
  for (size_t t = 1; t < r.labels.size(); ++t) c += r.labels[t] != data::kIgnoreIndex;
  return c;
}
}  // namespace

int64_t SftObjective::Denominator(const std::vector<int64_t>& indices) const {
  int64_t c = 0;
  for (int64_t i : indices) c += RowTokens(train_[static_cast<size_t>(i)]);
  return c;
}

absl::StatusOr<MicroStep> SftObjective::Micro(const model::CausalLM& policy,
                                              const std::vector<int64_t>& indices,
                                              int64_t denominator) {
  std::vector<data::PackedRow> rows;
  for (int64_t i : indices) rows.push_back(train_[static_cast<size_t>(i)]);
  TensorBatch t = ToTensors(data::Collate(rows, pad_id_), packed_);
  at::Tensor logits = RunModel(policy, t, false);
  TokenNll nll = ComputeTokenNll(logits, t.labels);
  MicroStep ms;
  ms.loss = GlobalMeanShare(nll.nll, denominator);
  ms.tokens = t.real_tokens;
  return ms;
}

absl::StatusOr<std::map<std::string, double>> SftObjective::Evaluate(const model::CausalLM& policy) {
  if (eval_.empty()) return std::map<std::string, double>();
  at::NoGradGuard no_grad;
  double sum = 0;
  int64_t count = 0;
  double eos_prob = 0;
  int64_t eos_count = 0;
  for (size_t b = 0; b < eval_.size(); b += static_cast<size_t>(eval_batch_size_)) {
    std::vector<data::PackedRow> rows(
        eval_.begin() + static_cast<long>(b),
        eval_.begin() + static_cast<long>(std::min(eval_.size(), b + static_cast<size_t>(eval_batch_size_))));
    TensorBatch t = ToTensors(data::Collate(rows, pad_id_), packed_);
    TokenNll nll = ComputeTokenNll(RunModel(policy, t, false), t.labels);
    sum += nll.nll.sum().item<double>();
    count += nll.tokens;
    if (eos_id_ >= 0) {
      at::Tensor at_eos = t.labels.narrow(1, 1, t.labels.size(1) - 1).eq(eos_id_);
      eos_prob += (at::exp(-nll.nll) * at_eos.to(at::kFloat)).sum().item<double>();
      eos_count += at_eos.sum().item<int64_t>();
    }
  }
  std::map<std::string, double> m{{"loss", count > 0 ? sum / static_cast<double>(count) : 0.0},
                                  {"tokens", static_cast<double>(count)}};
  if (eos_count > 0) m["eos_prob"] = eos_prob / static_cast<double>(eos_count);
  return m;
}

// ---------------- DPO ----------------

absl::StatusOr<RefLogps> ComputeReferenceLogps(const model::CausalLM& reference,
                                               const std::vector<data::TokenizedPair>& pairs,
                                               int32_t pad_id, int64_t batch_size,
                                               const std::vector<int64_t>& order) {
  at::NoGradGuard no_grad;
  const size_t n = pairs.size();
  std::vector<int64_t> idx = order;
  if (idx.empty()) {
    idx.resize(n);
    for (size_t i = 0; i < n; ++i) idx[i] = static_cast<int64_t>(i);
  }
  std::vector<bool> seen(n, false);
  for (int64_t i : idx) {
    if (i < 0 || static_cast<size_t>(i) >= n || seen[static_cast<size_t>(i)]) {
      return absl::InvalidArgumentError(absl::StrCat(
          "reference log-probs: the batch order must hold every pair index in [0, ", n,
          ") once; index ", i, " is out of range or repeated"));
    }
    seen[static_cast<size_t>(i)] = true;
  }
  if (idx.size() != n) {
    return absl::InvalidArgumentError(absl::StrCat("reference log-probs: the batch order has ",
                                                   idx.size(), " indices for ", n, " pairs"));
  }
  RefLogps out;
  out.chosen.assign(n, 0.0f);
  out.rejected.assign(n, 0.0f);
  batch_size = std::max<int64_t>(1, batch_size);
  try {
    for (size_t b = 0; b < n; b += static_cast<size_t>(batch_size)) {
      const std::vector<int64_t> micro = Slice(idx, b, b + static_cast<size_t>(batch_size));
      std::vector<data::TokenizedPair> chunk;
      for (int64_t i : micro) chunk.push_back(pairs[static_cast<size_t>(i)]);
      TensorBatch t = ToTensors(data::CollatePairs(chunk, pad_id), false);
      CompletionLogps lp = ComputeCompletionLogps(RunModel(reference, t, false), t.labels);
      const int64_t k = static_cast<int64_t>(chunk.size());
      at::Tensor sums = lp.sums.contiguous();
      for (int64_t i = 0; i < k; ++i) {
        const size_t at = static_cast<size_t>(micro[static_cast<size_t>(i)]);
        out.chosen[at] = sums[i].item<float>();
        out.rejected[at] = sums[k + i].item<float>();
      }
    }
  } catch (const c10::Error& e) {
    return TorchError(e, "reference log-probs");
  }
  return out;
}

DpoObjective::DpoObjective(std::vector<data::TokenizedPair> train,
                           std::vector<data::TokenizedPair> eval, int32_t pad_id,
                           DpoOptions options, int64_t eval_batch_size)
    : train_(std::move(train)), eval_(std::move(eval)), pad_id_(pad_id), options_(options),
      eval_batch_size_(std::max<int64_t>(1, eval_batch_size)) {}

absl::StatusOr<std::pair<DpoOutput, std::map<std::string, double>>> DpoObjective::Forward(
    const model::CausalLM& policy, bool eval_split, const std::vector<int64_t>& indices) {
  const auto& pairs = eval_split ? eval_ : train_;
  std::vector<data::TokenizedPair> chunk;
  for (int64_t i : indices) chunk.push_back(pairs[static_cast<size_t>(i)]);
  const int64_t k = static_cast<int64_t>(chunk.size());
  TensorBatch t = ToTensors(data::CollatePairs(chunk, pad_id_), false);
  CompletionLogps lp = ComputeCompletionLogps(RunModel(policy, t, false), t.labels);
  PairLogps l;
  l.policy_chosen = lp.sums.narrow(0, 0, k);
  l.policy_rejected = lp.sums.narrow(0, k, k);
  l.chosen_tokens = lp.counts.narrow(0, 0, k);
  l.rejected_tokens = lp.counts.narrow(0, k, k);
  if (options_.NeedsReference()) {
    if (precomputed_) {
      const RefLogps& ref = eval_split ? eval_ref_ : train_ref_;
      std::vector<float> c, r;
      for (int64_t i : indices) {
        c.push_back(ref.chosen[static_cast<size_t>(i)]);
        r.push_back(ref.rejected[static_cast<size_t>(i)]);
      }
      l.ref_chosen = at::tensor(c, at::kFloat);
      l.ref_rejected = at::tensor(r, at::kFloat);
    } else if (reference_ != nullptr) {
      at::NoGradGuard no_grad;
      CompletionLogps rl = ComputeCompletionLogps(RunModel(*reference_, t, false), t.labels);
      l.ref_chosen = rl.sums.narrow(0, 0, k);
      l.ref_rejected = rl.sums.narrow(0, k, k);
    } else {
      return absl::FailedPreconditionError(
          "DPO needs a reference model or precomputed reference log-probs");
    }
  }
  DpoOutput out = DpoLoss(options_, l);
  auto metrics = DpoMetrics(out, l, lp.mean_logits.narrow(0, 0, k), lp.mean_logits.narrow(0, k, k));
  metrics["tokens"] = static_cast<double>(t.real_tokens);
  return std::make_pair(out, metrics);
}

absl::StatusOr<MicroStep> DpoObjective::Micro(const model::CausalLM& policy,
                                              const std::vector<int64_t>& indices,
                                              int64_t denominator) {
  ASSIGN_OR_RETURN(auto fm, Forward(policy, false, indices));
  MicroStep ms;
  const double share = static_cast<double>(indices.size()) / static_cast<double>(denominator);
  ms.loss = fm.first.losses.sum() / static_cast<double>(denominator);
  ms.tokens = static_cast<int64_t>(fm.second["tokens"]);
  fm.second.erase("tokens");
  fm.second.erase("loss");
  for (auto& [k, v] : fm.second) ms.metrics[k] = v * share;
  return ms;
}

absl::StatusOr<std::map<std::string, double>> DpoObjective::Score(
    const model::CausalLM& policy, bool eval_split, const std::vector<int64_t>& indices) {
  at::NoGradGuard no_grad;
  std::map<std::string, double> total;
  for (size_t b = 0; b < indices.size(); b += static_cast<size_t>(eval_batch_size_)) {
    auto idx = Slice(indices, b, b + static_cast<size_t>(eval_batch_size_));
    ASSIGN_OR_RETURN(auto fm, Forward(policy, eval_split, idx));
    fm.second.erase("tokens");
    AddScaled(total, fm.second, static_cast<double>(idx.size()) / static_cast<double>(indices.size()));
  }
  return total;
}

absl::StatusOr<std::map<std::string, double>> DpoObjective::Evaluate(const model::CausalLM& policy) {
  if (eval_.empty()) return std::map<std::string, double>();
  std::vector<int64_t> all(eval_.size());
  for (size_t i = 0; i < all.size(); ++i) all[i] = static_cast<int64_t>(i);
  return Score(policy, true, all);
}

// ---------------- Reward model ----------------

RewardObjective::RewardObjective(std::vector<data::TokenizedPair> train,
                                 std::vector<data::TokenizedPair> eval, int32_t pad_id,
                                 double center_coefficient, int64_t eval_batch_size)
    : train_(std::move(train)), eval_(std::move(eval)), pad_id_(pad_id), center_(center_coefficient),
      eval_batch_size_(std::max<int64_t>(1, eval_batch_size)) {}

namespace {
std::pair<at::Tensor, at::Tensor> PairScores(const model::CausalLM& m,
                                             const std::vector<data::TokenizedPair>& chunk,
                                             int32_t pad_id, int64_t* tokens) {
  TensorBatch t = ToTensors(data::CollatePairs(chunk, pad_id), false);
  at::Tensor scores = RunModel(m, t, false);
  at::Tensor last = model::LastTokenScores(scores, t.attention_mask);
  const int64_t k = static_cast<int64_t>(chunk.size());
  if (tokens != nullptr) *tokens = t.real_tokens;
  return {last.narrow(0, 0, k), last.narrow(0, k, k)};
}
}  // namespace

absl::StatusOr<MicroStep> RewardObjective::Micro(const model::CausalLM& policy,
                                                 const std::vector<int64_t>& indices,
                                                 int64_t denominator) {
  std::vector<data::TokenizedPair> chunk;
  for (int64_t i : indices) chunk.push_back(train_[static_cast<size_t>(i)]);
  MicroStep ms;
  auto [c, r] = PairScores(policy, chunk, pad_id_, &ms.tokens);
  const double share = static_cast<double>(indices.size()) / static_cast<double>(denominator);
  ms.loss = BradleyTerryLoss(c, r, center_) * share;
  for (auto& [k, v] : RewardMetrics(c, r)) ms.metrics[k] = v * share;
  return ms;
}

absl::StatusOr<std::map<std::string, double>> RewardObjective::Evaluate(const model::CausalLM& policy) {
  if (eval_.empty()) return std::map<std::string, double>();
  at::NoGradGuard no_grad;
  std::vector<at::Tensor> cs, rs;
  for (size_t b = 0; b < eval_.size(); b += static_cast<size_t>(eval_batch_size_)) {
    std::vector<data::TokenizedPair> chunk(
        eval_.begin() + static_cast<long>(b),
        eval_.begin() + static_cast<long>(std::min(eval_.size(), b + static_cast<size_t>(eval_batch_size_))));
    auto [c, r] = PairScores(policy, chunk, pad_id_, nullptr);
    cs.push_back(c);
    rs.push_back(r);
  }
  at::Tensor c = at::cat(cs), r = at::cat(rs);
  auto m = RewardMetrics(c, r);
  m["loss"] = BradleyTerryLoss(c, r, center_).item<double>();
  return m;
}

}  // namespace align::engine::train
