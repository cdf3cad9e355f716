"""Our full-ranking metrics against torchmetrics' retrieval metrics, on masked score matrices.

torchmetrics sees each user as one query whose candidates are the items *not* masked (the
training items are removed, not just scored -inf), so both sides rank the same lists. Where
the two definitions really differ, a test below pins the difference instead of hiding it.
"""

import numpy as np
import pytest
import scipy.sparse as sp
import torch

tm = pytest.importorskip(
    "torchmetrics",
    reason="torchmetrics is the independent reference for the ranking metrics; "
    "install the dev extra (pip install torchmetrics)",
)
from torchmetrics import retrieval as R  # noqa: E402

from whyrec.eval.ranking import METRICS, evaluate_ranking, topk_from_scores  # noqa: E402

KS = (1, 5, 10, 20)
# Our name -> torchmetrics class. Precision keeps adaptive_k=False: both divide by k.
REFERENCE = {
    "precision": R.RetrievalPrecision,
    "recall": R.RetrievalRecall,
    "ndcg": R.RetrievalNormalizedDCG,
    "hit": R.RetrievalHitRate,
    "mrr": R.RetrievalMRR,
}


def _case(seed: int, n_users: int = 50, n_items: int = 80, dim: int = 8):
    """Random float64 embeddings, training items to mask, and held-out truth disjoint from them.

    About a fifth of the users have no held-out item at all.
    """
    rng = np.random.default_rng(seed)
    user_emb = torch.from_numpy(rng.standard_normal((n_users, dim)))  # [U, d]
    item_emb = torch.from_numpy(rng.standard_normal((n_items, dim)))  # [I, d]
    train, truth = np.zeros((n_users, n_items), dtype=np.float32), []
    for u in range(n_users):
        items = rng.permutation(n_items)
        n_train, n_truth = rng.integers(0, 15), rng.integers(0, 8) * (rng.random() > 0.2)
        train[u, items[:n_train]] = 1
        truth.append(set(items[n_train : n_train + n_truth].tolist()))
    return user_emb, item_emb, sp.csr_matrix(train), truth


def _torchmetrics(
    scores: torch.Tensor,
    train: sp.csr_matrix,
    truth,
    name: str,
    k: int,
    empty_target_action: str = "skip",
) -> float:
    """torchmetrics over each user's unmasked items; users are the query indexes."""
    keep = torch.from_numpy(train.toarray() == 0)  # [U, I] candidates
    target = torch.zeros_like(keep)
    for u, items in enumerate(truth):
        target[u, list(items)] = True
    indexes = torch.arange(scores.shape[0])[:, None].expand_as(keep)  # [U, I]
    metric = REFERENCE[name](top_k=k, empty_target_action=empty_target_action)
    return float(metric(scores[keep], target[keep], indexes=indexes[keep]))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metric_functions_match_torchmetrics(seed):
    user_emb, item_emb, train, truth = _case(seed)
    scores = user_emb @ item_emb.T  # [U, I]
    ranked = topk_from_scores(scores, max(KS), exclude=train).numpy()
    assert any(not t for t in truth)  # the skip rule below is exercised
    for k in KS:
        for name, fn in METRICS.items():
            # Users with no relevant item are left out of our means: torchmetrics' "skip".
            expected = _torchmetrics(scores, train, truth, name, k)
            assert fn(ranked, truth, k) == pytest.approx(expected, abs=1e-6), (name, k)


def test_evaluate_ranking_matches_torchmetrics():
    user_emb, item_emb, train, truth = _case(3)
    users = np.repeat(np.arange(len(truth)), [len(t) for t in truth])
    items = np.array([i for t in truth for i in sorted(t)], dtype=np.int64)
    ours = evaluate_ranking(user_emb, item_emb, (users, items), train, ks=KS, batch=7)
    scores = user_emb @ item_emb.T
    assert ours["n_users"] == sum(1 for t in truth if t)
    for k in KS:
        for name in METRICS:
            expected = _torchmetrics(scores, train, truth, name, k)
            assert ours[f"{name}@{k}"] == pytest.approx(expected, abs=1e-6), (name, k)


def test_users_without_truth_differ_from_torchmetrics_default():
    # torchmetrics' default empty_target_action="neg" scores such users 0 and averages them
    # in; we leave them out (LightGCN/RecBole protocol). Only "skip" agrees with us.
    user_emb, item_emb, train, truth = _case(4)
    scores = user_emb @ item_emb.T
    ranked = topk_from_scores(scores, 10, exclude=train).numpy()
    ours = METRICS["recall"](ranked, truth, 10)
    with_zeros = _torchmetrics(scores, train, truth, "recall", 10, empty_target_action="neg")
    share = sum(1 for t in truth if t) / len(truth)
    assert with_zeros == pytest.approx(ours * share, abs=1e-6)


def test_masked_relevant_item_still_counts_in_our_denominator():
    # A held-out item the user also trained on is masked, so it can never be retrieved. We
    # keep it in |truth| (recall <= 1/2 here); torchmetrics, given only unmasked candidates,
    # never sees it and reports 1. A real definitional difference, not rounding.
    scores = torch.tensor([[0.9, 0.8, 0.1, 0.0]], dtype=torch.float64)
    train = sp.csr_matrix(np.array([[1, 0, 0, 0]], dtype=np.float32))
    truth = [{0, 1}]
    ranked = topk_from_scores(scores, 2, exclude=train).numpy()
    assert ranked.tolist() == [[1, 2]]
    assert METRICS["recall"](ranked, truth, 2) == pytest.approx(0.5)
    assert _torchmetrics(scores, train, truth, "recall", 2) == pytest.approx(1.0)


def test_precision_when_k_exceeds_the_catalogue():
    # torch.topk clamps k to the item count I, so our precision divides by min(k, I); with
    # adaptive_k=False torchmetrics divides by k. Masked items pad our list (never relevant),
    # so for k <= I both agree; beyond I they differ by the factor I / k.
    scores = torch.tensor([[0.5, 0.4, 0.3, 0.2]], dtype=torch.float64)
    train = sp.csr_matrix(np.array([[0, 1, 0, 0]], dtype=np.float32))
    truth = [{3}]
    for k, ours_expected in ((4, 1 / 4), (8, 1 / 4)):
        ranked = topk_from_scores(scores, k, exclude=train).numpy()
        assert METRICS["precision"](ranked, truth, k) == pytest.approx(ours_expected)
    assert _torchmetrics(scores, train, truth, "precision", 4) == pytest.approx(1 / 4)
    assert _torchmetrics(scores, train, truth, "precision", 8) == pytest.approx(1 / 8)
