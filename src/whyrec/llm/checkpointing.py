"""Activation (gradient) checkpointing for LLM modules that hold per-forward state in contexts.

XRec's q/k/v injector (`QKVInjector.active`) and GaVaMoE's routers (`route_by`) carry the
batch's vectors / cluster ids only inside a `with` block. Non-reentrant checkpointing
recomputes each decoder layer during the backward pass, after that block has closed, which
would recompute the layers without the injection (silently wrong gradients) or without cluster
ids (an error). `enable_gradient_checkpointing` switches checkpointing on for the HF models
inside a module with a `context_fn` that snapshots that state when a layer runs forward and
restores it while the layer is recomputed.
"""

from __future__ import annotations

from contextlib import contextmanager, nullcontext

from torch import nn


def _state_holders(module: nn.Module) -> tuple[list, list]:
    from whyrec.adapters.cluster_experts import ClusterMoE
    from whyrec.adapters.qkv_injection import QKVInjector

    injectors = {id(v): v for m in module.modules() for v in vars(m).values() if isinstance(v, QKVInjector)}
    moes = [m for m in module.modules() if isinstance(m, ClusterMoE)]
    return list(injectors.values()), moes


@contextmanager
def _restored(injectors: list, moes: list, snapshot: tuple):
    saved = ([i._state for i in injectors], [m.cluster_ids for m in moes])
    for inj, state in zip(injectors, snapshot[0]):
        inj._state = state
    for moe, ids in zip(moes, snapshot[1]):
        moe.cluster_ids = ids
    try:
        yield
    finally:
        for inj, state in zip(injectors, saved[0]):
            inj._state = state
        for moe, ids in zip(moes, saved[1]):
            moe.cluster_ids = ids


def enable_gradient_checkpointing(module: nn.Module) -> int:
    """Checkpoint every decoder layer of the outermost HF models in `module`; returns how many."""
    from transformers import PreTrainedModel

    injectors, moes = _state_holders(module)

    def context_fn():
        snapshot = ([i._state for i in injectors], [m.cluster_ids for m in moes])
        return nullcontext(), _restored(injectors, moes, snapshot)

    outer: list[str] = []
    for name, sub in module.named_modules():
        if isinstance(sub, PreTrainedModel) and not any(name.startswith(o + ".") or o == "" for o in outer):
            sub.gradient_checkpointing_enable({"use_reentrant": False, "context_fn": context_fn})
            outer.append(name)
    return len(outer)
