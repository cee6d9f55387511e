// `alignctl validate FILE|- [--set path=value ...] [-o yaml|json]`: parses and validates a pipeline
// spec locally and prints it normalized (defaults applied), or every error, one per line, on
// stderr. Exit code 0 when valid, 1 otherwise.
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_join.h"
#include "cli/commands/commands.h"
#include "common/config/pipeline_config.h"

namespace align::cli {
namespace {

struct ValidateOptions {
  std::string file;
  std::vector<std::string> sets;
  std::string output = "yaml";
};

absl::StatusOr<v1::PipelineSpec> Load(const ValidateOptions& options) {
  if (options.file != "-") return config::LoadPipelineFile(options.file, options.sets);
  // "-": standard input, read only up to one byte past the limit so the size error still shows.
  std::string text(config::kMaxSpecBytes + 1, '\0');
  std::cin.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<size_t>(std::cin.gcount()));
  return config::ParsePipelineYaml(text, "<stdin>", options.sets);
}

int RunValidate(const ValidateOptions& options) {
  auto spec = Load(options);
  if (!spec.ok()) {
    PrintError(spec.status().message());
    return 1;
  }
  std::string text;
  if (options.output == "json") {
    auto json = config::SpecToJson(*spec);
    if (!json.ok()) {
      PrintError(json.status().message());
      return 1;
    }
    text = *json + "\n";
  } else {
    text = config::SpecToYaml(*spec);
  }
  std::cout << text;
  // A one-line summary on stderr keeps stdout a clean document for pipes.
  auto order = config::TopologicalOrder(*spec);
  std::vector<std::string> names;
  if (order.ok()) {
    for (int i : *order) names.push_back(spec->stages(i).name());
  }
  std::cerr << options.file << ": valid; " << spec->stages_size() << " stage"
            << (spec->stages_size() == 1 ? "" : "s") << " in order: " << absl::StrJoin(names, " -> ")
            << "\n";
  return 0;
}

}  // namespace

void RegisterValidateCommand(CLI::App& app) {
  auto options = std::make_shared<ValidateOptions>();
  CLI::App* cmd = app.add_subcommand(
      "validate", "Check a pipeline spec; print it normalized (defaults applied) or every error");
  cmd->add_option("file", options->file, "pipeline spec (YAML, apiVersion: align/v1); - for stdin")
      ->required();
  cmd->add_option("--set", options->sets,
                  "override before validation, path=value with the stage named after `stages.` "
                  "(e.g. stages.dpo.config.beta=0.05); repeatable")
      ->allow_extra_args(false);
  cmd->add_option("-o,--output", options->output, "output format of the normalized spec")
      ->check(CLI::IsMember({"yaml", "json"}))
      ->capture_default_str();
  cmd->callback([options] { ExitCode() = RunValidate(*options); });
}

}  // namespace align::cli
