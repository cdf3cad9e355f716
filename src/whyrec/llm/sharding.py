"""Shard a frozen LLM's decoder layers over the ranks (FSDP2 `fully_shard`) for whyrec's own loops.

XRec and GaVaMoE train small adapters around a frozen backbone; under plain data parallelism
every rank holds the whole backbone (14 GB for a bf16 7B). `TrainConfig.fsdp` shards each
decoder layer's frozen weights over the ranks instead: a layer is all-gathered for its forward
(and again for its backward, or the recompute under gradient checkpointing) and freed after.
The trainable weights stay whole on every rank (`ignored_params`), so `data_parallel_step`
still all-reduces their gradients and a step is the same update as without sharding.

Embeddings, final norm and LM head stay whole: XRec calls the embedding table outside the
model's forward (special-token rows), which a sharded root module would not gather for.
Every rank must then run the same forwards, so `data_parallel_step` gives a rank whose shard of
a micro-batch is empty a zero-weight pass.
"""

from __future__ import annotations

import logging

from torch import nn

logger = logging.getLogger(__name__)


def decoder_layers(module: nn.Module) -> list[nn.Module]:
    """The decoder layers of every HF model inside `module`, by the models' `_no_split_modules`."""
    from transformers import PreTrainedModel

    names: set[str] = set()
    for sub in module.modules():
        if isinstance(sub, PreTrainedModel):
            names |= set(getattr(sub, "_no_split_modules", None) or [])
    return [m for m in module.modules() if type(m).__name__ in names]


def shard_frozen_layers(module: nn.Module) -> int:
    """`fully_shard` each decoder layer over the default process group; returns how many.

    A no-op (0) in a single process. Raises if the backbone has no recognisable decoder layers.
    """
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    from whyrec import distributed as D
    from whyrec.utils import WhyrecError

    if D.world_size() == 1:
        logger.warning("train.fsdp: one process, nothing to shard (launch with torchrun --nproc_per_node N)")
        return 0
    layers = decoder_layers(module)
    if not layers:
        raise WhyrecError("train.fsdp: found no decoder layers (no `_no_split_modules` on the model) to shard; "
                          "drop --train.fsdp")
    device = next(layers[0].parameters()).device
    mesh = init_device_mesh(device.type, (D.world_size(),))
    for layer in layers:
        trainable = {p for p in layer.parameters() if p.requires_grad}
        # Explicit: no FSDP module wraps the layers, so each is a root, and a root left on the default
        # keeps its gathered weights from forward to backward: every layer would stay whole at once.
        fully_shard(layer, mesh=mesh, reshard_after_forward=True, ignored_params=trainable or None)
    sharded = sum(p.numel() for layer in layers for p in layer.parameters() if not p.requires_grad)
    logger.info("train.fsdp: %d decoder layers, %.1fM frozen parameters sharded over %d ranks",
                len(layers), sharded / 1e6, D.world_size())
    return len(layers)
