"""Perturbing a served model's collaborative-filtering (CF) input, for `whyrec.benchmark_ablations`.

A served model that has a CF input offers `cf_ablations` (the kinds below it supports) and
`cf_ablation(kind, seed)`, a context manager under which its explanations are generated with
that input perturbed; leaving the block restores the model exactly (the same tensors, not
copies). The pieces every method shares are here; what "the CF input" is lives with each
method (`methods/<name>/served.py`).

Kinds:
- `shuffle-users`: each user's CF vector is another user's (a seeded derangement of the rows);
- `shuffle-items`: the same for items;
- `random`: user and item vectors drawn from a Gaussian with the real vectors' per-dimension
  mean and standard deviation (seeded);
- `no-cf`: the CF vectors zeroed (each method's docstring says what its CF tokens then carry);
- `no-profiles`: the prompt without its user/item profile text (methods whose prompt has one).
  An item facts slot (`whyrec.data.item_facts`) stays: its facts are catalogue metadata and the
  item's training feature words, the same for every user of the item, so they carry no user's
  collaborative signal; dropping them too would change two inputs at once, and the delta would
  no longer measure the profiles alone. A facts-free method is trained, not ablated
  (`--xrec.item_facts false`).
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from contextlib import contextmanager

from whyrec.utils import WhyrecError

KINDS = ("shuffle-users", "shuffle-items", "random", "no-cf", "no-profiles")
CF_KINDS = KINDS[:4]
"""The kinds that perturb CF vectors (a method without profile text in its prompt offers these)."""
NO_CF_INPUT = "no CF input to ablate"


def check_kinds(kinds: Iterable[str]) -> list[str]:
    """`kinds` as a list; WhyrecError naming an unknown one and the known ones."""
    kinds = list(kinds)
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise WhyrecError(f"unknown ablation {unknown[0]!r}; choose from {', '.join(KINDS)}")
    return kinds


def check_kind(kind: str, supported: Iterable[str], method: str) -> None:
    """WhyrecError unless `kind` is known and among the model's `supported` kinds."""
    check_kinds([kind])
    supported = tuple(supported)
    if kind not in supported:
        offers = ", ".join(supported) if supported else NO_CF_INPUT
        raise WhyrecError(f"{method} cannot ablate {kind!r} (it offers: {offers})")


def derangement(n: int, seed: int) -> list[int]:
    """A seeded permutation of range(n) moving every index (Sattolo's algorithm: one n-cycle)."""
    if n < 2:
        raise WhyrecError(f"shuffling needs at least 2 rows to swap (the model has {n})")
    perm = list(range(n))
    rng = random.Random(seed)
    for i in range(n - 1, 0, -1):
        j = rng.randrange(i)  # j < i: no element stays put
        perm[i], perm[j] = perm[j], perm[i]
    return perm


def perturbed(table, side: str, kind: str, seed: int):
    """`table` [N, d] (one row per user, or per item: `side`) as `kind` leaves it; the same tensor
    when `kind` does not touch that side. Same dtype and device as `table`."""
    import torch

    if kind == f"shuffle-{side}s":
        return table[torch.as_tensor(derangement(len(table), seed), device=table.device)]
    if kind == "random":
        real = table.detach().float()
        mean, std = real.mean(0), real.std(0, correction=0)
        gen = torch.Generator().manual_seed(seed * 2 + (side == "item"))  # users and items differ
        noise = torch.randn(real.shape, generator=gen)
        return (mean.cpu() + std.cpu() * noise).to(table.device, table.dtype)
    if kind == "no-cf":
        return torch.zeros_like(table)
    return table


def perturbed_embedding(embedding, side: str, kind: str, seed: int):
    """An `nn.Embedding`'s weight as `perturbed` leaves it, as a frozen Parameter (the original
    Parameter object itself when `kind` does not touch that side)."""
    import torch

    real = embedding.weight.detach()
    new = perturbed(real, side, kind, seed)
    return embedding.weight if new is real else torch.nn.Parameter(new, requires_grad=False)


@contextmanager
def swapped(obj, **values):
    """Inside the block `obj`'s attributes take `values`; the original objects are put back after,
    also when the block raises (an nn.Module takes a Parameter back as the same Parameter)."""
    saved = {name: getattr(obj, name) for name in values}
    try:
        for name, value in values.items():
            setattr(obj, name, value)
        yield
    finally:
        for name, value in saved.items():
            setattr(obj, name, value)


@contextmanager
def overridden(obj, name: str, function):
    """Inside the block `obj.name` is `function` (shadowing the class's method); after it the
    instance has no such attribute of its own again, so the class's method answers as before."""
    if name in vars(obj):
        raise WhyrecError(f"{type(obj).__name__}.{name} is already overridden (nested ablations?)")
    vars(obj)[name] = function
    try:
        yield
    finally:
        del vars(obj)[name]
