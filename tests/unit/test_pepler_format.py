"""PEPLER folders: write -> read round trips, fold layout, and clear errors on broken folders."""

import io
import pickle
import random
import re

import numpy as np
import pandas as pd
import pytest

from whyrec.data import schema as S
from whyrec.data.dataset import RecDataset
from whyrec.data.pepler import OPINION, SENTIMENT, load_pepler, write_pepler
from whyrec.utils import WhyrecError

N = 40
FEATURES = ["room", "staff", "location", "breakfast", "front desk"]


def raises(message):
    return pytest.raises(WhyrecError, match=re.escape(message))


def make_records(n=N, seed=0):
    rng = random.Random(seed)
    records = []
    for k in range(n):
        feature, adj = rng.choice(FEATURES), rng.choice(["clean", "rude", "great"])
        records.append({"user": f"u{k % 7}", "item": f"i{k % 11}", "rating": float(rng.randint(1, 5)),
                        "template": (feature, adj, f"the {feature} was {adj}", rng.choice([1, -1])),
                        "text": f"review {k}: the {feature} was {adj}."})
    return records


def write_folder(root, records, folds=None):
    """A PEPLER folder written by hand, the way the released datasets are laid out."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "reviews.pickle").write_bytes(pickle.dumps(records))
    for k, (train, valid, test) in enumerate(folds or [_split(len(records), 1)], start=1):
        (root / str(k)).mkdir()
        for name, idx in (("train", train), ("validation", valid), ("test", test)):
            (root / str(k) / f"{name}.index").write_text(" ".join(map(str, idx)))
    return root


def _split(n, seed):
    order = np.random.default_rng(seed).permutation(n).tolist()
    return order[: int(0.8 * n)], order[int(0.8 * n): int(0.9 * n)], order[int(0.9 * n):]


def read_index(path):
    return sorted(int(t) for t in path.read_text().split())


class _BuiltinsOnly(pickle.Unpickler):
    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"{module}.{name} is not a builtin literal")


# ---------------------------------------------------------------- round trips
def test_read_write_read_preserves_records_and_folds(tmp_path):
    records = make_records()
    folds = [_split(N, s) for s in (1, 2)]
    src = write_folder(tmp_path / "src", records, folds)
    ds = load_pepler(src)
    assert len(ds.interactions) == N and ds.n_users == 7 and ds.n_items == 11
    row = ds.interactions.iloc[3]
    assert (row[S.USER], row[S.FEATURE], row[OPINION], row[S.REVIEW]) == (
        "u3", records[3]["template"][0], records[3]["template"][1], records[3]["text"])
    assert row[S.EXPLANATION] == records[3]["template"][2] and row[SENTIMENT] == records[3]["template"][3]

    out = write_pepler(ds, tmp_path / "out")
    written = _BuiltinsOnly(io.BytesIO((out / "reviews.pickle").read_bytes())).load()
    assert written == records  # every field of every record, in order; builtins only
    for name, idx in zip(("train", "validation", "test"), folds[0]):
        assert read_index(out / "1" / f"{name}.index") == sorted(idx)  # fold 1 = the read split
    assert load_pepler(out, fold=1).interactions.equals(ds.interactions)


def test_dataset_write_read_round_trip(tmp_path):
    frame = pd.DataFrame({S.USER: [f"u{k % 5}" for k in range(30)], S.ITEM: [f"i{k % 9}" for k in range(30)],
                          S.RATING: [float(1 + k % 5) for k in range(30)],
                          S.EXPLANATION: [f"sentence {k}" for k in range(30)],
                          S.FEATURE: [FEATURES[k % 5] for k in range(30)]})
    ds = RecDataset(frame, None, None)
    out = write_pepler(ds, tmp_path / "p", n_folds=2, seed=3)
    back = load_pepler(out, fold=2)
    assert back.interactions[list(frame.columns)].astype({S.RATING: float}).equals(frame)
    assert (back.interactions[OPINION] == "").all() and (back.interactions[SENTIMENT] == 0).all()
    assert back.interactions[S.SPLIT].value_counts().to_dict() == {"train": 24, "valid": 3, "test": 3}


def test_folds_are_seeded_8_1_1_partitions(tmp_path):
    ds = load_pepler(write_folder(tmp_path / "src", make_records()))
    ds.interactions = ds.interactions.drop(columns=S.SPLIT)  # no own split: fold 1 is random too
    a, b, c = (write_pepler(ds, tmp_path / name, seed=seed) for name, seed in (("a", 7), ("b", 7), ("c", 8)))
    assert sorted(p.name for p in a.iterdir()) == ["1", "2", "3", "4", "5", "reviews.pickle"]
    tests = []
    for k in "12345":
        parts = [read_index(a / k / f"{n}.index") for n in ("train", "validation", "test")]
        assert [len(p) for p in parts] == [32, 4, 4]
        assert sorted(sum(parts, [])) == list(range(N))
        assert (a / k / "test.index").read_text() == (b / k / "test.index").read_text()
        with open(a / k / "test.index") as f:  # PEPLER's own parsing of an index file
            assert sorted(int(x) for x in f.readline().split(" ")) == parts[2]
        tests.append(parts[2])
    assert len({tuple(t) for t in tests}) == 5  # the folds differ
    assert (a / "1" / "test.index").read_text() != (c / "1" / "test.index").read_text()


def test_reads_pickle_path_and_samples_users(tmp_path):
    root = write_folder(tmp_path / "src", make_records())
    ds = load_pepler(root / "reviews.pickle", max_users=3, seed=1)
    assert ds.interactions[S.USER].nunique() == 3 and ds.meta["fold"] == 1


def test_unlisted_records_are_dropped_and_counted(tmp_path):
    root = write_folder(tmp_path / "src", make_records(10), [([0, 1, 2, 3, 4, 5], [6], [7])])
    ds = load_pepler(root)
    assert len(ds.interactions) == 8 and ds.meta["unlisted_records"] == 2


# ---------------------------------------------------------------- broken folders
def test_missing_files(tmp_path):
    with raises("no reviews.pickle"):
        load_pepler(tmp_path)
    with raises("not found"):
        load_pepler(tmp_path / "nope")
    root = write_folder(tmp_path / "src", make_records(10))
    with raises("fold folder 3/ not found (have: 1)"):
        load_pepler(root, fold=3)
    (root / "1" / "validation.index").unlink()
    with raises("validation.index not found"):
        load_pepler(root)


@pytest.mark.parametrize("train, message", [
    ("0 1 2 10", "train.index: index 10 is out of range for 10 records (valid: 0..9)"),
    ("0 1 -1", "index -1 is out of range"),
    ("0 1 x2", "'x2' is not an integer"),
    ("0 1 2.5", "'2.5' is not an integer"),
    ("0 1 1", "train.index: index 1 is listed twice"),
    ("0 1 9", "index 9 is in both train.index and test.index"),
])
def test_bad_index_files(tmp_path, train, message):
    root = write_folder(tmp_path / "src", make_records(10), [([], [8], [9])])
    (root / "1" / "train.index").write_text(train)
    with raises(message):
        load_pepler(root)


@pytest.mark.parametrize("edit, message", [
    (lambda r: r[4].pop("template"), "record 4 has no 'template' key (has: user, item, rating, text)"),
    (lambda r: r[2].pop("user"), "record 2 has no 'user' key"),
    (lambda r: r[1].update(template=("room", "clean", "s")), "record 1 template must be a 4-tuple"),
    (lambda r: r[0].update(template="room"), "record 0 template must be a 4-tuple"),
    (lambda r: r.__setitem__(3, ["u", "i"]), "record 3 is a list, not a dict"),
    (lambda r: r[6].update(rating="five"), "record 6 rating 'five' is not a number"),
])
def test_bad_records(tmp_path, edit, message):
    records = make_records(10)
    edit(records)
    root = write_folder(tmp_path / "src", records)
    with raises(message):
        load_pepler(root)


def test_bad_pickles(tmp_path):
    root = write_folder(tmp_path / "src", make_records(10))
    (root / "reviews.pickle").write_bytes(pickle.dumps({"user": "u"}))
    with raises("expected a list of review dicts, got dict"):
        load_pepler(root)
    (root / "reviews.pickle").write_bytes(pickle.dumps([]))
    with raises("no records"):
        load_pepler(root)
    (root / "reviews.pickle").write_bytes(pickle.dumps([io.StringIO()]))  # a non-builtin class
    with raises("refusing to unpickle _io.StringIO"):
        load_pepler(root)


def test_write_needs_explanations_features_and_ratings(tmp_path):
    frame = pd.DataFrame({S.USER: ["u", "v"], S.ITEM: ["a", "b"], S.RATING: [4.0, None]})
    with raises("PEPLER records need explanation, feature on the interactions"):
        write_pepler(RecDataset(frame, None, None), tmp_path)
    frame = frame.assign(**{S.EXPLANATION: ["good", "bad"], S.FEATURE: ["sound", "price"]})
    with raises("1 explained interactions have no rating"):
        write_pepler(RecDataset(frame, None, None), tmp_path)
    with raises("n_folds must be at least 1"):
        write_pepler(RecDataset(frame.fillna(3.0), None, None), tmp_path, n_folds=0)
