"""Matrix factorisation (Koren et al., IEEE Computer 2009) with a sampled-softmax loss.

RecExplainer's second target recommender (Lei et al., KDD 2024; METHODS §5.1): user and item
embeddings scored by their dot product, trained by UniRec with a softmax over the positive and
285 uniformly sampled negatives.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from whyrec.config import MFConfig  # noqa: F401 (re-exported; defined torch-free for the CLI)


class MF(nn.Module):
    def __init__(self, config: MFConfig, n_users: int, n_items: int):
        super().__init__()
        self.config, self.n_users, self.n_items = config, n_users, n_items
        self.user_emb = nn.Embedding(n_users, config.dim)
        self.item_emb = nn.Embedding(n_items, config.dim)
        for emb in (self.user_emb, self.item_emb):
            nn.init.normal_(emb.weight, std=config.init_std)

    def user_vectors(self, users: torch.Tensor) -> torch.Tensor:
        """[B, d] embeddings of user indices [B]."""
        return self.user_emb(users)

    def item_vectors(self) -> torch.Tensor:
        """[I, d] embeddings of all items."""
        return self.item_emb.weight

    def loss(self, users: torch.Tensor, items: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
        """Sampled softmax: cross-entropy of the positive against its negatives.

        Args:
            users, items: [B] indices of observed pairs.
            negatives: [B, N] uniformly sampled item indices. A negative that is the positive
                itself ("accidental hit") is masked out instead of counted against it.
        """
        u = self.user_emb(users)  # [B, d]
        pos = (u * self.item_emb(items)).sum(-1, keepdim=True)  # [B, 1]
        neg = torch.einsum("bd,bnd->bn", u, self.item_emb(negatives))  # [B, N]
        neg = neg.masked_fill(negatives == items[:, None], float("-inf"))
        logits = torch.cat([pos, neg], dim=1)  # [B, 1 + N]; the positive is class 0
        return F.cross_entropy(logits, torch.zeros(len(users), dtype=torch.long, device=users.device))
