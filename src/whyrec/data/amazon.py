"""Raw Amazon review files (JSON lines, optionally gzipped) streamed into a RecDataset.

Source: the Amazon review data of McAuley et al. ("Image-based recommendations on styles
and substitutes", SIGIR 2015: the 2014 release; Ni, Li and McAuley, EMNLP 2019: the 2018
release), the raw input of PEPLER's datasets (Sentires-Guide), XRec's Amazon-books and
RecExplainer's Video Games. Both releases name the fields the same way:
`reviewerID, asin, overall, reviewText, summary, unixReviewTime, reviewTime`; 2014 adds
`helpful` and `reviewerName`, 2018 adds `vote`, `style`, `verified` and `image` (not used
here). Lines may also be Python dict literals, as in the 2014 full dumps and metadata files.

Streaming, the two passes and the filters live in `reviews_json`; this module only says
where Amazon keeps each field and how to read its metadata files.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from whyrec.data import schema as S
from whyrec.data.dataset import RecDataset
from whyrec.data.reviews_json import (
    SUMMARY,
    BadRecord,
    Fields,
    JsonLines,
    k_core_mask,
    load_reviews,
    parse_line,
    read_lines,
)
from whyrec.utils import WhyrecError

__all__ = ["FIELDS", "SUMMARY", "k_core_mask", "load_amazon_json", "read_metadata"]


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


FIELDS = Fields(source="amazon-json", user=("reviewerID",), item=("asin",), rating=("overall",),
                text=("reviewText",), summary=("summary",), time=_timestamp,
                hint=" (an Amazon review file, not a meta_*.json file?)")


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
    for number, line in read_lines(meta_path, progress, f"meta {meta_path.name}"):
        if not line.strip():
            continue
        try:
            record = parse_line(line)
        except BadRecord as e:
            raise WhyrecError(f"{meta_path.name} line {number} {e}") from None
        asin = str(record.get("asin", ""))
        if asin in asins and asin not in rows:
            title = str(record.get("title") or "").strip() or None
            rows[asin] = (asin, title, _description(record.get("description")))
    return pd.DataFrame(list(rows.values()), columns=[S.ITEM, S.TITLE, S.DESCRIPTION])


def load_amazon_json(path: str | Path, k_core: int = 5, min_rating: float | None = None,
                     max_users: int | None = None, max_items: int | None = None, seed: int = 42,
                     meta_path: str | Path | None = None, require_review: bool = True, on_error: str = "raise",
                     progress: bool = True) -> RecDataset:
    """A RecDataset (user, item, rating, timestamp, review, summary) from a raw review file.

    Args:
        path: reviews as JSON lines, `.json` or `.json.gz` (gzip is detected from the bytes).
        k_core: keep the largest subset where every user and item has at least this many
            reviews (iterated to a fixed point); 1 or less turns the filter off.
        min_rating: keep reviews rated at least this (XRec keeps stars > 3: pass 4).
        max_users: sample this many users (seeded) before the k-core, as XRec and
            RecExplainer do, so fewer may remain after it.
        max_items: keep only this many most-reviewed items, before the user sample;
            users then need at least k_core of them to be sampled (RecExplainer: 2,000).
        meta_path: a metadata file (`meta_*.json[.gz]`) giving titles and descriptions;
            without it, or for items it lacks, the title is the ASIN.
        require_review: drop reviews with empty text (XRec drops them).
        on_error: 'raise' stops at the first malformed line, naming it; 'skip' drops and
            counts malformed lines (meta["dropped"]["malformed_lines"]).
    """
    def item_meta(asins: set[str]) -> pd.DataFrame | None:
        return None if meta_path is None else read_metadata(meta_path, asins, progress)

    return load_reviews(JsonLines(Path(path)), FIELDS, k_core=k_core, min_rating=min_rating,
                        max_users=max_users, max_items=max_items, seed=seed, require_review=require_review,
                        on_error=on_error, progress=progress, item_meta=item_meta,
                        meta={"metadata": Path(meta_path).name if meta_path else None})
