"""LightGCN: graph normalisation, propagation, BPR, sampling, artifacts, training and resume."""

import json
import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

from whyrec.config import LightGCNConfig
from whyrec.data.dataset import RecDataset
from whyrec.encoders.artifact import load_encoder
from whyrec.encoders.lightgcn import LightGCN, interaction_matrix, normalized_adjacency, propagate
from whyrec.encoders.train import sample_negatives, train_encoder
from whyrec.utils import WhyrecError

TINY = LightGCNConfig(dim=8, n_layers=2, lr=0.05, batch_size=64, epochs=30, patience=30, eval_k=5, seed=0)


def toy_train() -> sp.csr_matrix:
    """u0-{i0, i1}, u1-{i1, i2}; (u0, i0) twice (binarised away); i3 isolated."""
    return interaction_matrix(np.array([0, 0, 0, 1, 1]), np.array([0, 0, 1, 1, 2]), 2, 4)


def community_dataset(tmp_path, with_split: bool = True) -> str:
    """4 groups of 20 users, each liking 8 of its group's 15 items; popularity is uninformative."""
    rng = np.random.default_rng(0)
    rows = []
    for group in range(4):
        for u in range(20):
            items = rng.choice(15, size=8, replace=False) + 15 * group
            splits = ["test", "test", "valid"] + ["train"] * 5
            rows += [(f"u{group}_{u}", f"i{i}", s) for i, s in zip(items, splits, strict=True)]
    frame = pd.DataFrame(rows, columns=["user", "item", "split"])
    if not with_split:
        frame = frame.drop(columns="split")
    path = tmp_path / ("data" if with_split else "nosplit")
    RecDataset(interactions=frame, items=None, users=None).save(path)
    return str(path)


# ------------------------------------------------------------------ graph and propagation
def test_adjacency_is_symmetric_normalised_by_hand():
    adj = normalized_adjacency(toy_train()).to_dense()  # nodes: u0 u1 i0 i1 i2 i3
    # degrees: u0 2, u1 2, i0 1, i1 2, i2 1, i3 0
    expected = torch.zeros(6, 6)
    for u, i, value in [(0, 2, 1 / math.sqrt(2)), (0, 3, 1 / 2), (1, 3, 1 / 2), (1, 4, 1 / math.sqrt(2))]:
        expected[u, i] = expected[i, u] = value
    torch.testing.assert_close(adj, expected)
    assert adj[5].abs().sum() == 0  # degree 0 gives 0, not inf/nan


@pytest.mark.parametrize("combine", ["sum", "mean"])
def test_propagation_sum_and_mean(combine):
    adj = normalized_adjacency(toy_train())
    dense, ego = adj.to_dense(), torch.randn(6, 3)
    layers = [ego, dense @ ego, dense @ dense @ ego, dense @ dense @ dense @ ego]
    expected = sum(layers) / (4 if combine == "mean" else 1)
    torch.testing.assert_close(propagate(adj, ego, 3, combine), expected)


def test_symmetric_backward_matches_dense_autograd():
    model = LightGCN(replace(TINY, n_layers=3), 2, 4, toy_train(), generator=torch.Generator().manual_seed(0))
    users, items = model()
    (users.sum() * 2 + items.pow(2).sum()).backward()
    grads = (model.user_ego.grad.clone(), model.item_ego.grad.clone())

    ego = torch.cat([model.user_ego, model.item_ego]).detach().requires_grad_()
    dense = model.adj.to_dense()
    out = ego + dense @ ego + dense @ dense @ ego + dense @ dense @ dense @ ego
    (out[:2].sum() * 2 + out[2:].pow(2).sum()).backward()
    torch.testing.assert_close(torch.cat(grads), ego.grad)


# ------------------------------------------------------------------ loss and sampling
def test_bpr_loss_decreases_and_is_stable():
    model = LightGCN(TINY, 2, 4, toy_train(), generator=torch.Generator().manual_seed(0))
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    users, pos, neg = torch.tensor([0, 0, 1, 1]), torch.tensor([0, 1, 1, 2]), torch.tensor([2, 3, 0, 3])
    losses = []
    for _ in range(20):
        loss = model.bpr_loss(users, pos, neg)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    with torch.no_grad():  # huge margins: log(sigmoid(.)) would give -inf, logsigmoid does not
        model.user_ego.mul_(1e4)
        model.item_ego.mul_(1e4)
    assert torch.isfinite(model.bpr_loss(users, neg, pos))


def test_l2_is_summed_over_the_batch_not_averaged():
    gen = torch.Generator().manual_seed(0)
    model = LightGCN(replace(TINY, weight_decay=0.0), 2, 4, toy_train(), generator=gen)
    users, pos, neg = torch.tensor([0, 1, 1]), torch.tensor([0, 1, 2]), torch.tensor([3, 0, 3])
    plain = model.bpr_loss(users, pos, neg)
    model.config = replace(TINY, weight_decay=0.1)
    l2 = model.user_ego[users].square().sum() + model.item_ego[pos].square().sum() + model.item_ego[neg].square().sum()
    torch.testing.assert_close(model.bpr_loss(users, pos, neg), plain + 0.1 * l2)


def test_negatives_never_hit_train_positives():
    rng = np.random.default_rng(0)
    train = sp.csr_matrix((rng.random((50, 30)) < 0.7).astype(np.float32))  # dense: many rejections
    users = np.repeat(np.arange(50), np.diff(train.indptr))
    candidates = np.arange(30)
    neg = sample_negatives(users, train, candidates, rng)
    assert not np.asarray(train[users, neg]).any()
    assert neg.min() >= 0 and neg.max() < 30
    full = sp.csr_matrix(np.ones((2, 3), dtype=np.float32))
    with pytest.raises(WhyrecError, match="no negative exists"):
        sample_negatives(np.array([0, 1]), full, np.arange(3), rng)


# ------------------------------------------------------------------ artifacts
def test_save_load_gives_identical_embeddings(tmp_path):
    model = LightGCN(TINY, 2, 4, toy_train(), generator=torch.Generator().manual_seed(0))
    user2idx, item2idx = {"a": 0, "b": 1}, {"w": 0, "x": 1, "y": 2, "z": 3}
    model.save_pretrained(tmp_path / "enc", user2idx, item2idx, toy_train(), card={"best_epoch": 3})
    assert sorted(p.name for p in (tmp_path / "enc").iterdir()) == [
        "README.md", "config.json", "item2idx.json", "model.safetensors", "user2idx.json"]
    assert json.loads((tmp_path / "enc" / "config.json").read_text())["encoder"] == "lightgcn"

    again = LightGCN.from_pretrained(tmp_path / "enc")
    for a, b in zip(model.embeddings(), again.embeddings(), strict=True):
        assert torch.equal(a, b)
    enc = load_encoder(tmp_path / "enc")
    assert torch.equal(enc.user_emb, model.embeddings()[0]) and enc.dim == 8
    items, scores = enc.recommend(enc.user_index("a"), k=4)
    assert set(items) == {2, 3} and len(scores) == 2  # train items 0, 1 excluded
    assert len(enc.recommend(0, k=4, exclude_train=False)[0]) == 4
    with pytest.raises(WhyrecError, match="unknown user 'nobody'.*2 users"):
        enc.user_index("nobody")
    with pytest.raises(WhyrecError, match="2 users"):
        enc.recommend(7)


def test_missing_or_corrupt_artifact_errors(tmp_path):
    model = LightGCN(TINY, 2, 4, toy_train())
    folder = model.save_pretrained(tmp_path / "enc", {"a": 0, "b": 1}, {"w": 0, "x": 1, "y": 2, "z": 3})
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(WhyrecError, match="model.safetensors is not a readable safetensors file"):
        load_encoder(folder)
    (folder / "item2idx.json").unlink()
    with pytest.raises(WhyrecError, match="missing item2idx.json"):
        load_encoder(folder)
    with pytest.raises(WhyrecError, match="no such folder"):
        load_encoder(tmp_path / "nothing")


# ------------------------------------------------------------------ training
def test_training_beats_popularity_and_caches(tmp_path, monkeypatch):
    data = community_dataset(tmp_path)
    metrics = train_encoder(data, str(tmp_path / "out"), config=TINY, device="cpu")
    assert metrics["test"]["recall@10"] > 2 * metrics["popularity"]["test"]["recall@10"]
    assert metrics["test"]["recall@10"] > 0.5
    for name in ("config.json", "model.safetensors", "user2idx.json", "item2idx.json", "README.md",
                 "metrics.json", "run_config.json", "checkpoint/checkpoint.safetensors"):
        assert (tmp_path / "out" / name).is_file(), name
    assert load_encoder(tmp_path / "out").n_users == 80

    import whyrec.encoders.train as train_module

    monkeypatch.setattr(train_module, "_fit", lambda *a, **k: pytest.fail("retrained a finished run"))
    assert train_encoder(data, str(tmp_path / "out"), config=TINY, device="cpu") == metrics


def test_resume_after_interruption_matches_uninterrupted_run(tmp_path):
    data = community_dataset(tmp_path)
    cfg = replace(TINY, epochs=6)
    train_encoder(data, str(tmp_path / "full"), config=cfg, device="cpu")
    train_encoder(data, str(tmp_path / "cut"), config=replace(cfg, epochs=3), device="cpu")  # "killed"
    resumed = train_encoder(data, str(tmp_path / "cut"), config=cfg, device="cpu")
    assert resumed["epochs_run"] == 6 and len(resumed["history"]) == 6
    full, cut = LightGCN.from_pretrained(tmp_path / "full"), LightGCN.from_pretrained(tmp_path / "cut")
    assert torch.equal(full.user_ego, cut.user_ego) and torch.equal(full.item_ego, cut.item_ego)
    from safetensors.torch import load_file

    last = [load_file(tmp_path / d / "checkpoint" / "checkpoint.safetensors") for d in ("full", "cut")]
    assert all(torch.equal(last[0][k], last[1][k]) for k in last[0])


def test_early_stopping_keeps_best_epoch(tmp_path):
    data = community_dataset(tmp_path)
    cfg = replace(TINY, lr=1e-12, patience=2, epochs=50)  # nothing improves after the first eval
    metrics = train_encoder(data, str(tmp_path / "out"), config=cfg, device="cpu")
    assert metrics["stopped_early"] and metrics["best_epoch"] == 1 and metrics["epochs_run"] == 3


def test_errors_on_missing_split_and_unknown_encoder(tmp_path):
    with pytest.raises(WhyrecError, match="no split column"):
        train_encoder(community_dataset(tmp_path, with_split=False), str(tmp_path / "out"), config=TINY)
    with pytest.raises(WhyrecError, match="unknown encoder 'mf'"):
        train_encoder(community_dataset(tmp_path), str(tmp_path / "out"), encoder="mf", config=TINY)
