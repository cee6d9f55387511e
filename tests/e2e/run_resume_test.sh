#!/usr/bin/env bash
# `alignctl run` (local mode) is resumable: a small SFT + preference formatting -> DPO pipeline on
# the real stories260K model and data is interrupted with SIGINT right after DPO wrote its first
# checkpoint (sft and prefs have succeeded by then). The first run must stop cleanly: exit code
# 130, a message saying how to resume, no align-train left running. Running the same command again
# must continue it: sft and prefs are not run again (one attempt each over both runs, outputs
# untouched), dpo runs one more attempt that resumes from the first attempt's last checkpoint
# (its first step is the checkpoint's step + 1), and the pipeline ends succeeded (exit code 0).
# Skips (exit 0, "SKIP: ...") only when a binary is missing.
set -uo pipefail
BIN=${ALIGN_BIN_DIR:-$(cd "$(dirname "$0")/../.." && pwd)/build/bin}
SRC=${ALIGN_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
DATA=${ALIGN_DATA_DIR:-${ALIGN_TEST_DATA_DIR:-$SRC/../shared/data}}
for b in alignctl align-train; do
  if [[ ! -x "$BIN/$b" ]]; then echo "SKIP: $BIN/$b not built"; exit 0; fi
done
if [[ ! -d "$DATA/models/stories260K" ]]; then echo "FAIL: no real data at $DATA"; exit 1; fi
DATA=$(cd "$DATA" && pwd)

TMP=$(mktemp -d)
RUN_PID=""
cleanup() {
  if [[ -n "$RUN_PID" ]]; then kill -KILL "$RUN_PID" 2>/dev/null; wait "$RUN_PID" 2>/dev/null; fi
  if [[ -n "${KEEP_TMP:-}" ]]; then echo "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
ok() { echo "ok: $*"; }
die() {
  echo "FAIL: $*"
  for f in "$TMP"/run*.err; do [[ -f "$f" ]] && { echo "--- $f"; tail -n 30 "$f"; }; done
  exit 1
}

cat >"$TMP/p.yaml" <<'EOF'
apiVersion: align/v1
kind: Pipeline
metadata: {name: resume-e2e}
spec:
  defaults: {model: data://models/stories260K, chat_template: tokenizer, seed: 7, precision: fp32}
  stages:
    - name: sft
      type: sft
      data:
        - {path: data://datasets/oasst/en_100_tree.jsonl, format: oasst_tree, language: en, max_examples: 16}
      training: {epochs: 1, learning_rate: 1e-3, batch_size: 8, max_length: 96, save_steps: 0}
    - name: prefs
      type: preference_format
      data:
        - {path: data://datasets/hh-rlhf/harmless-base-test.jsonl.gz, format: hh_rlhf}
      config: {test_fraction: 0.1, max_pairs: 120}
    - name: dpo
      type: dpo
      depends_on: [sft, prefs]
      model: ${stages.sft.outputs.model}
      data:
        - {path: "${stages.prefs.outputs.train}"}
      training: {epochs: 1, learning_rate: 5e-4, batch_size: 8, max_length: 96, save_steps: 2, logging_steps: 1}
      config: {beta: 0.1, max_prompt_length: 48}
EOF

cd "$TMP" || exit 1
export ALIGN_DATA_DIR="$DATA"
CMD=("$BIN/alignctl" run -f p.yaml --cpu-slots 2)

# attempts STAGE: the attempt directories (one per attempt) whose job runs STAGE.
attempts() {
  python3 - "$1" <<'PY'
import json, glob, sys
for job in sorted(glob.glob(".align/work/attempts/*/job.json")):
    with open(job) as f:
        j = json.load(f)
    if j.get("stage", {}).get("name") == sys.argv[1]:
        print(job[: -len("/job.json")])
PY
}
# events DIR TYPE FIELD: FIELD of every TYPE event of the attempt's rank 0, one a line.
events() {
  python3 - "$@" <<'PY'
import json, sys
d, typ, field = sys.argv[1:4]
try:
    lines = open(d + "/rank-0.events.jsonl").read().splitlines()
except OSError:
    sys.exit(0)
for line in lines:
    try:
        e = json.loads(line)
    except ValueError:
        continue  # the line being written
    if e.get("event") == typ:
        v = e.get(field)
        print("" if v is None else v)
PY
}

# 1. First run, interrupted after dpo's first checkpoint.
"${CMD[@]}" >run1.out 2>run1.err &
RUN_PID=$!
# Plain grep in the loop, so that the signal follows the checkpoint within a few milliseconds
# (dpo has about 11 more steps to go by then).
dpo1=""
for _ in $(seq 1 12000); do  # 120 s at most; the wait ends on the event, not on time
  if [[ -z "$dpo1" ]]; then
    job=$(grep -l '"name": "dpo"' .align/work/attempts/*/job.json 2>/dev/null | head -n 1)
    [[ -n "$job" ]] && dpo1=$(dirname "$job")
  fi
  if [[ -n "$dpo1" ]] && grep -q '"event":"checkpoint"' "$dpo1/rank-0.events.jsonl" 2>/dev/null; then
    break
  fi
  kill -0 "$RUN_PID" 2>/dev/null || break
  sleep 0.01
done
kill -INT "$RUN_PID"
wait "$RUN_PID"
rc1=$?
RUN_PID=""
[[ $rc1 -eq 130 ]] || fail "interrupted run exited $rc1, expected 130"
grep -q "^alignctl: interrupted; stopping the running stages" run1.err || fail "no interrupt message"
expected_resume="Resume with: alignctl run -f p.yaml --cpu-slots 2"
grep -qF "$expected_resume" run1.err || fail "no '$expected_resume' in: $(tail -n 2 run1.err)"
[[ ! -s run1.out ]] || fail "interrupted run printed a summary: $(cat run1.out)"
# No align-train of the first run outlives it.
for pidfile in .align/work/attempts/*/*.pid; do
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null && grep -q align-train "/proc/$pid/cmdline" 2>/dev/null; then
    fail "align-train $pid ($pidfile) still running after the interrupted run exited"
  fi
done
sft_model=$(find .align/artifacts -path '*/sft/model/model.safetensors' | head -n 1)
[[ -n "$sft_model" ]] || fail "sft model missing after the first run"
sft_sum=$(sha256sum "$sft_model" | cut -d' ' -f1)
[[ -n "$dpo1" ]] || die "no dpo attempt in the first run"
last_ckpt=$(events "$dpo1" checkpoint path | tail -n 1)
last_ckpt_step=$(events "$dpo1" checkpoint step | tail -n 1)
[[ -n "$last_ckpt" ]] || die "dpo wrote no checkpoint in the first run"
[[ -z "$(events "$dpo1" done status)" ]] || die "dpo finished before the interrupt"
ok "first run interrupted (exit 130) after dpo checkpoint at step $last_ckpt_step"

# 2. The same command again continues the pipeline.
"${CMD[@]}" >run2.out 2>run2.err
rc2=$?
[[ $rc2 -eq 0 ]] || die "resumed run exited $rc2"
grep -qE "^resuming pipeline resume-e2e \(p-[a-z0-9]+\) from $TMP/\.align: sft, prefs succeeded \(outputs kept\); to run: dpo$" run2.err \
  || fail "no resume line naming the kept and the remaining stages: $(grep resuming run2.err)"
grep -qE "^pipeline resume-e2e \(p-[a-z0-9]+\) succeeded" run2.out || fail "summary: $(head -n 1 run2.out)"
n_sft=$(attempts sft | grep -c .)
n_prefs=$(attempts prefs | grep -c .)
n_dpo=$(attempts dpo | grep -c .)
[[ $n_sft -eq 1 && $n_prefs -eq 1 ]] || fail "sft/prefs ran again: $n_sft sft and $n_prefs prefs attempts over both runs"
[[ $n_dpo -eq 2 ]] || fail "$n_dpo dpo attempts over both runs, expected 2"
[[ $(sha256sum "$sft_model" | cut -d' ' -f1) == "$sft_sum" ]] || fail "sft model rewritten by the second run"
dpo2=$(attempts dpo | grep -v "^$dpo1\$" | head -n 1)
resumed=$(events "$dpo2" start resumed_from)
[[ "$resumed" == "$last_ckpt" ]] || fail "second dpo attempt resumed from '$resumed', expected '$last_ckpt'"
first_step=$(events "$dpo2" step step | head -n 1)
[[ "$first_step" == "$((last_ckpt_step + 1))" ]] \
  || fail "second dpo attempt's first step is $first_step, expected $((last_ckpt_step + 1))"
[[ -n "$(events "$dpo2" done status)" ]] || fail "second dpo attempt has no done event"
ok "resumed run: exit 0, sft and prefs kept, dpo resumed from $last_ckpt at step $first_step"

if [[ $failures -ne 0 ]]; then
  echo "$failures failure(s)"
  for f in run1.err run2.err run2.out; do echo "--- $f"; tail -n 20 "$f"; done
  exit 1
fi
echo "PASS: alignctl run resumes after SIGINT"
