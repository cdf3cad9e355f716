"""PEPLER dataset folders, read into and written from the canonical schema.

Source: PEPLER, "Personalized Prompt Learning for Explainable Recommendation", Li, Zhang and
Chen, ACM TOIS 2023 (github.com/lileipisces/PEPLER); PETER and NETE read the same files
(METHODS §1). A folder holds:

- `reviews.pickle`: a list of dicts `{"user", "item", "rating", "template"[, "text"]}` where
  `template = (feature, adjective, sentence, sentiment ±1)`;
- fold folders `1/ … 5/`, each with `train.index`, `validation.index` and `test.index`: one
  line of space-separated integers, positions in the reviews list (random 8:1:1 splits).

In the canonical schema a record becomes one interaction: `explanation` = the template
sentence, `feature` = its feature, plus `opinion` (the adjective), `sentiment` and `review`
(the raw `text`, when present); `split` comes from the chosen fold. Rows keep the order of
`reviews.pickle`; records that no index file of the fold lists are dropped (and counted).

Reading uses `load_plain_pickle`: a pickle that names any class or function at all is
refused, so loading a downloaded folder runs no code. Writing a pickle is the format's
requirement; the ones written here hold only builtin types (a list of dicts of str, float,
int and tuples), which any unpickler reads without imports.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pandas as pd

from whyrec.data import schema as S
from whyrec.data.dataset import RecDataset
from whyrec.data.safe_pickle import builtins_hint, load_plain_pickle
from whyrec.data.splits import has_valid_split, random_split, sample_users
from whyrec.utils import WhyrecError, atomic_path, write_text

REVIEWS = "reviews.pickle"
INDEX_FILES = {S.TRAIN: "train.index", S.VALID: "validation.index", S.TEST: "test.index"}
RECORD_KEYS = ("user", "item", "rating", "template")
OPINION = "opinion"  # the template's adjective, e.g. "clean" in (room, clean, ...)
SENTIMENT = "sentiment"  # +1 / -1 in PEPLER's data; 0 where a dataset does not say
PICKLE_PROTOCOL = 4  # PEPLER's README pins Python 3.6, which reads up to protocol 4


# ---------------------------------------------------------------- reading


def _locate(path: Path) -> tuple[Path, Path]:
    """(reviews.pickle, folder holding the folds) from a folder or the pickle itself."""
    if path.is_file():
        return path, path.parent
    if not path.is_dir():
        raise WhyrecError(f"PEPLER data {path} not found; pass the folder holding {REVIEWS} and 1..5/")
    if not (path / REVIEWS).is_file():
        raise WhyrecError(f"{path}: no {REVIEWS}; a PEPLER folder holds {REVIEWS} and fold folders 1..5/")
    return path / REVIEWS, path


def _check_record(i: int, record, where: Path) -> None:
    if not isinstance(record, dict):
        raise WhyrecError(f"{where}: record {i} is a {type(record).__name__}, not a dict")
    missing = [k for k in RECORD_KEYS if k not in record]
    if missing:
        raise WhyrecError(f"{where}: record {i} has no {', '.join(map(repr, missing))} key "
                          f"(has: {', '.join(map(str, record)) or 'none'})")
    template = record["template"]
    if not isinstance(template, tuple | list) or len(template) != 4:
        raise WhyrecError(f"{where}: record {i} template must be a 4-tuple (feature, adjective, "
                          f"sentence, sentiment), got {template!r:.80}")


def read_reviews(path: str | Path) -> list[dict]:
    """The checked record list of a `reviews.pickle` (builtin types only: no code runs).

    Record numbers in errors count from 0, like the positions in the index files.
    """
    path = Path(path)
    records = load_plain_pickle(path, hint=builtins_hint(path))
    if not isinstance(records, list | tuple):
        raise WhyrecError(f"{path}: expected a list of review dicts, got {type(records).__name__}")
    if not records:
        raise WhyrecError(f"{path}: no records")
    for i, record in enumerate(records):
        _check_record(i, record, path)
    return list(records)


def _read_index(path: Path, n_records: int) -> np.ndarray:
    if not path.is_file():
        raise WhyrecError(f"{path} not found; a PEPLER fold folder holds "
                          f"{', '.join(INDEX_FILES.values())}")
    values = []
    for token in path.read_text().split():
        try:
            values.append(int(token))
        except ValueError:
            raise WhyrecError(f"{path}: {token[:30]!r} is not an integer; an index file is one line "
                              "of space-separated record positions") from None
    index = np.array(values, dtype=np.int64)
    out_of_range = index[(index < 0) | (index >= n_records)]
    if len(out_of_range):
        raise WhyrecError(f"{path}: index {out_of_range[0]} is out of range for {n_records} records "
                          f"(valid: 0..{n_records - 1}); do the folds belong to another {REVIEWS}?")
    return index


def read_fold(root: str | Path, fold: int, n_records: int) -> np.ndarray:
    """Split label (train/valid/test, None if unlisted) of each record in fold `fold`."""
    folder = Path(root) / str(fold)
    if not folder.is_dir():
        have = sorted(p.name for p in Path(root).iterdir() if p.is_dir() and p.name.isdigit())
        raise WhyrecError(f"{Path(root)}: fold folder {fold}/ not found (have: {', '.join(have) or 'none'}); "
                          "choose another fold or write the folds with write_pepler")
    labels = np.full(n_records, None, dtype=object)
    for split, name in INDEX_FILES.items():
        index = _read_index(folder / name, n_records)
        values, counts = np.unique(index, return_counts=True)
        if (counts > 1).any():
            raise WhyrecError(f"{folder / name}: index {values[counts > 1][0]} is listed twice")
        taken = index[pd.notna(labels[index])]
        if len(taken):
            raise WhyrecError(f"{folder}: index {taken[0]} is in both {INDEX_FILES[labels[taken[0]]]} and {name}")
        labels[index] = split
    return labels


def _text(value) -> str:
    return value if isinstance(value, str) else "" if value is None else str(value)


def _ratings(records: list[dict]) -> pd.Series:
    given = pd.Series([r["rating"] for r in records], dtype=object)
    ratings = pd.to_numeric(given, errors="coerce")
    bad = np.flatnonzero(ratings.isna() & given.notna())
    if len(bad):
        raise WhyrecError(f"record {bad[0]} rating {given[bad[0]]!r:.30} is not a number")
    return ratings.astype("float32")


def records_to_frame(records: list[dict]) -> pd.DataFrame:
    """Canonical interaction columns for PEPLER records (ids as strings, one row per record)."""
    templates = [r["template"] for r in records]
    frame = pd.DataFrame({
        S.USER: [str(r["user"]) for r in records],
        S.ITEM: [str(r["item"]) for r in records],
        S.RATING: _ratings(records),
        S.EXPLANATION: [_text(t[2]) for t in templates],
        S.FEATURE: [_text(t[0]) for t in templates],
        OPINION: [_text(t[1]) for t in templates],
        SENTIMENT: [t[3] for t in templates],
    })
    if any("text" in r for r in records):
        frame[S.REVIEW] = [_text(r.get("text")) for r in records]
    return frame


def load_pepler(path: str | Path, fold: int = 1, max_users: int | None = None, seed: int = 42) -> RecDataset:
    """A PEPLER folder (or its `reviews.pickle`) as a RecDataset split by fold `fold`.

    Args:
        path: the folder with reviews.pickle and 1..5/, or the reviews.pickle file.
        fold: which fold folder gives the train/valid/test split.
        max_users: keep a seeded sample of this many users (all their records).
    """
    pickle_path, root = _locate(Path(path))
    records = read_reviews(pickle_path)
    frame = records_to_frame(records)
    frame[S.SPLIT] = read_fold(root, fold, len(records))
    listed = frame[S.SPLIT].notna().to_numpy()
    frame = frame[listed].reset_index(drop=True)
    if max_users is not None:
        frame = sample_users(frame, max_users, seed).reset_index(drop=True)
    meta = {"source": "pepler", "folder": root.name, "fold": fold, "records": len(records),
            "unlisted_records": int((~listed).sum()), "max_users": max_users}
    return RecDataset(frame, None, None, meta=meta)


# ---------------------------------------------------------------- writing


def _explained(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows a PEPLER record can be made of: rated, with an explanation and a feature."""
    missing = [c for c in (S.RATING, S.EXPLANATION, S.FEATURE) if c not in frame]
    if missing:
        raise WhyrecError(f"PEPLER records need {', '.join(missing)} on the interactions (have: "
                          f"{', '.join(map(str, frame.columns))}); extract features and explanations first")
    keep = (frame[S.EXPLANATION].fillna("").astype(str).str.strip() != "") & frame[S.FEATURE].notna()
    frame = frame[keep].reset_index(drop=True)
    if len(frame) == 0:
        raise WhyrecError("no interaction has both an explanation and a feature; nothing to write")
    if frame[S.RATING].isna().any():
        raise WhyrecError(f"{int(frame[S.RATING].isna().sum())} explained interactions have no rating; "
                          "PEPLER records need one, fill or drop them")
    return frame


def _column(frame: pd.DataFrame, name: str, default) -> list:
    return frame[name].tolist() if name in frame else [default] * len(frame)


def frame_to_records(frame: pd.DataFrame) -> list[dict]:
    """PEPLER record dicts holding only builtin types (str, float, int, tuple)."""
    texts = {c: frame[c].fillna("").astype(str).tolist() if c in frame else None
             for c in (S.FEATURE, OPINION, S.EXPLANATION, S.REVIEW)}
    opinions = texts[OPINION] or [""] * len(frame)
    sentiments = [0 if pd.isna(s) else int(s) for s in _column(frame, SENTIMENT, 0)]
    records = []
    for k, (user, item, rating) in enumerate(zip(frame[S.USER].astype(str).tolist(),
                                                 frame[S.ITEM].astype(str).tolist(),
                                                 frame[S.RATING].astype(float).tolist())):
        template = (texts[S.FEATURE][k], opinions[k], texts[S.EXPLANATION][k], sentiments[k])
        record = {"user": user, "item": item, "rating": rating, "template": template}
        if texts[S.REVIEW] is not None:
            record["text"] = texts[S.REVIEW][k]
        records.append(record)
    return records


def fold_splits(frame: pd.DataFrame, n_folds: int = 5, seed: int = 42) -> list[np.ndarray]:
    """Split labels per fold: fold 1 is `frame`'s own split if it has one, else a random 8:1:1
    cut with `seed`; fold k >= 2 is a random 8:1:1 cut with seed `seed + k - 1`."""
    if n_folds < 1:
        raise WhyrecError(f"n_folds must be at least 1, got {n_folds}")
    own = has_valid_split(frame)
    folds = []
    for k in range(1, n_folds + 1):
        if k == 1 and own:
            folds.append(frame[S.SPLIT].to_numpy(dtype=object))
        else:
            folds.append(random_split(frame, (0.8, 0.1, 0.1), seed=seed + k - 1)[S.SPLIT].to_numpy())
    return folds


def write_pepler(ds: RecDataset, out: str | Path, n_folds: int = 5, seed: int = 42) -> Path:
    """Write `ds` as a PEPLER folder: reviews.pickle and fold folders 1..n_folds.

    Only interactions with an explanation and a feature become records (in their order);
    `opinion` defaults to "" and `sentiment` to 0 where the dataset lacks them. Fold 1 keeps
    the dataset's own split when it has one (whatever protocol made it); the other folds are
    seeded random 8:1:1 splits, as in PEPLER's data. Returns `out`.
    """
    frame = _explained(ds.interactions)
    records = frame_to_records(frame)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / REVIEWS) as tmp:
        tmp.write_bytes(pickle.dumps(records, protocol=PICKLE_PROTOCOL))
    for k, labels in enumerate(fold_splits(frame, n_folds, seed), start=1):
        for split, name in INDEX_FILES.items():
            # No trailing space or newline: PEPLER parses the line with split(' ') and int().
            write_text(out / str(k) / name, " ".join(map(str, np.flatnonzero(labels == split))))
    return out
