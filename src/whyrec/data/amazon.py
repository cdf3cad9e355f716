"""Raw Amazon review files (JSON lines, optionally gzipped) streamed into a RecDataset.

Source: the Amazon review data of McAuley et al. ("Image-based recommendations on styles
and substitutes", SIGIR 2015: the 2014 release; Ni, Li and McAuley, EMNLP 2019: the 2018
release), the raw input of PEPLER's datasets (Sentires-Guide), XRec's Amazon-books and
RecExplainer's Video Games. Both releases name the fields the same way:
`reviewerID, asin, overall, reviewText, summary, unixReviewTime, reviewTime`; 2014 adds
`helpful` and `reviewerName`, 2018 adds `vote`, `style`, `verified` and `image` (not used
here). Lines may also be Python dict literals, as in the 2014 full dumps and metadata files
(read with `ast.literal_eval`, which evaluates no code).

The text never sits in memory for the whole file: a first pass keeps only compact arrays
(user and item codes, rating, line number, has-text flag: 17 bytes a review) plus the id
strings, and the filters run on those; a second pass reads the text and time of the
surviving lines. Filters, in the order XRec's `process/interaction.py` and RecExplainer's
`filter_v3.py` apply them: rating threshold and empty reviews, a seeded user sample, then
the iterative k-core. Repeated (user, item) pairs are dropped (first line kept) before the
sample, so the k-core counts distinct pairs; XRec drops them only after its k-core.
"""

from __future__ import annotations

import ast
import gzip
import json
import zlib
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from whyrec.data import schema as S
from whyrec.data.dataset import RecDataset
from whyrec.utils import WhyrecError

REQUIRED = ("reviewerID", "asin", "overall")
SUMMARY = "summary"  # the review's headline, kept beside the review text
ON_ERROR = ("raise", "skip")


class _BadLine(ValueError):
    """A line that cannot become an interaction; the message names what is wrong."""


# ---------------------------------------------------------------- reading lines


def _lines(path: Path, progress: bool, desc: str) -> Iterator[tuple[int, bytes]]:
    """(1-based line number, line) of a plain or gzipped file, with a progress bar in bytes."""
    if not path.is_file():
        raise WhyrecError(f"{path} not found")
    with path.open("rb") as raw:
        zipped = raw.read(2) == b"\x1f\x8b"  # the gzip magic number, whatever the file is called
        raw.seek(0)
        stream = gzip.GzipFile(fileobj=raw) if zipped else raw
        with tqdm(total=path.stat().st_size, unit="B", unit_scale=True, desc=desc, disable=not progress) as bar:
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
    """One JSON object, or a Python dict literal as in the 2014 dumps."""
    try:
        record = json.loads(line)
    except ValueError:
        if not line.lstrip().startswith(b"{"):
            raise _BadLine("is not a JSON object") from None
        try:
            record = ast.literal_eval(line.decode("utf-8", errors="replace"))
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            raise _BadLine("is neither JSON nor a Python dict literal") from None
    if not isinstance(record, dict):
        raise _BadLine(f"is a JSON {type(record).__name__}, not an object")
    return record


def _timestamp(record: dict) -> int | None:
    """Unix seconds from unixReviewTime, else from reviewTime ("MM DD, YYYY"), else None."""
    try:
        return int(record["unixReviewTime"])
    except (KeyError, TypeError, ValueError):
        pass
    try:
        day = datetime.strptime(str(record["reviewTime"]).strip(), "%m %d, %Y")
    except (KeyError, ValueError):
        return None
    return int(day.replace(tzinfo=timezone.utc).timestamp())


def _required(record: dict) -> tuple[str, str, float]:
    for key in REQUIRED:
        if record.get(key) in (None, ""):
            raise _BadLine(f"has no '{key}' field (has: {', '.join(map(str, record)) or 'none'})")
    try:
        rating = float(record["overall"])
    except (TypeError, ValueError):
        raise _BadLine(f"has a non-numeric 'overall' {record['overall']!r:.30}") from None
    return str(record["reviewerID"]), str(record["asin"]), rating


# ---------------------------------------------------------------- pass 1: ids and numbers


@dataclass
class _Scan:
    """Everything pass 1 keeps: one entry per usable line, all in compact typed arrays."""

    user_ids: dict[str, int] = field(default_factory=dict)
    item_ids: dict[str, int] = field(default_factory=dict)
    users: array = field(default_factory=lambda: array("i"))
    items: array = field(default_factory=lambda: array("i"))
    ratings: array = field(default_factory=lambda: array("f"))
    lines: array = field(default_factory=lambda: array("I"))
    has_text: array = field(default_factory=lambda: array("b"))
    skipped: int = 0


def _scan(path: Path, on_error: str, progress: bool) -> _Scan:
    scan = _Scan()
    for number, line in _lines(path, progress, f"scan {path.name}"):
        if not line.strip():
            continue
        try:
            record = parse_line(line)
            user, item, rating = _required(record)
        except _BadLine as e:
            if on_error == "raise":
                raise WhyrecError(f"{path.name} line {number} {e}; fix the line or pass on_error='skip'") from None
            scan.skipped += 1
            continue
        scan.users.append(scan.user_ids.setdefault(user, len(scan.user_ids)))
        scan.items.append(scan.item_ids.setdefault(item, len(scan.item_ids)))
        scan.ratings.append(rating)
        scan.lines.append(number)
        scan.has_text.append(bool(str(record.get("reviewText") or "").strip()))
    if not scan.lines:
        raise WhyrecError(f"{path}: no review lines with {', '.join(REQUIRED)}")
    return scan


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
    """`keep` without repeated (user, item) pairs; the first line of each pair stays."""
    rows = np.flatnonzero(keep)
    _, first = np.unique(users[rows].astype(np.int64) * n_items + items[rows], return_index=True)
    out = np.zeros_like(keep)
    out[rows[first]] = True
    return out


def _sample(scan: _Scan, users: np.ndarray, keep: np.ndarray, max_users: int, seed: int) -> np.ndarray:
    """`keep` restricted to a seeded sample of `max_users` users, drawn like `splits.sample_users`
    (from the sorted id strings, so the sample does not depend on line order)."""
    if max_users < 1:
        raise WhyrecError(f"max_users must be at least 1, got {max_users}")
    names = np.array(list(scan.user_ids), dtype=object)
    candidates = np.sort(names[np.unique(users[keep])].astype(str))
    if max_users >= len(candidates):
        return keep
    chosen = np.random.default_rng(seed).choice(candidates, size=max_users, replace=False)
    codes = np.array([scan.user_ids[u] for u in chosen])
    return keep & np.isin(users, codes)


def _filter(scan: _Scan, k: int, min_rating: float | None, require_review: bool,
            max_users: int | None, seed: int) -> tuple[np.ndarray, dict]:
    """Boolean mask over the scanned rows and how many rows each step dropped."""
    users, items = np.frombuffer(scan.users, np.int32), np.frombuffer(scan.items, np.int32)
    ratings = np.frombuffer(scan.ratings, np.float32)
    has_text = np.frombuffer(scan.has_text, np.int8).astype(bool)
    steps = [  # (name in meta["dropped"], whether it applies, mask -> narrower mask)
        ("below_min_rating", min_rating is not None, lambda m: m & (ratings >= min_rating)),
        ("empty_review", require_review, lambda m: m & has_text),
        ("duplicate_pair", True, lambda m: _first_pairs(users, items, m, len(scan.item_ids))),
        ("not_sampled", max_users is not None, lambda m: _sample(scan, users, m, max_users, seed)),
        ("k_core", k > 1, lambda m: k_core_mask(users, items, m, k)),
    ]
    keep = np.ones(len(users), dtype=bool)
    dropped = {"malformed_lines": scan.skipped}
    for name, applies, step in steps:
        before = int(keep.sum())
        keep = step(keep) if applies else keep
        dropped[name] = before - int(keep.sum())
    if not keep.any():
        raise WhyrecError(f"no reviews left after filtering (dropped: {dropped}); "
                          "lower k_core or min_rating, or raise max_users")
    return keep, dropped


# ---------------------------------------------------------------- pass 2: text, metadata


def _read_kept(path: Path, wanted: np.ndarray, progress: bool) -> dict[str, list]:
    """Review text, summary and time of the lines numbered in `wanted` (ascending), in order."""
    wanted_set = set(wanted.tolist())
    columns = {S.REVIEW: [], SUMMARY: [], S.TIMESTAMP: []}
    for number, line in _lines(path, progress, f"read {path.name}"):
        if number in wanted_set:
            record = parse_line(line)  # pass 1 parsed this line already: it cannot fail now
            columns[S.REVIEW].append(str(record.get("reviewText") or ""))
            columns[SUMMARY].append(str(record.get("summary") or ""))
            columns[S.TIMESTAMP].append(_timestamp(record))
            if len(columns[S.REVIEW]) == len(wanted):
                break  # the rest of the file holds no kept line
    return columns


def _description(value) -> str | None:
    """2014 metadata has a string, 2018 a list of paragraphs."""
    if isinstance(value, list):
        value = " ".join(str(v) for v in value if v)
    text = str(value).strip() if value else ""
    return text or None


def read_metadata(meta_path: str | Path, asins: set[str], progress: bool = False) -> pd.DataFrame:
    """item, title, description of the `asins` found in a metadata file (2014 or 2018 layout)."""
    meta_path = Path(meta_path)
    rows = {}
    for number, line in _lines(meta_path, progress, f"meta {meta_path.name}"):
        if not line.strip():
            continue
        try:
            record = parse_line(line)
        except _BadLine as e:
            raise WhyrecError(f"{meta_path.name} line {number} {e}") from None
        asin = str(record.get("asin", ""))
        if asin in asins and asin not in rows:
            title = str(record.get("title") or "").strip() or None
            rows[asin] = (asin, title, _description(record.get("description")))
    return pd.DataFrame(list(rows.values()), columns=[S.ITEM, S.TITLE, S.DESCRIPTION])


def _items(asins: list[str], meta_path: str | Path | None, progress: bool) -> pd.DataFrame:
    """One row per item; the title falls back to the ASIN where no metadata names it."""
    items = pd.DataFrame({S.ITEM: sorted(asins)})
    if meta_path is None:
        return items.assign(**{S.TITLE: items[S.ITEM]})
    meta = read_metadata(meta_path, set(asins), progress)
    items = items.merge(meta, on=S.ITEM, how="left")
    items[S.TITLE] = items[S.TITLE].fillna(items[S.ITEM])
    return items


# ---------------------------------------------------------------- entry point


def load_amazon_json(path: str | Path, k_core: int = 5, min_rating: float | None = None,
                     max_users: int | None = None, seed: int = 42, meta_path: str | Path | None = None,
                     require_review: bool = True, on_error: str = "raise",
                     progress: bool = True) -> RecDataset:
    """A RecDataset (user, item, rating, timestamp, review, summary) from a raw review file.

    Args:
        path: reviews as JSON lines, `.json` or `.json.gz` (gzip is detected from the bytes).
        k_core: keep the largest subset where every user and item has at least this many
            reviews (iterated to a fixed point); 1 or less turns the filter off.
        min_rating: keep reviews rated at least this (XRec keeps stars > 3: pass 4).
        max_users: sample this many users (seeded) before the k-core, as XRec and
            RecExplainer do, so fewer may remain after it.
        meta_path: a metadata file (`meta_*.json[.gz]`) giving titles and descriptions;
            without it, or for items it lacks, the title is the ASIN.
        require_review: drop reviews with empty text (XRec drops them).
        on_error: 'raise' stops at the first malformed line, naming it; 'skip' drops and
            counts malformed lines (meta["dropped"]["malformed_lines"]).
    """
    if on_error not in ON_ERROR:
        raise WhyrecError(f"unknown on_error {on_error!r}; choose one of: {', '.join(ON_ERROR)}")
    path = Path(path)
    scan = _scan(path, on_error, progress)
    keep, dropped = _filter(scan, k_core, min_rating, require_review, max_users, seed)
    text = _read_kept(path, np.frombuffer(scan.lines, np.uint32)[keep], progress)
    user_names = np.array(list(scan.user_ids), dtype=object)
    item_names = np.array(list(scan.item_ids), dtype=object)
    inter = pd.DataFrame({
        S.USER: user_names[np.frombuffer(scan.users, np.int32)[keep]],
        S.ITEM: item_names[np.frombuffer(scan.items, np.int32)[keep]],
        S.RATING: np.frombuffer(scan.ratings, np.float32)[keep],
        S.TIMESTAMP: pd.array(text[S.TIMESTAMP], dtype="Int64"),
        S.REVIEW: text[S.REVIEW],
        SUMMARY: text[SUMMARY],
    })
    items = _items(inter[S.ITEM].unique().tolist(), meta_path, progress)
    meta = {"source": "amazon-json", "file": path.name, "k_core": k_core, "min_rating": min_rating,
            "max_users": max_users, "seed": seed, "require_review": require_review,
            "lines": len(scan.lines) + scan.skipped, "dropped": dropped,
            "metadata": Path(meta_path).name if meta_path else None}
    return RecDataset(inter, items, None, meta=meta)
