"""RecExplainer's target recommenders: SASRec/MF modules, training, artifacts, alignment material."""

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
import torch

import whyrec.encoders.target_train as tt
from whyrec.data.splits import random_split
from whyrec.encoders.mf import MF, MFConfig
from whyrec.encoders.sasrec import SASRec, SASRecConfig
from whyrec.encoders.target_model import TargetModel, load_target, save_target
from whyrec.encoders.target_train import train_target
from whyrec.methods.recexplainer.material import alignment_material, similar_items
from whyrec.utils import WhyrecError

N_ITEMS = 30
SAS = SASRecConfig(dim=32, max_seq_len=5, n_layers=2, n_heads=2, ffn_dim=32, hidden_dropout=0.1,
                   attn_dropout=0.1, lr=1e-2, batch_size=32, epochs=25, patience=25, seed=0)
MFC = MFConfig(dim=16, n_negatives=10, lr=2e-2, batch_size=64, epochs=8, patience=8, grad_clip=5.0, seed=0)


def sequential_frame(n_users: int = 60, length: int = 8, seed: int = 0) -> pd.DataFrame:
    """User u watches items s, s+1, ... (mod N_ITEMS) from a random start: i is followed by i+1.

    Starts are uniform, so popularity is uninformative (HR@10 about 10/24)."""
    rng = np.random.default_rng(seed)
    rows = [(f"u{u}", f"i{(start + t) % N_ITEMS}", 1000 + t)
            for u, start in enumerate(rng.integers(N_ITEMS, size=n_users)) for t in range(length)]
    return pd.DataFrame(rows, columns=["user", "item", "timestamp"])


def save_dataset(path, frame: pd.DataFrame) -> str:
    from whyrec.data.dataset import RecDataset

    items = pd.DataFrame({"item": [f"i{i}" for i in range(N_ITEMS)], "title": [f"Movie {i}" for i in range(N_ITEMS)]})
    RecDataset(interactions=frame, items=items, users=None).save(path)
    return str(path)


@pytest.fixture(scope="module")
def sasrec_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("sasrec")
    data = save_dataset(root / "data", sequential_frame())
    metrics = train_target(data, str(root / "out"), "sasrec", SAS, device="cpu", progress=False)
    return metrics, root / "out", data


# ------------------------------------------------------------------ SASRec module
def test_sasrec_masks_the_future():
    model = SASRec(dataclasses.replace(SAS, max_seq_len=6), N_ITEMS).eval()
    seqs = torch.tensor([[3, 7, 9, 2, 5, 11], [1, 2, 3, 4, 5, 6]])
    changed = seqs.clone()
    changed[:, 4] = torch.tensor([20, 21])
    a, b = model(seqs), model(changed)
    torch.testing.assert_close(a[:, :4], b[:, :4])  # earlier positions never see position 4
    assert not torch.allclose(a[:, 4:], b[:, 4:])


def test_sasrec_left_padding_does_not_change_the_last_state():
    model = SASRec(dataclasses.replace(SAS, max_seq_len=8), N_ITEMS).eval()
    bare = model.user_vector(torch.tensor([[4, 5, 6]]))
    for width in (4, 8):
        padded = torch.tensor([[0] * (width - 3) + [4, 5, 6]])
        torch.testing.assert_close(model.user_vector(padded), bare)
    assert not torch.isnan(model(torch.tensor([[0, 0, 0, 4]]))).any()  # an all-pad prefix is no NaN


def test_training_windows_cover_each_target_once():
    items = np.arange(6)  # a, b, c, d, e, f
    seqs = tt._Seqs(np.array([0, 6]), items, *[(np.zeros(0, int),) * 2] * 2, {"u": 0},
                    {str(i): i for i in range(6)}, {}, "", "")
    inputs, targets = tt._training_windows(seqs, 2)
    assert inputs.tolist() == [[4, 5], [2, 3], [0, 1]]  # item index + 1, left-padded
    assert targets.tolist() == [[4, 5], [2, 3], [-100, 1]]


# ------------------------------------------------------------------ training
def test_sasrec_learns_next_item_and_beats_popularity(sasrec_run):
    metrics, _, _ = sasrec_run
    losses = [h["loss"] for h in metrics["history"]]
    assert losses[-1] < 0.5 * losses[0]
    assert metrics["test"]["hit@10"] > 0.9
    assert metrics["test"]["hit@10"] > metrics["popularity"]["test"]["hit@10"] + 0.3
    assert metrics["split"].startswith("re-split with leave_last_out")  # the data had no split


def test_mf_loss_decreases():
    torch.manual_seed(0)
    model = MF(MFC, 8, N_ITEMS)
    users, items = torch.arange(8).repeat(4), torch.randint(N_ITEMS, (32,))
    opt = torch.optim.AdamW(model.parameters(), lr=0.05)
    negatives = torch.randint(N_ITEMS, (32, MFC.n_negatives))
    losses = []
    for _ in range(30):
        loss = model.loss(users, items, negatives)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_mf_trains_end_to_end_and_keeps_a_leave_last_out_split(tmp_path):
    from whyrec.data.splits import leave_last_out

    data = save_dataset(tmp_path / "data", leave_last_out(sequential_frame()))
    metrics = train_target(data, str(tmp_path / "out"), "mf", MFC, device="cpu", progress=False)
    losses = [h["loss"] for h in metrics["history"]]
    assert losses[-1] < losses[0]
    assert metrics["split"] == "the dataset's own leave-last-out split"
    assert metrics["encoder"] == "mf" and metrics["valid"]["n_users"] == 60


def test_random_split_is_resplit_and_timestamps_are_required(tmp_path):
    frame = random_split(sequential_frame(n_users=10))
    data = save_dataset(tmp_path / "data", frame)
    seqs = tt._load_sequences(data)
    assert "not leave-last-out" in seqs.split_note and len(seqs.test[0]) == 10
    with pytest.raises(WhyrecError, match="timestamp"):
        tt._load_sequences(save_dataset(tmp_path / "nots", frame.drop(columns="timestamp")))
    with pytest.raises(WhyrecError, match="unknown target encoder"):
        train_target(data, str(tmp_path / "out"), "gru4rec")


# ------------------------------------------------------------------ artifact and TargetModel
def test_train_target_writes_the_artifact_folder(sasrec_run):
    _, out, _ = sasrec_run
    files = {p.name for p in out.iterdir()}
    assert {"config.json", "model.safetensors", "user2idx.json", "item2idx.json", "titles.json", "README.md",
            "metrics.json", "run_config.json", "checkpoint"} <= files
    assert json.loads((out / "config.json").read_text())["encoder"] == "sasrec"
    target = load_target(out)
    assert target.kind == "sasrec" and target.dim == 32 and target.titles["i3"] == "Movie 3"
    hist = [int(i[1:]) for i in target.history("u0")]
    assert [(b - a) % N_ITEMS for a, b in zip(hist, hist[1:], strict=False)] == [1] * 5  # time order
    assert len(target.history("u0")) == 6  # 8 items minus the valid and test targets


@pytest.mark.parametrize("kind", ["sasrec", "mf"])
def test_round_trip_gives_identical_scores(tmp_path, kind):
    torch.manual_seed(1)
    model = SASRec(SAS, N_ITEMS) if kind == "sasrec" else MF(MFC, 3, N_ITEMS)
    indptr, items = np.array([0, 3, 4, 9]), np.array([5, 6, 7, 1, 0, 2, 4, 6, 8])
    target = TargetModel(kind, model.eval(), {"a": 0, "b": 1, "c": 2}, {f"i{i}": i for i in range(N_ITEMS)},
                         indptr, items, {"i1": "One"})
    save_target(target, tmp_path / kind)
    loaded = load_target(tmp_path / kind)
    users = ["c", "a", "b"]
    assert torch.equal(loaded.scores(users), target.scores(users))
    assert torch.equal(loaded.item_vectors(["i2", "i0"]), target.item_vectors(["i2", "i0"]))
    assert loaded.history("c") == ["i0", "i2", "i4", "i6", "i8"] and loaded.titles == {"i1": "One"}
    assert loaded.user_vectors(users).shape == (3, loaded.dim)
    with pytest.raises(WhyrecError, match="unknown user"):
        loaded.scores(["nobody"])


def test_scores_mask_exactly_the_history(sasrec_run):
    target = load_target(sasrec_run[1])
    users = ["u0", "u1", "u7"]
    scores = target.scores(users)
    for row, user in zip(scores, users, strict=True):
        seen = {target.item2idx[i] for i in target.history(user)}
        assert {int(i) for i in torch.nonzero(torch.isinf(row)).ravel()} == seen
    # SASRec's user vector is its last max_seq_len train items, encoded in order
    seq = torch.tensor([[target.item2idx[i] + 1 for i in target.history("u0")[-SAS.max_seq_len:]]])
    torch.testing.assert_close(target.user_vectors(["u0"]), target.model.user_vector(seq))


# ------------------------------------------------------------------ alignment material
def test_alignment_material_invariants(sasrec_run):
    target = load_target(sasrec_run[1])
    users = [f"u{i}" for i in range(12)]
    table = alignment_material(target, users, topk=10, seed=3)
    assert list(table["user"]) == users
    scores = target.scores(users).numpy()
    for row, s in zip(table.itertuples(), scores, strict=True):
        finite = s[np.isfinite(s)]
        idx = [target.item2idx[i] for i in row.top5]
        assert len(idx) == 5 and target.item2idx[row.top1] == int(np.argmax(s))
        assert all(s[a] >= s[b] for a, b in zip(idx, idx[1:], strict=False))  # model order
        assert set(idx) <= set(np.argsort(-s)[:10].tolist())  # within the top-k
        assert row.pos_score == pytest.approx(s[target.item2idx[row.pos]])
        assert row.pos_score >= np.quantile(finite, 0.8) and row.neg_score < np.quantile(finite, 0.5)
    pd.testing.assert_frame_equal(table, alignment_material(target, users, topk=10, seed=3))
    assert not table.equals(alignment_material(target, users, topk=10, seed=4))
    assert len(alignment_material(target, None)) == 60


def test_similar_items_is_the_nearest_other_item(sasrec_run):
    target = load_target(sasrec_run[1])
    nearest = similar_items(target, batch=7)
    emb = target.item_vectors()
    sims = emb @ emb.T
    sims.fill_diagonal_(float("-inf"))
    assert all(a != b for a, b in nearest.items()) and len(nearest) == N_ITEMS
    assert [target.item2idx[nearest[i]] for i in target.idx2item] == sims.argmax(1).tolist()


# ------------------------------------------------------------------ resume
def test_resume_after_interruption_matches_an_uninterrupted_run(tmp_path, monkeypatch):
    data = save_dataset(tmp_path / "data", sequential_frame(n_users=30))
    config = dataclasses.replace(SAS, epochs=4, patience=4)
    straight = train_target(data, str(tmp_path / "a"), "sasrec", config, device="cpu", progress=False)

    real, count = tt._run_epoch, {"calls": 0, "crash_at": 3}

    def crashing(*args, **kwargs):
        count["calls"] += 1
        if count["calls"] == count["crash_at"]:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(tt, "_run_epoch", crashing)
    with pytest.raises(KeyboardInterrupt):
        train_target(data, str(tmp_path / "b"), "sasrec", config, device="cpu", progress=False)
    assert not (tmp_path / "b" / "metrics.json").exists() and (tmp_path / "b" / tt.CHECKPOINT).is_file()
    count.update(calls=0, crash_at=None)
    resumed = train_target(data, str(tmp_path / "b"), "sasrec", config, device="cpu", progress=False)
    assert count["calls"] == 2  # only epochs 3 and 4 ran again
    assert resumed["history"] == straight["history"]
    assert torch.equal(load_target(tmp_path / "a").scores(["u1"]), load_target(tmp_path / "b").scores(["u1"]))
    assert train_target(data, str(tmp_path / "b"), "sasrec", config, progress=False) == resumed  # cached


def test_load_target_explains_broken_folders(tmp_path, sasrec_run):
    import shutil

    with pytest.raises(WhyrecError, match="missing config.json"):
        load_target(tmp_path)
    folder = tmp_path / "copy"
    shutil.copytree(sasrec_run[1], folder)
    (folder / "model.safetensors").write_bytes(b"truncated")
    with pytest.raises(WhyrecError, match="does not fit config.json"):
        load_target(folder)
    (folder / "config.json").write_text(json.dumps({"encoder": "lightgcn"}))
    with pytest.raises(WhyrecError, match="expected one of sasrec, mf"):
        load_target(folder)
