#!/usr/bin/env bash
# Data sources given as URLs, against a local HTTP server (python3's http.server; CI has no other
# network): `alignctl data preview` and a local `alignctl run` (align-train) download the file into
# ALIGN_CACHE_DIR/<first 16 hex of its sha256>/<name>, verify it and reuse it on the next run
# without a request; a wrong checksum is one clear error naming the URL and both hashes, leaves
# nothing in the cache, and fails the stage as a user error (no retries).
# Skips (exit 0, "SKIP: ...") only when a binary or python3 is missing.
set -uo pipefail
BIN=${ALIGN_BIN_DIR:-$(cd "$(dirname "$0")/../.." && pwd)/build/bin}
SRC=${ALIGN_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
DATA=${ALIGN_DATA_DIR:-${ALIGN_TEST_DATA_DIR:-$SRC/../shared/data}}
for b in alignctl align-train; do
  if [[ ! -x "$BIN/$b" ]]; then echo "SKIP: $BIN/$b not built"; exit 0; fi
done
command -v python3 >/dev/null || { echo "SKIP: python3 not installed"; exit 0; }
if [[ ! -d "$DATA/models/stories260K" ]]; then echo "FAIL: no real data at $DATA"; exit 1; fi
DATA=$(cd "$DATA" && pwd)
CTL="$BIN/alignctl"

TMP=$(mktemp -d)
SERVER_PID=""
cleanup() {
  if [[ -n "$SERVER_PID" ]]; then kill "$SERVER_PID" 2>/dev/null; wait "$SERVER_PID" 2>/dev/null; fi
  if [[ -n "${KEEP_TMP:-}" ]]; then echo "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
ok() { echo "ok: $*"; }
die() { echo "FAIL: $*"; exit 1; }

mkdir -p "$TMP/www"
cat >"$TMP/www/chat.jsonl" <<'EOF'
{"messages": [{"role": "user", "content": "Hi there"}, {"role": "assistant", "content": "Hello! How can I help?"}]}
{"messages": [{"role": "user", "content": "Tell me a story"}, {"role": "assistant", "content": "Once upon a time, a cat found a ball."}]}
{"messages": [{"role": "user", "content": "Bye"}, {"role": "assistant", "content": "Goodbye!"}]}
EOF
SHA=$(sha256sum "$TMP/www/chat.jsonl" | cut -d' ' -f1)
WRONG=0000000000000000000000000000000000000000000000000000000000000000
SIZE=$(stat -c %s "$TMP/www/chat.jsonl")

(cd "$TMP/www" && exec python3 -u -m http.server 0 --bind 127.0.0.1) >"$TMP/http.log" 2>&1 &
SERVER_PID=$!
port=""
for _ in $(seq 1 100); do
  port=$(grep -oE 'port [0-9]+' "$TMP/http.log" | grep -oE '[0-9]+' | head -n 1)
  [[ -n "$port" ]] && break
  sleep 0.1
done
[[ -n "$port" ]] || die "python3 -m http.server did not start: $(cat "$TMP/http.log")"
URL="http://127.0.0.1:$port/chat.jsonl"
requests() { grep -c '"GET /chat.jsonl' "$TMP/http.log"; }

pipeline() {  # pipeline SHA256: an SFT stage on the served file, one optimizer step
  cat <<EOF
apiVersion: align/v1
kind: Pipeline
metadata: {name: download-e2e}
spec:
  defaults: {model: data://models/stories260K, chat_template: tokenizer, seed: 1}
  stages:
    - name: sft
      type: sft
      data:
        - {path: "$URL", sha256: $1, format: messages}
      training: {epochs: 1, batch_size: 4, max_length: 64, save_steps: 0, eval_fraction: 0}
EOF
}
pipeline "$SHA" >"$TMP/good.yaml"
pipeline "$WRONG" >"$TMP/wrong.yaml"
export ALIGN_DATA_DIR="$DATA"
cd "$TMP" || exit 1

# 1. data preview downloads, verifies and caches; the second preview makes no request.
CACHE="$TMP/cache-preview"
CACHED="$CACHE/${SHA:0:16}/chat.jsonl"
if ALIGN_CACHE_DIR="$CACHE" "$CTL" data preview -f good.yaml --stage sft -n 1 --no-color >p1.out 2>p1.err; then
  [[ "$(cat p1.err)" == "downloading $URL to $CACHED"$'\n'"downloaded $URL: $SIZE B" ]] \
    || fail "preview download messages: $(cat p1.err)"
  grep -qxF "source 0: $CACHED (messages): 3 lines, 0 bad lines skipped, 3 kept, none dropped" p1.out \
    || fail "preview did not read the cached copy: $(grep '^source' p1.out)"
  [[ $(sha256sum "$CACHED" | cut -d' ' -f1) == "$SHA" ]] || fail "cached copy differs from the served file"
  [[ $(find "$CACHE" -type f | wc -l) -eq 1 ]] || fail "cache holds $(find "$CACHE" -type f) (a partial file left?)"
  [[ $(requests) -eq 1 ]] || fail "$(requests) requests for the first preview"
  ok "data preview downloaded $URL into $CACHED"
else
  fail "data preview of a URL source exited non-zero: $(cat p1.err)"
fi
ALIGN_CACHE_DIR="$CACHE" "$CTL" data preview -f good.yaml --stage sft -n 1 >p2.out 2>p2.err \
  || fail "second preview: $(cat p2.err)"
[[ ! -s p2.err ]] || fail "second preview downloaded again: $(cat p2.err)"
[[ $(requests) -eq 1 ]] || fail "the second preview made a request ($(requests) in all)"
ok "second preview reused the cache (no request)"

# 2. A wrong checksum: one error line naming the URL and both hashes; nothing kept.
ALIGN_CACHE_DIR="$CACHE" "$CTL" data preview -f wrong.yaml --stage sft -n 1 >p3.out 2>p3.err
rc=$?
err=$(grep '^alignctl: error' p3.err)
expected="alignctl: error: stages.sft.data[0].path: sha256 mismatch for $URL: expected $WRONG, got $SHA ($SIZE bytes); deleted the partial download $CACHE/${WRONG:0:16}/chat.jsonl.part-"
[[ $rc -eq 1 ]] || fail "checksum mismatch exited $rc, expected 1"
[[ $(grep -c '^alignctl: error' p3.err) -eq 1 && "$err" == "$expected"* ]] || fail "mismatch error: '$err'"
[[ ! -e "$CACHE/${WRONG:0:16}" ]] || fail "the failed download left $(find "$CACHE/${WRONG:0:16}")"
ok "checksum mismatch: $err"

# 3. alignctl run: align-train downloads into its own cache, reports download progress events, and
# trains on the file.
CACHE="$TMP/cache-run"
before=$(requests)
ALIGN_CACHE_DIR="$CACHE" "$CTL" run -f good.yaml --state-dir run-good >r1.out 2>r1.err
rc=$?
[[ $rc -eq 0 ]] || fail "run with a URL source exited $rc: $(tail -n 5 r1.err)"
[[ -f "$CACHE/${SHA:0:16}/chat.jsonl" ]] || fail "align-train did not cache the download"
[[ $(requests) -eq $((before + 1)) ]] || fail "$(( $(requests) - before )) requests for the run"
ev=$(cat run-good/work/attempts/*/rank-0.events.jsonl)
grep -qF "\"message\":\"downloading $URL to $CACHE/${SHA:0:16}/chat.jsonl\"" <<<"$ev" || fail "no download start event"
grep -qF "\"message\":\"downloaded $URL: $SIZE B\"" <<<"$ev" || fail "no download end event"
grep -q '"event":"done"' <<<"$ev" || fail "the sft stage did not finish"
ok "alignctl run: align-train downloaded, verified and trained on $URL"

# 4. alignctl run with a wrong checksum: the stage fails once as a user error, naming the URL.
ALIGN_CACHE_DIR="$CACHE" "$CTL" run -f wrong.yaml --state-dir run-wrong >r2.out 2>r2.err
rc=$?
[[ $rc -eq 1 ]] || fail "run with a wrong checksum exited $rc, expected 1"
grep -qE "^sft +failed +user_error: .*sha256 mismatch for $URL: expected $WRONG, got $SHA" r2.err \
  || fail "stage failure line: $(grep -E '^sft +failed' r2.err)"
n=$(ls -d run-wrong/work/attempts/*/ | wc -l)
[[ $n -eq 1 ]] || fail "$n attempts for a checksum mismatch (a user error is not retried)"
ok "alignctl run with a wrong checksum: one attempt, user_error"

if [[ $failures -ne 0 ]]; then
  echo "$failures failure(s)"
  for f in p1.err r1.err r2.err; do echo "--- $f"; tail -n 10 "$f"; done
  exit 1
fi
echo "PASS: downloads with checksum"
