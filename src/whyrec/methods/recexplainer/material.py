"""What a RecExplainer target model says about its users, for the LLM to be aligned to.

RecExplainer (Lei et al., KDD 2024; METHODS §5.1, `data4Exp.py`) asks the target recommender,
per user and with the user's history masked: its best item (`top1`, for next-item tasks),
5 items sampled from its top-k ranking and KEPT IN MODEL ORDER (for the ranking task), one
item it likes (`pos`, from the top 20% of scores) and one it does not (`neg`, from the bottom
50%) with their scores (for Yes/No interest and the coherence probe). `similar_items` gives
each item's nearest item by embedding dot product (the `iid2sim` task).

The thresholds are ranks over the user's unmasked items: `pos` is drawn from the best
max(1, floor(0.2 n)) items and `neg` from the worst max(1, floor(0.5 n)), so a pos scores at
least the 80th percentile and a neg strictly below the median whenever scores are distinct.

`sequence_vectors` encodes any history prefix with a SASRec target, for RecExplainer's one
uid2hist example per prefix (an MF user vector only knows the full history).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from whyrec.encoders.target_model import TargetModel
from whyrec.utils import WhyrecError

N_RANK = 5  # items in the ranking task (RecExplainer: 5)
POS_TOP = 0.2  # pos: from the top 20% of the user's scores
NEG_BOTTOM = 0.5  # neg: from the bottom 50%
COLUMNS = ["user", "top1", "top5", "pos", "pos_score", "neg", "neg_score"]


def _user_row(user: str, scores: np.ndarray, topk: int, rng: np.random.Generator, items: list[str]) -> dict:
    """One user's material from their [I] scores (history = -inf)."""
    ranking = np.argsort(-scores, kind="stable")  # best first; ties by item index
    ranking = ranking[np.isfinite(scores[ranking])]  # drop the masked history
    n = len(ranking)
    if n == 0:
        raise WhyrecError(f"user {user!r} has interacted with every item; nothing is left to rank")
    head = ranking[:topk]
    picked = np.sort(rng.choice(len(head), size=min(N_RANK, len(head)), replace=False))  # positions: model order
    pos = ranking[rng.integers(max(1, int(POS_TOP * n)))]
    neg = ranking[n - 1 - rng.integers(max(1, int(NEG_BOTTOM * n)))]
    return {"user": user, "top1": items[ranking[0]], "top5": [items[i] for i in head[picked]],
            "pos": items[pos], "pos_score": float(scores[pos]), "neg": items[neg], "neg_score": float(scores[neg])}


def alignment_material(target: TargetModel, users: list[str] | None = None, topk: int = 100,
                       seed: int = 2023, batch: int = 256) -> pd.DataFrame:
    """Per user: top1, top5 (sampled from the top-`topk`, in model order), pos/neg with scores.

    Args:
        target: a loaded target recommender (`whyrec.encoders.target_model.load_target`).
        users: user ids (default: every user with a training history, in index order).
        topk: the ranking depth `top5` is sampled from (RecExplainer: 100).
        seed: one numpy Generator drives all samples, user by user in the given order
            (RecExplainer: 2023), so the same inputs always give the same table.
        batch: users scored at once (memory: batch x n_items floats).
    Returns:
        A DataFrame with columns user, top1, top5 (list of item ids), pos, pos_score, neg, neg_score.
    """
    if topk < 1:
        raise WhyrecError(f"topk must be at least 1, got {topk}")
    if users is None:
        has_history = np.flatnonzero(np.diff(target.hist_indptr) > 0)
        users = [target.idx2user[u] for u in has_history]
    rng = np.random.default_rng(seed)
    rows = []
    for start in range(0, len(users), batch):
        chunk = [str(u) for u in users[start:start + batch]]
        scores = target.scores(chunk).float().cpu().numpy()  # [B, I]
        rows += [_user_row(u, s, topk, rng, target.idx2item) for u, s in zip(chunk, scores, strict=True)]
    return pd.DataFrame(rows, columns=COLUMNS)


@torch.no_grad()
def similar_items(target: TargetModel, batch: int = 1024) -> dict[str, str]:
    """Each item's nearest other item by embedding dot product (ties: the lower index)."""
    emb = target.item_vectors()  # [I, d]
    if len(emb) < 2:
        raise WhyrecError("similar_items needs at least two items")
    nearest = []
    for start in range(0, len(emb), batch):
        sims = emb[start:start + batch] @ emb.T  # [B, I]
        rows = torch.arange(sims.shape[0], device=sims.device)
        sims[rows, rows + start] = float("-inf")  # never the item itself
        nearest.append(sims.argmax(dim=1).cpu())
    nearest = torch.cat(nearest).tolist()
    return {target.idx2item[i]: target.idx2item[j] for i, j in enumerate(nearest)}


def can_encode_prefixes(target) -> bool:
    """Whether `sequence_vectors` works for this target: SASRec (or any target with its own)."""
    return hasattr(target, "sequence_vectors") or hasattr(getattr(target, "model", None), "encode_histories")


@torch.no_grad()
def sequence_vectors(target, histories: list[list[str]]) -> torch.Tensor:
    """[N, d] user vectors of item-id histories (oldest first), as if each were a user's whole
    training history; the full history gives exactly `target.user_vectors([user])`."""
    if hasattr(target, "sequence_vectors"):
        return target.sequence_vectors(histories)
    if not can_encode_prefixes(target):
        raise WhyrecError(f"a {getattr(target, 'kind', type(target).__name__)} target cannot encode a history "
                          "prefix (only SASRec can); use one example per user")
    unknown = next((i for h in histories for i in h if str(i) not in target.item2idx), None)
    if unknown is not None:
        raise WhyrecError(f"unknown item {unknown!r} in a history: the target model knows {target.n_items} items")
    return target.model.encode_histories([[target.item2idx[str(i)] for i in h] for h in histories])
