"""Activation (gradient) checkpointing for LLM modules that hold per-forward state in contexts.

XRec's q/k/v injector (`QKVInjector.active`) and GaVaMoE's routers (`route_by`) carry the
batch's vectors / cluster ids only inside a `with` block. Non-reentrant checkpointing
recomputes each decoder layer during the backward pass, after that block has closed, which
would recompute the layers without the injection (silently wrong gradients) or without cluster
ids (an error). `enable_gradient_checkpointing` switches checkpointing on for the HF models
inside a module with a `context_fn` that snapshots that state when a layer runs forward and
restores it while the layer is recomputed. Holders of such state implement `ForwardState`
(`forward_state()` / `set_forward_state(state)`); llm sits below adapters and imports none.
"""

from __future__ import annotations

from contextlib import contextmanager, nullcontext
from typing import Any, Protocol, runtime_checkable

from torch import nn


@runtime_checkable
class ForwardState(Protocol):
    """An object holding state that a forward pass reads (XRec's `QKVInjector`, GaVaMoE's
    `ClusterMoE`); found by these two methods, so this layer needs to know no adapter."""

    def forward_state(self) -> Any: ...

    def set_forward_state(self, state: Any) -> None: ...


def _state_holders(module: nn.Module) -> list[ForwardState]:
    """Submodules and plain attributes of submodules (an injector is not a module) with forward state."""
    holders: dict[int, ForwardState] = {}
    for m in module.modules():
        for candidate in (m, *vars(m).values()):
            if isinstance(candidate, ForwardState):
                holders.setdefault(id(candidate), candidate)
    return list(holders.values())


@contextmanager
def _restored(holders: list[ForwardState], snapshot: list):
    saved = [h.forward_state() for h in holders]
    for holder, state in zip(holders, snapshot):
        holder.set_forward_state(state)
    try:
        yield
    finally:
        for holder, state in zip(holders, saved):
            holder.set_forward_state(state)


def enable_gradient_checkpointing(module: nn.Module) -> int:
    """Checkpoint every decoder layer of the outermost HF models in `module`; returns how many."""
    from transformers import PreTrainedModel

    holders = _state_holders(module)

    def context_fn():
        snapshot = [h.forward_state() for h in holders]
        return nullcontext(), _restored(holders, snapshot)

    outer: list[str] = []
    for name, sub in module.named_modules():
        if isinstance(sub, PreTrainedModel) and not any(name.startswith(o + ".") or o == "" for o in outer):
            sub.gradient_checkpointing_enable({"use_reentrant": False, "context_fn": context_fn})
            outer.append(name)
    return len(outer)
