"""XRec's collaborative-information adapter (Ma et al., EMNLP 2024; METHODS §3.2).

A mixture of "parametric whitening" experts, y_e = W_e (dropout(x) - b_e), mixed densely
by a softmax gate with learned noise while training. Experts are stored stacked so the
whole mixture is one einsum instead of a Python loop over experts.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MoEAdaptor(nn.Module):
    """Maps an encoder vector (in_dim) to the LLM hidden size (out_dim).

    Parameters: n_exps * (in_dim * out_dim + in_dim) + 2 * in_dim * n_exps; for XRec's
    64 -> 4096 with 8 experts that is 2,099,200 per adapter.
    """

    def __init__(self, in_dim: int, out_dim: int, n_exps: int = 8, dropout: float = 0.2, noisy_gate: bool = True):
        super().__init__()
        self.n_exps, self.noisy_gate = n_exps, noisy_gate
        self.weight = nn.Parameter(torch.empty(n_exps, out_dim, in_dim).normal_(0.0, 0.02))  # W_e, no bias
        self.whiten_bias = nn.Parameter(torch.zeros(n_exps, in_dim))  # b_e, subtracted before W_e
        self.w_gate = nn.Parameter(torch.zeros(in_dim, n_exps))  # zero init: experts start equally weighted
        self.w_noise = nn.Parameter(torch.zeros(in_dim, n_exps))
        self.dropout = nn.Dropout(dropout)

    def gates(self, x: torch.Tensor) -> torch.Tensor:
        logits = x @ self.w_gate  # (B, E)
        if self.training and self.noisy_gate:
            noise_std = F.softplus(x @ self.w_noise) + 1e-2
            logits = logits + torch.randn_like(logits) * noise_std
        return logits.softmax(dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Each expert sees its own dropout mask, as with XRec's separate PWLayer modules.
        xe = self.dropout(x.unsqueeze(1).expand(-1, self.n_exps, -1)) - self.whiten_bias  # (B, E, in)
        experts = torch.einsum("bei,eoi->beo", xe, self.weight)  # (B, E, out)
        return (self.gates(x).unsqueeze(-1) * experts).sum(dim=1)  # (B, out)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
