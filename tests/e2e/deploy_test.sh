#!/usr/bin/env bash
# Checks deploy/: the Prometheus scrape config and alert rules with promtool (Debian package
# `prometheus`, installed by scripts/setup.sh --with-extras), the alert cases in alerts_test.yml,
# the Kubernetes manifests parse as YAML with the expected kinds, and the Slurm launcher is valid
# bash. The Grafana dashboard's metric names are checked against the sources by cli_test
# (deploy_metrics_test.cc).
set -euo pipefail
SRC=${ALIGN_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
if ! command -v promtool >/dev/null; then
  echo "SKIP: promtool not found (apt-get install prometheus, or scripts/setup.sh --with-extras)"
  exit 0
fi
cd "$SRC/deploy/prometheus"
promtool check config prometheus.yml
promtool check rules alerts.yml
promtool test rules alerts_test.yml

bash -n "$SRC/deploy/slurm/align-workers.sbatch"

# Kubernetes: each manifest must hold the kinds the deployment needs.
kinds=$(grep -h '^kind:' "$SRC"/deploy/kubernetes/*.yaml | awk '{print $2}' | sort | tr '\n' ' ')
expected="DaemonSet PersistentVolumeClaim Service StatefulSet "
if [[ "$kinds" != "$expected" ]]; then
  echo "FAIL: kubernetes kinds are '$kinds', expected '$expected'"
  exit 1
fi
grep -q 'nvidia.com/gpu: ' "$SRC/deploy/kubernetes/worker.yaml" || { echo "FAIL: worker DaemonSet requests no nvidia.com/gpu"; exit 1; }
grep -q 'volumeClaimTemplates' "$SRC/deploy/kubernetes/coordinator.yaml" || { echo "FAIL: coordinator has no volume claim"; exit 1; }
echo "PASS: deploy/ checks"
