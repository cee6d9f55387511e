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

if [[ $failures -ne 0 ]]; then echo "$failures failure(s)"; exit 1; fi
echo "PASS: walk-through"
