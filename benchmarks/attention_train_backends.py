"""Attention forward + backward at an XRec training step's shapes: which SDPA way is fastest on CPU?

    python benchmarks/attention_train_backends.py [--batch 8] [--heads 9] [--length 256] [--threads 2] [--repeats 5]

A profile of the default XRec training step (compiled layers, bf16 frozen weights; docs/benchmarks.md
8k) puts ~42% of its time in `_scaled_dot_product_flash_attention_for_cpu`, forward and backward.
This times one layer's attention (batch x heads x length x 64, a causal mask with 20 columns of
left padding, as a 4-D boolean mask, which is how HF passes it) forward plus backward, in bf16 and
fp32, with torch's CPU flash kernel and with the math backend (explicit matmuls and softmax),
each eager and under `torch.compile`; then the forward alone, flash against compiled FlexAttention
(whose CPU kernel has no backward in torch 2.13). Prints the mean of `--repeats` timed calls after
two untimed.
"""

from __future__ import annotations

import argparse
import os
import time

import torch
from torch.nn import functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

PADDING = 20
WAYS = (("flash", SDPBackend.FLASH_ATTENTION, False), ("math", SDPBackend.MATH, False),
        ("flash, compiled", SDPBackend.FLASH_ATTENTION, True), ("math, compiled", SDPBackend.MATH, True))


def inputs(batch: int, heads: int, length: int, dtype: torch.dtype, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(batch, heads, length, 64, generator=g, dtype=dtype, requires_grad=True) for _ in range(3))
    causal = torch.ones(length, length, dtype=torch.bool).tril()
    mask = causal[None, None].expand(batch, 1, length, length).clone()
    mask[..., PADDING:, :PADDING] = False  # real rows never attend to the left padding
    return q, k, v, mask, torch.randn(batch, heads, length, 64, generator=g, dtype=dtype)


def time_way(backend, compiled: bool, tensors, repeats: int) -> float:
    q, k, v, mask, grad = tensors

    def attend(q, k, v, mask):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)

    fn = torch.compile(attend, dynamic=False) if compiled else attend
    times = []
    with sdpa_kernel(backend):
        for _ in range(repeats + 2):
            tic = time.perf_counter()
            fn(q, k, v, mask).backward(grad)
            times.append(time.perf_counter() - tic)
            q.grad = k.grad = v.grad = None
    return sum(times[2:]) / repeats


def time_forward(flex: bool, tensors, repeats: int) -> float:
    q, k, v, mask = (t.detach() for t in tensors[:4])
    if flex:
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention

        def causal_unpadded(b, h, qi, ki):
            return (qi >= ki) & ((ki >= PADDING) | (qi < PADDING))

        blocks = create_block_mask(causal_unpadded, B=None, H=None, Q_LEN=q.shape[2], KV_LEN=k.shape[2], device="cpu")
        compiled = torch.compile(flex_attention, dynamic=False)

        def fn():
            return compiled(q, k, v, block_mask=blocks)
    else:
        def fn():
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    times = []
    with torch.no_grad():
        for _ in range(repeats + 2):
            tic = time.perf_counter()
            fn()
            times.append(time.perf_counter() - tic)
    return sum(times[2:]) / repeats


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--heads", type=int, default=9)
    p.add_argument("--length", type=int, default=256)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print("load average at the start {:.2f} / {:.2f} / {:.2f}".format(*os.getloadavg()), flush=True)
    flops = 4 * args.batch * args.heads * args.length ** 2 * 64 * 3.5  # forward (x1) + backward (x2.5)
    print(f"\nbatch {args.batch}, {args.heads} heads, length {args.length}, head dim 64, {args.threads} threads\n")
    print("| dtype | way | forward + backward (ms) | GFLOP/s (causal half not discounted) |")
    print("|---|---|---|---|")
    for dtype in (torch.bfloat16, torch.float32):
        tensors = inputs(args.batch, args.heads, args.length, dtype)
        for name, backend, compiled in WAYS:
            seconds = time_way(backend, compiled, tensors, args.repeats)
            print(f"| {str(dtype).removeprefix('torch.')} | {name} | {seconds * 1e3:.1f} | {flops / seconds / 1e9:.0f} |",
                  flush=True)
    print("\n| dtype | forward only: flash (ms) | forward only: FlexAttention, compiled (ms) |")
    print("|---|---|---|")
    for dtype in (torch.bfloat16, torch.float32):
        tensors = inputs(args.batch, args.heads, args.length, dtype)
        flash, flex = (time_forward(f, tensors, args.repeats) for f in (False, True))
        print(f"| {str(dtype).removeprefix('torch.')} | {flash * 1e3:.1f} | {flex * 1e3:.1f} |", flush=True)
    print(f"\nload average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
