// Reference encode throughput for tokenizer_bench: Hugging Face's Rust tokenizers (npm
// `tokenizers`, N-API) and the pure-JS port (`@huggingface/tokenizers`), single-threaded, on the
// same texts. Usage: node tokenizer_bench.mjs TOKENIZER_DIR TEXTS_JSON ROUNDS
// Prints one JSON line per implementation: {"name", "seconds", "cpu_seconds", "bytes", "tokens"}
// (best round; cpu_seconds is process CPU time, which counts N-API worker threads too).
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const [dir, textsPath, roundsArg] = process.argv.slice(2);
const rounds = Number(roundsArg || 3);
const texts = JSON.parse(fs.readFileSync(textsPath, 'utf8'));
const bytes = texts.reduce((n, t) => n + Buffer.byteLength(t, 'utf8'), 0);

async function measure(name, encode) {
  let best = Infinity, best_cpu = Infinity, tokens = 0;
  for (let r = 0; r < rounds + 1; ++r) {  // round 0 warms caches and the JIT
    const t0 = process.hrtime.bigint();
    const c0 = process.cpuUsage();
    let n = 0;
    for (const t of texts) n += (await encode(t)).length;
    const s = Number(process.hrtime.bigint() - t0) / 1e9;
    const c = process.cpuUsage(c0);
    const cpu = (c.user + c.system) / 1e6;
    if (r > 0 && s < best) best = s;
    if (r > 0 && cpu < best_cpu) best_cpu = cpu;
    tokens = n;
  }
  console.log(JSON.stringify({ name, seconds: best, cpu_seconds: best_cpu, bytes, tokens }));
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
