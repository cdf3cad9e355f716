"""Add per-sample vectors to q, k and v at chosen positions in every attention layer.

XRec (METHODS §3.3) adds the adapted user/item vectors to the query, key and value of the
two special-token positions in all layers, during training and the generation prefill only.
We do this with forward hooks on the projection modules instead of forking the model code.
Models with grouped-query attention have narrower k/v projections: a learned linear map
(`kv_proj`) brings the vector to that width.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn

# Projection module names per architecture family; all use the `self_attn.{q,k,v}_proj` layout.
QKV_NAMES = {
    "llama": ("q_proj", "k_proj", "v_proj"),
    "mistral": ("q_proj", "k_proj", "v_proj"),
    "qwen2": ("q_proj", "k_proj", "v_proj"),
    "qwen3": ("q_proj", "k_proj", "v_proj"),
    "gemma": ("q_proj", "k_proj", "v_proj"),
    "gemma2": ("q_proj", "k_proj", "v_proj"),
    "phi3": None,  # fused qkv_proj: not supported yet
    "gpt2": None,  # fused c_attn: not supported yet
}


def kv_width(config) -> int:
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    return getattr(config, "num_key_value_heads", heads) * head_dim


def q_width(config) -> int:
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    return config.num_attention_heads * head_dim


class QKVInjector:
    """Holds the hooks; `with injector.active(positions, vectors, seq_len): model(...)`."""

    def __init__(self, model: nn.Module, model_type: str, kv_proj: nn.Module | None = None,
                 q_proj: nn.Module | None = None):
        names = QKV_NAMES.get(model_type, ("q_proj", "k_proj", "v_proj"))
        if names is None:
            raise ValueError(f"q/k/v injection does not support fused-attention model type {model_type!r}")
        self.kv_proj, self.q_proj = kv_proj, q_proj
        self._state = None
        self._handles = []
        # One hook function per kind, shared by all layers: a `torch.compile`d layer then guards on
        # the same function object in every layer and reuses one compiled graph for all of them.
        hooks = {kind: self._make_hook(kind) for kind in "qkv"}
        for name, module in model.named_modules():
            for kind, proj in zip("qkv", names):
                if name.endswith(f"self_attn.{proj}"):
                    self._handles.append(module.register_forward_hook(hooks[kind]))
        if not self._handles:
            raise ValueError("found no self_attn.{q,k,v}_proj modules to hook")

    @property
    def n_hooks(self) -> int:
        return len(self._handles)

    @contextmanager
    def active(self, positions: torch.Tensor, vectors: torch.Tensor, seq_len: int | None):
        """positions: (B, P) token indices; vectors: (B, P, H) added there in every forward whose
        length is seq_len (the prefill; later decoding steps are skipped), or in all when None
        (training: no cache, and no Python int for a compiled layer to specialise on)."""
        # The maps keep their own dtype (fp32 adapters on a bf16 LLM); the hooks cast to the output's.
        kv = self.kv_proj(vectors.to(self.kv_proj.weight.dtype)) if self.kv_proj is not None else vectors
        q = self.q_proj(vectors.to(self.q_proj.weight.dtype)) if self.q_proj is not None else vectors
        self._state = (positions, {"q": q, "k": kv, "v": kv}, seq_len)
        try:
            yield
        finally:
            self._state = None

    def forward_state(self):
        """What the hooks read now (None outside `active`); gradient checkpointing snapshots it."""
        return self._state

    def set_forward_state(self, state) -> None:
        """Put back a `forward_state()` snapshot (while checkpointing recomputes a layer)."""
        self._state = state

    def _make_hook(self, kind: str):
        def hook(module, inputs, output):
            if self._state is None:
                return None
            positions, vecs, seq_len = self._state
            if seq_len is not None and output.shape[1] != seq_len:  # decoding step: XRec injects at prefill only
                return None
            vec = vecs[kind].to(output.dtype)  # (B, P, width)
            rows = torch.arange(output.shape[0], device=output.device).unsqueeze(1).expand_as(positions)
            # In place: the projection's output is a fresh tensor its own backward does not need,
            # so this costs B*P writes instead of a zero tensor, a scatter and a full add per hook
            # (3 passes over (B, T, width) in each of the model's 3 x layers projections).
            return output.index_put_((rows, positions), vec, accumulate=True)

        return hook

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
