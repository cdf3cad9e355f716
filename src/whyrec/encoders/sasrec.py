"""SASRec (Kang & McAuley, ICDM 2018): a causal self-attention next-item recommender.

RecExplainer (Lei et al., KDD 2024) explains a SASRec trained with Microsoft UniRec; the
hyperparameters below are that run's (METHODS §5.1). The user vector is the hidden state at
the last position of the user's most recent `max_seq_len` items, an item vector is its input
embedding, and a score is their dot product.

Input sequences hold item index + 1 and are LEFT-padded with 0. Positions are counted from
the right (the most recent item always has position `max_seq_len - 1`), so the amount of
left padding never changes a real item's representation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from whyrec.config import SASRecConfig  # noqa: F401 (re-exported; defined torch-free for the CLI)

PAD = 0


class _Block(nn.Module):
    """Pre-norm self-attention + feed-forward block with separate attention/hidden dropouts."""

    def __init__(self, c: SASRecConfig):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(c.dim), nn.LayerNorm(c.dim)
        self.attn = nn.MultiheadAttention(c.dim, c.n_heads, dropout=c.attn_dropout, batch_first=True)
        self.ffn = nn.Sequential(nn.Linear(c.dim, c.ffn_dim), nn.GELU(), nn.Dropout(c.hidden_dropout),
                                 nn.Linear(c.ffn_dim, c.dim))
        self.drop = nn.Dropout(c.hidden_dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        x = x + self.drop(self.attn(h, h, h, attn_mask=mask, need_weights=False)[0])
        return x + self.drop(self.ffn(self.norm2(x)))


class SASRec(nn.Module):
    def __init__(self, config: SASRecConfig, n_items: int):
        super().__init__()
        self.config, self.n_items = config, n_items
        self.item_emb = nn.Embedding(n_items + 1, config.dim, padding_idx=PAD)  # row 0 = padding
        self.pos_emb = nn.Embedding(config.max_seq_len, config.dim)
        self.drop = nn.Dropout(config.hidden_dropout)
        self.blocks = nn.ModuleList(_Block(config) for _ in range(config.n_layers))
        self.norm = nn.LayerNorm(config.dim)
        for emb in (self.item_emb, self.pos_emb):
            nn.init.normal_(emb.weight, std=config.init_std)
        with torch.no_grad():
            self.item_emb.weight[PAD].zero_()

    def _mask(self, seqs: torch.Tensor) -> torch.Tensor:
        """[B * heads, L, L] bool, True = blocked: the future and padded keys.

        Every query may always see itself, so a padded query has one key and softmax never
        sees an all-blocked row (which would give NaN); no real query ever sees a pad.
        """
        B, L = seqs.shape
        future = torch.triu(torch.ones(L, L, dtype=torch.bool, device=seqs.device), 1)  # [L, L]
        blocked = future | (seqs == PAD)[:, None, :]  # [B, L, L]
        blocked = blocked & ~torch.eye(L, dtype=torch.bool, device=seqs.device)
        return blocked.repeat_interleave(self.config.n_heads, dim=0)

    def forward(self, seqs: torch.Tensor) -> torch.Tensor:
        """Hidden state of every position. seqs: [B, L] item index + 1, left-padded, L <= max_seq_len."""
        B, L = seqs.shape
        if L > self.config.max_seq_len:
            raise ValueError(f"sequence length {L} exceeds max_seq_len {self.config.max_seq_len}")
        pos = torch.arange(self.config.max_seq_len - L, self.config.max_seq_len, device=seqs.device)  # [L]
        x = self.item_emb(seqs) + self.pos_emb(pos)  # [B, L, d]
        x = self.drop(x) * (seqs != PAD).unsqueeze(-1)
        mask = self._mask(seqs)
        for block in self.blocks:
            x = block(x, mask)
        return self.norm(x)  # [B, L, d]

    def user_vector(self, seqs: torch.Tensor) -> torch.Tensor:
        """[B, d]: the last position's hidden state (the most recent item's)."""
        return self(seqs)[:, -1]

    def encode_histories(self, histories: list[list[int]]) -> torch.Tensor:
        """[B, d] user vectors of item-index histories (oldest first, the last max_seq_len kept):
        what `user_vector` gives a user whose history is that prefix (RecExplainer's uid2hist)."""
        L = self.config.max_seq_len
        seqs = torch.zeros(len(histories), L, dtype=torch.long, device=self.item_emb.weight.device)  # [B, L]
        for row, hist in enumerate(histories):
            hist = list(hist)[-L:]
            if not hist:
                raise ValueError("an empty history has no SASRec user vector")
            seqs[row, L - len(hist):] = torch.as_tensor(hist, dtype=torch.long) + 1  # left-padded, index + 1
        return self.user_vector(seqs)

    def item_vectors(self) -> torch.Tensor:
        """[I, d] embeddings of the real items (row i = item index i; the padding row dropped)."""
        return self.item_emb.weight[1:]

    def loss(self, seqs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Full-softmax next-item cross-entropy over all items, at every non-padded position.

        Args:
            seqs: [B, L] inputs (item index + 1, left-padded).
            targets: [B, L] next item index (0-based) at each position, -100 where padded.
        """
        keep = targets >= 0  # [B, L]
        hidden = self(seqs)[keep]  # [M, d]
        logits = hidden @ self.item_vectors().T  # [M, I]
        return F.cross_entropy(logits, targets[keep])
