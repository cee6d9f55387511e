// alignctl's client verbs over CoordinatorService: submit, get, list, watch, logs, cancel, retry,
// workers, report; plus `completion` (shell completion generated from the CLI11 tree).
#include <unistd.h>

#include <cstdio>
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "cli/client_config.h"
#include "cli/commands/client_support.h"
#include "cli/commands/commands.h"
#include "cli/coordinator_client.h"
#include "cli/output.h"
#include "cli/progress.h"
#include "cli/report.h"
#include "common/config/pipeline_config.h"
#include "common/status_macros.h"
#include "common/ids.h"
#include "common/version.h"

namespace align::cli {
namespace {

struct ConnectionOptions {
  std::string coordinator;
  std::string token_file;
};

void AddConnectionFlags(CLI::App* sub, ConnectionOptions* o) {
  sub->add_option("--coordinator", o->coordinator,
                  "Coordinator address host:port (default: $ALIGN_COORDINATOR, the config file "
                  "~/.config/align/config.yaml, then localhost:7070)");
  sub->add_option("--token-file", o->token_file,
                  "File holding the bearer token (default: $ALIGN_TOKEN, $ALIGN_TOKEN_FILE, then "
                  "token_file in the config file)");
}

absl::StatusOr<std::unique_ptr<CoordinatorClient>> Connect(const ConnectionOptions& o) {
  auto config = ResolveClientConfigFromEnvironment({o.coordinator, o.token_file});
  if (!config.ok()) return config.status();
  return std::make_unique<CoordinatorClient>(*config);
}

absl::StatusOr<OutputFormat> Format(const std::string& text) { return ParseOutputFormat(text); }

std::string Age(const google::protobuf::Timestamp& ts) {
  absl::Time t = ToTime(ts);
  if (t == absl::InfinitePast()) return "";
  return HumanDuration(absl::Now() - t);
}

std::string StageCounts(const align::v1::PipelineStatus& p) {
  int done = 0;
  for (const auto& s : p.stages()) {
    if (s.state() == align::v1::STAGE_SUCCEEDED || s.state() == align::v1::STAGE_CACHED) ++done;
  }
  return absl::StrCat(done, "/", p.stages_size());
}

std::string ProgressCell(const align::v1::StageStatus& s) {
  const auto& p = s.progress();
  if (p.total_steps() <= 0) return p.phase();
  std::string out = absl::StrCat(p.step(), "/", p.total_steps());
  if (auto it = p.metrics().find("loss"); it != p.metrics().end()) {
    absl::StrAppend(&out, " loss ", FormatMetric(it->second));
  }
  return out;
}

void PrintPipeline(const align::v1::PipelineStatus& p) {
  std::printf("Name:      %s\nID:        %s\nState:     %s\n", p.name().c_str(),
              p.pipeline_id().c_str(), PipelineStateName(p.state()).c_str());
  if (!p.reason().empty()) std::printf("Reason:    %s\n", p.reason().c_str());
  if (std::string age = Age(p.created_at()); !age.empty()) {
    std::printf("Created:   %s ago\n", age.c_str());
  }
  std::printf("\n");
  std::vector<std::vector<std::string>> rows;
  for (const auto& s : p.stages()) {
    std::string note = s.reason();
    if (s.state() == align::v1::STAGE_QUEUED && !s.waiting_reason().empty()) {
      note = absl::StrCat(s.queue_position() > 0 ? absl::StrCat("#", s.queue_position(), " ") : "",
                          s.waiting_reason());
    }
    if (!s.cached_from().empty()) note = absl::StrCat("cached from ", s.cached_from());
    std::string worker = s.attempts_size() > 0 ? s.attempts(s.attempts_size() - 1).worker_id() : "";
    rows.push_back({s.name(), config::StageTypeName(s.type()), StageStateName(s.state()),
                    ProgressCell(s), absl::StrCat(s.attempts_size()), worker, note});
  }
  std::fputs(RenderTable({"STAGE", "TYPE", "STATE", "PROGRESS", "ATTEMPTS", "WORKER", "NOTE"}, rows)
                 .c_str(),
             stdout);
  bool any_output = false;
  for (const auto& s : p.stages()) any_output |= s.outputs_size() > 0;
  if (any_output) {
    std::printf("\nOutputs:\n");
    std::vector<std::vector<std::string>> out_rows;
    for (const auto& s : p.stages()) {
      for (const auto& a : s.outputs()) {
        out_rows.push_back({s.name(), a.name(), a.kind(), a.sha256().substr(0, 12), a.uri()});
      }
    }
    std::fputs(RenderTable({"STAGE", "OUTPUT", "KIND", "SHA256", "URI"}, out_rows).c_str(), stdout);
  }
}

std::string UriToPath(const std::string& uri) {
  if (absl::StartsWith(uri, "file://")) return uri.substr(7);
  return uri;
}

// ---------------------------------------------------------------------------------------------

void RegisterSubmit(CLI::App& app) {
  struct Opts {
    ConnectionOptions conn;
    std::string file;
    std::vector<std::string> sets;
    bool wait = false;
    bool no_cache = false;
    std::string output;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* sub = app.add_subcommand(
      "submit", "Validate a pipeline file and submit it to the coordinator; with --wait, show "
                "live progress until it ends (exit 0 succeeded, 1 failed, 130 cancelled)");
  sub->add_option("-f,--file", o->file, "Pipeline YAML file (apiVersion: align/v1, kind: Pipeline)")
      ->required();
  sub->add_option("--set", o->sets,
                  "Override a field, e.g. --set stages.dpo.config.beta=0.05 (repeatable)");
  sub->add_flag("--wait", o->wait, "Follow the pipeline with per-stage progress bars until it ends");
  sub->add_flag("--no-cache", o->no_cache,
                "Run every stage even if an identical stage already succeeded");
  sub->add_option("-o,--output", o->output, "Print the response as json or yaml");
  AddConnectionFlags(sub, &o->conn);
  sub->callback([o] {
    auto format = Format(o->output);
    if (!format.ok()) return Fail(format.status());
    auto spec = config::LoadPipelineFile(o->file, o->sets);
    if (!spec.ok()) return Fail(spec.status());
    std::ifstream in(o->file);
    std::stringstream text;
    text << in.rdbuf();
    auto client = Connect(o->conn);
    if (!client.ok()) return Fail(client.status());
    align::v1::SubmitPipelineRequest request;
    *request.mutable_spec() = *spec;
    request.set_source_yaml(text.str());
    request.set_no_cache(o->no_cache);
    RandomIdGenerator ids;
    request.set_client_request_id(ids.NewId("req", absl::Now()));
    auto response = (*client)->Submit(request);
    if (!response.ok()) return Fail(response.status());
    if (*format != OutputFormat::kTable) {
      std::fputs(FormatMessage(*response, *format).c_str(), stdout);
    } else {
      std::printf("pipeline %s %s: %s\n", response->status().name().c_str(),
                  response->already_existed() ? "already submitted" : "submitted",
                  response->pipeline_id().c_str());
    }
    std::fflush(stdout);
    if (!o->wait) return;
    ProgressView view(stderr, isatty(STDERR_FILENO) != 0);
    auto final_status = WaitForPipeline(**client, response->pipeline_id(), view, nullptr);
    if (!final_status.ok()) return Fail(final_status.status());
    std::fputs(PipelineSummary(*final_status).c_str(), stdout);
    ExitCode() = ExitCodeFor(final_status->state());
  });
}

void RegisterGet(CLI::App& app) {
  struct Opts {
    ConnectionOptions conn;
    std::string pipeline;
    std::string output;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* sub = app.add_subcommand(
      "get", "Show one pipeline: its stages, progress, attempts, reasons and outputs");
  sub->add_option("pipeline", o->pipeline, "Pipeline id or unique name")->required();
  sub->add_option("-o,--output", o->output, "Print as json or yaml instead of a table");
  AddConnectionFlags(sub, &o->conn);
  sub->callback([o] {
    auto format = Format(o->output);
    if (!format.ok()) return Fail(format.status());
    auto client = Connect(o->conn);
    if (!client.ok()) return Fail(client.status());
    auto p = (*client)->Get(o->pipeline);
    if (!p.ok()) return Fail(p.status());
    if (*format != OutputFormat::kTable) {
      std::fputs(FormatMessage(*p, *format).c_str(), stdout);
    } else {
      PrintPipeline(*p);
    }
  });
}

void RegisterList(CLI::App& app) {
  struct Opts {
    ConnectionOptions conn;
    std::vector<std::string> states;
    std::string name_prefix;
    std::vector<std::string> labels;
    int limit = 50;
    std::string output;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* sub = app.add_subcommand("list", "List pipelines, newest first");
  sub->add_option("--state", o->states,
                  "Only pipelines in this state: queued, running, succeeded, failed, cancelling, "
                  "cancelled (repeatable)");
  sub->add_option("--name-prefix", o->name_prefix, "Only pipelines whose name starts with this");
  sub->add_option("-l,--label", o->labels, "Only pipelines with this label, key=value (repeatable)");
  sub->add_option("--limit", o->limit, "At most this many pipelines (1..500)")
      ->capture_default_str();
  sub->add_option("-o,--output", o->output, "Print as json or yaml instead of a table");
  AddConnectionFlags(sub, &o->conn);
  sub->callback([o] {
    auto format = Format(o->output);
    if (!format.ok()) return Fail(format.status());
    align::v1::ListPipelinesRequest request;
    for (const auto& s : o->states) {
      align::v1::PipelineState state;
      if (!ParsePipelineState(s, &state)) {
        return Fail(absl::InvalidArgumentError(absl::StrCat(
            "unknown state \"", s,
            "\"; expected queued, running, succeeded, failed, cancelling or cancelled")));
      }
      request.add_states(state);
    }
    for (const auto& l : o->labels) {
      std::pair<std::string, std::string> kv = absl::StrSplit(l, absl::MaxSplits('=', 1));
      if (kv.first.empty() || !absl::StrContains(l, '=')) {
        return Fail(absl::InvalidArgumentError(
            absl::StrCat("bad --label \"", l, "\"; expected key=value")));
      }
      (*request.mutable_labels())[kv.first] = kv.second;
    }
    request.set_name_prefix(o->name_prefix);
    request.set_page_size(std::clamp(o->limit, 1, 500));
    auto client = Connect(o->conn);
    if (!client.ok()) return Fail(client.status());
    auto r = (*client)->List(request);
    if (!r.ok()) return Fail(r.status());
    if (*format != OutputFormat::kTable) {
      std::fputs(FormatMessage(*r, *format).c_str(), stdout);
      return;
    }
    if (r->pipelines().empty()) {
      std::printf("No pipelines.\n");
      return;
    }
    std::vector<std::vector<std::string>> rows;
    for (const auto& p : r->pipelines()) {
      rows.push_back({p.pipeline_id(), p.name(), PipelineStateName(p.state()), StageCounts(p),
                      Age(p.created_at())});
    }
    std::fputs(RenderTable({"ID", "NAME", "STATE", "STAGES", "AGE"}, rows).c_str(), stdout);
  });
}

void RegisterWatch(CLI::App& app) {
  struct Opts {
    ConnectionOptions conn;
    std::string pipeline;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* sub = app.add_subcommand(
      "watch", "Follow a pipeline's progress until it ends (exit 0 succeeded, 1 failed, 130 "
               "cancelled)");
  sub->add_option("pipeline", o->pipeline, "Pipeline id or unique name")->required();
  AddConnectionFlags(sub, &o->conn);
  sub->callback([o] {
    auto client = Connect(o->conn);
    if (!client.ok()) return Fail(client.status());
    ProgressView view(stderr, isatty(STDERR_FILENO) != 0);
    auto final_status = WaitForPipeline(**client, o->pipeline, view, nullptr);
    if (!final_status.ok()) return Fail(final_status.status());
    std::fputs(PipelineSummary(*final_status).c_str(), stdout);
    ExitCode() = ExitCodeFor(final_status->state());
  });
}

void RegisterLogs(CLI::App& app) {
  struct Opts {
    ConnectionOptions conn;
    std::string pipeline;
    std::string stage;
    int rank = -1;
    bool follow = false;
    int64_t tail = 0;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* sub = app.add_subcommand("logs", "Print the logs of a pipeline's stages and ranks");
  sub->add_option("pipeline", o->pipeline, "Pipeline id or unique name")->required();
  sub->add_flag("-f,--follow", o->follow, "Keep printing new lines until the pipeline ends");
  sub->add_option("--stage", o->stage, "Only this stage");
  sub->add_option("--rank", o->rank, "Only this rank (default: all)");
  sub->add_option("--tail", o->tail, "Start with the last N stored lines (default: all)");
  AddConnectionFlags(sub, &o->conn);
  sub->callback([o] {
    auto client = Connect(o->conn);
    if (!client.ok()) return Fail(client.status());
    align::v1::StreamLogsRequest request;
    request.set_pipeline_id(o->pipeline);
    request.set_stage(o->stage);
    request.set_rank(o->rank);
    request.set_follow(o->follow);
    request.set_tail(o->tail);
    const bool prefix = o->stage.empty() || o->rank < 0;
    int64_t lines = 0;
    absl::Status s = (*client)->Logs(request, [&](const align::v1::LogLine& line) {
      ++lines;
      if (prefix) {
        std::printf("[%s/%d] %s\n", line.stage().c_str(), line.rank(), line.text().c_str());
      } else {
        std::printf("%s\n", line.text().c_str());
      }
      std::fflush(stdout);
      return true;
    });
    if (!s.ok()) return Fail(s);
    // Say so on stderr, so a script reading stdout still gets nothing.
    if (lines == 0) std::fprintf(stderr, "alignctl: no log lines stored for %s yet\n", o->pipeline.c_str());
  });
}

void RegisterCancel(CLI::App& app) {
  struct Opts {
    ConnectionOptions conn;
    std::string pipeline;
    std::string reason;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* sub = app.add_subcommand(
      "cancel", "Cancel a pipeline: running ranks are stopped, queued stages never start");
  sub->add_option("pipeline", o->pipeline, "Pipeline id or unique name")->required();
  sub->add_option("--reason", o->reason, "Why (recorded with the pipeline)");
  AddConnectionFlags(sub, &o->conn);
  sub->callback([o] {
    auto client = Connect(o->conn);
    if (!client.ok()) return Fail(client.status());
    auto p = (*client)->Cancel(o->pipeline, o->reason);
    if (!p.ok()) return Fail(p.status());
    std::printf("pipeline %s (%s): %s\n", p->name().c_str(), p->pipeline_id().c_str(),
                PipelineStateName(p->state()).c_str());
  });
}

void RegisterRetry(CLI::App& app) {
  struct Opts {
    ConnectionOptions conn;
    std::string pipeline;
    std::string stage;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* sub = app.add_subcommand(
      "retry", "Re-queue a failed or cancelled stage (and the stages it blocked), resetting its "
               "retry budgets");
  sub->add_option("pipeline", o->pipeline, "Pipeline id or unique name")->required();
  sub->add_option("stage", o->stage, "Stage name")->required();
  AddConnectionFlags(sub, &o->conn);
  sub->callback([o] {
    auto client = Connect(o->conn);
    if (!client.ok()) return Fail(client.status());
    auto p = (*client)->Retry(o->pipeline, o->stage);
    if (!p.ok()) return Fail(p.status());
    std::printf("pipeline %s (%s): %s; stage %s re-queued\n", p->name().c_str(),
                p->pipeline_id().c_str(), PipelineStateName(p->state()).c_str(),
                o->stage.c_str());
  });
}

void RegisterWorkers(CLI::App& app) {
  struct Opts {
    ConnectionOptions conn;
    std::string output;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* sub = app.add_subcommand("workers", "List workers: state, free GPUs and CPU slots, "
                                                "running attempts, last heartbeat");
  sub->add_option("-o,--output", o->output, "Print as json or yaml instead of a table");
  AddConnectionFlags(sub, &o->conn);
  sub->callback([o] {
    auto format = Format(o->output);
    if (!format.ok()) return Fail(format.status());
    auto client = Connect(o->conn);
    if (!client.ok()) return Fail(client.status());
    auto r = (*client)->Workers();
    if (!r.ok()) return Fail(r.status());
    if (*format != OutputFormat::kTable) {
      std::fputs(FormatMessage(*r, *format).c_str(), stdout);
      return;
    }
    if (r->workers().empty()) {
      std::printf("No workers registered.\n");
      return;
    }
    std::vector<std::vector<std::string>> rows;
    for (const auto& w : r->workers()) {
      rows.push_back({w.worker_id(), WorkerStateName(w.state()),
                      absl::StrCat(w.free_gpus(), "/", w.inventory().gpus_size()),
                      absl::StrCat(w.free_cpu_slots(), "/", w.inventory().cpu_slots()),
                      absl::StrCat(w.running_attempts_size()), Age(w.last_heartbeat()),
                      w.inventory().hostname()});
    }
    std::fputs(RenderTable({"WORKER", "STATE", "GPUS FREE", "CPU FREE", "RUNNING", "HEARTBEAT",
                            "HOST"},
                           rows)
                   .c_str(),
               stdout);
  });
}

void RegisterReport(CLI::App& app) {
  struct Opts {
    ConnectionOptions conn;
    std::string pipeline;
    std::string output;
    std::string markdown;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* sub = app.add_subcommand(
      "report", "Write a self-contained HTML report (training curves, eval results and gates, "
                "artifact lineage with hashes) and a Markdown summary");
  sub->add_option("pipeline", o->pipeline, "Pipeline id or unique name")->required();
  sub->add_option("-o,--output", o->output, "HTML file to write (default: report-<name>.html)");
  sub->add_option("--markdown", o->markdown,
                  "Markdown summary to write (default: the HTML path with .md)");
  AddConnectionFlags(sub, &o->conn);
  sub->callback([o] {
    auto client = Connect(o->conn);
    if (!client.ok()) return Fail(client.status());
    auto paths = WriteReport(**client, o->pipeline, o->output, o->markdown);
    if (!paths.ok()) return Fail(paths.status());
    std::printf("report: %s\nsummary: %s\n", paths->first.c_str(), paths->second.c_str());
  });
}

void RegisterCompletion(CLI::App& app) {
  auto shell = std::make_shared<std::string>();
  CLI::App* sub = app.add_subcommand(
      "completion", "Print a shell completion script: source <(alignctl completion bash), or for "
                    "zsh: source <(alignctl completion zsh)");
  sub->add_option("shell", *shell, "bash or zsh")->required()->check(CLI::IsMember({"bash", "zsh"}));
  CLI::App* root = &app;
  sub->callback([shell, root] { std::fputs(CompletionScript(*root, *shell).c_str(), stdout); });
}

}  // namespace

absl::StatusOr<std::pair<std::string, std::string>> WriteReport(CoordinatorClient& client,
                                                                const std::string& pipeline,
                                                                const std::string& html_path_in,
                                                                const std::string& md_path_in) {
  ASSIGN_OR_RETURN(align::v1::PipelineStatus p, client.Get(pipeline));
  ReportInput input;
  input.pipeline = p;
  input.generated_at = absl::Now();
  input.generator = absl::StrCat("alignctl ", kEngineVersion);
  for (const auto& s : p.stages()) {
    auto m = client.Metrics(p.pipeline_id(), s.name());
    if (m.ok()) {
      for (auto& series : *m->mutable_series()) {
        if (series.stage().empty()) series.set_stage(s.name());
        input.metrics.push_back(std::move(series));
      }
    }
    if (s.type() != align::v1::EVAL) continue;
    for (const auto& a : s.outputs()) {
      if (a.name() != "results") continue;
      std::string path = UriToPath(a.uri());
      if (std::filesystem::is_directory(path)) path += "/results.json";
      std::ifstream in(path);
      if (!in) continue;
      nlohmann::json j = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
      if (!j.is_discarded()) input.eval_results[s.name()] = std::move(j);
    }
  }
  std::string html_path = html_path_in.empty() ? absl::StrCat("report-", p.name(), ".html")
                                               : html_path_in;
  std::string md_path = md_path_in;
  if (md_path.empty()) {
    md_path = absl::EndsWith(html_path, ".html")
                  ? absl::StrCat(html_path.substr(0, html_path.size() - 5), ".md")
                  : absl::StrCat(html_path, ".md");
  }
  for (const auto& [path, text] : {std::pair{html_path, RenderHtmlReport(input)},
                                   std::pair{md_path, RenderMarkdownReport(input)}}) {
    std::error_code ec;
    auto parent = std::filesystem::path(path).parent_path();
    if (!parent.empty()) std::filesystem::create_directories(parent, ec);
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << text;
    out.close();
    if (!out) return absl::PermissionDeniedError(absl::StrCat("cannot write ", path));
  }
  return std::pair{html_path, md_path};
}

void Fail(const absl::Status& status) {
  PrintError(status.message());
  ExitCode() = 1;
}

std::string CompletionScript(CLI::App& root, const std::string& shell) {
  // Verbs, and for each verb (or "verb subverb") its flags.
  std::vector<std::string> verbs;
  std::vector<std::pair<std::string, std::string>> cases;  // "verb[ sub]" -> flags
  std::vector<std::pair<std::string, std::string>> subverbs;  // verb -> its subverbs
  auto flags_of = [](CLI::App* a) {
    std::vector<std::string> f;
    for (const CLI::Option* opt : a->get_options()) {
      for (const auto& l : opt->get_lnames()) f.push_back("--" + l);
      for (const auto& s : opt->get_snames()) f.push_back("-" + s);
    }
    return absl::StrJoin(f, " ");
  };
  for (CLI::App* verb : root.get_subcommands({})) {
    verbs.push_back(verb->get_name());
    cases.emplace_back(verb->get_name(), flags_of(verb));
    std::vector<std::string> subs;
    for (CLI::App* s : verb->get_subcommands({})) {
      subs.push_back(s->get_name());
      cases.emplace_back(absl::StrCat(verb->get_name(), " ", s->get_name()), flags_of(s));
    }
    if (!subs.empty()) subverbs.emplace_back(verb->get_name(), absl::StrJoin(subs, " "));
  }
  std::string s;
  if (shell == "zsh") {
    s += "# alignctl zsh completion: source <(alignctl completion zsh)\n"
         "autoload -U +X compinit && compinit\nautoload -U +X bashcompinit && bashcompinit\n";
  } else {
    s += "# alignctl bash completion: source <(alignctl completion bash)\n";
  }
  absl::StrAppend(&s, "_alignctl() {\n  local cur prev verb key opts\n",
                  "  cur=\"${COMP_WORDS[COMP_CWORD]}\"\n  prev=\"${COMP_WORDS[COMP_CWORD-1]}\"\n",
                  "  if [[ $COMP_CWORD -eq 1 ]]; then\n    COMPREPLY=( $(compgen -W \"",
                  absl::StrJoin(verbs, " "),
                  " --help --version\" -- \"$cur\") )\n    return\n  fi\n",
                  "  verb=\"${COMP_WORDS[1]}\"\n  key=\"$verb\"\n");
  absl::StrAppend(&s, "  case \"$verb\" in\n");
  for (const auto& [verb, subs] : subverbs) {
    absl::StrAppend(&s, "    ", verb, ")\n      if [[ $COMP_CWORD -eq 2 ]]; then\n",
                    "        COMPREPLY=( $(compgen -W \"", subs,
                    "\" -- \"$cur\") )\n        return\n      fi\n",
                    "      key=\"$verb ${COMP_WORDS[2]}\";;\n");
  }
  absl::StrAppend(&s, "  esac\n  case \"$prev\" in\n",
                  "    -f|--file|--input|--messages|--tokenizer|--model|--token-file|--markdown|"
                  "--template)\n      COMPREPLY=( $(compgen -f -- \"$cur\") )\n      return;;\n",
                  "    -o|--output)\n      if [[ \"$verb\" != report ]]; then\n",
                  "        COMPREPLY=( $(compgen -W \"json yaml\" -- \"$cur\") )\n"
                  "        return\n      fi\n",
                  "      COMPREPLY=( $(compgen -f -- \"$cur\") )\n      return;;\n  esac\n",
                  "  case \"$key\" in\n");
  for (const auto& [key, flags] : cases) {
    absl::StrAppend(&s, "    \"", key, "\") opts=\"", flags, "\";;\n");
  }
  absl::StrAppend(&s, "    *) opts=\"--help\";;\n  esac\n",
                  "  if [[ \"$verb\" == completion ]]; then opts=\"bash zsh\"; fi\n",
                  "  COMPREPLY=( $(compgen -W \"$opts\" -- \"$cur\") )\n}\n",
                  "complete -o default -F _alignctl alignctl\n");
  return s;
}

void RegisterClientCommands(CLI::App& app) {
  RegisterSubmit(app);
  RegisterGet(app);
  RegisterList(app);
  RegisterWatch(app);
  RegisterLogs(app);
  RegisterCancel(app);
  RegisterRetry(app);
  RegisterWorkers(app);
  RegisterReport(app);
  RegisterCompletion(app);
}

}  // namespace align::cli
