"""bfloat16 linear layers on CPU with their weights prepacked for oneDNN, for inference.

`F.linear` on a bf16 weight hands oneDNN a plain row-major matrix, which it reorders into its
blocked (AMX/AVX-512) layout on every call: at decoding's few rows per call that reorder reads
and writes every weight once more than the matmul needs. Reordered once and kept, the weights
serve the same kernel directly: on SmolLM2-135M's shapes, 32 rows, one thread, a linear takes
~0.55x the time, with bitwise the same output (the same kernel, fed an already blocked weight).

This is what inductor's `freezing` does for bf16 linears on CPU, without compiling anything. The
packed copies are kept per module and rebuilt when a weight changes (its `_version` moves on an
in-place optimiser update), so a model that trains between decodes never decodes stale weights.
They cost a second copy of the linear weights for as long as the model lives (~270 MB for
SmolLM2-135M). Blocks may overlap (two decoders on one model, in threads): the block that
swapped a forward restores it, so no packed forward outlives every block.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from weakref import WeakKeyDictionary

import torch
from torch import nn

from whyrec.llm.switches import Switch

_SWITCH = Switch("whyrec_prepacked_linears")
# Kept beside the model, not on it: copying or pickling the model must not meet oneDNN tensors.
_PACKS: WeakKeyDictionary[nn.Module, PackedLinears] = WeakKeyDictionary()


def prepacking(enabled: bool) -> AbstractContextManager[None]:
    """Switch `packed_linears` on or off inside the block (on by default); for benchmarks and
    for ruling it out when a kernel misbehaves."""
    return _SWITCH.scope(enabled)


@functools.cache
def _supported() -> bool:
    """oneDNN's packed bf16 linear exists in this torch build and runs on this CPU: it needs
    AVX512-BW/VL/DQ or AVX-NE-CONVERT (an AVX2-only CPU raises from the reorder), which is what
    `_is_mkldnn_bf16_supported` probes."""
    ops = torch.ops.mkldnn
    return (torch.backends.mkldnn.is_available() and hasattr(ops, "_reorder_linear_weight")
            and hasattr(ops, "_linear_pointwise") and hasattr(ops, "_is_mkldnn_bf16_supported")
            and bool(ops._is_mkldnn_bf16_supported()))


def _packable(module: nn.Module) -> bool:
    return (type(module) is nn.Linear and module.weight.dtype == torch.bfloat16 and module.weight.device.type == "cpu"
            and (module.bias is None or module.bias.dtype == torch.bfloat16))


def _version(t: torch.Tensor) -> int:
    """The tensor's in-place update count. Inference tensors (weights loaded under `inference_mode`)
    keep none and can only be changed inside inference mode, which no whyrec code does to a weight:
    they count as never updated (a new tensor still repacks, by its data pointer)."""
    return -1 if t.is_inference() else t._version


class PackedLinears:
    """One model's bf16 CPU `nn.Linear`s: the forwards that run them on packed weights."""

    def __init__(self):
        # Weak keys: a module dropped from the model (a replaced head) takes its pack with it.
        self.forwards: WeakKeyDictionary[nn.Linear, tuple[tuple, Callable]] = WeakKeyDictionary()

    def forward(self, linear: nn.Linear) -> Callable:
        stamp = tuple((t.data_ptr(), _version(t)) for t in (linear.weight, linear.bias) if t is not None)
        hit = self.forwards.get(linear)
        if hit is None or hit[0] != stamp:
            hit = stamp, _packed_forward(linear.weight, linear.bias)
            self.forwards[linear] = hit
        return hit[1]

    @contextmanager
    def active(self, model: nn.Module) -> Iterator[None]:
        """Inside: every packable linear runs on its packed weight (no autograd through them)."""
        # Listed on every entry: a PEFT wrap or a resized head since the last call changes the set.
        linears = [m for m in model.modules() if _packable(m)]
        swapped = []
        try:
            for m in linears:
                own = m.__dict__.get("forward")
                if getattr(own, "packed", False):  # a nested or concurrent block swapped it: it restores it
                    continue
                swapped.append((m, own))
                # The instance attribute `m.forward = f` would set, without nn.Module.__setattr__'s
                # checks: entered on every decode step, for ~200 modules.
                m.__dict__["forward"] = self.forward(m)
            yield
        finally:
            for m, own in swapped:
                if own is None:
                    m.__dict__.pop("forward", None)
                else:
                    m.__dict__["forward"] = own


def _packed_forward(weight: torch.Tensor, bias: torch.Tensor | None) -> Callable:
    packed = torch.ops.mkldnn._reorder_linear_weight(weight.detach())
    plain_bias = None if bias is None else bias.detach()

    def forward(x: torch.Tensor) -> torch.Tensor:
        if x.dtype != torch.bfloat16:  # autocast or a caller's cast: the plain path handles it
            return nn.functional.linear(x, weight, bias)
        return torch.ops.mkldnn._linear_pointwise(x, packed, plain_bias, "none", [], "")

    forward.packed = True
    return forward


@contextmanager
def packed_linears(model: nn.Module) -> Iterator[None]:
    """Run `model`'s bf16 CPU linears on prepacked weights inside the block, when that is safe:
    no gradients wanted, oneDNN present, switched on (`prepacking`). Otherwise a no-op."""
    if torch.is_grad_enabled() or not _SWITCH.on() or not _supported():
        yield
        return
    packs = _PACKS.setdefault(model, PackedLinears())
    with packs.active(model):
        yield
