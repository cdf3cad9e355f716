"""Decode-step attention that reads each key/value head in place for all the query heads it serves.

Models with grouped-query attention (SmolLM2-135M: 9 query heads, 3 key/value heads) decode one
token per row with a padding mask. HF's `sdpa` attention (transformers 5.x) then reshapes the
query so the 3 query heads of a group become 3 query positions (`pack_gqa`); torch's CPU SDPA
with `enable_gqa=True` does the same work faster (1.3x per layer at batch 32, ~200 columns, bf16,
one thread; a whole SmolLM2 decode step on `SlotCache` 1.10x at batch 32, 1.17x at 64; docs/
benchmarks.md 8d). Outputs agree to float rounding (fp32 greedy tokens match HF `generate` in the
tests; bf16 texts differ in some rows, as any kernel change does). transformers only asks for
`enable_gqa` without a mask (`use_gqa_in_sdpa`), so the decoder swaps this function in for its
step forwards (`gqa_decoding`); prefill (several query tokens) goes to HF's `sdpa` unchanged.

Only with one torch thread: with two (idle 2-core machine, batch 64, XRec explain) whole calls ran
at 0.66x of HF's packed-query `sdpa` on the same in-place cache, both chunks alike (docs/
benchmarks.md 8f), so with more threads the decoder keeps HF's attention.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager

import torch
from torch.nn import functional as F

from whyrec.llm.switches import Switch

NAME = "whyrec_sdpa_gqa"
_SWITCH = Switch("whyrec_gqa_decoding")


def gqa_switch(enabled: bool) -> AbstractContextManager[None]:
    """Switch `gqa_decoding` on or off inside the block (on by default); for benchmarks and for
    ruling it out."""
    return _SWITCH.scope(enabled)


def sdpa_gqa_forward(module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                     attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                     is_causal: bool | None = None, **kwargs) -> tuple[torch.Tensor, None]:
    """HF's attention-function signature: query (n, heads, q, dim), key/value (n, kv heads, L, dim)."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    plain = (query.shape[2] != 1 or query.shape[1] == key.shape[1] or kwargs.get("position_bias") is not None
             or kwargs.get("softcap") is not None or kwargs.get("output_attentions", False))
    if plain:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      is_causal=is_causal, **kwargs)
    out = F.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask, dropout_p=dropout, scale=scaling,
                                         enable_gqa=True)  # (n, heads, 1, dim)
    return out.transpose(1, 2).contiguous(), None


def _register() -> None:
    """Make NAME known to transformers (idempotent): this attention function, HF's SDPA masks."""
    from transformers import AttentionInterface
    from transformers import masking_utils as masks

    if NAME not in masks.AttentionMaskInterface._global_mapping:
        AttentionInterface.register(NAME, sdpa_gqa_forward)
        masks.AttentionMaskInterface.register(NAME, masks.sdpa_mask)


@contextmanager
def gqa_decoding(llm) -> Iterator[None]:
    """Run `llm`'s forwards in the block on `sdpa_gqa_forward` when it uses HF's `sdpa` attention
    on CPU (others are left alone). Overlapping blocks (two decoders on one model, in threads):
    only the block that switched it switches it back; a forward running past that point finishes
    on plain `sdpa`, the same attention, slower."""
    config = llm.config
    swap = (_SWITCH.on() and config._attn_implementation == "sdpa" and llm.device.type == "cpu"
            and torch.get_num_threads() == 1)
    if swap:
        _register()
        config._attn_implementation = NAME
    try:
        yield
    finally:
        if swap:
            config._attn_implementation = "sdpa"
