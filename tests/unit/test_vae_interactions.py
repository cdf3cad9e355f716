"""GaVaMoE's VAE-GMM on data without ratings: observed pairs against sampled pairs (feedback="interactions")."""

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch
from test_vae_gmm import TINY, two_group_dataset

from whyrec.data.dataset import RecDataset
from whyrec.encoders.vae_data import _load_data, _with_negatives
from whyrec.encoders.vae_gmm import VaeGmm, load_vae_gmm, save_vae_gmm
from whyrec.encoders.vae_report import auc
from whyrec.encoders.vae_train import cluster_summary, train_vae_gmm
from whyrec.utils import WhyrecError

AUTO = replace(TINY, feedback="auto")


def two_taste_dataset(tmp_path) -> str:
    """20 users, 20 items, no ratings: group g interacts with 8 of its own 10 items (6/1/1 split)."""
    rng = np.random.default_rng(0)
    rows = []
    for g in (0, 1):
        for u in range(10):
            own = rng.permutation(10)[:8] + 10 * g
            rows += [(f"g{g}u{u}", f"i{i}", s) for i, s in zip(own, ["train"] * 6 + ["valid", "test"], strict=True)]
    path = tmp_path / "implicit"
    RecDataset(interactions=pd.DataFrame(rows, columns=["user", "item", "split"]), items=None, users=None).save(path)
    return str(path)


def test_negatives_are_none_of_the_users_pairs_and_seeded():
    users, items = np.array([0, 0, 1]), np.array([0, 1, 2])
    known = np.unique(np.array([0 * 5 + 0, 0 * 5 + 1, 0 * 5 + 4, 1 * 5 + 2]))  # user 0 also has item 4 (test)
    u, i, t = _with_negatives(users, items, known, 5, replace(TINY, negatives=3), split_no=0)
    assert t.tolist() == [1, 1, 1] + [0] * 9
    np.testing.assert_array_equal(u[:3], users)
    np.testing.assert_array_equal(i[:3], items)
    assert u[3:].tolist() == [0] * 6 + [1] * 3
    assert not np.isin(u[3:] * 5 + i[3:], known).any()  # never a pair the user has, in any split
    again = _with_negatives(users, items, known, 5, replace(TINY, negatives=3), split_no=0)
    np.testing.assert_array_equal(again[1], i)
    other = _with_negatives(users, items, known, 5, replace(TINY, negatives=3, seed=1), split_no=0)
    assert other[1].tolist() != i.tolist()  # a different seed draws other items


def test_a_user_with_every_item_gets_no_negative():
    known = np.arange(3)  # user 0 has items 0..2 of 3
    u, i, t = _with_negatives(np.array([0]), np.array([1]), known, 3, TINY, split_no=0, max_rounds=5)
    assert (u.tolist(), i.tolist(), t.tolist()) == ([0], [1], [1])


def test_auc_by_hand():
    assert auc(torch.tensor([0.9, 0.8]), torch.tensor([0.1, 0.2])) == 1.0
    assert auc(torch.tensor([0.5]), torch.tensor([0.5])) == 0.5  # a tie counts half
    assert auc(torch.tensor([0.1, 0.9]), torch.tensor([0.5])) == 0.5
    assert auc(torch.tensor([0.1]), torch.tensor([])) is None


def test_auto_feedback_follows_the_data(tmp_path):
    assert _load_data(two_taste_dataset(tmp_path), "cpu", AUTO).feedback == "interactions"
    assert _load_data(two_group_dataset(tmp_path), "cpu", AUTO).feedback == "ratings"
    data = _load_data(two_taste_dataset(tmp_path), "cpu", AUTO)
    train = data.splits["train"]
    assert len(train) == 2 * 120 and int(train.targets.sum()) == 120  # 120 observed + 120 sampled
    with pytest.raises(WhyrecError, match="--vae.feedback interactions"):
        _load_data(two_taste_dataset(tmp_path), "cpu", TINY)  # ratings asked, none there


def test_training_without_ratings_learns_the_tastes(tmp_path):
    data, out = two_taste_dataset(tmp_path), tmp_path / "vae"
    config = replace(AUTO, pretrain_epochs=30, elbo_epochs=4)
    metrics = train_vae_gmm(data, str(out), config, device="cpu", progress=False)
    assert metrics["feedback"] == "interactions" and "rmse" not in metrics["test"]
    assert metrics["train"]["auc"] > 0.9, metrics["train"]
    assert metrics["test"]["n"] == 40 and 0.5 < metrics["test"]["auc"] <= 1.0, metrics["test"]
    ces = [r["ce"] for r in metrics["history"]["pretrain"]]
    assert ces[-1] < ces[0]
    art = load_vae_gmm(out)  # the folder records the resolved feedback
    assert art.config.feedback == "interactions" and art.model.decoder[-1].out_features == 2
    assert json.loads((out / "config.json").read_text())["feedback"] == "interactions"
    summary = cluster_summary(metrics, str(out))
    assert "| accuracy | auc |" in summary and "sampled pairs" in summary
    # the score ranking uses is P(observed): own-group items above the other group's
    mu, _ = art.model.encode(torch.zeros(20, dtype=torch.long), torch.arange(20))
    score = art.model.score(mu)
    torch.testing.assert_close(score, art.model.decode(mu).softmax(-1)[:, 1])
    own = [art.item2idx[f"i{i}"] for i in range(10)]
    other = [art.item2idx[f"i{i}"] for i in range(10, 20)]
    user = art.user2idx["g0u0"]
    mu, _ = art.model.encode(torch.full((20,), user), torch.tensor(own + other))
    s = art.model.score(mu)
    assert s[:10].mean() > s[10:].mean()


def test_rating_folders_keep_their_fingerprint_and_load_without_the_field(tmp_path):
    data, out = two_group_dataset(tmp_path), tmp_path / "vae"
    metrics = train_vae_gmm(data, str(out), replace(TINY, pretrain_epochs=1, elbo_epochs=0), device="cpu", progress=False)
    assert "feedback" not in metrics["fingerprint"]["config"]  # as folders written before interactions mode
    assert "negatives" not in metrics["fingerprint"]["config"] and "rmse" in metrics["test"]
    # a folder saved before the field existed reconstructs ratings
    model = VaeGmm(TINY, 2, 2)
    save_vae_gmm(model, tmp_path / "old", {"a": 0, "b": 1}, {"x": 0, "y": 1})
    raw = json.loads((tmp_path / "old" / "config.json").read_text())
    raw.pop("feedback"), raw.pop("negatives")
    (tmp_path / "old" / "config.json").write_text(json.dumps(raw))
    art = load_vae_gmm(tmp_path / "old")
    assert art.config.feedback == "ratings" and art.model.decoder[-1].out_features == 5


def test_an_unresolved_feedback_cannot_build_a_model():
    with pytest.raises(WhyrecError, match="not resolved"):
        VaeGmm(AUTO, 2, 2)
