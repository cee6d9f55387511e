#!/usr/bin/env bash
# Installs the Node reference tokenizers for tokenizer_bench into DIR (default build/node-bench):
# npm `tokenizers` (Hugging Face's Rust tokenizers through N-API; the implementation the goldens
# come from) and `@huggingface/tokenizers` (the pure-JavaScript port). Never commit node_modules.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
dir="${1:-build/node-bench}"
mkdir -p "$dir"
cp "$here/tokenizer_package.json" "$dir/package.json"
cp "$here/tokenizer_bench.mjs" "$dir/tokenizer_bench.mjs"
(cd "$dir" && npm install --no-audit --no-fund --silent >/dev/null)
echo "$dir"
