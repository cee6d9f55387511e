#!/usr/bin/env bash
# Configures and builds into ./build (binaries in build/bin). Extra arguments go to cmake's
# configure step, e.g. scripts/build.sh -DTorch_DIR=/path/to/torch/share/cmake/Torch.
# ALIGN_JOBS sets the parallelism (default: number of cores).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${ALIGN_BUILD_DIR:-build}
JOBS=${ALIGN_JOBS:-$(nproc)}
if [[ ! -f "$BUILD_DIR/CMakeCache.txt" || $# -gt 0 ]]; then
  cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
fi
cmake --build "$BUILD_DIR" -j "$JOBS" 2>&1 | grep -vE '^\[ *[0-9]+%\] (Building|Linking|Built target|Generating)|Automatic MOC|^-- ' || true
# grep swallows cmake's exit status: check it explicitly.
cmake --build "$BUILD_DIR" -j "$JOBS" >/dev/null
