#!/usr/bin/env bash
# A newcomer's walk-through of alignctl: `--help` and every verb's help are complete, shell
# completion loads, and the four first-day errors (no coordinator, bad token, unknown pipeline,
# broken YAML) are each one clear line on stderr with a non-zero exit code.
set -uo pipefail
BIN=${ALIGN_BIN_DIR:-$(cd "$(dirname "$0")/../.." && pwd)/build/bin}
SRC=${ALIGN_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
for b in alignctl align-coordinator; do
  if [[ ! -x "$BIN/$b" ]]; then echo "SKIP: $BIN/$b not built"; exit 0; fi
done
CTL="$BIN/alignctl"
TMP=$(mktemp -d)
COORD_PID=""
MAIN_PID=$BASHPID
cleanup() {
  [[ $BASHPID == "$MAIN_PID" ]] || return 0  # not in command substitutions
  if [[ -n "$COORD_PID" ]]; then kill "$COORD_PID" 2>/dev/null; wait "$COORD_PID" 2>/dev/null; fi
  rm -rf "$TMP"
}
trap cleanup EXIT
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
ok() { echo "ok: $*"; }

# 1. Help: the top level lists every verb, and every verb's help has a description and options.
top=$("$CTL" --help 2>&1) || fail "alignctl --help exited $?"
verbs=(submit get list watch logs cancel retry workers report completion run validate tokenize template generate data)
for v in "${verbs[@]}"; do
  grep -qE "^  $v( |$)" <<<"$top" || fail "alignctl --help does not list '$v'"
done
for v in "${verbs[@]}" "template render" "template mask" "data preview"; do
  # shellcheck disable=SC2086  # "template render" is two words on purpose
  out=$("$CTL" $v --help 2>&1)
  rc=$?
  if [[ $rc -ne 0 ]]; then fail "alignctl $v --help exited $rc"; continue; fi
  grep -q "^Usage:" <<<"$out" || fail "alignctl $v --help has no usage line"
  # A description line right under the usage, and at least the --help option.
  [[ $(sed -n 2,3p <<<"$out" | tr -d '[:space:]') != "" ]] || fail "alignctl $v --help has no description"
  grep -q -- "--help" <<<"$out" || fail "alignctl $v --help lists no options"
done
ok "help of ${#verbs[@]} verbs"

# Every flag of every client verb appears in docs/cli.md.
for v in submit get list watch logs cancel retry workers report run; do
  for flag in $("$CTL" "$v" --help 2>&1 | grep -oE -- '--[a-z][a-z-]+' | sort -u); do
    [[ "$flag" == "--help" ]] && continue
    grep -q -- "$flag" "$SRC/docs/cli.md" || fail "docs/cli.md does not document alignctl $v $flag"
  done
done
ok "docs/cli.md documents every flag"

# Completion loads in bash and completes verbs.
if bash -c "source <(\"$CTL\" completion bash) && complete -p alignctl" >/dev/null 2>&1; then
  words=$(bash -c "source <(\"$CTL\" completion bash); COMP_WORDS=(alignctl su); COMP_CWORD=1; _alignctl; echo \"\${COMPREPLY[*]}\"")
  [[ "$words" == "submit" ]] || fail "completion of 'alignctl su' gave '$words'"
  ok "bash completion"
else
  fail "alignctl completion bash does not load"
fi

# expect_one_line NAME PATTERN CMD...: non-zero exit, exactly one stderr line matching PATTERN.
expect_one_line() {
  local name=$1 pattern=$2
  shift 2
  "$@" >"$TMP/out" 2>"$TMP/err"
  local rc=$?
  local lines
  lines=$(grep -c '' "$TMP/err")
  if [[ $rc -eq 0 ]]; then fail "$name: exit code 0"; return; fi
  if [[ $lines -ne 1 ]]; then fail "$name: $lines stderr lines:"; cat "$TMP/err"; return; fi
  if ! grep -qE "$pattern" "$TMP/err"; then fail "$name: '$(cat "$TMP/err")' does not match '$pattern'"; return; fi
  ok "$name (exit $rc): $(cat "$TMP/err")"
}

# 2. No coordinator.
expect_one_line "missing coordinator" \
  '^alignctl: error: cannot reach coordinator at 127\.0\.0\.1:1: .*start it with align-coordinator or use --coordinator' \
  env -u ALIGN_COORDINATOR "$CTL" list --coordinator 127.0.0.1:1

# 3. Broken YAML: the spec parser's message, naming the file and line.
printf 'apiVersion: align/v1\nkind: Pipeline\nmetadata: {name: x\nspec: [\n' >"$TMP/broken.yaml"
expect_one_line "broken YAML" "broken\.yaml:[0-9]+" "$CTL" submit -f "$TMP/broken.yaml" --coordinator 127.0.0.1:1

# 4 and 5 need a coordinator with authentication.
printf 'user goodtoken-0123456789abcdef alice\nworker workertoken-0123456789abcdef\n' >"$TMP/tokens"
echo goodtoken-0123456789abcdef >"$TMP/good"
echo wrongtoken-0123456789abcdef >"$TMP/wrong"
"$BIN/align-coordinator" --listen 127.0.0.1:0 --db "$TMP/align.db" --artifact-root "$TMP/artifacts" \
  --token-file "$TMP/tokens" --log-level warning >"$TMP/coord.out" 2>"$TMP/coord.err" &
COORD_PID=$!
port=""
for _ in $(seq 1 100); do
  port=$(grep -oE 'listening on port [0-9]+' "$TMP/coord.out" | grep -oE '[0-9]+$' || true)
  [[ -n "$port" ]] && break
  kill -0 "$COORD_PID" 2>/dev/null || break
  sleep 0.1
done
if [[ -z "$port" ]]; then
  fail "align-coordinator did not start: $(cat "$TMP/coord.err")"
else
  expect_one_line "bad token" "^alignctl: error: coordinator at 127\.0\.0\.1:$port rejected the token from $TMP/wrong" \
    "$CTL" list --coordinator "127.0.0.1:$port" --token-file "$TMP/wrong"
  expect_one_line "unknown pipeline" '^alignctl: error: .*no-such-pipeline.*' \
    "$CTL" get no-such-pipeline --coordinator "127.0.0.1:$port" --token-file "$TMP/good"
  "$CTL" list --coordinator "127.0.0.1:$port" --token-file "$TMP/good" >"$TMP/list" 2>&1 \
    || fail "list with the right token: $(cat "$TMP/list")"
fi

# 6. data preview on the tiny recipe's real data: examples as the trainer sees them and the drop
# report. The stage's settings that the counts depend on are pinned with --set, so that tuning the
# recipe does not change them.
DATA=${ALIGN_DATA_DIR:-${ALIGN_TEST_DATA_DIR:-$SRC/../shared/data}}
if [[ -d "$DATA/models/stories260K" ]]; then
  DATA=$(cd "$DATA" && pwd)
  RECIPE="$SRC/configs/pipelines/zephyr-tiny.yaml"
  # expect_lines NAME FILE LINE...: each LINE appears in FILE exactly as given.
  expect_lines() {
    local name=$1 file=$2 line
    shift 2
    for line in "$@"; do
      grep -qxF -- "$line" "$file" || fail "$name: no line '$line' in: $(grep -A5 -- '--- drop report' "$file")"
    done
  }
  if ALIGN_DATA_DIR="$DATA" "$CTL" data preview -f "$RECIPE" --stage sft -n 2 --no-color \
      --set stages.sft.training.max_length=256 --set stages.sft.training.truncation_side=right \
      --set stages.sft.data.0.max_examples=0 --set stages.sft.config.loss_on=assistant \
      >"$TMP/sft.out" 2>"$TMP/sft.err"; then
    [[ $(grep -c '^--- example ' "$TMP/sft.out") -eq 2 ]] || fail "data preview sft: $(grep -c '^--- example ' "$TMP/sft.out") examples shown, expected 2"
    # The first OpenAssistant conversation: 308 tokens cut to 256, its assistant turn highlighted.
    expect_lines "data preview sft" "$TMP/sft.out" \
      "--- example 1 (source 0, row 1): 256 tokens (truncated from 308), 206 trained" \
      "source 0: $DATA/datasets/oasst/en_100_tree.jsonl (oasst_tree): 100 lines, 0 bad lines skipped, 100 kept, none dropped" \
      "tokenized, truncated to 256: 100 rows, 7 dropped (no_supervised_tokens_after_truncation 7)" \
      "total: 93 examples kept for the stage"
    grep -q '^How can I find the best 401k plan for my needs?</s> $' "$TMP/sft.out" || fail "data preview sft: the first prompt is not decoded with its spaces"
    grep -q '^\[\[The first step is to research your options\.' "$TMP/sft.out" || fail "data preview sft: the assistant turn is not highlighted as trained"
    ok "data preview sft: 2 examples, 93 of 100 kept (7 lose every trained token to truncation)"
  else
    fail "data preview sft exited non-zero: $(cat "$TMP/sft.err")"
  fi
  if ALIGN_DATA_DIR="$DATA" "$CTL" data preview -f "$RECIPE" --stage prefs -n 3 --no-color \
      >"$TMP/prefs.out" 2>"$TMP/prefs.err"; then
    [[ $(grep -c '^--- pair ' "$TMP/prefs.out") -eq 3 ]] || fail "data preview prefs: $(grep -c '^--- pair ' "$TMP/prefs.out") pairs shown, expected 3"
    [[ $(grep -c '^chosen: ' "$TMP/prefs.out") -eq 3 && $(grep -c '^rejected: ' "$TMP/prefs.out") -eq 3 ]] \
      || fail "data preview prefs: not one chosen and one rejected per pair"
    expect_lines "data preview prefs" "$TMP/prefs.out" \
      "source 0: $DATA/datasets/hh-rlhf/harmless-base-test.jsonl.gz (hh_rlhf): 2312 lines, 0 bad lines skipped, 2308 kept, 4 dropped (empty_completion 4)" \
      "total: 2308 pairs kept for the stage"
    ok "data preview prefs: 3 pairs, 2308 of 2312 kept (4 with an empty completion)"
  else
    fail "data preview prefs exited non-zero: $(cat "$TMP/prefs.err")"
  fi
  # dpo reads what prefs writes: before the pipeline ran, one line saying what to do.
  expect_one_line "data preview of another stage's output" \
    '^alignctl: error: stages\.dpo\.data\[0\]\.path is \$\{stages\.prefs\.outputs\.train\}, which stage prefs writes when the pipeline runs: preview stage prefs \(its input\), or give a file with --set stages\.dpo\.data\.0\.path=FILE$' \
    env ALIGN_DATA_DIR="$DATA" "$CTL" data preview -f "$RECIPE" --stage dpo
  # ... and with a file given, dpo's pairs as DPO truncates them, with sft's base tokenizer.
  if ALIGN_DATA_DIR="$DATA" "$CTL" data preview -f "$RECIPE" --stage dpo -n 1 --no-color \
      --set stages.dpo.data.0.path=data://datasets/hh-rlhf/harmless-base-test.jsonl.gz \
      --set stages.dpo.data.0.format=hh_rlhf --set stages.dpo.training.max_length=256 \
      --set stages.dpo.config.max_prompt_length=128 >"$TMP/dpo.out" 2>"$TMP/dpo.err"; then
    expect_lines "data preview dpo" "$TMP/dpo.out" \
      "stage dpo (dpo): 1 source(s); tokenizer data://models/stories260K (stage sft's base model); chat template tokenizer; max_length 256, max_prompt_length 128" \
      "--- pair 1 (source 0, row 1): prompt 128 tokens (truncated from 448)" \
      "tokenized, truncated to 256: 2308 rows, none dropped"
    ok "data preview dpo with a file: prompts cut to 128 tokens"
  else
    fail "data preview dpo with a file exited non-zero: $(cat "$TMP/dpo.err")"
  fi
else
  echo "note: no data at $DATA; data preview not checked"
fi

if [[ $failures -ne 0 ]]; then echo "$failures failure(s)"; exit 1; fi
echo "PASS: walk-through"
