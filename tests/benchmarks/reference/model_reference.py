#!/usr/bin/python3
"""PyTorch eager reference for tests/benchmarks/model_bench.cc.

The same Llama decoder as worker/engine/model (RMSNorm, RoPE, GQA, SwiGLU, tied embeddings),
written the way a Python user would (torch.nn.functional, inference_mode, a KV cache, left-padded
batches), so the C++ engine is timed against eager PyTorch on the same model, dtype and threads.
Run with Debian's python3-torch: /usr/bin/python3 model_reference.py --help
Prints one JSON object on stdout.
"""
import argparse
import json
import math
import struct
import time

import torch
import torch.nn.functional as F


now = time.process_time


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    base = 8 + n
    dtypes = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        t = torch.frombuffer(bytearray(data[base + b:base + e]), dtype=dtypes[info["dtype"]])
        out[name] = t.reshape(info["shape"]).float()
    return out


class Llama:
    def __init__(self, cfg, w):
        self.cfg = cfg
        self.w = w
        self.h = cfg["num_attention_heads"]
        self.hkv = cfg.get("num_key_value_heads", self.h)
        self.d = cfg.get("head_dim") or cfg["hidden_size"] // self.h
        self.eps = cfg.get("rms_norm_eps", 1e-6)
        self.n_layers = cfg["num_hidden_layers"]
        theta = cfg.get("rope_theta", 10000.0)
        self.inv_freq = 1.0 / (theta ** (torch.arange(0, self.d, 2, dtype=torch.int64).float() / self.d))
        self.head = w.get("lm_head.weight", w["model.embed_tokens.weight"])

    def params(self):
        return list(self.w.values())

    def rms(self, x, weight):
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return weight * xf.to(x.dtype)

    @staticmethod
    def rotate_half(x):
        x1, x2 = x.chunk(2, dim=-1)
        return torch.cat((-x2, x1), dim=-1)

    def forward(self, ids, mask, cache=None, last_n=0):
        B, T = ids.shape
        past = 0 if cache is None or not cache else cache[0][0].shape[2]
        S = past + T
        pos = (mask.cumsum(1) - 1).clamp_min(0)[:, past:]
        qi = torch.arange(past, S).view(T, 1)
        kj = torch.arange(S).view(1, S)
        allowed = (kj <= qi).unsqueeze(0) & (mask.view(B, 1, S) != 0)
        bias = torch.zeros(B, 1, T, S).masked_fill_(~allowed.unsqueeze(1), torch.finfo(torch.float32).min)
        freqs = pos.float().unsqueeze(-1) * self.inv_freq.view(1, 1, -1)
        emb = torch.cat((freqs, freqs), dim=-1)
        cos, sin = emb.cos().unsqueeze(1), emb.sin().unsqueeze(1)
        rep = self.h // self.hkv
        x = F.embedding(ids, self.w["model.embed_tokens.weight"])
        for l in range(self.n_layers):
            p = f"model.layers.{l}."
            w = self.w
            hs = self.rms(x, w[p + "input_layernorm.weight"])
            q = F.linear(hs, w[p + "self_attn.q_proj.weight"]).view(B, T, self.h, self.d).transpose(1, 2)
            k = F.linear(hs, w[p + "self_attn.k_proj.weight"]).view(B, T, self.hkv, self.d).transpose(1, 2)
            v = F.linear(hs, w[p + "self_attn.v_proj.weight"]).view(B, T, self.hkv, self.d).transpose(1, 2)
            q = q * cos + self.rotate_half(q) * sin
            k = k * cos + self.rotate_half(k) * sin
            if cache is not None:
                if len(cache) > l:
                    k = torch.cat((cache[l][0], k), dim=2)
                    v = torch.cat((cache[l][1], v), dim=2)
                    cache[l] = (k, v)
                else:
                    cache.append((k, v))
            kr = k.repeat_interleave(rep, dim=1)
            vr = v.repeat_interleave(rep, dim=1)
            scores = torch.matmul(q, kr.transpose(-1, -2)) / math.sqrt(self.d) + bias
            probs = torch.softmax(scores.float(), dim=-1).to(q.dtype)
            attn = torch.matmul(probs, vr).transpose(1, 2).reshape(B, T, self.h * self.d)
            x = x + F.linear(attn, w[p + "self_attn.o_proj.weight"])
            hs = self.rms(x, w[p + "post_attention_layernorm.weight"])
            x = x + F.linear(F.silu(F.linear(hs, w[p + "mlp.gate_proj.weight"])) *
                             F.linear(hs, w[p + "mlp.up_proj.weight"]), w[p + "mlp.down_proj.weight"])
        if last_n:
            x = x[:, -last_n:]
        x = self.rms(x, self.w["model.norm.weight"])
        return F.linear(x, self.head)


@torch.inference_mode()
def generate(model, prompts, new_tokens):
    B = len(prompts)
    L = max(len(p) for p in prompts)
    ids = torch.zeros(B, L, dtype=torch.long)
    mask = torch.zeros(B, L, dtype=torch.long)
    for b, p in enumerate(prompts):
        ids[b, L - len(p):] = torch.tensor(p)
        mask[b, L - len(p):] = 1
    cache = []
    out = []
    step = ids
    for _ in range(new_tokens):
        logits = model.forward(step, mask, cache, last_n=1)[:, 0].float()
        nxt = logits.argmax(-1)
        out.append(nxt)
        step = nxt.view(B, 1)
        mask = torch.cat((mask, torch.ones(B, 1, dtype=torch.long)), dim=1)
    return torch.stack(out, 1).tolist()


def random_llama(hidden, inter, layers, heads, vocab, seed):
    g = torch.Generator().manual_seed(seed)
    cfg = {"hidden_size": hidden, "intermediate_size": inter, "num_hidden_layers": layers,
           "num_attention_heads": heads, "num_key_value_heads": heads, "vocab_size": vocab,
           "rms_norm_eps": 1e-6}
    w = {"model.embed_tokens.weight": torch.randn(vocab, hidden, generator=g) * 0.02}
    for l in range(layers):
        p = f"model.layers.{l}."
        for n, shape in [("self_attn.q_proj", (hidden, hidden)), ("self_attn.k_proj", (hidden, hidden)),
                         ("self_attn.v_proj", (hidden, hidden)), ("self_attn.o_proj", (hidden, hidden)),
                         ("mlp.gate_proj", (inter, hidden)), ("mlp.up_proj", (inter, hidden)),
                         ("mlp.down_proj", (hidden, inter))]:
            w[p + n + ".weight"] = torch.randn(*shape, generator=g) * 0.02
        w[p + "input_layernorm.weight"] = torch.ones(hidden)
        w[p + "post_attention_layernorm.weight"] = torch.ones(hidden)
    w["model.norm.weight"] = torch.ones(hidden)
    w["lm_head.weight"] = torch.randn(vocab, hidden, generator=g) * 0.02
    return Llama(cfg, w)


def train_step(model, ids):
    mask = torch.ones_like(ids)
    logits = model.forward(ids, mask)
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1).gather(-1, ids[:, 1:].unsqueeze(-1))
    loss = -logp.mean()
    loss.backward()
    return loss.item()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--prompt-ids", default="1,403,407,261,378")
    ap.add_argument("--new-tokens", type=int, default=200)
    ap.add_argument("--gen-batches", default="1,32")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--train", default="512,1376,8,8,8192", help="hidden,inter,layers,heads,vocab")
    ap.add_argument("--train-batch", type=int, default=4)
    ap.add_argument("--train-seq", type=int, default=256)
    ap.add_argument("--train-steps", type=int, default=3)
    ap.add_argument("--skip-train", action="store_true")
    ap.add_argument("--clock", choices=["cpu", "wall"], default="cpu",
                    help="cpu: process CPU seconds (robust on a shared machine); wall: elapsed")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    global now
    now = time.process_time if args.clock == "cpu" else time.perf_counter
    cfg = json.load(open(args.model + "/config.json"))
    model = Llama(cfg, read_safetensors(args.model + "/model.safetensors"))
    prompt = [int(t) for t in args.prompt_ids.split(",")]
    result = {"torch": torch.__version__, "threads": args.threads, "generate": {}}
    for b in [int(x) for x in args.gen_batches.split(",") if x]:
        best = float("inf")
        tokens = None
        for _ in range(args.reps):
            t0 = now()
            tokens = generate(model, [prompt] * b, args.new_tokens)
            best = min(best, now() - t0)
        result["generate"][str(b)] = {"tokens_per_s": b * args.new_tokens / best,
                                      "first_row": tokens[0]}
    if args.skip_train:
        print(json.dumps(result))
        return
    hidden, inter, layers, heads, vocab = [int(x) for x in args.train.split(",")]
    big = random_llama(hidden, inter, layers, heads, vocab, seed=0)
    for p in big.params():
        p.requires_grad_(True)
    result["train_params"] = sum(p.numel() for p in big.params())
    ids = torch.randint(0, vocab, (args.train_batch, args.train_seq), generator=torch.Generator().manual_seed(1))
    train_step(big, ids)  # warm-up
    best = float("inf")
    for _ in range(args.train_steps):
        for p in big.params():
            p.grad = None
        t0 = now()
        train_step(big, ids)
        best = min(best, now() - t0)
    result["train"] = {"tokens_per_s": args.train_batch * args.train_seq / best}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
