#!/usr/bin/env bash
# Data-parallel SFT through the real align-train: the same small SFT job on the real stories260K
# model and OpenAssistant data runs once with WORLD_SIZE=1 and once as two processes (RANK 0 and
# 1, WORLD_SIZE=2, MASTER_ADDR=127.0.0.1, a free MASTER_PORT). Both ranks must exit 0; rank 0's
# per-step losses must equal the 1-rank run's within 1e-5; only rank 0 (given its own output and
# work dirs here) writes the model, checkpoints and step events. Skips (exit 0, "SKIP: ...") only
# when align-train is not built.
set -uo pipefail
BIN=${ALIGN_BIN_DIR:-$(cd "$(dirname "$0")/../.." && pwd)/build/bin}
SRC=${ALIGN_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
DATA=${ALIGN_DATA_DIR:-${ALIGN_TEST_DATA_DIR:-$SRC/../shared/data}}
if [[ ! -x "$BIN/align-train" ]]; then echo "SKIP: $BIN/align-train not built"; exit 0; fi
if [[ ! -d "$DATA/models/stories260K" ]]; then echo "FAIL: no real data at $DATA"; exit 1; fi
DATA=$(cd "$DATA" && pwd)

TMP=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  if [[ -n "${KEEP_TMP:-}" ]]; then echo "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
ok() { echo "ok: $*"; }

job() {  # job NAME -> $TMP/NAME.json with its own output, work dir and events file
  cat >"$TMP/$1.json" <<EOF
{"stage": {"name": "sft", "type": "SFT", "model": "data://models/stories260K",
           "chat_template": "tokenizer",
           "data": [{"path": "data://datasets/oasst/en_100_tree.jsonl", "format": "OASST_TREE",
                     "language": "en", "max_examples": "20"}],
           "training": {"learning_rate": 1e-3, "max_steps": "3", "batch_size": 3,
                        "gradient_accumulation_steps": 2, "max_length": 96,
                        "eval_fraction": 0.2, "save_steps": "2"}},
 "output_dir": "$TMP/$1/out", "work_dir": "$TMP/$1/work", "data_dir": "$DATA",
 "events_path": "$TMP/$1.events", "defaults": {"seed": "7"}}
EOF
}
for n in one rank0 rank1; do job "$n"; done
export OMP_NUM_THREADS=1
WORLD_SIZE=1 RANK=0 "$BIN/align-train" --job "$TMP/one.json" 2>"$TMP/one.err"
rc=$?; [[ $rc == 0 ]] && ok "1-rank run" || { fail "1-rank run exited $rc"; tail -n 20 "$TMP/one.err"; }

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
for r in 0 1; do
  WORLD_SIZE=2 RANK=$r LOCAL_RANK=$r MASTER_ADDR=127.0.0.1 MASTER_PORT=$PORT ALIGN_DIST_TIMEOUT_S=120 \
    "$BIN/align-train" --job "$TMP/rank$r.json" 2>"$TMP/rank$r.err" &
  PIDS+=($!)
done
for r in 0 1; do
  wait "${PIDS[$r]}"; rc=$?
  [[ $rc == 0 ]] && ok "rank $r of 2 exited 0" || { fail "rank $r exited $rc"; tail -n 20 "$TMP/rank$r.err"; }
done
PIDS=()

python3 - "$TMP" <<'EOF' || failures=$((failures + 1))
import json, os, sys
tmp = sys.argv[1]
def events(name):
    return [json.loads(l) for l in open(f"{tmp}/{name}.events") if l.strip()]
def losses(name):
    return [e["metrics"]["loss"] for e in events(name) if e["event"] == "step"]
one, r0, r1 = losses("one"), losses("rank0"), losses("rank1")
bad = 0
if len(one) != 3 or len(r0) != 3 or any(abs(a - b) > 1e-5 for a, b in zip(one, r0)):
    print(f"FAIL: step losses 1 rank {one} vs rank 0 of 2 {r0}"); bad += 1
else:
    print(f"ok: step losses match: {one} vs {r0}")
if r1:
    print(f"FAIL: rank 1 emitted step events {r1}"); bad += 1
for path, want in [("rank0/out/model/model.safetensors", True), ("rank0/work/checkpoints", True),
                   ("rank1/out/model", False), ("rank1/work/checkpoints", False)]:
    if os.path.exists(f"{tmp}/{path}") != want:
        print(f"FAIL: {path} {'missing' if want else 'written by rank 1'}"); bad += 1
done = [e for e in events("rank1") if e["event"] == "done"]
if not done or done[0]["metrics"]["loss"] != [e for e in events("rank0") if e["event"] == "done"][0]["metrics"]["loss"]:
    print("FAIL: rank 1's final loss differs from rank 0's"); bad += 1
sys.exit(1 if bad else 0)
EOF
[[ $failures == 0 ]] && { echo "PASS"; exit 0; }
echo "$failures failure(s)"; exit 1
