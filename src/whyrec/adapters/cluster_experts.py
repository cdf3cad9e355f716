"""Cluster-gated mixture of experts in place of a decoder layer's MLP (GaVaMoE, METHODS §4.2).

GaVaMoE (Tang et al., arXiv 2410.11841) swaps every MLP of the LLM for E experts and K
routers, one router per VAE cluster. A sample whose (user, item) pair falls in cluster c
routes all its tokens with router c: each token picks its top-k experts and mixes them with
a softmax over the selected logits, so the k weights sum to 1.

Differences from the original code, all deliberate (METHODS §4.8):
- experts are copies of the pretrained MLP by default ("upcycling"): before training the
  layer then computes exactly what the dense MLP did, since every expert is that MLP and the
  weights sum to 1. Random experts of a chosen width stay available (`upcycle=False`); the
  original crashed there because the width reached the expert as None.
- experts are the backbone's own MLP class (SwiGLU for Llama), not SiLU of the product.
- the cluster of each sample is handed over per batch (`route_by`), never read from a
  global forward counter, so batches may mix clusters and be shuffled.
"""

from __future__ import annotations

import copy
from contextlib import contextmanager, nullcontext

import torch
from torch import nn

from whyrec.utils import WhyrecError


class ClusterMoE(nn.Module):
    """E experts and K routers; set `cluster_ids` (B,) with `route_by` before calling."""

    # False: the experts' matmuls run in their weights' dtype even on bf16 activations (the
    # behaviour before bf16 autocast; kept for A/B measurements and exact comparisons)
    bf16_matmuls: bool = True

    def __init__(self, experts: list[nn.Module], hidden: int, n_clusters: int, top_k: int):
        super().__init__()
        if not 1 <= top_k <= len(experts):
            raise WhyrecError(f"top_k must be between 1 and the number of experts ({len(experts)}), got {top_k}")
        self.experts = nn.ModuleList(experts)
        self.routers = nn.ModuleList(nn.Linear(hidden, len(experts), bias=False) for _ in range(n_clusters))
        self.top_k = top_k
        self.cluster_ids: torch.Tensor | None = None  # (B,) set by route_by for one forward/generate

    @property
    def n_clusters(self) -> int:
        return len(self.routers)

    def forward_state(self) -> torch.Tensor | None:
        """The cluster ids `forward` routes by (None outside `route_by`); gradient checkpointing snapshots them."""
        return self.cluster_ids

    def set_forward_state(self, state: torch.Tensor | None) -> None:
        """Put back a `forward_state()` snapshot (while checkpointing recomputes a layer)."""
        self.cluster_ids = state

    def route(self, x: torch.Tensor, cluster_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-k expert indices (B, T, k) and their weights (B, T, k), which sum to 1 per token."""
        gate = torch.stack([r.weight for r in self.routers])[cluster_ids]  # (B, E, H): each sample's router
        logits = torch.einsum("bth,beh->bte", x, gate.to(x.dtype))  # (B, T, E)
        top_logits, top_idx = logits.topk(self.top_k, dim=-1)  # (B, T, k)
        # softmax over the chosen logits == full softmax renormalised over the top-k (the paper's form)
        return top_idx, top_logits.float().softmax(-1).to(x.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ids = self.cluster_ids
        if ids is None:
            raise WhyrecError("ClusterMoE needs the batch's cluster ids: call the model inside `route_by(moes, ids)`")
        if ids.shape[0] != x.shape[0]:
            raise WhyrecError(f"{ids.shape[0]} cluster ids for a batch of {x.shape[0]} (beam search is not supported)")
        top_idx, weights = self.route(x, ids.to(x.device))
        flat = x.reshape(-1, x.shape[-1])  # (N, H) with N = B*T
        k = self.top_k
        y = self._run_experts(flat, top_idx.reshape(-1))  # (N*k, H): token n's slot j at row n*k + j
        # the k outputs of a token weighted and summed (outside autocast, which would sum in fp32)
        return (y.view(-1, k, flat.shape[-1]) * weights.reshape(-1, k, 1)).sum(1).view_as(x)

    # Kept out of torch.compile (a graph break around it): the split sizes come from the data, and
    # tracing that split made dynamo (torch 2.13) fail an internal assertion ("sources must not be
    # empty"). The experts' matmuls run eagerly at full speed; the layer's attention still compiles.
    @torch.compiler.disable
    def _run_experts(self, flat: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """Expert `idx[r]` applied to token `r // top_k`, for every (token, slot) pair r: (N*k, H).

        The pairs are sorted by expert, so each expert multiplies one contiguous block of rows
        (one gather in, one inverse permutation out) rather than E `nonzero` scans and
        `index_add` passes. An expert no token chose is not called (its weights get no gradient).
        """
        order = idx.argsort(stable=True)  # (N*k,) pair indices grouped by expert
        counts = torch.bincount(idx, minlength=len(self.experts)).tolist()
        blocks = flat[order // self.top_k].split(counts)  # gathered token rows, one block per expert
        with self._matmul_precision(flat):
            outs = [expert(rows) for expert, rows in zip(self.experts, blocks) if rows.shape[0]]
        return torch.cat(outs)[order.argsort()]  # back to (token, slot) order

    def _matmul_precision(self, x: torch.Tensor):
        """bf16 autocast for the experts when the backbone hands over bf16 activations and the
        experts hold fp32 weights (`keep_trainables_fp32`): the matmuls then run at the CPU's or
        GPU's bf16 rate (measured 1.75x for a SmolLM2-135M MoE layer's forward + backward on one CPU
        core), while weights, their gradients and the optimizer state stay fp32 (the casts are
        differentiable: gradients arrive in fp32). An fp32 backbone keeps fp32 matmuls."""
        w = next(self.experts.parameters())
        if (self.bf16_matmuls and x.dtype == torch.bfloat16 and w.dtype == torch.float32
                and x.device.type in ("cpu", "cuda")):
            return torch.autocast(x.device.type, dtype=torch.bfloat16)
        return nullcontext()


def decoder_layers(llm: nn.Module) -> nn.ModuleList:
    """The decoder's layer list (works through peft wrappers): the first ModuleList of blocks with `.mlp`."""
    for _, module in llm.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) and all(hasattr(b, "mlp") for b in module):
            return module
    raise WhyrecError(f"{type(llm).__name__} has no list of decoder layers with an `.mlp`; GaVaMoE cannot attach")


def _random_expert(mlp: nn.Module, config, width: int) -> nn.Module:
    """A fresh MLP of the backbone's own class with `width` hidden units, initialised like the backbone."""
    cfg = copy.copy(config)
    cfg.intermediate_size = width
    ref = next(mlp.parameters())
    try:
        with torch.device(ref.device):
            expert = type(mlp)(cfg)
    except TypeError:
        raise WhyrecError(f"cannot build a random {type(mlp).__name__} expert from the config; use upcycle=True") from None
    std = getattr(config, "initializer_range", 0.02)
    for name, p in expert.named_parameters():
        if name.endswith("bias"):
            nn.init.zeros_(p)
        else:
            nn.init.normal_(p, std=std)
    return expert.to(ref.dtype)


def install_cluster_moe(llm: nn.Module, n_experts: int, top_k: int, n_clusters: int,
                        layers: list[int] | None = None, upcycle: bool = True,
                        ffn_width: int | None = None) -> list[ClusterMoE]:
    """Replace the MLPs of `layers` (None: all) by ClusterMoE modules; return them in layer order.

    Args:
        upcycle: experts start as copies of the layer's pretrained MLP (then `ffn_width` must
            be None or the model's intermediate size); False builds random experts.
        ffn_width: hidden units of random experts; None means the model's intermediate size.
    """
    blocks = decoder_layers(llm)
    chosen = list(range(len(blocks))) if layers is None else sorted(set(layers))
    bad = [i for i in chosen if not 0 <= i < len(blocks)]
    if bad:
        raise WhyrecError(f"moe_layers {bad} out of range: the model has {len(blocks)} layers (0..{len(blocks) - 1})")
    if n_clusters < 1 or n_experts < 1:
        raise WhyrecError(f"need at least one cluster and one expert (got {n_clusters} clusters, {n_experts} experts)")
    config = llm.config
    width = ffn_width or config.intermediate_size
    if upcycle and width != config.intermediate_size:
        raise WhyrecError(f"upcycled experts keep the pretrained width {config.intermediate_size}; "
                          f"set upcycle=False to use ffn_width={ffn_width}")
    moes = []
    for i in chosen:
        mlp = blocks[i].mlp
        ref = next(mlp.parameters())
        experts = [copy.deepcopy(mlp) if upcycle else _random_expert(mlp, config, width) for _ in range(n_experts)]
        moe = ClusterMoE(experts, config.hidden_size, n_clusters, top_k)
        moe.routers.to(device=ref.device, dtype=ref.dtype)
        blocks[i].mlp = moe  # module substitution: the decoder layer calls self.mlp(hidden) as before
        moes.append(moe)
    return moes


@contextmanager
def route_by(moes: list[ClusterMoE], cluster_ids: torch.Tensor):
    """Route sample b with router `cluster_ids[b]` in every MoE layer for the enclosed forward or
    generate call. The ids stay fixed while a KV cache decodes the same batch token by token."""
    ids = torch.as_tensor(cluster_ids, dtype=torch.long).reshape(-1)
    k = moes[0].n_clusters if moes else 0
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= k):
        raise WhyrecError(f"cluster ids must lie in 0..{k - 1} (got {ids.min().item()}..{ids.max().item()})")
    for moe in moes:
        moe.cluster_ids = ids
    try:
        yield
    finally:
        for moe in moes:
            moe.cluster_ids = None


def count_moe_parameters(moes: list[ClusterMoE]) -> dict[str, int]:
    """Parameters held by the experts and by the routers of these MoE layers."""
    return {"experts": sum(p.numel() for m in moes for p in m.experts.parameters()),
            "routers": sum(p.numel() for m in moes for p in m.routers.parameters())}
