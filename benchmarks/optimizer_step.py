"""The optimizer step of whyrec's own training loops: torch's default Adam/AdamW against the fused
kernel `whyrec.utils.adam` picks (issue 19).

    python benchmarks/optimizer_step.py [--threads 2] [--rounds 5]

Two parameter sets with the shapes the loops train in fp32 on SmolLM2-135M (hidden 576, MLP 1536,
30 layers, vocabulary 49,152):
  gavamoe  the experts of configs/cpu/gavamoe.yaml: 4 upcycled experts x 6 layers x 3 MLP matrices
           (63.7M parameters, Adam)
  pepler   the whole LM PEPLER's phase 2 tunes (134.5M parameters, AdamW)
Each round times one step of every (set, implementation) pair, the order reversed on alternate
rounds so machine load hits all alike; the table gives the median of the rounds and the ratio, and
the largest difference between the fused and the default weights after the rounds (same start,
same gradients).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from whyrec.utils import adam

H, MLP, LAYERS, VOCAB = 576, 1536, 30, 49152


def shapes(name: str) -> list[tuple[int, ...]]:
    if name == "gavamoe":
        return [(MLP, H), (MLP, H), (H, MLP)] * (4 * 6)
    attn = [(H, H), (192, H), (192, H), (H, H)]  # q, k, v (3 key/value heads of 64), o
    return [(VOCAB, H)] + (attn + [(MLP, H), (MLP, H), (H, MLP), (H,), (H,)]) * LAYERS + [(H,)]


def make(name: str, fused: bool) -> tuple[torch.optim.Optimizer, list[torch.nn.Parameter]]:
    gen = torch.Generator().manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(s, generator=gen) * 0.02) for s in shapes(name)]
    for p in params:
        p.grad = torch.randn(p.shape, generator=gen) * 1e-3
    decoupled = name == "pepler"
    if fused:
        return adam(params, 1e-4, decoupled=decoupled), params
    cls = torch.optim.AdamW if decoupled else torch.optim.Adam
    return cls(params, lr=1e-4), params


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print("load average at the start {:.2f} / {:.2f} / {:.2f}".format(*os.getloadavg()), flush=True)
    systems = {(n, f): make(n, f) for n in ("gavamoe", "pepler") for f in (False, True)}
    seconds: dict = {k: [] for k in systems}
    order = list(systems)
    for r in range(args.rounds + 1):  # round 0 warms up (state allocation), untimed
        for key in order if r % 2 else order[::-1]:
            tic = time.perf_counter()
            systems[key][0].step()
            if r:
                seconds[key].append(time.perf_counter() - tic)
    print("| parameters | count | default step (ms) | fused step (ms) | speed-up | max weight difference |")
    print("|---|---|---|---|---|---|")
    for name in ("gavamoe", "pepler"):
        slow, fast = (statistics.median(seconds[(name, f)]) * 1e3 for f in (False, True))
        count = sum(q.numel() for q in systems[(name, True)][1])
        diff = max((a - b).abs().max().item() for a, b in zip(systems[(name, False)][1], systems[(name, True)][1]))
        print(f"| {name} | {count / 1e6:.1f}M | {slow:.0f} | {fast:.0f} | {slow / fast:.2f}x | {diff:.1e} |")
    print("load average at the end {:.2f} / {:.2f} / {:.2f}".format(*os.getloadavg()))


if __name__ == "__main__":
    main()
