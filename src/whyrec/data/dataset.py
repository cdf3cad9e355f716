"""The canonical dataset: Parquet tables plus id maps, saved as one self-describing folder."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from whyrec.data import schema as S
from whyrec.utils import WhyrecError, atomic_path, read_json, write_json

FILES = ("interactions.parquet", "items.parquet", "users.parquet", "user2idx.json", "item2idx.json", "dataset.json")
ON_ERROR = ("raise", "skip")
RATING_SCALES = {source: (1.0, 5.0) for source in
                 ("ml-100k", "ml-1m", "amazon-json", "yelp-json", "tripadvisor-json", "pepler")}
"""Rating scale of each source that knows it; other sources (your own table) only refuse negative
ratings, and the observed range is recorded in the summary. meta["rating_scale"] overrides."""
_FLOAT32_MAX = float(np.finfo(np.float32).max)


@dataclass
class RecDataset:
    """Interactions with optional per-pair text, item text and user text.

    Ids are strings everywhere; `user2idx`/`item2idx` fix the contiguous indices that
    encoders use, so the same folder always gives the same embedding rows.
    """

    interactions: pd.DataFrame
    items: pd.DataFrame
    users: pd.DataFrame
    user2idx: dict[str, int] = field(default_factory=dict)
    item2idx: dict[str, int] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)
    texts: pd.DataFrame | None = None
    """Per-pair text records that are not graph edges (XRec's tst.pkl rows): user, item,
    explanation, split. MovieLens keeps its explanations on `interactions` instead."""

    def __post_init__(self):
        validate_interactions(self.interactions, "interactions")
        self.interactions[S.USER] = self.interactions[S.USER].astype(str)
        self.interactions[S.ITEM] = self.interactions[S.ITEM].astype(str)
        if self.items is None or len(self.items) == 0:
            self.items = pd.DataFrame({S.ITEM: sorted(self.interactions[S.ITEM].unique())})
        if self.users is None or len(self.users) == 0:
            self.users = pd.DataFrame({S.USER: sorted(self.interactions[S.USER].unique())})
        self.items[S.ITEM] = self.items[S.ITEM].astype(str)
        self.users[S.USER] = self.users[S.USER].astype(str)
        if not self.user2idx:
            ids = pd.unique(pd.concat([self.users[S.USER], self.interactions[S.USER]]))
            self.user2idx = {u: i for i, u in enumerate(sorted(map(str, ids)))}
        if not self.item2idx:
            ids = pd.unique(pd.concat([self.items[S.ITEM], self.interactions[S.ITEM]]))
            self.item2idx = {it: i for i, it in enumerate(sorted(map(str, ids)))}

    @property
    def n_users(self) -> int:
        return len(self.user2idx)

    @property
    def n_items(self) -> int:
        return len(self.item2idx)

    @property
    def has_ratings(self) -> bool:
        """Whether any interaction carries a rating (what rating-based variants need)."""
        return S.RATING in self.interactions and not self.interactions[S.RATING].isna().all()

    def split(self, name: str) -> pd.DataFrame:
        if S.SPLIT not in self.interactions:
            raise WhyrecError("dataset has no split column; run `whyrec data prepare` with --split")
        return self.interactions[self.interactions[S.SPLIT] == name]

    def index_pairs(self, frame: pd.DataFrame):
        """(user_idx, item_idx) numpy arrays for a frame of this dataset."""
        u = frame[S.USER].map(self.user2idx)
        i = frame[S.ITEM].map(self.item2idx)
        if u.isna().any() or i.isna().any():
            raise WhyrecError("interactions reference ids missing from user2idx/item2idx; rebuild the dataset")
        return u.to_numpy("int64"), i.to_numpy("int64")

    def item_text(self, col: str = S.TITLE) -> dict[str, str]:
        if col not in self.items:
            return {}
        return dict(zip(self.items[S.ITEM], self.items[col].fillna("").astype(str), strict=True))

    def user_text(self, col: str = S.PROFILE) -> dict[str, str]:
        if col not in self.users:
            return {}
        return dict(zip(self.users[S.USER], self.users[col].fillna("").astype(str), strict=True))

    def summary(self) -> dict:
        counts = self.interactions[S.SPLIT].value_counts().to_dict() if S.SPLIT in self.interactions else {}
        cleaning = {"cleaning": self.meta["cleaning"]} if "cleaning" in self.meta else {}
        return {"users": self.n_users, "items": self.n_items, "interactions": len(self.interactions),
                "splits": {k: int(v) for k, v in counts.items()}, **cleaning}

    def save(self, out: str | Path) -> Path:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        for name, frame in (("interactions", self.interactions), ("items", self.items), ("users", self.users)):
            with atomic_path(out / f"{name}.parquet") as tmp:
                frame.to_parquet(tmp, index=False)
        if self.texts is not None:
            with atomic_path(out / "texts.parquet") as tmp:
                self.texts.to_parquet(tmp, index=False)
        write_json(out / "user2idx.json", self.user2idx)
        write_json(out / "item2idx.json", self.item2idx)
        write_json(out / "dataset.json", {**self.meta, "summary": self.summary()})
        return out

    @classmethod
    def load(cls, path: str | Path) -> RecDataset:
        path = check_folder(path)
        try:
            frames = [pd.read_parquet(path / f"{n}.parquet") for n in ("interactions", "items", "users")]
            texts = pd.read_parquet(path / "texts.parquet") if (path / "texts.parquet").exists() else None
        except Exception as e:  # pyarrow raises several types for corrupt files
            raise WhyrecError(f"{path}: cannot read Parquet ({type(e).__name__}: {e}); re-run `whyrec data prepare`") from None
        return cls(*frames, user2idx=read_json(path / "user2idx.json"),
                   item2idx=read_json(path / "item2idx.json"), meta=read_json(path / "dataset.json"), texts=texts)

    def explanation_records(self, split: str | None = None) -> pd.DataFrame:
        """(user, item, explanation[, split]) pairs to train or evaluate explainers on."""
        frame = self.texts if self.texts is not None else self.interactions
        if S.EXPLANATION not in frame:
            raise WhyrecError("dataset has no explanation text; prepare it with explanations (MovieLens) or from XRec/review data")
        frame = frame[frame[S.EXPLANATION].fillna("").str.strip() != ""]
        if split is not None:
            if S.SPLIT not in frame:
                raise WhyrecError("explanation records have no split column; re-run `whyrec data prepare`")
            frame = frame[frame[S.SPLIT] == split]
        return frame


def check_folder(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_dir():
        raise WhyrecError(f"dataset folder {path} not found; create it with `whyrec data prepare`")
    missing = [f for f in FILES if not (path / f).exists()]
    if missing:
        raise WhyrecError(f"dataset folder {path} is missing {', '.join(missing)}; re-run `whyrec data prepare`")
    return path


def validate_interactions(frame: pd.DataFrame, where: str) -> None:
    if not isinstance(frame, pd.DataFrame):
        raise WhyrecError(f"{where}: expected a table, got {type(frame).__name__}")
    missing = [c for c in S.INTERACTION_REQUIRED if c not in frame.columns]
    if missing:
        raise WhyrecError(
            f"{where}: missing column(s) {', '.join(missing)} (have: {', '.join(map(str, frame.columns))}); "
            "map yours with --user_col/--item_col"
        )
    if len(frame) == 0:
        raise WhyrecError(f"{where}: no interactions")
    if frame[S.USER].isna().any() or frame[S.ITEM].isna().any():
        empty = frame[S.USER].isna() | frame[S.ITEM].isna()
        raise WhyrecError(f"{where}: empty user or item ids in {int(empty.sum())} rows (e.g. {example_row(frame, empty)}); "
                          "drop or fill them")


# ---------------------------------------------------------------- bad values: refused or dropped and counted
def check_on_error(on_error: str) -> None:
    if on_error not in ON_ERROR:
        raise WhyrecError(f"unknown on_error {on_error!r}; choose one of: {', '.join(ON_ERROR)}")


def rating_scale(meta: dict) -> tuple[float, float] | None:
    scale = meta.get("rating_scale") or RATING_SCALES.get(meta.get("source"))
    return (float(scale[0]), float(scale[1])) if scale else None


def bad_rows(frame: pd.DataFrame, scale: tuple[float, float] | None) -> dict[str, np.ndarray]:
    """What rules rows out -> a boolean mask per reason: empty ids, ratings that are NaN, infinite,
    beyond float32 (1e308 would be stored as inf) or off the scale (negative without one), and
    timestamps that are infinite or beyond int64. A missing timestamp is allowed (only
    leave_last_out needs one)."""
    reasons = {}
    for col in (S.USER, S.ITEM):
        ids = frame[col]
        reasons[f"empty {col} ids"] = (ids.isna() | ids.astype("string").str.strip().eq("").fillna(True)).to_numpy()
    if S.RATING in frame:
        rating = _floats(frame[S.RATING])
        finite = np.isfinite(rating) & (np.abs(np.nan_to_num(rating)) <= _FLOAT32_MAX)
        reasons["ratings NaN or missing"] = np.isnan(rating)
        reasons["ratings infinite or too large for float32"] = ~finite & ~np.isnan(rating)
        if scale is not None:
            reasons[f"ratings outside {scale[0]:g}..{scale[1]:g}"] = finite & ((rating < scale[0]) | (rating > scale[1]))
        else:
            reasons["negative ratings"] = finite & (rating < 0)
    if S.TIMESTAMP in frame and not pd.api.types.is_integer_dtype(frame[S.TIMESTAMP]):
        reasons["infinite or out-of-range timestamps"] = np.abs(_floats(frame[S.TIMESTAMP])) >= 2.0**63
    return {reason: mask for reason, mask in reasons.items() if mask.any()}


def drop_bad_rows(ds: RecDataset, on_error: str = "raise") -> RecDataset:
    """Refuse interactions with bad values (see `bad_rows`), naming the count and one example row;
    with on_error='skip', drop them (in place) and count them per reason in
    meta["cleaning"]["bad_rows_skipped"]. Ratings end as float32 once every value is known to fit."""
    check_on_error(on_error)
    frame, scale = ds.interactions, rating_scale(ds.meta)
    reasons = bad_rows(frame, scale)
    counts = {reason: int(mask.sum()) for reason, mask in reasons.items()}
    bad = np.logical_or.reduce(list(reasons.values())) if reasons else np.zeros(len(frame), bool)
    if bad.any() and on_error == "raise":
        first = int(np.flatnonzero(bad)[0])
        why = next(reason for reason, mask in reasons.items() if mask[first])
        listed = ", ".join(f"{n} {reason}" for reason, n in counts.items())
        raise WhyrecError(f"{int(bad.sum())} of {len(frame)} interactions have bad values ({listed}), "
                          f"e.g. {example_row(frame, first)} ({why}); fix the input, or pass --on_error skip "
                          "to drop and count them")
    if bad.all():
        raise WhyrecError(f"all {len(frame)} interactions have bad values ({', '.join(counts)}); nothing is left")
    if bad.any():
        _keep_rows(ds, ~bad)
    if S.RATING in ds.interactions and ds.interactions[S.RATING].dtype != np.float32:
        ds.interactions[S.RATING] = ds.interactions[S.RATING].astype("float32")
    cleaning = dict(ds.meta.get("cleaning", {}))
    skipped = dict(cleaning.get("bad_rows_skipped", {}))
    for reason, n in counts.items():
        skipped[reason] = skipped.get(reason, 0) + n
    rating = ds.interactions[S.RATING] if S.RATING in ds.interactions else None
    cleaning.update(bad_rows_skipped=skipped, rating_scale=list(scale) if scale else None,
                    rating_range=None if rating is None else [float(rating.min()), float(rating.max())])
    ds.meta = {**ds.meta, "cleaning": cleaning}
    return ds


def _floats(col: pd.Series) -> np.ndarray:
    return pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def example_row(frame: pd.DataFrame, row) -> str:
    """One offending row as `user 'u1', item 'i3', rating nan` (the first row of a mask, or a position)."""
    pos = int(np.flatnonzero(np.asarray(row))[0]) if not isinstance(row, (int, np.integer)) else int(row)
    values = frame.iloc[pos]
    parts = [f"{col} {_short(values[col])}" for col in (S.USER, S.ITEM, S.RATING, S.TIMESTAMP) if col in frame]
    return f"row {pos + 1}: " + ", ".join(parts)


def _short(value) -> str:
    if value is None or value is pd.NA:
        return "missing"
    if isinstance(value, (float, np.floating)):
        return repr(float(value))
    text = repr(value if isinstance(value, str) else value.item() if hasattr(value, "item") else value)
    return text if len(text) <= 40 else text[:37] + "..."


def _keep_rows(ds: RecDataset, keep: np.ndarray) -> None:
    """Keep only the `keep` interactions of `ds` (in place); blank ids leave the tables and the id
    maps, which are renumbered so indices stay contiguous."""
    ds.interactions = ds.interactions[keep].reset_index(drop=True)
    for col, id2idx, table in ((S.USER, ds.user2idx, "users"), (S.ITEM, ds.item2idx, "items")):
        blank = {k for k in id2idx if not str(k).strip()}
        if blank:
            frame = getattr(ds, table)
            setattr(ds, table, frame[~frame[col].isin(blank)].reset_index(drop=True))
            kept = sorted((k for k in id2idx if k not in blank), key=id2idx.get)
            setattr(ds, "user2idx" if col == S.USER else "item2idx", {k: n for n, k in enumerate(kept)})


# ---------------------------------------------------------------- streaming (user, item) indices
@dataclass
class IndexedPairs:
    """Integer (user_idx, item_idx) pairs per split, read column-wise by `read_index_pairs`."""

    pairs: dict[str, tuple[np.ndarray, np.ndarray]]  # split -> (users, items), file order
    user2idx: dict[str, int]
    item2idx: dict[str, int]
    split_counts: dict[str, int]  # rows per split value, before the rating filter


class _IdLookup:
    """Vectorised raw id -> index through the saved map: arrow's hash lookup, no Python per row."""

    def __init__(self, id2idx: dict[str, int], what: str):
        import pyarrow as pa

        self.what, self.n = what, len(id2idx)
        self.keys = pa.array(list(id2idx), pa.large_string())  # dict order
        values = np.fromiter(id2idx.values(), np.int64, count=self.n)
        self.values = None if np.array_equal(values, np.arange(self.n)) else values  # None: position == index
        self.dtype = np.int32 if self.n < 2**31 else np.int64

    def __call__(self, column) -> np.ndarray:
        import pyarrow.compute as pc

        if column.null_count:
            raise WhyrecError(f"interactions: empty {self.what} ids in {column.null_count} rows; drop or fill them")
        pos = pc.index_in(pc.cast(column, "large_string"), value_set=self.keys)
        if pos.null_count:
            raise WhyrecError("interactions reference ids missing from user2idx/item2idx; rebuild the dataset")
        pos = pos.to_numpy()
        return (pos if self.values is None else self.values[pos]).astype(self.dtype, copy=False)


def read_index_pairs(path: str | Path, min_rating: float | None = None, batch_rows: int = 1 << 20) -> IndexedPairs:
    """The (user_idx, item_idx) pairs of each split of a dataset folder, streamed from Parquet.

    Reads only the user, item, split (and rating) columns of interactions.parquet, `batch_rows`
    rows at a time, and maps ids to the saved `user2idx`/`item2idx` indices with arrow's
    vectorised hash lookup, so memory is bounded by the integer arrays, not by a DataFrame of
    strings. Same pairs, in the same order, as `index_pairs(split(name))` after `load` (rows
    with `rating < min_rating`, or no rating, dropped when `min_rating` is set).
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    path = check_folder(path)
    try:
        parquet = pq.ParquetFile(path / "interactions.parquet")
        names = parquet.schema_arrow.names
    except Exception as e:  # pyarrow raises several types for corrupt files
        raise WhyrecError(f"{path}: cannot read Parquet ({type(e).__name__}: {e}); re-run `whyrec data prepare`") from None
    missing = [c for c in S.INTERACTION_REQUIRED if c not in names]
    if missing:
        raise WhyrecError(f"interactions: missing column(s) {', '.join(missing)} (have: {', '.join(names)}); "
                          "map yours with --user_col/--item_col")
    user2idx, item2idx = read_json(path / "user2idx.json"), read_json(path / "item2idx.json")
    id_types = [parquet.schema_arrow.field(c).type for c in S.INTERACTION_REQUIRED]
    id_types = [t.value_type if pa.types.is_dictionary(t) else t for t in id_types]
    if not (user2idx and item2idx) or not all(pa.types.is_string(t) or pa.types.is_large_string(t)
                                              or pa.types.is_integer(t) for t in id_types):
        return _pairs_from_frame(path, min_rating)  # maps to derive or ids whose str() arrow can't mimic
    if S.SPLIT not in names:
        raise WhyrecError("dataset has no split column; run `whyrec data prepare` with --split")
    if min_rating is not None and S.RATING not in names:
        raise WhyrecError(f"min_rating={min_rating} but {path} has no '{S.RATING}' column")

    users, items = _IdLookup(user2idx, "user"), _IdLookup(item2idx, "item")
    columns = [S.USER, S.ITEM, S.SPLIT] + ([S.RATING] if min_rating is not None else [])
    chunks: dict[str, list] = {name: [] for name in S.SPLITS}
    counts: dict[str, int] = {}
    rows = 0
    for batch in parquet.iter_batches(batch_size=batch_rows, columns=columns):
        u, i, split = users(batch.column(S.USER)), items(batch.column(S.ITEM)), batch.column(S.SPLIT)
        rows += batch.num_rows
        for row in pc.value_counts(split).to_pylist():
            if row["values"] is not None:
                counts[row["values"]] = counts.get(row["values"], 0) + row["counts"]
        keep = pc.greater_equal(batch.column(S.RATING), min_rating) if min_rating is not None else None
        for name in S.SPLITS:
            mask = pc.equal(split, name) if keep is None else pc.and_kleene(pc.equal(split, name), keep)
            mask = pc.fill_null(mask, False).to_numpy(zero_copy_only=False)
            chunks[name].append((u[mask], i[mask]))
    if rows == 0:
        raise WhyrecError("interactions: no interactions")
    pairs = {name: tuple(np.concatenate([c[k] for c in parts]) if parts else np.zeros(0, users.dtype)
                         for k in (0, 1)) for name, parts in chunks.items()}
    return IndexedPairs(pairs, user2idx, item2idx, counts)


def _pairs_from_frame(path: Path, min_rating: float | None) -> IndexedPairs:
    """The in-memory path (RecDataset.load + index_pairs), for folders the streaming reader can't map."""
    ds = RecDataset.load(path)
    frames = {name: ds.split(name) for name in S.SPLITS}  # raises without a split column
    if min_rating is not None:
        if S.RATING not in ds.interactions:
            raise WhyrecError(f"min_rating={min_rating} but {path} has no '{S.RATING}' column")
        frames = {k: f[f[S.RATING] >= min_rating] for k, f in frames.items()}
    pairs = {k: ds.index_pairs(f) for k, f in frames.items()}
    return IndexedPairs(pairs, ds.user2idx, ds.item2idx, ds.summary()["splits"])
