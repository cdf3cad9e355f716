"""Top-k ranking metrics: Recall, NDCG, Precision, Hit rate and MRR @k, plus full ranking.

Definitions follow the usual collaborative-filtering protocol (e.g. LightGCN, He et al.
SIGIR 2020; RecBole): binary relevance, log2 position discount, ideal DCG over
min(|ground truth|, k) positions, and a mean over users whose ground truth is non-empty.
Precision divides by the list length k (not by the number of candidates left after
masking). tests/unit/test_ranking_torchmetrics.py checks all five against torchmetrics.
The metric functions are pure: they take the ranked item indices of each user and the sets
of relevant items, so they can be checked on hand-made rank matrices.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
import torch

GroundTruth = Sequence[set[int]]


def topk_from_scores(scores: torch.Tensor, k: int, exclude: sp.csr_matrix | None = None) -> torch.Tensor:
    """Indices of the k best-scored items per row.

    Args:
        scores: [B, I] scores of every item for B users.
        k: list length (clamped to I).
        exclude: optional CSR matrix with B rows (aligned with `scores`); its non-zero
            columns get -inf, e.g. each user's training items.

    Returns:
        [B, k] item indices, best first.
    """
    if exclude is not None and exclude.nnz:
        scores = _mask_(scores.clone(), exclude)
    return torch.topk(scores, min(k, scores.shape[1]), dim=1).indices  # [B, k]


def _mask_(scores: torch.Tensor, exclude: sp.csr_matrix) -> torch.Tensor:
    """Set the non-zero columns of each row of `exclude` to -inf in `scores`, in place."""
    if exclude.shape[0] != scores.shape[0]:
        raise ValueError(f"exclude has {exclude.shape[0]} rows, scores {scores.shape[0]}")
    rows = torch.from_numpy(np.repeat(np.arange(exclude.shape[0]), np.diff(exclude.indptr)))
    cols = torch.from_numpy(exclude.indices.astype(np.int64))
    scores[rows.to(scores.device), cols.to(scores.device)] = float("-inf")
    return scores


SCORE_BLOCK_BYTES = 256 * 2**20
"""Cap on the [users, items] score block `evaluate_ranking` holds at once (256 MiB: 1,024
users up to 65,536 items in fp32, 223 users at 300k items)."""


def user_block(n_items: int, max_users: int = 1024, itemsize: int = 4, max_bytes: int = SCORE_BLOCK_BYTES) -> int:
    """Users per scoring block: at most `max_users`, and at most `max_bytes` of scores (≥ 1)."""
    return max(1, min(max_users, max_bytes // max(n_items * itemsize, 1)))


def _hits(topk_items: np.ndarray, ground_truth: GroundTruth, k: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Boolean [n, k] hit matrix and [n] ground-truth sizes, for users with non-empty truth."""
    topk_items = np.asarray(topk_items, dtype=np.int64)
    if topk_items.ndim != 2 or len(topk_items) != len(ground_truth):
        raise ValueError(f"topk_items {topk_items.shape} does not match {len(ground_truth)} ground-truth sets")
    if k is not None:
        topk_items = topk_items[:, :k]
    sizes = np.fromiter((len(g) for g in ground_truth), dtype=np.int64, count=len(ground_truth))
    keep = sizes > 0
    topk_items, sizes = topk_items[keep], sizes[keep]
    truth = [g for g, kept in zip(ground_truth, keep, strict=True) if kept]
    # Vectorised membership: encode (row, item) pairs as one integer key.
    width = int(max(topk_items.max(initial=0), max((max(g) for g in truth), default=0))) + 1
    gt_rows = np.repeat(np.arange(len(truth)), sizes)
    gt_items = np.fromiter((i for g in truth for i in g), dtype=np.int64, count=int(sizes.sum()))
    keys = np.arange(len(truth))[:, None] * width + topk_items  # [n, k]
    return np.isin(keys, gt_rows * width + gt_items), sizes


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if len(values) else 0.0


def recall_at_k(topk_items: np.ndarray, ground_truth: GroundTruth, k: int | None = None) -> float:
    """Mean of |top-k ∩ truth| / |truth|. `k` truncates `topk_items` (default: all columns)."""
    hits, sizes = _hits(topk_items, ground_truth, k)
    return _mean(hits.sum(1) / np.maximum(sizes, 1))


def precision_at_k(topk_items: np.ndarray, ground_truth: GroundTruth, k: int | None = None) -> float:
    """Mean of |top-k ∩ truth| / k."""
    hits, _ = _hits(topk_items, ground_truth, k)
    return _mean(hits.sum(1) / max(hits.shape[1], 1))


def hit_rate_at_k(topk_items: np.ndarray, ground_truth: GroundTruth, k: int | None = None) -> float:
    """Fraction of users with at least one relevant item in the top k."""
    hits, _ = _hits(topk_items, ground_truth, k)
    return _mean(hits.any(1).astype(np.float64))


def ndcg_at_k(topk_items: np.ndarray, ground_truth: GroundTruth, k: int | None = None) -> float:
    """Mean NDCG with binary relevance; the ideal DCG fills min(|truth|, k) positions."""
    hits, sizes = _hits(topk_items, ground_truth, k)
    discount = 1.0 / np.log2(np.arange(2, hits.shape[1] + 2))  # [k]
    dcg = (hits * discount).sum(1)
    ideal = np.concatenate([[0.0], np.cumsum(discount)])[np.minimum(sizes, hits.shape[1])]
    return _mean(dcg / np.maximum(ideal, 1e-12))


def mrr_at_k(topk_items: np.ndarray, ground_truth: GroundTruth, k: int | None = None) -> float:
    """Mean reciprocal rank of the first relevant item in the top k (0 when there is none)."""
    hits, _ = _hits(topk_items, ground_truth, k)
    if hits.shape[1] == 0:
        return 0.0
    first = hits.argmax(1)  # [n] position of the first hit (0 also when there is none)
    return _mean(np.where(hits.any(1), 1.0 / (first + 1), 0.0))


METRICS = {
    "recall": recall_at_k,
    "ndcg": ndcg_at_k,
    "precision": precision_at_k,
    "hit": hit_rate_at_k,
    "mrr": mrr_at_k,
}


def ground_truth_sets(users: np.ndarray, items: np.ndarray) -> tuple[np.ndarray, list[set[int]]]:
    """Group (user, item) pairs into sorted unique users and each one's set of items."""
    users, items = np.asarray(users, dtype=np.int64), np.asarray(items, dtype=np.int64)
    if len(users) == 0:
        return users, []
    order = np.argsort(users, kind="stable")
    users, items = users[order], items[order]
    unique, starts = np.unique(users, return_index=True)
    return unique, [set(chunk.tolist()) for chunk in np.split(items, starts[1:])]


@torch.no_grad()
def evaluate_ranking(
    user_emb: torch.Tensor,
    item_emb: torch.Tensor,
    eval_pairs: tuple[np.ndarray, np.ndarray],
    train_csr: sp.csr_matrix | None,
    ks: Sequence[int] = (10, 20),
    batch: int = 1024,
    max_block_bytes: int = SCORE_BLOCK_BYTES,
) -> dict[str, float]:
    """Full-ranking Recall/NDCG/Precision/Hit/MRR@k of dot-product scores.

    Each user that appears in `eval_pairs` is scored against every item; items in the user's
    row of `train_csr` are masked (pass None to keep them). Every unique user counts once.
    Note: XRec's own encoder evaluation did not mask training items and averaged over
    validation rows rather than users (METHODS §3.1), so its numbers are not comparable.

    Args:
        user_emb: [U, d]; item_emb: [I, d].
        eval_pairs: (user indices, item indices) of the held-out interactions.
        train_csr: [U, I] training interactions to exclude, or None.
        batch: most users scored at once; fewer when their scores would exceed
            `max_block_bytes` (the block size changes memory, not the numbers).
    Returns:
        {"recall@10": ..., "ndcg@10": ..., "precision@10": ..., "hit@10": ..., "mrr@10": ...,
        "n_users": n}.
    """
    users, truth = ground_truth_sets(*eval_pairs)
    kmax = max(ks)
    ranked = []
    block = user_block(item_emb.shape[0], batch, item_emb.element_size(), max_block_bytes)
    for start in range(0, len(users), block):
        rows = users[start : start + block]
        scores = user_emb[torch.from_numpy(rows).to(user_emb.device)] @ item_emb.T  # [B, I]
        if train_csr is not None and train_csr.nnz:
            _mask_(scores, train_csr[rows])  # a fresh block: masked in place, no copy
        ranked.append(torch.topk(scores, min(kmax, scores.shape[1]), dim=1).indices.cpu().numpy())
        del scores
    ranked = np.concatenate(ranked) if ranked else np.zeros((0, kmax), dtype=np.int64)
    out: dict[str, float] = {}
    for k in ks:
        for name, fn in METRICS.items():
            out[f"{name}@{k}"] = fn(ranked, truth, k)
    out["n_users"] = len(users)
    return out


def evaluate_popularity(
    eval_pairs: tuple[np.ndarray, np.ndarray],
    train_csr: sp.csr_matrix,
    ks: Sequence[int] = (10, 20),
    mask_train: bool = True,
) -> dict[str, float]:
    """The same protocol for the most-popular baseline (items ranked by training count)."""
    counts = np.asarray(train_csr.sum(axis=0), dtype=np.float32).ravel()
    # Score = 1 * count: a rank-1 "embedding" reuses the full-ranking code path.
    user_emb = torch.ones(train_csr.shape[0], 1)  # [U, 1]
    item_emb = torch.from_numpy(counts)[:, None]  # [I, 1]
    return evaluate_ranking(user_emb, item_emb, eval_pairs, train_csr if mask_train else None, ks)
