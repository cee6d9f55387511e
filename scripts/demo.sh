#!/usr/bin/env bash
# The main job: installs what is missing, builds, then runs the tiny Zephyr recipe end to end in
# local mode (SFT on OpenAssistant -> HH-RLHF preference formatting -> DPO -> evaluation with
# gates) on the real stories260K model, and prints the summary and the report's path.
# Running it again continues (or, once finished, shows) the same pipeline; ALIGN_DEMO_FRESH=1
# starts a new one that recomputes every stage (without it, the stage cache would reuse the earlier
# run's outputs and the new pipeline would finish in a second with no training curves of its own).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
./scripts/build.sh
export ALIGN_DATA_DIR=${ALIGN_DATA_DIR:-$(cd .. && pwd)/shared/data}
if [[ ! -d "$ALIGN_DATA_DIR/models/stories260K" ]]; then
  echo "demo: no real data at $ALIGN_DATA_DIR (set ALIGN_DATA_DIR to the shared data directory)" >&2
  exit 1
fi
BIN=${ALIGN_BUILD_DIR:-build}/bin
echo "== validating configs/pipelines/zephyr-tiny.yaml"
# validate prints the resolved spec (every default filled in) on stdout and its verdict on stderr.
"$BIN/alignctl" validate configs/pipelines/zephyr-tiny.yaml >/dev/null
echo "== running it in local mode (state and artifacts in ./.align/)"
fresh=()
[[ -n "${ALIGN_DEMO_FRESH:-}" ]] && fresh=(--fresh --no-cache)
"$BIN/alignctl" run -f configs/pipelines/zephyr-tiny.yaml "${fresh[@]}"
summary=$(ls -t .align/reports/*.md 2>/dev/null | head -n 1 || true)
if [[ -n "$summary" ]]; then
  echo "== summary ($summary)"
  sed -n '1,/^## Evaluation/p' "$summary"
  grep -E '^- gate' "$summary" || true
  echo "report: ${summary%.md}.html"
fi
