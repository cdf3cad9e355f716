"""Explanation generation throughput on CPU: whyrec's batched decoding vs batch size 1.

    python benchmarks/explain_throughput.py [--n 32] [--batch_size 16] [--max_new_tokens 96] [--threads 1]

XRec generates one explanation at a time (HF `generate`, batch size 1, METHODS §3.4). whyrec's
`Explainer.explain` sorts the prompts by length and decodes `batch_size` of them at once
(left-padded, KV cache, the q/k/v injection hooks on the prefill). Both run here through the
same XRec module on the packaged SmolLM2-135M-Instruct (fp32, frozen, greedy, repetition
penalty 1.1), on prompts built from XRec's Amazon-books test records (`tst.pkl`: title, user
and item summaries); adapters are untrained and the collaborative vectors are seeded random
64-d vectors: neither changes the cost of decoding. The pairs are processed in chunks of
`batch_size`; each chunk runs batched and one by one, alternating which goes first, so machine
load hits both alike. Tokens counted are the useful ones: each row up to and including its
first EOS (padding after an early EOS is cost, not output).

If `llama-cpp-python` is importable, the same GGUF model (Q4_1, the packaged file) generates
from the same prompt text (placeholder tokens as plain text, no injection) one at a time: the
practical single-stream ceiling on this CPU. It is optional (it compiles from source).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import torch

from whyrec.config import GenerationConfig, ModelConfig, XRecConfig
from whyrec.data import schema as S
from whyrec.data.xrec import xrec_records
from whyrec.explainer import Explainer, build_module

REPO = Path(__file__).resolve().parents[1]


def build_explainer(shared: Path, n: int, seed: int) -> tuple[Explainer, list[str], list[str]]:
    records = xrec_records(shared / "xrec-amazon").sample(n, random_state=seed).reset_index(drop=True)
    users = [str(u) for u in records["uid"]]
    items = [str(i) for i in records["iid"]]
    gen = torch.Generator().manual_seed(seed)
    encoder = SimpleNamespace(user2idx={u: k for k, u in enumerate(dict.fromkeys(users))},
                              item2idx={i: k for k, i in enumerate(dict.fromkeys(items))})
    encoder.user_emb = torch.randn(len(encoder.user2idx), 64, generator=gen) * 0.1
    encoder.item_emb = torch.randn(len(encoder.item2idx), 64, generator=gen) * 0.1
    item_frame = pd.DataFrame({S.ITEM: items, S.TITLE: records["title"], S.PROFILE: records["item_summary"]})
    user_frame = pd.DataFrame({S.USER: users, S.PROFILE: records["user_summary"]})
    module = build_module("xrec", ModelConfig(device="cpu"), XRecConfig(item_noun="book"), 64)
    module.eval()
    return Explainer(module, encoder, item_frame.drop_duplicates(S.ITEM), user_frame.drop_duplicates(S.USER), {}), users, items


class TokenCounter:
    """Wraps `llm.generate` to count useful new tokens (each row up to its first EOS)."""

    def __init__(self, llm, eos_id: int):
        self.llm, self.eos_id, self.tokens, self.inner = llm, eos_id, 0, llm.generate
        llm.generate = self

    def __call__(self, *args, **kwargs):
        out = self.inner(*args, **kwargs)  # (B, new) with inputs_embeds: only new tokens
        is_eos = out == self.eos_id
        first = torch.where(is_eos.any(1), is_eos.float().argmax(1) + 1, torch.full_like(out[:, 0], out.shape[1]))
        self.tokens += int(first.sum())
        return out


def run_llama_cpp(prompts: list[str], max_new_tokens: int, threads: int) -> dict | None:
    try:
        from llama_cpp import Llama
    except ImportError:
        return None
    from importlib.metadata import distribution

    from whyrec.llm.load import SMOLLM2_DIST, SMOLLM2_GGUF

    llm = Llama(model_path=str(distribution(SMOLLM2_DIST).locate_file(SMOLLM2_GGUF)), n_ctx=1024,
                n_threads=threads, verbose=False)
    tokens, tic = 0, time.perf_counter()
    for p in prompts:
        out = llm(p, max_tokens=max_new_tokens, temperature=0.0, repeat_penalty=1.1)
        tokens += out["usage"]["completion_tokens"]
    return {"seconds": time.perf_counter() - tic, "tokens": tokens, "n": len(prompts)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "data")
    p.add_argument("--n", type=int, default=32, help="(user, item) pairs; two chunks of batch_size alternate the order")
    p.add_argument("--batch_size", type=int, default=16)
    p.add_argument("--max_new_tokens", type=int, default=96, help="XRec: 128; its explanations are <= 50 words")
    p.add_argument("--threads", type=int, default=1, help="torch (and llama.cpp) CPU threads (1: robust on a busy machine)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(args.threads)

    expl, users, items = build_explainer(args.shared, args.n, args.seed)
    tok = expl.module.tokenizer
    counter = TokenCounter(expl.module.llm, tok.eos_token_id)
    systems = {"batched": GenerationConfig(max_new_tokens=args.max_new_tokens, batch_size=args.batch_size),
               "batch 1": GenerationConfig(max_new_tokens=args.max_new_tokens, batch_size=1)}
    totals = {k: {"seconds": 0.0, "tokens": 0, "n": 0} for k in systems}
    texts: dict[str, list[str]] = {k: [] for k in systems}
    expl.explain(users[:1], items[:1], systems["batch 1"], progress=False)  # warm-up
    for c, s in enumerate(range(0, args.n, args.batch_size)):
        chunk = slice(s, s + args.batch_size)
        for name in (("batched", "batch 1") if c % 2 == 0 else ("batch 1", "batched")):
            counter.tokens = 0
            tic = time.perf_counter()
            texts[name] += expl.explain(users[chunk], items[chunk], systems[name], progress=False)
            totals[name]["seconds"] += time.perf_counter() - tic
            totals[name]["tokens"] += counter.tokens
            totals[name]["n"] += len(users[chunk])
        print(f"chunk {c + 1}: " + ", ".join(f"{k} {v['seconds']:.0f} s / {v['tokens']} tok" for k, v in totals.items()),
              flush=True)
    prompts = expl.prompts(users, items)
    ceiling = run_llama_cpp(prompts, args.max_new_tokens, args.threads)

    base = totals["batch 1"]
    print(f"\nSmolLM2-135M-Instruct fp32, {args.n} XRec-amazon prompts "
          f"(mean {sum(len(tok(p).input_ids) for p in prompts) / len(prompts):.0f} tokens), greedy, "
          f"max_new_tokens {args.max_new_tokens}, torch threads {args.threads}\n")
    print("| system | explanations/s | tokens/s | speed-up (tokens/s) |")
    print("|---|---|---|---|")
    rows = [(f"whyrec batched (batch {args.batch_size})", totals["batched"]),
            ("HF generate, batch 1 (XRec's way)", base)]
    if ceiling:
        rows.append(("llama-cpp-python, batch 1, Q4_1 GGUF (no injection)", ceiling))
    for label, t in rows:
        tps = t["tokens"] / t["seconds"]
        print(f"| {label} | {t['n'] / t['seconds']:.3f} | {tps:.1f} | {tps / (base['tokens'] / base['seconds']):.2f}× |")
    if not ceiling:
        print("| llama-cpp-python | not installed (optional; compiles from source) | – | – |")
    same = sum(a == b for a, b in zip(texts["batched"], texts["batch 1"], strict=True))
    print(f"\nidentical greedy outputs batched vs batch 1: {same}/{args.n} "
          "(left padding changes float rounding, so long generations can diverge)")
    print(f"example: {texts['batched'][0][:200]!r}")


if __name__ == "__main__":
    main()
