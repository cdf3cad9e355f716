"""Streaming core of the raw review converters (Amazon, Yelp, TripAdvisor) -> RecDataset.

A source is a `Records` reader (JSON lines, a folder of hotel files ...) plus a `Fields`
map saying which keys hold the user, item, rating, text, headline and time. The text never
sits in memory for the whole input: a first pass keeps only compact arrays (user and item
codes, rating, record position, has-text flag: 17 bytes a review) plus the id strings, and
the filters run on those; a second pass reads the text and time of the surviving records.

Filters, in the order XRec's `process/interaction.py` and RecExplainer's `filter_v3.py`
apply them: rating threshold and empty reviews, the `max_items` most reviewed items, a seeded
user sample, then the iterative k-core. Repeated (user, item) pairs are dropped (first record
kept) before the sample, so the k-core counts distinct pairs; XRec drops them only after its
k-core. With `max_items`, as in `filter_v3.py`, only users with at least `k` of the kept items
can be sampled (RecExplainer's Video Games: 2,000 items, 4,000 users, 5-core).
"""

from __future__ import annotations

import ast
import gzip
import json
import zlib
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from whyrec.data import schema as S
from whyrec.data.dataset import RecDataset
from whyrec.progress import progress as progress_bar
from whyrec.utils import WhyrecError

SUMMARY = "summary"  # the review's headline, kept beside the review text
ON_ERROR = ("raise", "skip")


class BadRecord(ValueError):
    """A record that cannot become an interaction; the message names what is wrong."""


@dataclass(frozen=True)
class Fields:
    """Where one source keeps each column. Each entry lists alternative keys, tried in order
    (the first is the one errors name); a dotted key ("Ratings.Overall") reaches into a
    nested object."""

    source: str  # meta["source"] of the dataset, e.g. "yelp-json"
    user: tuple[str, ...]
    item: tuple[str, ...]
    rating: tuple[str, ...]
    text: tuple[str, ...]
    summary: tuple[str, ...] | None  # None: the source has no headline, no summary column
    time: Callable[[dict], int | None]  # unix seconds of a record, None when it has none
    hint: str = ""  # added to the "no usable records" error: which file the user likely meant


def lookup(record: dict, keys: tuple[str, ...]) -> Any:
    """The first of `keys` that holds a non-empty value in `record`, else None."""
    for key in keys:
        value: Any = record
        for part in key.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if value not in (None, ""):
            return value
    return None


def _required(record: dict, fields: Fields) -> tuple[str, str, float]:
    values = []
    for keys in (fields.user, fields.item, fields.rating):
        value = lookup(record, keys)
        if value is None:
            nor = f"nor {', '.join(repr(k) for k in keys[1:])}; " if len(keys) > 1 else ""
            raise BadRecord(f"has no '{keys[0]}' field ({nor}has: {', '.join(map(str, record)) or 'none'})")
        values.append(value)
    try:
        rating = float(values[2])
    except (TypeError, ValueError):
        raise BadRecord(f"has a non-numeric '{fields.rating[0]}' {values[2]!r:.30}") from None
    return str(values[0]), str(values[1]), rating


# ---------------------------------------------------------------- readers


class Records(Protocol):
    """Input read twice: positions must ascend and be the same in both passes."""

    name: str  # file or folder name, for messages and meta["file"]

    def read(self, progress: bool, desc: str) -> Iterator[tuple[int, Any]]: ...  # (position, raw)

    def parse(self, raw: Any) -> dict: ...  # raises BadRecord

    def where(self, position: int, raw: Any) -> str: ...  # "r.json line 3", for errors


def read_lines(path: Path, progress: bool, desc: str) -> Iterator[tuple[int, bytes]]:
    """(1-based line number, line) of a plain or gzipped file, with a progress bar in bytes."""
    if not path.is_file():
        raise WhyrecError(f"{path} not found")
    with path.open("rb") as raw:
        zipped = raw.read(2) == b"\x1f\x8b"  # the gzip magic number, whatever the file is called
        raw.seek(0)
        stream = gzip.GzipFile(fileobj=raw) if zipped else raw
        with progress_bar(total=path.stat().st_size, unit="B", unit_scale=True, desc=desc, enabled=progress) as bar:
            try:
                for number, line in enumerate(stream, start=1):
                    if number % 8192 == 0:
                        bar.update(raw.tell() - bar.n)
                    yield number, line
            except (OSError, EOFError, zlib.error) as e:  # gzip's errors on truncated or corrupt data
                raise WhyrecError(f"{path}: cannot decompress ({e}); the file is truncated or corrupt, "
                                  "download it again") from None
            bar.update(bar.total - bar.n)


def parse_line(line: bytes) -> dict:
    """One JSON object, or a Python dict literal as in Amazon's 2014 dumps."""
    try:
        record = json.loads(line)
    except ValueError:
        if not line.lstrip().startswith(b"{"):
            raise BadRecord("is not a JSON object") from None
        try:  # ast.literal_eval evaluates no code
            record = ast.literal_eval(line.decode("utf-8", errors="replace"))
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            raise BadRecord("is neither JSON nor a Python dict literal") from None
    if not isinstance(record, dict):
        raise BadRecord(f"is a JSON {type(record).__name__}, not an object")
    return record


@dataclass
class JsonLines:
    """One review a line; blank lines are skipped."""

    path: Path

    @property
    def name(self) -> str:
        return self.path.name

    def read(self, progress: bool, desc: str) -> Iterator[tuple[int, bytes]]:
        for number, line in read_lines(self.path, progress, f"{desc} {self.path.name}"):
            if line.strip():
                yield number, line

    def parse(self, raw: bytes) -> dict:
        return parse_line(raw)

    def where(self, position: int, raw: bytes) -> str:
        return f"{self.path.name} line {position}"


# ---------------------------------------------------------------- pass 1: ids and numbers


@dataclass
class Scan:
    """Everything pass 1 keeps: one entry per usable record, all in compact typed arrays."""

    user_ids: dict[str, int] = field(default_factory=dict)
    item_ids: dict[str, int] = field(default_factory=dict)
    users: array = field(default_factory=lambda: array("i"))
    items: array = field(default_factory=lambda: array("i"))
    ratings: array = field(default_factory=lambda: array("f"))
    positions: array = field(default_factory=lambda: array("I"))
    has_text: array = field(default_factory=lambda: array("b"))
    skipped: int = 0


def scan(records: Records, fields: Fields, on_error: str, progress: bool) -> Scan:
    out = Scan()
    for position, raw in records.read(progress, "scan"):
        try:
            record = records.parse(raw)
            user, item, rating = _required(record, fields)
        except BadRecord as e:
            if on_error == "raise":
                raise WhyrecError(f"{records.where(position, raw)} {e}; fix it, or pass --on_error skip "
                                  "to drop and count such records") from None
            out.skipped += 1
            continue
        out.users.append(out.user_ids.setdefault(user, len(out.user_ids)))
        out.items.append(out.item_ids.setdefault(item, len(out.item_ids)))
        out.ratings.append(rating)
        out.positions.append(position)
        out.has_text.append(bool(str(lookup(record, fields.text) or "").strip()))
    if not out.positions:
        needed = ", ".join(keys[0] for keys in (fields.user, fields.item, fields.rating))
        raise WhyrecError(f"{records.name}: no review lines with {needed}{fields.hint}")
    return out


# ---------------------------------------------------------------- filters on integer arrays


def k_core_mask(users: np.ndarray, items: np.ndarray, keep: np.ndarray, k: int) -> np.ndarray:
    """Rows of the largest subgraph of `keep` where every user and item has >= k rows.

    Dropping rows lowers other nodes' degrees, so the cut repeats until nothing changes.
    """
    keep = keep.copy()
    while True:
        user_degree = np.bincount(users[keep], minlength=users.max() + 1)
        item_degree = np.bincount(items[keep], minlength=items.max() + 1)
        survive = keep & (user_degree[users] >= k) & (item_degree[items] >= k)
        if survive.sum() == keep.sum():
            return survive
        keep = survive


def _first_pairs(users: np.ndarray, items: np.ndarray, keep: np.ndarray, n_items: int) -> np.ndarray:
    """`keep` without repeated (user, item) pairs; the first record of each pair stays."""
    rows = np.flatnonzero(keep)
    _, first = np.unique(users[rows].astype(np.int64) * n_items + items[rows], return_index=True)
    out = np.zeros_like(keep)
    out[rows[first]] = True
    return out


def top_items_mask(items: np.ndarray, keep: np.ndarray, max_items: int, names: list[str]) -> np.ndarray:
    """`keep` restricted to the `max_items` items with the most kept records (ties: smaller id string)."""
    if max_items < 1:
        raise WhyrecError(f"max_items must be at least 1, got {max_items}")
    counts = np.bincount(items[keep], minlength=len(names))
    order = sorted(np.flatnonzero(counts), key=lambda i: (-counts[i], names[i]))
    return keep & np.isin(items, np.asarray(order[:max_items], dtype=items.dtype))


def _sample(found: Scan, users: np.ndarray, keep: np.ndarray, max_users: int, seed: int,
            min_rows: int = 1) -> np.ndarray:
    """`keep` restricted to a seeded sample of `max_users` users among those with at least
    `min_rows` kept records, drawn like `splits.sample_users` (from the sorted id strings, so
    the sample does not depend on record order)."""
    if max_users < 1:
        raise WhyrecError(f"max_users must be at least 1, got {max_users}")
    names = np.array(list(found.user_ids), dtype=object)
    degree = np.bincount(users[keep], minlength=len(names))
    candidates = np.sort(names[np.flatnonzero(degree >= max(1, min_rows))].astype(str))
    if max_users >= len(candidates):
        return keep
    chosen = np.random.default_rng(seed).choice(candidates, size=max_users, replace=False)
    codes = np.array([found.user_ids[u] for u in chosen])
    return keep & np.isin(users, codes)


def filter_mask(found: Scan, k: int, min_rating: float | None, require_review: bool,
                max_users: int | None, seed: int, max_items: int | None = None) -> tuple[np.ndarray, dict]:
    """Boolean mask over the scanned records and how many records each step dropped."""
    users, items = np.frombuffer(found.users, np.int32), np.frombuffer(found.items, np.int32)
    ratings = np.frombuffer(found.ratings, np.float32)
    has_text = np.frombuffer(found.has_text, np.int8).astype(bool)
    steps = [  # (name in meta["dropped"], whether it applies, mask -> narrower mask)
        ("below_min_rating", min_rating is not None, lambda m: m & (ratings >= min_rating)),
        ("empty_review", require_review, lambda m: m & has_text),
        ("duplicate_pair", True, lambda m: _first_pairs(users, items, m, len(found.item_ids))),
        ("not_top_items", max_items is not None, lambda m: top_items_mask(items, m, max_items, list(found.item_ids))),
        ("not_sampled", max_users is not None,
         lambda m: _sample(found, users, m, max_users, seed, min_rows=k if max_items is not None else 1)),
        ("k_core", k > 1, lambda m: k_core_mask(users, items, m, k)),
    ]
    keep = np.ones(len(users), dtype=bool)
    dropped = {"malformed_lines": found.skipped}
    for name, applies, step in steps:
        before = int(keep.sum())
        keep = step(keep) if applies else keep
        if applies or name != "not_top_items":  # the item cap is listed only when asked for
            dropped[name] = before - int(keep.sum())
    if not keep.any():
        raise WhyrecError(f"no reviews left after filtering (dropped: {dropped}); "
                          "lower k_core or min_rating, or raise max_users or max_items")
    return keep, dropped


# ---------------------------------------------------------------- pass 2 and the dataset


def _read_kept(records: Records, fields: Fields, wanted: np.ndarray, progress: bool) -> dict[str, list]:
    """Text, headline and time of the records at the `wanted` positions (ascending), in order."""
    wanted_set = set(wanted.tolist())
    columns: dict[str, list] = {S.REVIEW: [], SUMMARY: [], S.TIMESTAMP: []}
    for position, raw in records.read(progress, "read"):
        if position in wanted_set:
            record = records.parse(raw)  # pass 1 parsed this record already: it cannot fail now
            columns[S.REVIEW].append(str(lookup(record, fields.text) or ""))
            columns[SUMMARY].append(str(lookup(record, fields.summary or ()) or ""))
            columns[S.TIMESTAMP].append(fields.time(record))
            if len(columns[S.REVIEW]) == len(wanted):
                break  # the rest of the input holds no kept record
    return columns


def with_titles(ids: list[str], meta: pd.DataFrame | None) -> pd.DataFrame:
    """One row per item (sorted); the title falls back to the id where `meta` names none."""
    items = pd.DataFrame({S.ITEM: sorted(ids)})
    if meta is None:
        return items.assign(**{S.TITLE: items[S.ITEM]})
    items = items.merge(meta, on=S.ITEM, how="left")
    items[S.TITLE] = items[S.TITLE].fillna(items[S.ITEM])
    return items


def check_on_error(on_error: str) -> None:
    if on_error not in ON_ERROR:
        raise WhyrecError(f"unknown on_error {on_error!r}; choose one of: {', '.join(ON_ERROR)}")


def load_reviews(records: Records, fields: Fields, *, k_core: int, min_rating: float | None,
                 max_users: int | None, seed: int, require_review: bool, on_error: str, progress: bool,
                 max_items: int | None = None,
                 item_meta: Callable[[set[str]], pd.DataFrame | None] = lambda ids: None,
                 meta: dict | None = None) -> RecDataset:
    """Scan, filter, read the kept text and build the dataset (see the module docstring).

    `item_meta` maps the kept item ids to a frame (item, title [, description ...]) or None;
    `meta` adds source-specific entries to the dataset's meta. meta["lines"] counts the records
    read, malformed ones included (lines of a file, reviews and bad files of a folder).
    """
    check_on_error(on_error)
    found = scan(records, fields, on_error, progress)
    keep, dropped = filter_mask(found, k_core, min_rating, require_review, max_users, seed, max_items)
    text = _read_kept(records, fields, np.frombuffer(found.positions, np.uint32)[keep], progress)
    user_names = np.array(list(found.user_ids), dtype=object)
    item_names = np.array(list(found.item_ids), dtype=object)
    columns = {
        S.USER: user_names[np.frombuffer(found.users, np.int32)[keep]],
        S.ITEM: item_names[np.frombuffer(found.items, np.int32)[keep]],
        S.RATING: np.frombuffer(found.ratings, np.float32)[keep],
        S.TIMESTAMP: pd.array(text[S.TIMESTAMP], dtype="Int64"),
        S.REVIEW: text[S.REVIEW],
    }
    if fields.summary is not None:
        columns[SUMMARY] = text[SUMMARY]
    inter = pd.DataFrame(columns)
    ids = inter[S.ITEM].unique().tolist()
    items = with_titles(ids, item_meta(set(ids)))
    info = {"source": fields.source, "file": records.name, "k_core": k_core, "min_rating": min_rating,
            "max_users": max_users, "max_items": max_items, "seed": seed, "require_review": require_review,
            "lines": len(found.positions) + found.skipped, "dropped": dropped, **(meta or {})}
    return RecDataset(inter, items, None, meta=info)
