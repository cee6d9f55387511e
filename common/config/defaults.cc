// Every default of the pipeline spec, in one place. docs/pipeline-spec.md lists the same values;
// change both together. Zero scalars mean "unset"; fields declared `optional` in pipeline.proto
// (where an explicit 0 is meaningful) are filled only when absent.
#include "align/v1/pipeline.pb.h"
#include "common/config/pipeline_config.h"

namespace align::config {
namespace {

using namespace align::v1;  // NOLINT: enum values read better unqualified here

// spec.defaults
constexpr uint64_t kDefaultSeed = 42;
constexpr Precision kDefaultPrecision = FP32;
constexpr char kDefaultChatTemplate[] = "tokenizer";

// Per-type learning rates follow the Alignment Handbook's recipes.
double DefaultLearningRate(StageType type) {
  switch (type) {
    case SFT: return 2e-5;
    case REWARD_MODEL: return 1e-5;
    case DPO: return 5e-7;
    case PPO: return 1e-6;
    default: return 0;
  }
}

bool IsTrainingStage(StageType type) {
  return type == SFT || type == REWARD_MODEL || type == DPO || type == PPO;
}

void DefaultResources(Resources* r) {
  if (r->ranks() == 0) r->set_ranks(1);
  if (r->cpus_per_rank() == 0) r->set_cpus_per_rank(1);
  // gpus_per_rank 0 (CPU) and memory_mb 0 (unknown) are already their defaults.
}

void DefaultRetry(RetryPolicy* r) {
  if (!r->has_max_infra_retries()) r->set_max_infra_retries(3);
  // max_user_retries: 0 (a user error fails the stage at once).
  if (!r->has_backoff_initial_seconds()) r->set_backoff_initial_seconds(5);
  if (r->backoff_max_seconds() == 0) r->set_backoff_max_seconds(300);
}

void DefaultTraining(StageType type, TrainingConfig* t) {
  if (t->learning_rate() == 0) t->set_learning_rate(DefaultLearningRate(type));
  if (t->epochs() == 0) t->set_epochs(1);
  if (t->batch_size() == 0) t->set_batch_size(8);
  if (t->gradient_accumulation_steps() == 0) t->set_gradient_accumulation_steps(1);
  if (t->max_length() == 0) t->set_max_length(512);
  if (t->lr_scheduler() == LR_SCHEDULER_UNSPECIFIED) t->set_lr_scheduler(LINEAR);
  if (!t->has_adam_beta1()) t->set_adam_beta1(0.9);
  if (!t->has_adam_beta2()) t->set_adam_beta2(0.999);
  if (t->adam_epsilon() == 0) t->set_adam_epsilon(1e-8);
  if (!t->has_max_grad_norm()) t->set_max_grad_norm(1.0);
  if (!t->has_save_total_limit()) t->set_save_total_limit(2);
  if (t->logging_steps() == 0) t->set_logging_steps(1);
  if (!t->has_eval_fraction()) t->set_eval_fraction(0.05);
  if (t->truncation_side() == TRUNCATION_SIDE_UNSPECIFIED) t->set_truncation_side(RIGHT);
  // max_steps 0 (use epochs), warmup 0, weight_decay 0, save_steps 0 (end only), eval_steps 0
  // (end of each epoch) and gradient_checkpointing false are their own defaults.
}

void DefaultData(DataSource* d) {
  if (d->weight() == 0) d->set_weight(1.0);
  if (d->on_bad_line() == ON_BAD_LINE_UNSPECIFIED) d->set_on_bad_line(FAIL);
  // format UNSPECIFIED stays: the reader infers it from the first line.
}

void DefaultConfig(StageSpec* s) {
  switch (s->type()) {
    case SFT: {
      SftConfig* c = s->mutable_sft();
      if (c->loss_on() == LOSS_ON_UNSPECIFIED) c->set_loss_on(ASSISTANT);
      break;
    }
    case PREFERENCE_FORMAT: {
      PreferenceFormatConfig* c = s->mutable_preference_format();
      if (!c->has_test_fraction()) c->set_test_fraction(0.1);
      c->set_drop_identical(true);  // always on (see pipeline.proto)
      break;
    }
    case REWARD_MODEL:
      s->mutable_reward_model();  // center_rewards_coefficient 0: no centering
      break;
    case DPO: {
      DpoConfig* c = s->mutable_dpo();
      if (c->beta() == 0) c->set_beta(0.1);
      if (c->loss_type() == DPO_LOSS_TYPE_UNSPECIFIED) c->set_loss_type(SIGMOID);
      // reference_model "" = the policy's starting model; max_prompt_length 0 = max_length / 2.
      break;
    }
    case PPO: {
      PpoConfig* c = s->mutable_ppo();
      if (!c->has_kl_coef()) c->set_kl_coef(0.05);
      if (c->cliprange() == 0) c->set_cliprange(0.2);
      if (c->cliprange_value() == 0) c->set_cliprange_value(0.2);
      if (c->vf_coef() == 0) c->set_vf_coef(0.1);
      if (c->num_ppo_epochs() == 0) c->set_num_ppo_epochs(4);
      if (c->response_length() == 0) c->set_response_length(53);
      if (c->temperature() == 0) c->set_temperature(0.7);
      break;
    }
    case EVAL: {
      EvalConfig* c = s->mutable_eval();
      if (!c->has_mmlu_shots()) c->set_mmlu_shots(5);
      if (c->batch_size() == 0) c->set_batch_size(16);
      if (c->max_new_tokens() == 0) c->set_max_new_tokens(256);
      if (!c->judge().model().empty() || !c->judge().endpoint().empty()) {
        JudgeConfig* j = c->mutable_judge();
        if (j->max_tokens() == 0) j->set_max_tokens(2048);
        if (j->timeout_seconds() == 0) j->set_timeout_seconds(120);
      }
      break;
    }
    default:
      break;
  }
}

}  // namespace

void ApplyDefaults(PipelineSpec* spec) {
  if (spec->api_version().empty()) spec->set_api_version("align/v1");
  if (spec->kind().empty()) spec->set_kind("Pipeline");
  Defaults* d = spec->mutable_defaults();
  if (!d->has_seed()) d->set_seed(kDefaultSeed);
  if (d->precision() == PRECISION_UNSPECIFIED) d->set_precision(kDefaultPrecision);
  if (d->chat_template().empty()) d->set_chat_template(kDefaultChatTemplate);
  // defaults.tokenizer "" = the model directory's tokenizer; output_dir "" = the coordinator's.

  for (StageSpec& s : *spec->mutable_stages()) {
    // Inheritance from spec.defaults: a stage that names no model of its own (and, for eval,
    // no named models) uses defaults.model; a preference_format stage needs no model.
    const bool uses_model = IsTrainingStage(s.type()) || (s.type() == EVAL && s.models().empty());
    if (uses_model && s.model().empty()) s.set_model(d->model());
    if (s.tokenizer().empty()) s.set_tokenizer(d->tokenizer());
    if (s.chat_template().empty()) s.set_chat_template(d->chat_template());
    DefaultResources(s.mutable_resources());
    DefaultRetry(s.mutable_retry());
    if (IsTrainingStage(s.type())) DefaultTraining(s.type(), s.mutable_training());
    for (DataSource& ds : *s.mutable_data()) DefaultData(&ds);
    DefaultConfig(&s);
  }
}

}  // namespace align::config
