#!/usr/bin/env bash
# End to end on the real binaries: align-coordinator and two align-workers on loopback ports,
# `alignctl submit --wait` of configs/pipelines/zephyr-tiny.yaml on the real data (shrunk with
# --set so it finishes in a few minutes on 2 cores), then: every stage succeeded, the DPO model
# loads in the engine (alignctl generate) and differs from the SFT model, the report exists, and a
# real Prometheus server scraped align_* series from the coordinator and both workers.
# Skips (exit 0, "SKIP: ...") only when a prerequisite binary is missing.
set -uo pipefail
BIN=${ALIGN_BIN_DIR:-$(cd "$(dirname "$0")/../.." && pwd)/build/bin}
SRC=${ALIGN_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
DATA=${ALIGN_DATA_DIR:-${ALIGN_TEST_DATA_DIR:-$SRC/../shared/data}}
for b in alignctl align-coordinator align-worker align-train; do
  if [[ ! -x "$BIN/$b" ]]; then echo "SKIP: $BIN/$b not built"; exit 0; fi
done
for b in prometheus curl; do
  if ! command -v "$b" >/dev/null; then echo "SKIP: $b not installed (scripts/setup.sh --with-extras)"; exit 0; fi
done
if [[ ! -d "$DATA/models/stories260K" ]]; then echo "FAIL: no real data at $DATA"; exit 1; fi
DATA=$(cd "$DATA" && pwd)

TMP=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
  if [[ -n "${KEEP_TMP:-}" ]]; then echo "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
die() {
  echo "FAIL: $*"
  for f in "$TMP"/*.log; do echo "--- $f"; tail -n 30 "$f"; done
  exit 1
}

# A free loopback port: nothing answers a connect on it.
used_ports=" "
free_port() {
  local p
  while true; do
    p=$((20000 + RANDOM % 30000))
    [[ "$used_ports" == *" $p "* ]] && continue
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      used_ports+="$p "
      echo "$p"
      return
    fi
  done
}
wait_http() {  # wait_http URL SECONDS
  for _ in $(seq 1 $(($2 * 10))); do
    curl -sf -o /dev/null "$1" && return 0
    sleep 0.1
  done
  return 1
}

CM=$(free_port)
"$BIN/align-coordinator" --listen 127.0.0.1:0 --db "$TMP/align.db" --artifact-root "$TMP/artifacts" \
  --data-dir "$DATA" --metrics-listen "127.0.0.1:$CM" --lease-timeout 20 --heartbeat-interval 1 \
  >"$TMP/coordinator.out" 2>"$TMP/coordinator.log" &
PIDS+=($!)
port=""
for _ in $(seq 1 300); do
  port=$(grep -oE 'listening on port [0-9]+' "$TMP/coordinator.out" | grep -oE '[0-9]+$' || true)
  [[ -n "$port" ]] && break
  sleep 0.1
done
[[ -n "$port" ]] || die "align-coordinator did not start"
export ALIGN_COORDINATOR="127.0.0.1:$port"

W1=$(free_port)
W2=$(free_port)
for i in 1 2; do
  wport=W$i
  "$BIN/align-worker" --coordinator "$ALIGN_COORDINATOR" --worker-id "worker-$i" --cpu-slots 1 \
    --artifact-root "$TMP/artifacts" --work-dir "$TMP/work-$i" --align-train "$BIN/align-train" \
    --data-dir "$DATA" --advertise-address 127.0.0.1 --metrics-listen "127.0.0.1:${!wport}" \
    --log-level warning >"$TMP/worker-$i.log" 2>&1 &
  PIDS+=($!)
done

PP=$(free_port)
cat >"$TMP/prometheus.yml" <<YAML
global: {scrape_interval: 1s}
scrape_configs:
  - job_name: align-coordinator
    static_configs: [{targets: ["127.0.0.1:$CM"]}]
  - job_name: align-worker
    static_configs: [{targets: ["127.0.0.1:$W1", "127.0.0.1:$W2"]}]
YAML
prometheus --config.file="$TMP/prometheus.yml" --storage.tsdb.path="$TMP/prom" \
  --web.listen-address="127.0.0.1:$PP" >"$TMP/prometheus.log" 2>&1 &
PIDS+=($!)

wait_http "http://127.0.0.1:$CM/metrics" 30 || die "coordinator /metrics not up"
wait_http "http://127.0.0.1:$W1/metrics" 30 || die "worker-1 /metrics not up"
wait_http "http://127.0.0.1:$W2/metrics" 30 || die "worker-2 /metrics not up"
for _ in $(seq 1 100); do
  [[ $("$BIN/alignctl" workers 2>/dev/null | grep -c ' alive ') -eq 2 ]] && break
  sleep 0.2
done
"$BIN/alignctl" workers
[[ $("$BIN/alignctl" workers | grep -c ' alive ') -eq 2 ]] || die "two workers did not register"

# The tiny recipe, smaller still: a CI smoke run of the real pipeline, not a quality run.
start=$(date +%s)
"$BIN/alignctl" submit -f "$SRC/configs/pipelines/zephyr-tiny.yaml" --wait \
  --set stages.sft.training.epochs=1 --set stages.prefs.config.max_pairs=128 \
  --set stages.eval.config.limit=8 >"$TMP/submit.out" 2>"$TMP/submit.log"
rc=$?
cat "$TMP/submit.out"
echo "submit --wait exited $rc after $(( $(date +%s) - start )) s"
[[ $rc -eq 0 ]] || die "submit --wait exit code $rc"
id=$(grep -oE 'submitted: [^ ]+' "$TMP/submit.out" | head -1 | awk '{print $2}')
[[ -n "$id" ]] || die "no pipeline id in submit output"

"$BIN/alignctl" get "$id" -o json >"$TMP/pipeline.json" || die "alignctl get -o json"
n_ok=$(grep -c '"state": "STAGE_SUCCEEDED"' "$TMP/pipeline.json")
[[ $n_ok -eq 4 ]] || die "$n_ok of 4 stages succeeded"
grep -q '"state": "PIPELINE_SUCCEEDED"' "$TMP/pipeline.json" || die "pipeline not succeeded"

# Model directories of sft and dpo (artifact URIs file:///...).
model_dir() {
  "$BIN/alignctl" get "$id" | awk -v s="$1" '$1 == s && $2 == "model" {print $5}' | sed 's|^file://||'
}
sft=$(model_dir sft)
dpo=$(model_dir dpo)
[[ -d "$sft" && -d "$dpo" ]] || die "model dirs missing: sft='$sft' dpo='$dpo'"
if cmp -s "$sft/model.safetensors" "$dpo/model.safetensors"; then die "DPO weights equal SFT weights"; fi
"$BIN/alignctl" generate --model "$dpo" --prompt "Once" --max-new-tokens 5 >"$TMP/generate.out" 2>&1 \
  || die "the DPO model does not load: $(cat "$TMP/generate.out")"
echo "DPO model continues 'Once' with: $(cat "$TMP/generate.out")"

"$BIN/alignctl" report "$id" -o "$TMP/report.html" || die "alignctl report"
[[ -s "$TMP/report.html" && -s "$TMP/report.md" ]] || die "report files missing"
grep -q "<svg" "$TMP/report.html" || die "report has no charts"

# Prometheus scraped align_* series from the coordinator and both workers.
q='count by (instance) ({__name__=~"align_.*"})'
for _ in $(seq 1 50); do
  res=$(curl -s --get "http://127.0.0.1:$PP/api/v1/query" --data-urlencode "query=$q")
  n=0
  for t in "$CM" "$W1" "$W2"; do grep -q "\"instance\":\"127.0.0.1:$t\"" <<<"$res" && n=$((n + 1)); done
  [[ $n -eq 3 ]] && break
  sleep 0.2
done
[[ $n -eq 3 ]] || die "Prometheus has align_* series from $n of 3 targets: $res"
echo "Prometheus: $res"
echo "PASS: pipeline end to end in $(( $(date +%s) - start )) s"
