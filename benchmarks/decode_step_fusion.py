"""Does fusing a decode step's element-wise work pay? One KV-cached decode step of SmolLM2-135M.

    python benchmarks/decode_step_fusion.py [--batch 64] [--steps 12] [--threads 2]
        [--variants base,rms_fused,rms_compiled,mlp_compiled,rms_mlp_compiled]

A profile of a batch-64 decode (docs/benchmarks.md 8i) counted ~30% of its self time in
element-wise ops and copies (RMSNorm's fp32 round trips, SwiGLU, residuals). This times the
decoder's own step (`whyrec.llm.continuous.hf_step`: prepacked bf16 linears, the in-place
`SlotCache`, whyrec's attention switch) on `batch` rows of random 140-180-token prompts prefilled
once, with the element-wise parts replaced while the variant runs:
  base              the decoder as it is
  rms_fused         every RMSNorm's forward is `F.rms_norm` (one kernel instead of ~8)
  rms_compiled      every RMSNorm compiled in place (`torch.compile(dynamic=True)`)
  mlp_compiled      each MLP's `silu(gate) * up` is one compiled kernel (the linears stay prepacked)
  rms_mlp_compiled  both compiled
Each variant decodes `steps` tokens from the same prefilled cache (a fresh copy each time; the
first two steps untimed), twice, the order reversed the second time; the table gives the mean
step time, its ratio to `base` and the share of greedy tokens equal to `base`'s (and the time of
the prefill itself, default decoder, after one warm-up). `--profile`
then runs `base` under torch.profiler (decode steps only, no prefill) and prints its top operators.
"""

from __future__ import annotations

import argparse
import copy
import os
import time
from functools import partial

import torch
from torch.nn import functional as F

VARIANTS = ("base", "rms_fused", "rms_compiled", "mlp_compiled", "rms_mlp_compiled")


def _fused_rms_norm(norm, x: torch.Tensor) -> torch.Tensor:
    return F.rms_norm(x, (x.shape[-1],), norm.weight, norm.variance_epsilon)


def _swiglu(mlp, silu_mul, x: torch.Tensor) -> torch.Tensor:
    return mlp.down_proj(silu_mul(mlp.gate_proj(x), mlp.up_proj(x)))


def greedy(logits: torch.Tensor) -> torch.Tensor:
    """The decoder's greedy choice without processors (`whyrec.llm.token_choice`: max over an fp32
    copy; a bf16 argmax over 64 x 49k logits alone costs ~5 ms)."""
    return logits.float().max(-1).indices


class Swaps:
    """Per-variant switches on one model: each `on` has an `off` that restores the module."""

    def __init__(self, model):
        self.norms = [m for m in model.modules() if type(m).__name__.endswith("RMSNorm")]
        self.mlps = [layer.mlp for layer in model.model.layers]
        self.silu_mul = torch.compile(lambda a, b: F.silu(a) * b, dynamic=True)

    def on(self, variant: str) -> None:
        if variant == "rms_fused":
            for m in self.norms:
                m.forward = partial(_fused_rms_norm, m)
        if variant in ("rms_compiled", "rms_mlp_compiled"):
            for m in self.norms:
                m.compile(dynamic=True)
        if variant in ("mlp_compiled", "rms_mlp_compiled"):
            for m in self.mlps:
                m.forward = partial(_swiglu, m, self.silu_mul)

    def off(self) -> None:
        for m in self.norms + self.mlps:
            m.__dict__.pop("forward", None)
            m._compiled_call_impl = None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=12, help="decode steps per timing (the first two untimed)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--profile", action="store_true", help="profile `base`'s decode steps with torch.profiler")
    args = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(args.threads)
    from whyrec.llm.continuous import hf_step, prefill_rows
    from whyrec.llm.kv_cache import SlotCache
    from whyrec.llm.load import load_packaged_smollm2

    print("load average at the start {:.2f} / {:.2f} / {:.2f}".format(*os.getloadavg()), flush=True)
    variants = args.variants.split(",")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown or "base" not in variants:
        raise SystemExit(f"--variants: choose from {', '.join(VARIANTS)}, with base (got {unknown or variants})")
    model, _ = load_packaged_smollm2(torch.bfloat16)
    model.eval()
    g = torch.Generator().manual_seed(args.seed)
    lengths = torch.randint(140, 180, (args.batch,), generator=g).tolist()
    rows = [torch.randint(100, 40000, (n,), generator=g).tolist() for n in lengths]
    prefill = prefill_rows(model, lambda picked: [rows[i] for i in picked])
    with torch.inference_mode():
        prefill(list(range(args.batch)))  # warm-up
        tic = time.perf_counter()
        logits, cache0, mask0, pos0 = prefill(list(range(args.batch)))
        prefill_seconds = time.perf_counter() - tic
    step, swaps = hf_step(model), Swaps(model)

    def decode(variant: str, n: int, profiler=None) -> tuple[float, torch.Tensor]:
        cache = SlotCache.adopt(copy.deepcopy(cache0), args.batch)
        mask, pos, tokens, out = mask0.clone(), pos0.clone(), greedy(logits), []
        swaps.on(variant)
        try:
            with torch.inference_mode():
                for i in range(n):
                    if i == 2:
                        tic = time.perf_counter()
                        if profiler is not None:
                            profiler.start()
                    mask = torch.cat([mask, mask.new_ones(args.batch, 1)], 1)
                    tokens = greedy(step(tokens, mask, pos, cache))
                    pos = pos + 1
                    out.append(tokens)
                if profiler is not None:
                    profiler.stop()
                return (time.perf_counter() - tic) / (n - 2), torch.stack(out)
        finally:
            swaps.off()

    for v in variants:  # compile and warm up outside the timings
        decode(v, 4)
    times: dict[str, list[float]] = {v: [] for v in variants}
    tokens: dict[str, torch.Tensor] = {}
    for order in (variants, variants[::-1]):
        for v in order:
            seconds, tokens[v] = decode(v, args.steps)
            times[v].append(seconds)
    base = sum(times["base"]) / len(times["base"])
    print(f"\nbatch {args.batch}, ~{sum(lengths) // len(lengths)} prompt tokens, {args.steps - 2} timed steps x 2, "
          f"{args.threads} threads; load average at the end {os.getloadavg()[0]:.2f}\n")
    print(f"prefill of the {args.batch} prompts ({sum(lengths)} tokens, groups of <= 2,048): {prefill_seconds:.2f} s\n")
    print("| variant | step ms (run 1 / run 2) | vs base | greedy tokens equal to base |")
    print("|---|---|---|---|")
    for v in variants:
        mean = sum(times[v]) / len(times[v])
        same = (tokens[v] == tokens["base"]).float().mean().item()
        print(f"| {v} | {mean * 1e3:.1f} ({' / '.join(f'{t * 1e3:.1f}' for t in times[v])}) | {base / mean:.3f}x | {same:.3f} |")
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        profiler = profile(activities=[ProfilerActivity.CPU])
        decode("base", args.steps, profiler)
        print(f"\nbase, {args.steps - 2} decode steps under torch.profiler (self CPU time):\n")
        print(profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))


if __name__ == "__main__":
    main()
