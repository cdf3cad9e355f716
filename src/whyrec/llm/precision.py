"""Precision policy: bf16 frozen weights where the hardware computes bf16 natively, fp32 for learning.

`model.dtype auto` stores a frozen LLM in bfloat16 where matrix multiplies in bf16 are native
(CUDA GPUs with bf16, CPUs with AMX or AVX512-BF16): half the memory traffic and, on this class
of CPU, about twice the matmul throughput. Everything that learns stays fp32 (adapters, experts,
LoRA weights, optimizer state): bf16 has 8 bits of mantissa, too few for small updates to
accumulate. `keep_trainables_fp32` enforces that for modules living inside a bf16 model.
"""

from __future__ import annotations

import functools


@functools.cache
def cpu_has_bf16() -> bool:
    """True where this CPU has native bf16 matrix instructions (AMX tiles or AVX512-BF16)."""
    import torch

    probes = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(getattr(torch.cpu, p, lambda: False)() for p in probes)


def auto_dtype(device: str, trains_weights: bool = False):
    """The dtype `model.dtype auto` means for an LLM on `device`.

    `trains_weights`: the LLM's own weights are updated (PEPLER's second stage); those stay fp32.
    """
    import torch

    if trains_weights:
        return torch.float32
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    if device == "cpu" and cpu_has_bf16():
        return torch.bfloat16
    return torch.float32


def warn_if_emulated(dtype, device: str) -> bool:
    """Warn on stderr when a CPU model is given bf16 weights its CPU can only emulate: on an
    AVX2-only CPU a bf16 `torch.mm` ran at 0.3 GFLOP/s against 153 in fp32 (docs/benchmarks.md
    §8n), so such a run crawls. True if it warned."""
    import sys

    import torch

    if device != "cpu" or dtype != torch.bfloat16 or cpu_has_bf16():
        return False
    print("whyrec: warning: model.dtype bfloat16 on a CPU without native bf16 (no AMX or AVX512-BF16): its "
          "matmuls are emulated, hundreds of times slower than float32 here; use --model.dtype auto (float32 on "
          "this CPU) unless you are checking numerics", file=sys.stderr, flush=True)
    return True


def keep_trainables_fp32(model, output_module=None) -> int:
    """Give every module that directly owns a trainable low-precision parameter fp32 weights.

    The module's floating inputs are cast to fp32 on the way in and its floating outputs back to
    the low precision it had (so the surrounding bf16 layers see what they expect); the model's
    `output_module` (its lm_head) returns fp32 logits, which the loss wants anyway. Returns how
    many modules were changed. Frozen weights are left as they are.
    """
    import torch

    changed = 0
    for module in model.modules():
        own = list(module.parameters(recurse=False))
        if not any(p.requires_grad and p.is_floating_point() and p.dtype != torch.float32 for p in own):
            continue
        low = next(p.dtype for p in own if p.is_floating_point() and p.dtype != torch.float32)
        _own_to_fp32(module)  # its own parameters only: children keep their dtype
        module.register_forward_pre_hook(_inputs_to_fp32, with_kwargs=True)
        if module is not output_module:
            module.register_forward_hook(functools.partial(_outputs_to, low))
        changed += 1
    return changed


def _own_to_fp32(module) -> None:
    import torch

    for p in module.parameters(recurse=False):
        if p.is_floating_point():
            p.data = p.data.to(torch.float32)


def _cast(value, dtype):
    import torch

    if isinstance(value, torch.Tensor) and value.is_floating_point() and value.dtype != dtype:
        return value.to(dtype)
    if isinstance(value, tuple):
        return tuple(_cast(v, dtype) for v in value)
    return value


def _inputs_to_fp32(module, args, kwargs):
    import torch

    return _cast(tuple(args), torch.float32), {k: _cast(v, torch.float32) for k, v in kwargs.items()}


def _outputs_to(dtype, module, args, output):
    return _cast(output, dtype)
