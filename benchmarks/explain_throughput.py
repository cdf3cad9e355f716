"""Explanation generation throughput on CPU: whyrec's batched decoding vs batch size 1.

    python benchmarks/explain_throughput.py [--n 32] [--batch_size 16] [--max_new_tokens 96] [--threads 1]
        [--systems hf1,hfB,dropB,bf16B,bf16_1]

XRec generates one explanation at a time (HF `generate`, batch size 1, METHODS §3.4). whyrec's
`Explainer.explain` sorts the prompts by length and decodes `batch_size` of them at once
(left-padded, KV cache, the q/k/v injection hooks on the prefill). All systems run through the
same XRec module on the packaged SmolLM2-135M-Instruct (frozen, greedy, repetition penalty 1.1),
on prompts built from XRec's Amazon-books test records (`tst.pkl`: title, user and item
summaries); adapters are untrained (the bf16 copy loads the same adapter weights) and the
collaborative vectors are seeded random 64-d vectors: neither changes the cost of decoding.
Systems (`--systems`):
  hf1    HF generate, batch 1, fp32 (XRec's way; the baseline of every ratio)
  hfB    HF generate, batch B, fp32 (whyrec before `drop_finished`: rows decode to the longest)
  dropB  whyrec's loop, batch B, fp32: finished rows leave the batch and the KV cache
  bf16B  as dropB with the LLM's weights in bfloat16 (`--model.dtype bfloat16`; AMX matmuls)
  bf16_1 HF generate, batch 1, bf16 (the same-dtype baseline for bf16B)
  bf16Bfix  as bf16B, one call per batch of B: no refill across batches (the loop before
         continuous batching); with --chunk > batch_size, bf16B refills freed slots inside the chunk
  bf16Bpfx, dropBpfx  as bf16B, dropB with the shared prompt prefix (chat header, system prompt, "user record: ")
         prefilled once per call and its KV cache reused by every row (XRec's default since H1;
         bf16B and the other whyrec systems here run with it off, as before)
  bf16Bkv  as bf16Bpfx with the KV cache written in place (`whyrec.llm.kv_cache.SlotCache`; every
         other system but bf16Bgqa runs on HF's `DynamicCache`, which copies the cache every step)
  bf16Bgqa  as bf16Bkv with decode attention on torch's grouped-query SDPA (`whyrec.llm.gqa_attention`;
         the others on HF's `sdpa`): whyrec's default since 8d
  fp32Bgqa  as bf16Bgqa with fp32 weights: the default decoder on a CPU without native bf16 (AVX2 only),
         where `model.dtype auto` picks fp32
  bf16Bplain  as bf16B with `F.linear` on plain bf16 weights (oneDNN reorders them on every call),
         the decoder before its linears ran on prepacked weights (`whyrec.llm.packed_linear`)
The pairs are processed in chunks of `batch_size`; each chunk runs every system, the order
reversed on alternate chunks, so machine load hits all alike. Tokens counted are the useful
ones: each row up to and including its first EOS.

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
from whyrec.llm.gqa_attention import gqa_switch
from whyrec.llm.kv_cache import slot_caching
from whyrec.llm.packed_linear import prepacking
from whyrec.methods.xrec.artifact import Explainer, build_module

REPO = Path(__file__).resolve().parents[1]


def build_explainer(shared: Path, n: int, seed: int, dtype: str = "float32") -> tuple[Explainer, list[str], list[str]]:
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
    torch.manual_seed(seed)  # the same adapter weights for every dtype
    module = build_module("xrec", ModelConfig(device="cpu", dtype=dtype), XRecConfig(item_noun="book"), 64)
    module.eval()
    return Explainer(module, encoder, item_frame.drop_duplicates(S.ITEM), user_frame.drop_duplicates(S.USER), {}), users, items


class TokenCounter:
    """Wraps `module.generate_ids` to count useful new tokens (each row up to its first EOS)."""

    def __init__(self, module):
        self.tokens, self.inner = 0, module.generate_ids
        module.generate_ids = self

    def __call__(self, *args, **kwargs):
        out = self.inner(*args, **kwargs)
        self.tokens += sum(len(r) for r in out)
        return out


def run_llama_cpp(prompts: list[str], max_new_tokens: int, threads: int) -> dict | None:
    try:
        from llama_cpp import Llama
    except ImportError:
        return None
    from importlib.metadata import distribution

    import llama_cpp.llama as llama_module

    from whyrec.llm.load import SMOLLM2_DIST, SMOLLM2_GGUF

    # llama-cpp-python 0.3.36 segfaults in its first decode on this AMX CPU once the Q4_1 weights are
    # repacked into the AMX buffer; the plain CPU buffer (no "extra buffer types") works.
    defaults = llama_module.llama_cpp.llama_model_default_params

    def no_repack():
        params = defaults()
        params.use_extra_bufts = False
        return params

    llama_module.llama_cpp.llama_model_default_params = no_repack
    try:
        llm = Llama(model_path=str(distribution(SMOLLM2_DIST).locate_file(SMOLLM2_GGUF)), n_ctx=1024,
                    n_threads=threads, verbose=False)
    finally:
        llama_module.llama_cpp.llama_model_default_params = defaults
    tokens, tic = 0, time.perf_counter()
    for p in prompts:
        out = llm(p, max_tokens=max_new_tokens, temperature=0.0, repeat_penalty=1.1)
        tokens += out["usage"]["completion_tokens"]
    return {"seconds": time.perf_counter() - tic, "tokens": tokens, "n": len(prompts)}


SYSTEMS = {  # key: (label, weights, batched, drop_finished)
    "hf1": ("HF generate, batch 1, fp32 (XRec's way)", "float32", False, False),
    "hfB": ("HF generate, batch {B}, fp32 (rows decode to the longest)", "float32", True, False),
    "dropB": ("whyrec batch {B}, fp32, finished rows dropped", "float32", True, True),
    "bf16B": ("whyrec batch {B}, bf16 weights, finished rows dropped", "bfloat16", True, True),
    "bf16Bfix": ("whyrec batch {B}, bf16 weights, rows dropped, no refill (one call per batch)", "bfloat16", True, True),
    "bf16_1": ("HF generate, batch 1, bf16", "bfloat16", False, False),
    "bf16Bpfx": ("whyrec batch {B}, bf16 weights, rows dropped, shared prompt prefix prefilled once", "bfloat16",
                 True, True),
    "dropBpfx": ("whyrec batch {B}, fp32, rows dropped, shared prompt prefix prefilled once", "float32", True, True),
    "bf16Bplain": ("whyrec batch {B}, bf16 weights, rows dropped, linears not prepacked", "bfloat16", True, True),
    "bf16Bkv": ("whyrec batch {B}, bf16 weights, rows dropped, prefix prefilled once, KV cache written in place",
                "bfloat16", True, True),
    "bf16Bgqa": ("whyrec batch {B}, bf16, rows dropped, prefix once, KV in place, grouped-query SDPA (default)",
                 "bfloat16", True, True),
    "fp32Bgqa": ("whyrec batch {B}, fp32, rows dropped, prefix once, KV in place, grouped-query SDPA (default "
                 "without native bf16)", "float32", True, True),
}
PREFIX_REUSE = {"bf16Bpfx", "dropBpfx", "bf16Bkv", "bf16Bgqa", "fp32Bgqa"}  # the others measure the decoder as it was before prefix reuse
PLAIN_LINEARS = {"bf16Bplain"}  # the others' bf16 linears run on prepacked weights
SLOT_CACHE = {"bf16Bkv", "bf16Bgqa", "fp32Bgqa"}  # the others concatenate HF's DynamicCache every step, as before 8d
GQA_SDPA = {"bf16Bgqa", "fp32Bgqa"}  # the others decode on HF's sdpa attention (pack_gqa), as before 8d


def switches(key: str):
    """The library switches a system runs under (prepacked linears, in-place KV cache, GQA SDPA)."""
    from contextlib import ExitStack

    stack = ExitStack()
    stack.enter_context(prepacking(key not in PLAIN_LINEARS))
    stack.enter_context(slot_caching(key in SLOT_CACHE))
    stack.enter_context(gqa_switch(key in GQA_SDPA))
    return stack


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "data")
    p.add_argument("--n", type=int, default=32, help="(user, item) pairs, in chunks of batch_size")
    p.add_argument("--batch_size", type=int, default=16)
    p.add_argument("--max_new_tokens", type=int, default=96, help="XRec: 128; its explanations are <= 50 words")
    p.add_argument("--threads", type=int, default=1, help="torch (and llama.cpp) CPU threads (1: robust on a busy machine)")
    p.add_argument("--systems", default="hf1,hfB,dropB,bf16B", help=f"comma list of {', '.join(SYSTEMS)}")
    p.add_argument("--chunk", type=int, default=None,
                   help="pairs per timed chunk (default batch_size); larger chunks let whyrec's continuous "
                        "decoder refill finished rows' slots inside the chunk (bf16Bfix: same, without refill)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--baseline", default="hf1", help="the system every speed-up is relative to (run even if not listed); "
                                                       "e.g. bf16Bpfx to compare two whyrec decoders without the slow hf1")
    args = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(args.threads)
    print("load average at the start {:.2f} / {:.2f} / {:.2f}".format(*os.getloadavg()), flush=True)
    keys = args.systems.split(",")
    if args.baseline not in keys:
        keys.insert(0, args.baseline)  # the baseline of every ratio

    explainers, counters = {}, {}
    for dtype in dict.fromkeys(SYSTEMS[k][1] for k in keys):
        explainers[dtype], users, items = build_explainer(args.shared, args.n, args.seed, dtype)
        counters[dtype] = TokenCounter(explainers[dtype].module)
    tok = explainers["float32" if "float32" in explainers else dtype].module.tokenizer
    gens = {k: GenerationConfig(max_new_tokens=args.max_new_tokens, batch_size=args.batch_size if SYSTEMS[k][2] else 1,
                                drop_finished=SYSTEMS[k][3]) for k in keys}
    totals = {k: {"seconds": 0.0, "tokens": 0, "n": 0} for k in keys}
    texts: dict[str, list[str]] = {k: [] for k in keys}
    for k in keys:  # warm-up
        explainers[SYSTEMS[k][1]].module.reuse_prefix = k in PREFIX_REUSE
        with switches(k):
            explainers[SYSTEMS[k][1]].explain(users[:1], items[:1], gens[k], progress=False)
    size = args.chunk or args.batch_size
    for c, s in enumerate(range(0, args.n, size)):
        chunk = slice(s, s + size)
        for k in (keys if c % 2 == 0 else keys[::-1]):
            dtype = SYSTEMS[k][1]
            counters[dtype].tokens = 0
            explainers[dtype].module.reuse_prefix = k in PREFIX_REUSE
            # bf16Bfix: one call per batch of B, so no slot is refilled across batches (the old loop)
            step = args.batch_size if k.endswith("fix") else size
            tic = time.perf_counter()
            with switches(k):
                for a in range(chunk.start, min(chunk.stop, args.n), step):
                    texts[k] += explainers[dtype].explain(users[a:min(a + step, chunk.stop)],
                                                          items[a:min(a + step, chunk.stop)], gens[k], progress=False)
            totals[k]["seconds"] += time.perf_counter() - tic
            totals[k]["tokens"] += counters[dtype].tokens
            totals[k]["n"] += len(users[chunk])
        print(f"chunk {c + 1}: " + ", ".join(f"{k} {v['seconds']:.0f} s / {v['tokens']} tok" for k, v in totals.items()),
              flush=True)
    prompts = next(iter(explainers.values())).prompts(users, items)
    ceiling = run_llama_cpp(prompts, args.max_new_tokens, args.threads)

    base = totals[args.baseline]
    base_tps, base_eps = base["tokens"] / base["seconds"], base["n"] / base["seconds"]
    load = os.getloadavg()
    print(f"\nload average at the end {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} (1/5/15 min; "
          f"{os.cpu_count()} CPUs): ratios come from interleaved chunks, absolute rates follow the load")
    print(f"\nSmolLM2-135M-Instruct, {args.n} XRec-amazon prompts "
          f"(mean {sum(len(tok(p).input_ids) for p in prompts) / len(prompts):.0f} tokens), greedy, "
          f"max_new_tokens {args.max_new_tokens}, torch threads {args.threads}\n")
    print("| system | explanations/s | tokens/s | speed-up (explanations/s) | speed-up (tokens/s) |")
    print("|---|---|---|---|---|")
    rows = [(SYSTEMS[k][0].format(B=args.batch_size), totals[k]) for k in keys]
    if ceiling:
        rows.append(("llama-cpp-python, batch 1, Q4_1 GGUF (no injection)", ceiling))
    for label, t in rows:
        eps, tps = t["n"] / t["seconds"], t["tokens"] / t["seconds"]
        print(f"| {label} | {eps:.3f} | {tps:.1f} | {eps / base_eps:.2f}× | {tps / base_tps:.2f}× |")
    if not ceiling:
        print("| llama-cpp-python | not installed (optional; compiles from source) | – | – | – |")
    print()
    for a, b in [("hfB", "hf1"), ("dropB", "hfB"), ("bf16B", "dropB"), ("bf16B", "bf16_1"), ("bf16B", "bf16Bfix"),
                 ("bf16Bpfx", "bf16B"), ("dropBpfx", "dropB"),
                 ("bf16B", "bf16Bplain"), ("bf16Bkv", "bf16Bpfx"), ("bf16Bgqa", "bf16Bkv")]:
        if a in texts and b in texts:
            same = sum(x == y for x, y in zip(texts[a], texts[b], strict=True))
            print(f"identical greedy outputs {a} vs {b}: {same}/{args.n}")
    print("(left padding, batch shape and dtype change float rounding; greedy decoding amplifies it)")
    for k in keys:
        print(f"example {k}: {texts[k][0][:160]!r}")


if __name__ == "__main__":
    main()
