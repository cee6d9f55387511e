#!/usr/bin/env bash
# The main job: installs what is missing, builds, and runs the furthest real thing that works.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
./scripts/build.sh
export ALIGN_DATA_DIR=${ALIGN_DATA_DIR:-$(cd .. && pwd)/shared/data}
BIN=${ALIGN_BUILD_DIR:-build}/bin
echo "== validating the tiny Zephyr recipe"
"$BIN/alignctl" validate configs/pipelines/zephyr-tiny.yaml
