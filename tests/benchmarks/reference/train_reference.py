#!/usr/bin/python3
"""PyTorch eager reference for tests/benchmarks/train_bench.cc.

One SFT step (forward, masked token NLL, backward, grad-norm clip, AdamW) and one DPO step
(policy forward on chosen+rejected rows, frozen reference forward without grad, sigmoid DPO loss,
backward, clip, AdamW) written as a PyTorch user would, on the same Llama decoder as
model_reference.py. Same model, batch, sequence length and threads as the C++ benchmark.
Run with Debian's python3-torch: /usr/bin/python3 train_reference.py --help
Prints one JSON object on stdout.
"""
import argparse
import copy
import json
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from model_reference import Llama, random_llama, read_safetensors  # noqa: E402


def token_logps(logits, labels):
    lg = logits[:, :-1].float()
    lb = labels[:, 1:]
    mask = lb != -100
    tok = torch.log_softmax(lg, -1).gather(-1, lb.clamp_min(0).unsqueeze(-1)).squeeze(-1)
    return tok * mask, mask


def sft_step(model, opt, ids, labels):
    opt.zero_grad(set_to_none=False)
    tok, mask = token_logps(model.forward(ids, torch.ones_like(ids)), labels)
    loss = -tok.sum() / mask.sum().clamp_min(1)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.params(), 1.0)
    opt.step()
    return loss.item()


def dpo_step(model, ref, opt, ids, labels, beta=0.1):
    opt.zero_grad(set_to_none=False)
    b = ids.shape[0] // 2
    tok, _ = token_logps(model.forward(ids, torch.ones_like(ids)), labels)
    with torch.no_grad():
        rtok, _ = token_logps(ref.forward(ids, torch.ones_like(ids)), labels)
    s, r = tok.sum(-1), rtok.sum(-1)
    logits = (s[:b] - r[:b]) - (s[b:] - r[b:])
    loss = -F.logsigmoid(beta * logits).mean()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.params(), 1.0)
    opt.step()
    return loss.item()


def batch(vocab, rows, seq, seed):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, vocab, (rows, seq), generator=g)
    labels = ids.clone()
    labels[:, : seq // 2] = -100  # the first half is the prompt
    return ids, labels


def bench(model, args, vocab):
    for p in model.params():
        p.requires_grad_(True)
    ref = Llama(model.cfg, {k: v.detach().clone() for k, v in model.w.items()})
    opt = torch.optim.AdamW(model.params(), lr=1e-4, weight_decay=0.0)
    out = {}
    ids, labels = batch(vocab, args.batch, args.seq, 1)
    sft_step(model, opt, ids, labels)  # warm-up
    best = float("inf")
    for _ in range(args.steps):
        t0 = args.clock()
        sft_step(model, opt, ids, labels)
        best = min(best, args.clock() - t0)
    out["sft_tokens_per_s"] = args.batch * args.seq / best
    ids, labels = batch(vocab, 2 * args.batch, args.seq, 2)
    dpo_step(model, ref, opt, ids, labels)
    best = float("inf")
    for _ in range(args.steps):
        t0 = args.clock()
        dpo_step(model, ref, opt, ids, labels)
        best = min(best, args.clock() - t0)
    out["dpo_tokens_per_s"] = 2 * args.batch * args.seq / best
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True, help="stories260K directory")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--medium", default="256,688,4,8,2048", help="hidden,inter,layers,heads,vocab")
    ap.add_argument("--clock", choices=["cpu", "wall"], default="cpu",
                    help="cpu: process CPU time (default); wall: elapsed time")
    args = ap.parse_args()
    args.clock = time.process_time if args.clock == "cpu" else time.perf_counter
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = json.load(open(args.model + "/config.json"))
    small = Llama(cfg, read_safetensors(args.model + "/model.safetensors"))
    result = {"torch": torch.__version__, "threads": args.threads,
              "small": bench(small, args, cfg["vocab_size"])}
    hidden, inter, layers, heads, vocab = [int(x) for x in args.medium.split(",")]
    result["medium"] = bench(random_llama(hidden, inter, layers, heads, vocab, seed=0), args, vocab)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
