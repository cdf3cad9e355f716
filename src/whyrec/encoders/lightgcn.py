"""LightGCN: Simplifying and Powering Graph Convolution Network for Recommendation.

He, Deng, Wang, Li, Zhang, Wang. SIGIR 2020. arXiv:2002.02126. As XRec trains it
(METHODS §3.1): E^(l+1) = Â E^(l) with Â = D^-1/2 A D^-1/2 over the user-item bipartite graph
of the training interactions, K layers, final embedding = sum (XRec) or mean (the paper) of
E^(0..K), BPR loss plus L2 on the batch's ego embeddings E^(0).

Deviations from XRec's code: the L2 term uses the ego embeddings E^(0) (the paper's choice;
XRec's code regularises the propagated ones; negligible at weight_decay 1e-6) and negatives
are re-sampled every epoch (XRec samples them once); see `whyrec.encoders.train`.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from whyrec.config import LightGCNConfig


def interaction_matrix(users: np.ndarray, items: np.ndarray, n_users: int, n_items: int) -> sp.csr_matrix:
    """Binarised, de-duplicated [U, I] CSR matrix with sorted column indices."""
    ones = np.ones(len(users), dtype=np.float32)
    mat = sp.csr_matrix((ones, (np.asarray(users), np.asarray(items))), shape=(n_users, n_items))
    mat.sum_duplicates()
    mat.data[:] = 1.0
    return mat


def normalized_adjacency(train: sp.csr_matrix) -> torch.Tensor:
    """Â = D^-1/2 A D^-1/2 of the (U+I)x(U+I) bipartite graph, as a torch sparse CSR tensor.

    A = [[0, R], [R^T, 0]] with R the binarised [U, I] train matrix; nodes of degree 0 get 0.
    """
    adj = sp.bmat([[None, train], [train.T, None]], format="csr", dtype=np.float64)  # [N, N]
    degree = np.asarray(adj.sum(axis=1)).ravel()  # [N]
    d_inv_sqrt = np.zeros_like(degree)
    d_inv_sqrt[degree > 0] = degree[degree > 0] ** -0.5
    adj = (sp.diags(d_inv_sqrt) @ adj @ sp.diags(d_inv_sqrt)).tocsr().astype(np.float32)
    adj.sort_indices()
    index = np.int32 if adj.nnz < 2**31 else np.int64  # int32 indices: smaller, CPU spmm no slower
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(
            torch.from_numpy(adj.indptr.astype(index)),
            torch.from_numpy(adj.indices.astype(index)),
            torch.from_numpy(adj.data),
            size=adj.shape,
            check_invariants=False,
        )


def propagate(adj: torch.Tensor, ego: torch.Tensor, n_layers: int, combine: str) -> torch.Tensor:
    """Σ_l w_l Â^l E over l = 0..K, with w_l = 1 ('sum') or 1/(K+1) ('mean')."""
    out, layer = ego, ego
    for _ in range(n_layers):
        layer = torch.sparse.mm(adj, layer)  # [N, d]
        out = out + layer
    return out / (n_layers + 1) if combine == "mean" else out


class _Propagate(torch.autograd.Function):
    """`propagate` with a hand-written backward pass.

    Â is symmetric, so P = Σ_l w_l Â^l is too and the gradient is P applied to the incoming
    gradient. This avoids autograd's sparse-CSR transpose (3x slower on CPU) and keeps no
    per-layer activations.
    """

    @staticmethod
    def forward(ctx, adj, ego, n_layers, combine):
        ctx.adj, ctx.n_layers, ctx.combine = adj, n_layers, combine
        return propagate(adj, ego, n_layers, combine)

    @staticmethod
    def backward(ctx, grad):
        return None, propagate(ctx.adj, grad, ctx.n_layers, ctx.combine), None, None


class LightGCN(nn.Module):
    """Ego embeddings E^(0) for users and items, propagated over a fixed training graph."""

    def __init__(self, config: LightGCNConfig, n_users: int, n_items: int, train: sp.csr_matrix,
                 generator: torch.Generator | None = None):
        super().__init__()
        if config.layer_combine not in ("sum", "mean"):
            raise ValueError(f"layer_combine must be 'sum' or 'mean', got {config.layer_combine!r}")
        if train.shape != (n_users, n_items):
            raise ValueError(f"train matrix is {train.shape}, expected {(n_users, n_items)}")
        self.config, self.n_users, self.n_items = config, n_users, n_items
        self.train_csr = train
        self.adj = normalized_adjacency(train)  # [U+I, U+I], not a parameter
        self.user_ego = nn.Parameter(torch.empty(n_users, config.dim))  # E^(0) of users [U, d]
        self.item_ego = nn.Parameter(torch.empty(n_items, config.dim))  # E^(0) of items [I, d]
        nn.init.xavier_uniform_(self.user_ego, generator=generator)
        nn.init.xavier_uniform_(self.item_ego, generator=generator)

    def forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Propagated (user_emb [U, d], item_emb [I, d])."""
        ego = torch.cat([self.user_ego, self.item_ego])  # [U+I, d]
        if self.adj.device != ego.device:
            self.adj = self.adj.to(ego.device)
        out = _Propagate.apply(self.adj, ego, self.config.n_layers, self.config.layer_combine)
        return out[: self.n_users], out[self.n_users :]

    def bpr_loss(self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor,
                 reg_scale: float = 1.0) -> torch.Tensor:
        """-mean log σ(s⁺ - s⁻) + weight_decay · (‖u‖² + ‖i⁺‖² + ‖i⁻‖²) summed over the batch.

        The L2 sum is not divided by the batch size (as in XRec, weight_decay 1e-6). A rank
        holding n of a global batch of N triples passes reg_scale = N / n, so the example-weighted
        mean of the ranks' losses is the global batch's loss.
        """
        user_emb, item_emb = self()
        u, p, n = user_emb[users], item_emb[pos], item_emb[neg]  # [B, d] each
        diff = (u * p).sum(-1) - (u * n).sum(-1)  # [B]
        bpr = -F.logsigmoid(diff).mean()
        ego_u, ego_p, ego_n = self.user_ego[users], self.item_ego[pos], self.item_ego[neg]  # [B, d] each
        reg = ego_u.square().sum() + ego_p.square().sum() + ego_n.square().sum()
        return bpr + self.config.weight_decay * (reg * reg_scale if reg_scale != 1.0 else reg)

    @torch.no_grad()
    def embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Propagated (user_emb, item_emb) without autograd bookkeeping."""
        return self()

    def save_pretrained(self, path: str | Path, user2idx: dict[str, int], item2idx: dict[str, int],
                        train_csr: sp.csr_matrix | None = None, card: dict | None = None) -> Path:
        """Write the artifact folder (see `whyrec.encoders.artifact`).

        `train_csr` defaults to the model's own graph; if given it must be that same matrix,
        since reloading rebuilds the graph from it.
        """
        from whyrec.encoders.artifact import save_lightgcn

        if train_csr is not None and (train_csr.shape != self.train_csr.shape or (train_csr != self.train_csr).nnz):
            raise ValueError("train_csr differs from the graph this model propagates over")
        return save_lightgcn(self, path, user2idx, item2idx, self.train_csr, card)

    @classmethod
    def from_pretrained(cls, path: str | Path) -> LightGCN:
        """Rebuild the model (graph and ego embeddings) from an artifact folder."""
        from whyrec.encoders.artifact import load_lightgcn

        return load_lightgcn(path)
