"""Your own interactions from a CSV, TSV, JSON Lines, JSON or Parquet file.

The answer to "how do I use my own dataset": one row per (user, item) pair; map your column
names with `user_col`, `item_col` and friends (CLI: `--user_col` ...). Optional columns
already named like the canonical schema (rating, timestamp, review, explanation, title,
split) are picked up without flags. Other columns are ignored. Files ending in `.gz` etc.
are decompressed on the fly (not for Parquet).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from whyrec.data import schema as S
from whyrec.data.dataset import RecDataset, check_on_error, example_row
from whyrec.utils import WhyrecError

FORMATS = ("csv", "tsv", "jsonl", "json", "parquet")
_EXTENSIONS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl",
               ".json": "json", ".parquet": "parquet", ".pq": "parquet"}
_COMPRESSED = (".gz", ".bz2", ".xz", ".zst", ".zip")


def detect_format(path: str | Path, fmt: str | None = None) -> str:
    """`fmt` if given, else the format its extension names (ignoring a compression suffix)."""
    if fmt is not None:
        if fmt not in FORMATS:
            raise WhyrecError(f"unknown format {fmt!r}; use --fmt with one of: {', '.join(FORMATS)}")
        return fmt
    suffixes = [s.lower() for s in Path(path).suffixes]
    if suffixes and suffixes[-1] in _COMPRESSED:
        suffixes = suffixes[:-1]
    if suffixes and suffixes[-1] in _EXTENSIONS:
        return _EXTENSIONS[suffixes[-1]]
    raise WhyrecError(f"cannot tell the format of {Path(path).name} from its extension; "
                      f"pass --fmt with one of: {', '.join(FORMATS)}")


def read_table(path: str | Path, fmt: str | None = None) -> pd.DataFrame:
    """The whole file as a DataFrame; CSV/TSV cells are read as text so ids keep leading zeros."""
    path = Path(path)
    if not path.is_file():
        raise WhyrecError(f"{path} not found")
    if path.stat().st_size == 0:
        raise WhyrecError(f"{path} is empty")
    fmt = detect_format(path, fmt)
    try:
        if fmt in ("csv", "tsv"):
            frame = pd.read_csv(path, sep="," if fmt == "csv" else "\t", dtype=str)
        elif fmt == "parquet":
            frame = pd.read_parquet(path)
        else:
            frame = _read_json(path, lines=fmt == "jsonl")
    except Exception as e:  # pandas/pyarrow raise many types for malformed files
        raise WhyrecError(f"cannot read {path} as {fmt} ({type(e).__name__}: {str(e)[:200]}); "
                          "check the file or pass --fmt") from None
    if len(frame) == 0:
        raise WhyrecError(f"{path} has no rows")
    return frame


def _read_json(path: Path, lines: bool) -> pd.DataFrame:
    if lines:
        return pd.read_json(path, lines=True, dtype=False)
    try:
        return pd.read_json(path, dtype=False)  # an array of records
    except ValueError:
        return pd.read_json(path, lines=True, dtype=False)  # .json files are often JSON Lines


def _as_ids(col: pd.Series) -> pd.Series:
    """Ids as strings; 3.0 -> '3' (JSON numbers), missing stays missing."""
    if pd.api.types.is_float_dtype(col) and (col.dropna() % 1 == 0).all():
        col = col.astype("Int64")
    return col.astype("string").astype(object).where(col.notna(), None)


def _numbers(col: pd.Series, flag: str) -> pd.Series:
    values = pd.to_numeric(col, errors="coerce")
    bad = col[values.isna() & col.notna()]
    if len(bad):
        raise WhyrecError(f"column {col.name!r} ({flag}) has non-numeric values, e.g. {bad.iloc[0]!r}")
    return values


def _timestamps(col: pd.Series, flag: str) -> pd.Series:
    """Numbers are kept (e.g. unix seconds); date strings become unix seconds."""
    numeric = pd.to_numeric(col, errors="coerce")
    if numeric.notna().sum() == col.notna().sum():
        whole = (numeric.dropna() % 1 == 0).all() and (numeric.dropna().abs() < 2**63).all()
        return numeric.astype("Int64") if whole else numeric  # others: ensure_split refuses or keeps them
    when = pd.to_datetime(col, errors="coerce", format="mixed")
    bad = col[when.isna() & col.notna()]
    if len(bad):
        raise WhyrecError(f"column {col.name!r} ({flag}) has values that are neither numbers nor dates, "
                          f"e.g. {bad.iloc[0]!r}")
    if getattr(when.dt, "tz", None) is not None:
        when = when.dt.tz_convert(None)
    return (when - pd.Timestamp("1970-01-01")).dt.total_seconds().round().astype("Int64")


def _resolve(frame: pd.DataFrame, path: Path, mapping: dict[str, tuple[str | None, str]]) -> dict[str, str]:
    """canonical name -> source column; optional columns default to their canonical name."""
    resolved, missing = {}, []
    for canonical, (given, flag) in mapping.items():
        if given is None:
            if canonical in frame.columns:
                resolved[canonical] = canonical
        elif given in frame.columns:
            resolved[canonical] = given
        else:
            missing.append(f"{given!r} ({flag})")
    if missing:
        raise WhyrecError(f"{path.name}: column(s) {', '.join(missing)} not found; available: "
                          f"{', '.join(map(str, frame.columns))}")
    return resolved


def load_table(path: str | Path, user_col: str = "user", item_col: str = "item",
               rating_col: str | None = None, timestamp_col: str | None = None,
               review_col: str | None = None, explanation_col: str | None = None,
               title_col: str | None = None, fmt: str | None = None, on_error: str = "raise",
               items: str | Path | None = None, item_id_col: str | None = None,
               item_title_col: str | None = None) -> RecDataset:
    """A RecDataset from one table of interactions (see the module docstring).

    Args:
        path: .csv, .tsv, .jsonl/.ndjson, .json or .parquet (optionally .gz etc.).
        user_col, item_col: required id columns.
        rating_col, timestamp_col, review_col, explanation_col, title_col: optional columns;
            None picks up a column already named rating/timestamp/review/explanation/title.
        fmt: override the format implied by the extension.
        on_error: 'raise' on rows without a user or item id; 'skip' keeps them with a blank id
            for `ensure_split` (with on_error='skip') to drop and count with the other bad rows.
        items: a separate item file (any of the formats above, e.g. MovieLens's movies.csv) joined
            on the item id; its titles win over `title_col`'s and its other columns become item metadata.
        item_id_col: its id column (None: the name `item_col` has); item_title_col: its title column
            (None: a column named 'title', if any).
    """
    check_on_error(on_error)
    path, item_file = Path(path), items
    frame = read_table(path, fmt)
    mapping = {S.USER: (user_col, "--user_col"), S.ITEM: (item_col, "--item_col"),
               S.RATING: (rating_col, "--rating_col"), S.TIMESTAMP: (timestamp_col, "--timestamp_col"),
               S.REVIEW: (review_col, "--review_col"), S.EXPLANATION: (explanation_col, "--explanation_col"),
               S.TITLE: (title_col, "--title_col"), S.SPLIT: (None, "a 'split' column")}
    cols = _resolve(frame, path, mapping)
    inter = pd.DataFrame({S.USER: _as_ids(frame[cols[S.USER]]), S.ITEM: _as_ids(frame[cols[S.ITEM]])})
    missing = (inter[S.USER].isna() | inter[S.ITEM].isna()).to_numpy()
    if missing.any() and on_error == "raise":
        raise WhyrecError(f"{path.name}: empty user or item ids in {int(missing.sum())} rows (e.g. "
                          f"{example_row(inter, missing)}); fill or drop them, or pass --on_error skip to drop them")
    inter = inter.fillna("")  # on_error='skip': blank ids, dropped and counted by ensure_split
    if S.RATING in cols:  # float64 until ensure_split has checked every value fits float32 (1e308 does not)
        inter[S.RATING] = _numbers(frame[cols[S.RATING]], "--rating_col").astype("float64")
    if S.TIMESTAMP in cols:
        inter[S.TIMESTAMP] = _timestamps(frame[cols[S.TIMESTAMP]], "--timestamp_col")
    for text in (S.REVIEW, S.EXPLANATION):
        if text in cols:
            inter[text] = frame[cols[text]].astype("string")
    if S.SPLIT in cols:
        inter[S.SPLIT] = _checked_split(frame[cols[S.SPLIT]], path)
    items = None
    if S.TITLE in cols:
        titled = pd.DataFrame({S.ITEM: inter[S.ITEM], S.TITLE: frame[cols[S.TITLE]]}).dropna()
        items = titled.drop_duplicates(S.ITEM).sort_values(S.ITEM).reset_index(drop=True)
        untitled = sorted(set(inter[S.ITEM].dropna()) - set(items[S.ITEM]))
        items = pd.concat([items, pd.DataFrame({S.ITEM: untitled})], ignore_index=True)
    meta = {"source": "table", "file": path.name, "columns": {k: v for k, v in cols.items()}}
    if item_file is not None:
        items = join_items(Path(item_file), item_id_col or item_col, item_title_col, inter[S.ITEM], items)
        meta["items_file"] = Path(item_file).name
    return RecDataset(inter, items, None, meta=meta)


def join_items(path: Path, id_col: str, title_col: str | None, ids: pd.Series,
               titled: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per interacted item: its title and metadata from the item file `path` (rows for
    items not interacted with are left out; an item the file lacks keeps the `titled` title or none)."""
    if not path.is_file():
        raise WhyrecError(f"--items {path} not found")
    table = read_table(path)
    cols = _resolve(table, path, {S.ITEM: (id_col, "--item_id_col"), S.TITLE: (title_col, "--item_title_col")})
    joined = pd.DataFrame({S.ITEM: _as_ids(table[cols[S.ITEM]])})
    if S.TITLE in cols:
        joined[S.TITLE] = table[cols[S.TITLE]].astype("string").astype(object).where(table[cols[S.TITLE]].notna(), None)
    # every other column is item metadata (genres, year, ...), under its own name unless it would shadow ours
    for col in table.columns:
        if col not in cols.values() and str(col) not in (S.ITEM, S.TITLE):
            joined[str(col)] = table[col]
    joined = joined.dropna(subset=[S.ITEM]).drop_duplicates(S.ITEM)
    wanted = sorted(set(ids.dropna()) - {""})
    if wanted and not set(wanted) & set(joined[S.ITEM]):
        raise WhyrecError(f"{path.name}: no id of column {cols[S.ITEM]!r} (--item_id_col) matches an item of the "
                          f"interactions (e.g. {joined[S.ITEM].iloc[0]!r} there, {wanted[0]!r} here)")
    out = pd.DataFrame({S.ITEM: wanted}).merge(joined, on=S.ITEM, how="left")
    if titled is not None and S.TITLE in titled:  # the interaction table's titles fill the file's gaps
        fallback = out[S.ITEM].map(dict(zip(titled[S.ITEM], titled[S.TITLE])))
        out[S.TITLE] = out[S.TITLE].where(out[S.TITLE].notna(), fallback) if S.TITLE in out else fallback
    return out


def _checked_split(col: pd.Series, path: Path) -> pd.Series:
    bad = sorted(set(col.dropna().astype(str)) - set(S.SPLITS))
    if bad or col.isna().any():
        raise WhyrecError(f"{path.name}: column 'split' must hold only {', '.join(S.SPLITS)} "
                          f"(found {', '.join(bad) or 'empty cells'}); rename or drop it")
    return col.astype(str)
