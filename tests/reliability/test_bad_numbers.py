"""Bad numbers are refused, not stored; duplicated pairs are merged before splitting.

Every `whyrec data prepare` source goes through `ensure_split`, which refuses ratings that are
NaN, infinite, too large for float32 or off the scale (negative where the source has no scale),
infinite timestamps and empty ids (one error line: count and an example row), or drops and
counts them with on_error='skip'; it keeps one row per (user, item) pair, so no pair is in two
splits.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from cli_contract import whyrec_inprocess

from whyrec.data import schema as S
from whyrec.data.dataset import RecDataset
from whyrec.data.splits import ensure_split, leave_last_out, random_split
from whyrec.data.tabular import load_table
from whyrec.utils import WhyrecError


def good_rows(n_users: int = 8, per_user: int = 5) -> list[dict]:
    return [{"user": f"u{u}", "item": f"i{(u * 3 + k) % 17}", "rating": float(1 + (u + k) % 5),
             "timestamp": 1000 + 10 * k} for u in range(n_users) for k in range(per_user)]


def write_csv(path, rows: list[dict]) -> str:
    pd.DataFrame(rows).to_csv(path, index=False)
    return str(path)


def prepare(tmp_path, capsys, rows, *extra):
    out = tmp_path / "OUT"
    path = write_csv(tmp_path / "f.csv", rows)
    res = whyrec_inprocess(["data", "prepare", "--source", "csv", "--path", path, "--out", out,
                            "--rating_col", "rating", "--timestamp_col", "timestamp", *extra], capsys)
    return res, out


# ---------------------------------------------------------------- refused through the CLI
@pytest.mark.parametrize(("cell", "shown", "reason"), [
    ("nan", "nan", "NaN or missing"),
    ("", "nan", "NaN or missing"),
    ("inf", "inf", "infinite"),
    ("-inf", "-inf", "infinite"),
    ("1e308", "1e+308", "too large for float32"),
    ("-5", "-5.0", "negative"),
])
def test_bad_rating_is_refused_with_count_and_example(tmp_path, capsys, cell, shown, reason):
    rows = good_rows()
    rows[7]["rating"] = cell
    rows[12]["rating"] = cell
    res, out = prepare(tmp_path, capsys, rows)
    line = res.assert_one_line_error("2 of 40 interactions", reason, f"user '{rows[7]['user']}'",
                                     f"item '{rows[7]['item']}'", f"rating {shown}", "--on_error skip")
    assert "row 8" in line  # the first offending row, counted as in the file
    assert not out.exists()


@pytest.mark.parametrize(("cell", "shown"), [("inf", "inf"), ("1e308", "1e+308"), ("-1e19", "-1e+19")])
def test_timestamp_beyond_int64_is_refused(tmp_path, capsys, cell, shown):
    rows = good_rows()
    rows[3]["timestamp"] = cell
    res, out = prepare(tmp_path, capsys, rows)
    res.assert_one_line_error("1 of 40", "infinite or out-of-range timestamps", f"timestamp {shown}")
    assert not out.exists()


def test_empty_id_is_refused(tmp_path, capsys):
    rows = good_rows()
    rows[5]["user"] = ""  # an empty CSV cell
    res, out = prepare(tmp_path, capsys, rows)
    res.assert_one_line_error("f.csv", "empty user or item ids in 1 rows", "row 6", "item 'i")
    assert not out.exists()


def test_blank_id_in_json_lines_is_refused(tmp_path):
    path = tmp_path / "t.jsonl"
    rows = good_rows()
    rows[2]["item"] = "  "
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(WhyrecError, match=r"1 of 40 interactions have bad values \(1 empty item ids\), e\.g\. row 3"):
        ensure_split(load_table(path))


def write_amazon(path, ratings: list) -> str:
    lines = [json.dumps({"reviewerID": f"r{k % 4}", "asin": f"a{k}", "overall": r, "reviewText": f"text {k}",
                         "unixReviewTime": 1_400_000_000 + k}) for k, r in enumerate(ratings)]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


@pytest.mark.parametrize(("value", "needle"), [(6.0, "ratings outside 1..5"), (0.0, "ratings outside 1..5"),
                                               ("nan", "NaN or missing"), ("1e308", "infinite")])
def test_source_with_a_known_scale_refuses_ratings_off_it(tmp_path, capsys, value, needle):
    path = write_amazon(tmp_path / "reviews.json", [5.0, 4.0, value, 3.0] * 3)
    out = tmp_path / "OUT"
    res = whyrec_inprocess(["data", "prepare", "--source", "amazon-json", "--path", path, "--out", out,
                            "--k_core", "1"], capsys)
    res.assert_one_line_error("3 of 12 interactions", needle, "user 'r2', item 'a2'")
    assert not out.exists()


def test_in_range_values_pass_and_the_range_is_reported(tmp_path, capsys):
    rows = good_rows()
    rows[0]["rating"] = 0.5  # no scale for a table: only negative ratings are refused
    res, out = prepare(tmp_path, capsys, rows)
    assert res.rc == 0, res.err
    summary = json.loads(res.out)
    assert summary["cleaning"]["rating_range"] == [0.5, 5.0] and summary["cleaning"]["rating_scale"] is None
    stored = pd.read_parquet(out / "interactions.parquet")
    assert stored[S.RATING].dtype == np.float32 and np.isfinite(stored[S.RATING]).all()


# ---------------------------------------------------------------- on_error='skip'
def bad_table(tmp_path) -> str:
    rows = good_rows()
    for k, cell in ((1, "nan"), (9, "inf"), (17, "1e308"), (25, "-5")):
        rows[k]["rating"] = cell
    rows[30]["timestamp"] = "-inf"
    rows[33]["item"] = ""
    return write_csv(tmp_path / "f.csv", rows)


def test_skip_drops_and_counts_bad_rows(tmp_path):
    ds = load_table(bad_table(tmp_path), rating_col="rating", timestamp_col="timestamp", on_error="skip")
    ds = ensure_split(ds, "random", seed=0, on_error="skip")
    assert len(ds.interactions) == 34
    assert ds.summary()["cleaning"]["bad_rows_skipped"] == {
        "empty item ids": 1, "ratings NaN or missing": 1, "ratings infinite or too large for float32": 2,
        "negative ratings": 1, "infinite or out-of-range timestamps": 1}
    assert "" not in ds.item2idx and sorted(ds.item2idx.values()) == list(range(ds.n_items))
    ds.save(tmp_path / "OUT")
    back = RecDataset.load(tmp_path / "OUT")
    assert np.isfinite(back.interactions[S.RATING]).all() and (back.interactions[S.RATING] >= 0).all()
    assert json.loads((tmp_path / "OUT" / "dataset.json").read_text())["summary"]["cleaning"]["bad_rows_skipped"]


def test_cli_on_error_skip_drops_and_counts(tmp_path, capsys):
    out = tmp_path / "OUT"
    res = whyrec_inprocess(["data", "prepare", "--source", "csv", "--path", bad_table(tmp_path), "--out", out,
                            "--rating_col", "rating", "--timestamp_col", "timestamp", "--on_error", "skip"], capsys)
    assert res.rc == 0, res.err
    assert sum(json.loads(res.out)["cleaning"]["bad_rows_skipped"].values()) == 6
    assert len(pd.read_parquet(out / "interactions.parquet")) == 34


def test_on_error_must_be_raise_or_skip():
    with pytest.raises(WhyrecError, match="unknown on_error 'ignore'; choose one of: raise, skip"):
        ensure_split(RecDataset(pd.DataFrame(good_rows()), None, None), on_error="ignore")


# ---------------------------------------------------------------- duplicates
def with_duplicates(n_dup: int = 50, seed: int = 0) -> tuple[list[dict], dict]:
    """200 distinct pairs plus `n_dup` later copies of some of them; -> rows, pair -> latest rating."""
    rng = np.random.default_rng(seed)
    rows = [{"user": f"u{u}", "item": f"i{k}", "rating": 3.0, "timestamp": 100 * k + u}
            for u in range(20) for k in range(10)]
    latest = {}
    for n, pick in enumerate(rng.choice(len(rows), n_dup, replace=False)):
        copy = dict(rows[pick], rating=float(1 + n % 5), timestamp=rows[pick]["timestamp"] + 5000 + n)
        rows.append(copy)
        latest[(copy["user"], copy["item"])] = copy["rating"]
    order = rng.permutation(len(rows))  # duplicates anywhere in the file, before or after the original
    return [rows[k] for k in order], latest


@pytest.mark.parametrize("split", ["random", "leave_last_out"])
def test_fifty_duplicates_are_merged_before_splitting(tmp_path, capsys, split):
    rows, latest = with_duplicates()
    res, out = prepare(tmp_path, capsys, rows, "--split", split)
    assert res.rc == 0, res.err
    summary = json.loads(res.out)
    assert summary["cleaning"]["duplicates_removed"] == 50 and summary["interactions"] == 200
    stored = pd.read_parquet(out / "interactions.parquet")
    assert len(stored) == 200 and not stored.duplicated([S.USER, S.ITEM]).any()
    assert stored.groupby([S.USER, S.ITEM])[S.SPLIT].nunique().max() == 1  # no pair in two splits
    kept = stored.set_index([S.USER, S.ITEM])[S.RATING]
    assert all(kept[pair] == rating for pair, rating in latest.items())  # the latest copy wins
    assert json.loads((out / "dataset.json").read_text())["cleaning"]["duplicates_removed"] == 50


def test_without_timestamps_the_last_row_wins():
    frame = pd.DataFrame({S.USER: ["a", "a", "b", "a"], S.ITEM: ["x", "y", "x", "x"], S.RATING: [1.0, 2.0, 3.0, 4.0]})
    ds = ensure_split(RecDataset(frame, None, None), "random", seed=0)
    inter = ds.interactions.set_index([S.USER, S.ITEM])[S.RATING]
    assert len(inter) == 3 and inter[("a", "x")] == 4.0 and ds.meta["cleaning"]["duplicates_removed"] == 1


def own_split_with_overlap() -> pd.DataFrame:
    rows = good_rows()
    frame = pd.DataFrame(rows).assign(split=["train"] * 30 + ["valid"] * 5 + ["test"] * 5)
    leak = frame.iloc[[3]].assign(split="test", timestamp=9999, rating=1.0)  # (u0, i3) also in test, later
    return pd.concat([frame, leak], ignore_index=True)


def test_own_split_overlap_is_refused(tmp_path, capsys):
    frame = own_split_with_overlap()
    res, out = prepare(tmp_path, capsys, frame.to_dict("records"))
    res.assert_one_line_error("1 (user, item) pairs in more than one split", "user 'u0', item 'i3' in test and train",
                              "--on_error skip")
    assert not out.exists()


def test_own_split_overlap_with_skip_keeps_the_latest_row():
    ds = ensure_split(RecDataset(own_split_with_overlap(), None, None), on_error="skip")
    pair = ds.interactions[(ds.interactions[S.USER] == "u0") & (ds.interactions[S.ITEM] == "i3")]
    assert pair[S.SPLIT].tolist() == ["test"] and pair[S.RATING].tolist() == [1.0]
    assert ds.meta["cleaning"]["cross_split_pairs"] == 1 and ds.meta["cleaning"]["duplicates_removed"] == 1


def test_split_functions_assert_no_pair_in_two_splits():
    doubled = pd.DataFrame({S.USER: [f"u{k % 10}" for k in range(200)], S.ITEM: [f"i{k % 100}" for k in range(200)]})
    with pytest.raises(WhyrecError, match=r"pairs are in more than one split \(e\.g\. user 'u"):
        random_split(doubled, seed=0)
    history = pd.DataFrame({S.USER: ["a"] * 3, S.ITEM: ["x", "y", "x"], S.TIMESTAMP: [1, 2, 3]})
    with pytest.raises(WhyrecError, match="1 \\(user, item\\) pairs are in more than one split .*'x' in test and train"):
        leave_last_out(history, seed=0)
    # the same data through ensure_split is merged first: one row per pair, one split each
    ds = ensure_split(RecDataset(history, None, None), "leave_last_out", seed=0)
    assert ds.interactions[[S.USER, S.ITEM]].value_counts().max() == 1
