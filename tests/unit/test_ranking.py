"""Top-k ranking metrics on hand-made rank matrices (worked examples) and against sklearn."""

import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from whyrec.eval.ranking import (
    evaluate_popularity,
    evaluate_ranking,
    ground_truth_sets,
    hit_rate_at_k,
    mrr_at_k,
    ndcg_at_k,
    precision_at_k,
    recall_at_k,
    topk_from_scores,
)

# Three users, lists of 3. User 0 hits at ranks 1 and 3 (2 relevant items), user 1 misses,
# user 2 has no ground truth and is left out of every mean.
TOPK = np.array([[1, 2, 3], [4, 5, 6], [7, 8, 9]])
TRUTH = [{1, 3}, {9}, set()]


def test_worked_example_at_3():
    assert recall_at_k(TOPK, TRUTH) == pytest.approx((2 / 2 + 0) / 2)
    assert precision_at_k(TOPK, TRUTH) == pytest.approx((2 / 3 + 0) / 2)
    assert hit_rate_at_k(TOPK, TRUTH) == pytest.approx(0.5)
    assert mrr_at_k(TOPK, TRUTH) == pytest.approx((1 / 1 + 0) / 2)  # first hit at rank 1
    dcg = 1 + 1 / math.log2(4)  # hits at positions 1 and 3
    idcg = 1 + 1 / math.log2(3)  # min(|truth|=2, k=3) ideal positions
    assert ndcg_at_k(TOPK, TRUTH) == pytest.approx((dcg / idcg + 0) / 2)


def test_worked_example_truncated_to_k1():
    assert recall_at_k(TOPK, TRUTH, k=1) == pytest.approx(0.25)
    assert precision_at_k(TOPK, TRUTH, k=1) == pytest.approx(0.5)
    assert ndcg_at_k(TOPK, TRUTH, k=1) == pytest.approx(0.5)  # ideal DCG over min(2, 1) = 1 slot
    assert hit_rate_at_k(TOPK, TRUTH, k=1) == pytest.approx(0.5)


def test_ideal_dcg_uses_min_of_truth_and_k():
    # One relevant item at rank 1 is a perfect list whatever k is.
    assert ndcg_at_k(np.array([[5, 6, 7, 8]]), [{5}]) == pytest.approx(1.0)
    # Five relevant, k = 2, both hits: perfect at k = 2 although recall is 2/5.
    assert ndcg_at_k(np.array([[0, 1]]), [{0, 1, 2, 3, 4}]) == pytest.approx(1.0)
    assert recall_at_k(np.array([[0, 1]]), [{0, 1, 2, 3, 4}]) == pytest.approx(0.4)


def test_mrr_uses_the_first_hit_within_k():
    topk = np.array([[4, 5, 6], [7, 8, 9]])
    truth = [{6, 5}, {9}]
    assert mrr_at_k(topk, truth) == pytest.approx((1 / 2 + 1 / 3) / 2)
    assert mrr_at_k(topk, truth, k=2) == pytest.approx((1 / 2 + 0) / 2)  # rank 3 is cut off


def test_no_users_with_truth_gives_zero():
    assert recall_at_k(np.array([[1, 2]]), [set()]) == 0.0


def test_against_sklearn_ndcg_and_brute_force():
    from sklearn.metrics import ndcg_score

    rng = np.random.default_rng(0)
    scores = rng.random((30, 40))
    truth = [set(rng.choice(40, size=rng.integers(1, 8), replace=False).tolist()) for _ in range(30)]
    topk = np.argsort(-scores, axis=1)[:, :10]
    relevance = np.zeros_like(scores)
    for u, items in enumerate(truth):
        relevance[u, list(items)] = 1
    assert ndcg_at_k(topk, truth) == pytest.approx(ndcg_score(relevance, scores, k=10))
    brute = np.mean([len(set(row) & t) / len(t) for row, t in zip(topk, truth, strict=True)])
    assert recall_at_k(topk, truth) == pytest.approx(brute)


def test_topk_excludes_rows_of_csr():
    scores = torch.tensor([[0.9, 0.8, 0.7, 0.1], [0.1, 0.2, 0.3, 0.4]])
    exclude = sp.csr_matrix(np.array([[1, 0, 1, 0], [0, 0, 0, 0]], dtype=np.float32))
    top = topk_from_scores(scores, 2, exclude)
    assert top.tolist() == [[1, 3], [3, 2]]
    assert scores[0, 0] == pytest.approx(0.9)  # input left untouched
    assert topk_from_scores(scores, 10).shape == (2, 4)  # k clamped to the item count


def test_ground_truth_sets_groups_by_user():
    users, truth = ground_truth_sets(np.array([3, 1, 3, 1, 3]), np.array([5, 6, 7, 6, 9]))
    assert users.tolist() == [1, 3]
    assert truth == [{6}, {5, 7, 9}]
    empty_users, empty_truth = ground_truth_sets(np.array([], dtype=np.int64), np.array([], dtype=np.int64))
    assert len(empty_users) == 0 and empty_truth == []


def test_evaluate_ranking_masks_train_items():
    # User 0 trained on item 0 (which it scores highest); its held-out item is 1.
    user_emb = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    item_emb = torch.tensor([[3.0, 0.0], [2.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    train = sp.csr_matrix(np.array([[1, 0, 0, 0], [0, 0, 0, 0]], dtype=np.float32))
    pairs = (np.array([0]), np.array([1]))
    masked = evaluate_ranking(user_emb, item_emb, pairs, train, ks=(1,))
    unmasked = evaluate_ranking(user_emb, item_emb, pairs, None, ks=(1,))
    assert masked["recall@1"] == 1.0 and unmasked["recall@1"] == 0.0
    assert masked["n_users"] == 1


def test_popularity_baseline_ranks_by_train_count():
    train = sp.csr_matrix(np.array([[1, 1, 0, 0], [0, 1, 0, 0], [0, 1, 1, 0]], dtype=np.float32))
    # Item 1 is most popular; user 0 trained on it, so its top-1 becomes item 2 (count 1).
    metrics = evaluate_popularity((np.array([0, 1]), np.array([2, 3])), train, ks=(1,))
    assert metrics["hit@1"] == pytest.approx(0.5)
