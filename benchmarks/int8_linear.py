"""Would int8 weights halve a decode step's weight reads? One linear of SmolLM2-135M, three kernels.

    python benchmarks/int8_linear.py [--rows 64] [--threads 1] [--reps 3] [--fp32]

A batch-64 decode step is bound by reading the bf16 weights (docs/benchmarks.md 8i), so weight-only
int8 (half the bytes) looks like a lever. This times, on each of SmolLM2-135M's linear shapes
(random weights; the kernels' speed does not depend on the values), `rows` bf16 activation rows through
  bf16      `torch.nn.functional.linear` with bf16 weights
  packed    the decoder's own oneDNN-prepacked bf16 linear (`whyrec.llm.packed_linear`'s kernel)
  int8      `torch.ops.aten._weight_int8pack_mm`: int8 weights with per-channel bf16 scales
interleaved in one process (each repetition times the three in turn), and prints microseconds per
call and int8's ratio to the faster bf16 kernel. The load average is printed beside the table.

`--fp32` asks the question for a CPU without native bf16 (AVX2 only), where `model.dtype auto`
decodes in fp32: fp32 rows through
  fp32      `torch.nn.functional.linear` with fp32 weights
  int8dyn   dynamic int8 (`torch.ops.quantized.linear_dynamic`, FBGEMM/x86 engine): int8 weights
            with per-channel scales, each call quantising its activation rows on the fly
and prints fp32's time over int8dyn's (above 1: int8 is faster) and int8dyn's mean relative error.
"""

from __future__ import annotations

import argparse
import os
import time

SHAPES = {"gate/up": (1536, 576), "down": (576, 1536), "q/o": (576, 576), "k/v": (192, 576), "LM head": (49152, 576)}


def _time(fn, calls: int) -> float:
    fn()  # warm-up: first-call allocation and oneDNN primitive creation
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls * 1e6


def kernels(out_dim: int, in_dim: int, rows: int) -> dict:
    """The three calls on one shape, as zero-argument functions."""
    import torch

    x = torch.randn(rows, in_dim, dtype=torch.bfloat16)
    weight = torch.randn(out_dim, in_dim, dtype=torch.bfloat16) / in_dim ** 0.5
    scales = weight.float().abs().amax(dim=1) / 127
    w8 = (weight.float() / scales[:, None]).round().clamp(-127, 127).to(torch.int8)
    scales = scales.to(torch.bfloat16)
    out = {"bf16": lambda: torch.nn.functional.linear(x, weight),
           "int8": lambda: torch.ops.aten._weight_int8pack_mm(x, w8, scales)}
    if packing_runs_here():  # oneDNN's bf16 reorder raises on an AVX2-only CPU
        packed = torch.ops.mkldnn._reorder_linear_weight(weight)
        out["packed"] = lambda: torch.ops.mkldnn._linear_pointwise(x, packed, None, "none", [], "")
    return out


def packing_runs_here() -> bool:
    from whyrec.llm.packed_linear import _supported

    return _supported()


def fp32_kernels(out_dim: int, in_dim: int, rows: int) -> dict:
    """fp32 `F.linear` and a dynamic int8 linear on one shape, as zero-argument functions."""
    import torch

    x = torch.randn(rows, in_dim)
    weight = torch.randn(out_dim, in_dim) / in_dim ** 0.5
    scales = (weight.abs().amax(dim=1) / 127).double()
    qweight = torch.quantize_per_channel(weight, scales, torch.zeros(out_dim, dtype=torch.long), 0, torch.qint8)
    packed = torch.ops.quantized.linear_prepack(qweight, None)
    # reduce_range: 7-bit activations, as torch's dynamic Linear asks of FBGEMM (no int16 overflow)
    return {"fp32": lambda: torch.nn.functional.linear(x, weight),
            "int8dyn": lambda: torch.ops.quantized.linear_dynamic(x, packed, True)}


def main_fp32(a) -> list[dict]:
    print("| weight (out x in) | fp32 linear, us | dynamic int8, us | fp32 / int8 | int8 relative error |\n"
          "|---|---|---|---|---|")
    rows = []
    for name, (out_dim, in_dim) in SHAPES.items():
        calls = max(3, int(1e8 / (out_dim * in_dim * a.rows)))
        fns, times = fp32_kernels(out_dim, in_dim, a.rows), {"fp32": [], "int8dyn": []}
        for _ in range(a.reps):
            for kernel, fn in fns.items():
                times[kernel].append(_time(fn, calls))
        exact, approx = fns["fp32"](), fns["int8dyn"]()
        error = float((approx - exact).abs().mean() / exact.abs().mean())
        ratios = [f / i for f, i in zip(times["fp32"], times["int8dyn"])]
        rows.append({"weight": name, "shape": (out_dim, in_dim), **times, "fp32_over_int8": ratios, "error": error})
        cells = " | ".join(" / ".join(f"{t:,.0f}" for t in times[k]) for k in times)
        print(f"| {name} {out_dim} x {in_dim} | {cells} | {min(ratios):.2f}-{max(ratios):.2f}x | {error:.3f} |",
              flush=True)
    print(f"load average {os.getloadavg()[0]:.2f} at the end")
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--fp32", action="store_true", help="fp32 against dynamic int8 (a CPU without native bf16)")
    a = ap.parse_args(argv)
    import torch

    torch.set_num_threads(a.threads)
    print(f"load average {os.getloadavg()[0]:.2f} at the start; {a.rows} rows, {a.threads} thread(s), torch {torch.__version__}")
    if a.fp32:
        return main_fp32(a)
    print("| weight (out x in) | bf16 linear, us | packed bf16, us | int8, us | int8 / faster bf16 |\n|---|---|---|---|---|")
    rows = []
    for name, (out_dim, in_dim) in SHAPES.items():
        calls = max(5, int(2e8 / (out_dim * in_dim * a.rows)))  # ~the same time per shape
        fns, times = kernels(out_dim, in_dim, a.rows), {k: [] for k in ("bf16", "packed", "int8")}
        for _ in range(a.reps):
            for kernel, fn in fns.items():
                times[kernel].append(_time(fn, calls))
        if not times["packed"]:  # no packed kernel on this CPU: a dash in its column
            times["packed"] = [float("nan")] * a.reps
        best_bf16 = [min(b, p) if p == p else b for b, p in zip(times["bf16"], times["packed"])]
        ratios = [i / b for i, b in zip(times["int8"], best_bf16)]
        rows.append({"weight": name, "shape": (out_dim, in_dim), **times, "int8_over_bf16": ratios})
        cells = " | ".join(" / ".join("–" if t != t else f"{t:,.0f}" for t in times[k]) for k in times)
        print(f"| {name} {out_dim} x {in_dim} | {cells} | {min(ratios):.1f}-{max(ratios):.1f}x |", flush=True)
    print(f"load average {os.getloadavg()[0]:.2f} at the end")
    return rows


if __name__ == "__main__":
    main()
