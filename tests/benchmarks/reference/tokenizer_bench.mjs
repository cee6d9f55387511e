// Reference encode throughput for tokenizer_bench: Hugging Face's Rust tokenizers (npm
// `tokenizers`, N-API) and the pure-JS port (`@huggingface/tokenizers`), single-threaded, on the
// same texts. Usage: node tokenizer_bench.mjs TOKENIZER_DIR TEXTS_JSON ROUNDS
// Prints one JSON line per implementation: {"name", "seconds", "bytes", "tokens"} (best round).
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const [dir, textsPath, roundsArg] = process.argv.slice(2);
const rounds = Number(roundsArg || 3);
const texts = JSON.parse(fs.readFileSync(textsPath, 'utf8'));
const bytes = texts.reduce((n, t) => n + Buffer.byteLength(t, 'utf8'), 0);

async function measure(name, encode) {
  let best = Infinity, tokens = 0;
  for (let r = 0; r < rounds + 1; ++r) {  // round 0 warms caches and the JIT
    const t0 = process.hrtime.bigint();
    let n = 0;
    for (const t of texts) n += (await encode(t)).length;
    const s = Number(process.hrtime.bigint() - t0) / 1e9;
    if (r > 0 && s < best) best = s;
    tokens = n;
  }
  console.log(JSON.stringify({ name, seconds: best, bytes, tokens }));
}

{
  const { Tokenizer } = require('tokenizers');
  const tok = Tokenizer.fromFile(path.join(dir, 'tokenizer.json'));
  await measure('hf-tokenizers-rust (npm tokenizers 0.23.2)', async (t) =>
    (await tok.encode(t, null, { addSpecialTokens: false })).getIds());
}
{
  const { Tokenizer } = await import('@huggingface/tokenizers');
  const json = JSON.parse(fs.readFileSync(path.join(dir, 'tokenizer.json'), 'utf8'));
  const config = JSON.parse(fs.readFileSync(path.join(dir, 'tokenizer_config.json'), 'utf8'));
  const tok = new Tokenizer(json, config);
  await measure('hf-tokenizers-js (npm @huggingface/tokenizers 0.2.0)', async (t) =>
    tok.encode(t, { add_special_tokens: false }).ids);
}
