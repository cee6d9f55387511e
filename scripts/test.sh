#!/usr/bin/env bash
# Installs what is missing, builds, and runs the whole test suite with ctest.
# Usage: scripts/test.sh [ctest args...], e.g. scripts/test.sh -L unit  or  -R Tokenizer
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh --with-extras
./scripts/build.sh
export ALIGN_DATA_DIR=${ALIGN_DATA_DIR:-$(cd .. && pwd)/shared/data}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
cd "${ALIGN_BUILD_DIR:-build}"
ctest --output-on-failure -j "$(nproc)" "$@"
