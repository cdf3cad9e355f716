"""Seeded splits and user samples: worked examples, determinism, order independence."""

import pandas as pd
import pytest

from whyrec.data import schema as S
from whyrec.data.dataset import RecDataset
from whyrec.data.splits import ensure_split, leave_last_out, random_split, sample_users
from whyrec.utils import WhyrecError


def frame(n_users=20, per_user=10):
    rows = [(f"u{u}", f"i{(u * 7 + k) % 50}", float(1 + k % 5), 1000 + k) for u in range(n_users)
            for k in range(per_user)]
    return pd.DataFrame(rows, columns=[S.USER, S.ITEM, S.RATING, S.TIMESTAMP])


def test_random_split_ratios_and_determinism():
    f = frame()
    a, b = random_split(f, seed=3), random_split(f, seed=3)
    assert a[S.SPLIT].value_counts().to_dict() == {"train": 160, "valid": 20, "test": 20}
    assert a[S.SPLIT].tolist() == b[S.SPLIT].tolist()
    assert a[S.SPLIT].tolist() != random_split(f, seed=4)[S.SPLIT].tolist()
    assert S.SPLIT not in f  # the input is not modified


def test_random_split_ignores_row_order():
    f = frame()
    shuffled = f.sample(frac=1, random_state=0)
    a = random_split(f, seed=1).set_index([S.USER, S.ITEM])[S.SPLIT]
    b = random_split(shuffled, seed=1).set_index([S.USER, S.ITEM])[S.SPLIT]
    assert a.sort_index().tolist() == b.sort_index().tolist()


@pytest.mark.parametrize("ratios", [(0.5, 0.5, 0.5), (1.2, -0.1, -0.1), (0.8, 0.2)])
def test_random_split_rejects_bad_ratios(ratios):
    with pytest.raises(WhyrecError, match="ratios"):
        random_split(frame(), ratios=ratios)


def test_leave_last_out_worked_example():
    f = pd.DataFrame({S.USER: ["a"] * 4 + ["b"] * 2 + ["c"] * 3,
                      S.ITEM: ["1", "2", "3", "4", "1", "2", "5", "6", "7"],
                      S.TIMESTAMP: [40, 10, 30, 20, 1, 2, 5, 6, 7]})
    out = leave_last_out(f, seed=0)
    got = dict(zip(zip(out[S.USER], out[S.ITEM], strict=True), out[S.SPLIT], strict=True))
    assert got[("a", "1")] == "test" and got[("a", "3")] == "valid"
    assert got[("a", "2")] == got[("a", "4")] == "train"
    assert got[("b", "1")] == got[("b", "2")] == "train"  # fewer than 3: all train
    assert (got[("c", "7")], got[("c", "6")], got[("c", "5")]) == ("test", "valid", "train")


def test_leave_last_out_ties_are_seeded_and_order_free():
    f = pd.DataFrame({S.USER: ["a"] * 6, S.ITEM: list("pqrstu"), S.TIMESTAMP: [5] * 6})
    picks = {seed: leave_last_out(f, seed=seed).set_index(S.ITEM)[S.SPLIT].to_dict() for seed in range(6)}
    assert len({tuple(sorted(p.items())) for p in picks.values()}) > 1  # the seed matters
    again = leave_last_out(f.iloc[::-1], seed=2).set_index(S.ITEM)[S.SPLIT].to_dict()
    assert again == picks[2]


def test_leave_last_out_needs_timestamps():
    with pytest.raises(WhyrecError, match="--timestamp_col"):
        leave_last_out(frame().drop(columns=[S.TIMESTAMP]))


def test_ensure_split_keeps_existing_and_validates():
    ds = RecDataset(frame(), None, None)
    ensure_split(ds, "leave_last_out", seed=0)
    first = ds.interactions[S.SPLIT].tolist()
    ensure_split(ds, "random", seed=9)  # an existing valid split is kept
    assert ds.interactions[S.SPLIT].tolist() == first
    assert ds.meta["split"] == "leave_last_out"
    with pytest.raises(WhyrecError, match="unknown split 'loo'"):
        ensure_split(ds, "loo")
    bad = RecDataset(frame().assign(split="dev"), None, None)
    with pytest.raises(WhyrecError, match="dev"):
        ensure_split(bad)


def test_sample_users_keeps_all_rows_of_sampled_users():
    f = frame(n_users=30)
    a = sample_users(f, 5, seed=1)
    assert a[S.USER].nunique() == 5 and len(a) == 50
    assert a.equals(sample_users(f.copy(), 5, seed=1))
    assert len(sample_users(f, 1000)) == len(f)
    with pytest.raises(WhyrecError, match="max_users"):
        sample_users(f, 0)
