#!/usr/bin/env bash
# Installs the Debian packages the build and tests need. Idempotent and quiet when nothing is
# missing; run as root (or with sudo available). Usage: scripts/setup.sh [--with-extras] [--with-bench]
#   --with-extras  also the Prometheus server and curl (the end-to-end tests use them).
#   --with-bench   also python3-torch (the PyTorch eager references of the benchmarks).
set -euo pipefail

PACKAGES=(
  build-essential cmake ccache pkg-config git
  libtorch-dev libopenblas0-pthread libgloo-dev
  libgrpc++-dev protobuf-compiler-grpc protobuf-compiler libprotobuf-dev
  libabsl-dev libsqlite3-dev sqlite3 prometheus-cpp-dev
  libyaml-cpp-dev nlohmann-json3-dev libcli11-dev libpcre2-dev libsentencepiece-dev libutf8proc-dev zlib1g-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  libcsv-dev
  libcurl4-openssl-dev libssl-dev
)
for arg in "$@"; do
  case "$arg" in
    --with-extras) PACKAGES+=(prometheus curl) ;;
    --with-bench) PACKAGES+=(python3-torch python3-numpy) ;;
    *) echo "setup: unknown option $arg (see the header of $0)" >&2; exit 2 ;;
  esac
done

missing=()
for p in "${PACKAGES[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  exit 0
fi

SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
echo "setup: installing ${#missing[@]} packages: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "setup: done" >&2
