"""Seeded train/valid/test splits and user samples, written into the `split` column.

Two protocols:
- `random_split`: a seeded permutation of all interactions cut 80/10/10, as XRec's
  `process/separate.py` does (train_test_split 0.2, then half of that to validation).
- `leave_last_out`: per user, the latest interaction goes to test and the one before it
  to valid (sequential recommenders' protocol); ties in time are broken by the seed.

Both are deterministic functions of (frame contents, seed), independent of row order.

`ensure_split` is the one door every `whyrec data prepare` source goes through: before
splitting it refuses (or, with on_error='skip', drops and counts) rows with bad ratings,
timestamps or ids, and keeps one row per (user, item) pair (the latest by timestamp, else the
last in the file), so a pair can never be in two splits; both split functions also assert it.
A source that ships its own split (XRec, PEPLER folds, a table's `split` column) and puts a pair
in two splits is refused, as that leaks evaluation pairs into training; with on_error='skip'
only the latest row of each such pair is kept (counted as `cross_split_pairs`).
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from whyrec.data import schema as S
from whyrec.data.dataset import RecDataset, check_on_error, drop_bad_rows
from whyrec.utils import WhyrecError

HOWS = ("random", "leave_last_out")
log = logging.getLogger(__name__)


def _ids(frame: pd.DataFrame, col: str) -> np.ndarray:
    """Integer codes that sort like the ids as strings (much faster to sort than strings)."""
    codes, _ = pd.factorize(frame[col].astype(str), sort=True)
    return codes


def _canonical_order(frame: pd.DataFrame) -> np.ndarray:
    """Row positions sorted by (user, item, timestamp), so seeds do not depend on file order."""
    keys = [_ids(frame, S.USER), _ids(frame, S.ITEM)]
    if S.TIMESTAMP in frame:
        keys.append(frame[S.TIMESTAMP].to_numpy())
    return np.lexsort(keys[::-1])


def random_split(frame: pd.DataFrame, ratios: tuple[float, float, float] = (0.8, 0.1, 0.1),
                 seed: int = 42) -> pd.DataFrame:
    """Copy of `frame` whose `split` column cuts a seeded permutation by `ratios`.

    Train gets floor(n * ratios[0]) rows, valid floor(n * ratios[1]), test the rest.
    """
    if len(ratios) != 3 or min(ratios) < 0 or abs(sum(ratios) - 1) > 1e-6:
        raise WhyrecError(f"split ratios {tuple(ratios)} must be three non-negative numbers summing to 1")
    n = len(frame)
    order = _canonical_order(frame)[np.random.default_rng(seed).permutation(n)]
    n_train, n_valid = int(n * ratios[0]), int(n * ratios[1])
    labels = np.empty(n, dtype=object)
    labels[order[:n_train]] = S.TRAIN
    labels[order[n_train:n_train + n_valid]] = S.VALID
    labels[order[n_train + n_valid:]] = S.TEST
    out = frame.copy()
    out[S.SPLIT] = labels
    check_disjoint(out)
    return out


def leave_last_out(frame: pd.DataFrame, seed: int = 42) -> pd.DataFrame:
    """Copy of `frame`: per user the latest interaction -> test, the one before -> valid.

    Users with fewer than 3 interactions stay entirely in train (nothing left to learn from
    otherwise). Equal timestamps are ordered by a seeded random key.
    """
    if S.TIMESTAMP not in frame or frame[S.TIMESTAMP].isna().any():
        raise WhyrecError("leave_last_out needs a timestamp on every interaction; "
                          "map one with --timestamp_col or use --split random")
    tiebreak = np.random.default_rng(seed).permutation(len(frame))
    canonical = _canonical_order(frame)
    tie = np.empty(len(frame), dtype=np.int64)
    tie[canonical] = tiebreak  # the tie-break key follows rows, not file positions
    users = _ids(frame, S.USER)
    order = np.lexsort((tie, frame[S.TIMESTAMP].to_numpy(), users))
    users = users[order]
    from_end = pd.Series(users).groupby(users).cumcount(ascending=False).to_numpy()
    sizes = pd.Series(users).groupby(users).transform("size").to_numpy()
    labels = np.full(len(frame), S.TRAIN, dtype=object)
    enough = sizes >= 3
    labels[order[enough & (from_end == 0)]] = S.TEST
    labels[order[enough & (from_end == 1)]] = S.VALID
    out = frame.copy()
    out[S.SPLIT] = labels
    check_disjoint(out)
    return out


# ---------------------------------------------------------------- one row per (user, item) pair
def _pair_keys(frame: pd.DataFrame) -> np.ndarray:
    users = pd.factorize(frame[S.USER].astype(str))[0].astype(np.int64)
    items = pd.factorize(frame[S.ITEM].astype(str))[0].astype(np.int64)
    return users * (int(items.max(initial=0)) + 1) + items


def duplicate_rows(frame: pd.DataFrame) -> np.ndarray:
    """Mask of the rows to drop so each (user, item) pair keeps one: its latest by timestamp (a
    missing time counts as oldest), ties and untimed data keeping the last row in the file."""
    keys, position = _pair_keys(frame), np.arange(len(frame))
    if S.TIMESTAMP in frame:
        when = pd.factorize(frame[S.TIMESTAMP], sort=True)[0]  # exact order even for ns times; missing: -1
        order = np.lexsort((position, when, keys))
    else:
        order = np.lexsort((position, keys))
    sorted_keys = keys[order]
    last = np.r_[sorted_keys[1:] != sorted_keys[:-1], True]
    drop = np.ones(len(frame), bool)
    drop[order[last]] = False
    return drop


def pairs_in_several_splits(frame: pd.DataFrame) -> np.ndarray:
    """Mask of the rows whose (user, item) pair also has a row in another split."""
    if S.SPLIT not in frame or len(frame) == 0:
        return np.zeros(len(frame), bool)
    keys, split = _pair_keys(frame), pd.factorize(frame[S.SPLIT])[0]
    order = np.lexsort((split, keys))
    keys, split = keys[order], split[order]
    # sorted by pair then split: a pair spans splits iff its first and last split differ
    starts = np.r_[True, keys[1:] != keys[:-1]]
    group = np.cumsum(starts) - 1
    first, last = split[starts], split[np.r_[starts[1:], True]]
    several = np.zeros(len(frame), bool)
    several[order] = (first != last)[group]
    return several


def _overlap_example(frame: pd.DataFrame, mask: np.ndarray) -> str:
    row = frame.iloc[int(np.flatnonzero(mask)[0])]
    same = frame[(frame[S.USER] == row[S.USER]) & (frame[S.ITEM] == row[S.ITEM])]
    return f"user {row[S.USER]!r}, item {row[S.ITEM]!r} in {' and '.join(sorted(set(same[S.SPLIT].astype(str))))}"


def check_disjoint(frame: pd.DataFrame) -> None:
    """Refuse a split that puts a (user, item) pair in two splits (train/test leakage)."""
    several = pairs_in_several_splits(frame)
    if several.any():
        n = len(np.unique(_pair_keys(frame)[several]))
        raise WhyrecError(f"{n} (user, item) pairs are in more than one split (e.g. {_overlap_example(frame, several)}); "
                          "keep one row per pair before splitting (`whyrec data prepare` does)")


def drop_duplicate_pairs(ds: RecDataset, on_error: str = "raise") -> RecDataset:
    """One row per (user, item) pair (see `duplicate_rows`), the count in meta["cleaning"].

    A pair the source's own split puts in two splits is refused (on_error='raise'), or reduced to
    its latest row like any duplicate (on_error='skip', counted as cross_split_pairs)."""
    check_on_error(on_error)
    frame = ds.interactions
    several = pairs_in_several_splits(frame)
    crossing = len(np.unique(_pair_keys(frame)[several])) if several.any() else 0
    if crossing and on_error == "raise":
        raise WhyrecError(f"the source's own split puts {crossing} (user, item) pairs in more than one split "
                          f"(e.g. {_overlap_example(frame, several)}), which leaks them from training into "
                          "evaluation; fix the split, or pass --on_error skip to keep only the latest row of each pair")
    drop = duplicate_rows(frame)
    cleaning = dict(ds.meta.get("cleaning", {}))
    cleaning["duplicates_removed"] = cleaning.get("duplicates_removed", 0) + int(drop.sum())
    if crossing:
        cleaning["cross_split_pairs"] = cleaning.get("cross_split_pairs", 0) + crossing
    if drop.any():
        log.warning("removed %d duplicated (user, item) rows, keeping the latest row of each pair", int(drop.sum()))
        ds.interactions = frame[~drop].reset_index(drop=True)
    ds.meta = {**ds.meta, "cleaning": cleaning}
    return ds


def has_valid_split(frame: pd.DataFrame) -> bool:
    """True when `split` exists, has no gaps and only train/valid/test values, with some train."""
    if S.SPLIT not in frame or frame[S.SPLIT].isna().any():
        return False
    values = set(frame[S.SPLIT].unique())
    return values <= set(S.SPLITS) and S.TRAIN in values


def ensure_split(ds: RecDataset, how: str = "random", seed: int = 42, on_error: str = "raise") -> RecDataset:
    """Check and deduplicate the interactions, then give `ds` a split: an existing valid one is
    kept (XRec ships its own), else `how`. No (user, item) pair ends up in two splits.

    Args:
        how: 'random' (80/10/10) or 'leave_last_out'.
        on_error: 'raise' on rows with bad values or a pair the source's own split puts in two
            splits; 'skip' drops such rows (keeping each pair's latest) and counts them.
    """
    if how not in HOWS:
        raise WhyrecError(f"unknown split {how!r}; choose one of: {', '.join(HOWS)}")
    check_on_error(on_error)
    own = S.SPLIT in ds.interactions
    if own and not has_valid_split(ds.interactions):
        bad = sorted(map(str, set(ds.interactions[S.SPLIT].dropna().unique()) - set(S.SPLITS)))
        raise WhyrecError(f"split column has values {bad or 'missing'}; use train/valid/test or drop the column")
    ds = drop_duplicate_pairs(drop_bad_rows(ds, on_error), on_error)
    if own:
        check_disjoint(ds.interactions)
        return ds
    split = random_split if how == "random" else leave_last_out
    ds.interactions = split(ds.interactions, seed=seed)
    ds.meta = {**ds.meta, "split": how, "split_seed": seed}
    return ds


def sample_users(frame: pd.DataFrame, max_users: int, seed: int = 42) -> pd.DataFrame:
    """Rows of a seeded sample of `max_users` users (all of each sampled user's rows)."""
    if max_users < 1:
        raise WhyrecError(f"max_users must be at least 1, got {max_users}")
    users = np.sort(frame[S.USER].astype(str).unique())
    if max_users >= len(users):
        return frame
    keep = set(np.random.default_rng(seed).choice(users, size=max_users, replace=False))
    return frame[frame[S.USER].astype(str).isin(keep)]


def resplit_texts(ds: RecDataset, test_size: int, seed: int = 0) -> RecDataset:
    """Re-split the per-pair explanation records (`ds.texts`) into train and `test_size` test rows.

    XRec ships explanation records only for its test users (tst.pkl), so training an explainer on
    them needs a split of those records; 2,400/600 of XRec-amazon's 3,000 is the benchmark split.
    The permutation is torch's (`randperm` with `seed`) so it matches benchmarks/xrec_amazon.py.
    """
    import torch

    if ds.texts is None or not len(ds.texts):
        raise WhyrecError("--text_test_size needs per-pair explanation records (an XRec folder with tst.pkl)")
    n = len(ds.texts)
    if not 0 < test_size < n:
        raise WhyrecError(f"--text_test_size must be between 1 and {n - 1} (the dataset has {n} explanation records)")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).numpy()
    split = np.full(n, S.TRAIN, dtype=object)
    split[order[n - test_size:]] = S.TEST
    texts = ds.texts.copy()
    texts[S.SPLIT] = split
    ds.texts = texts
    ds.meta = {**ds.meta, "text_split": f"{n - test_size:,} train / {test_size:,} test explanation records, torch seed {seed}"}
    return ds
