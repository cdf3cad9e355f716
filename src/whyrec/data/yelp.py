"""Yelp Open Dataset reviews (JSON lines, optionally gzipped) streamed into a RecDataset.

Source: https://www.yelp.com/dataset, the raw input of the Yelp sets of PETER/PEPLER (Li et
al.) and XRec. `yelp_academic_dataset_review.json` holds one review a line:
`review_id, user_id, business_id, stars, useful, funny, cool, text, date`, the date as
"2016-03-09 00:44:25" (releases before 2017 give only "2012-05-01"). The optional
`yelp_academic_dataset_business.json` (`business_id, name, categories, city, state, stars
...`) gives item titles; `categories` is a comma-separated string in current releases and a
list in old ones. Streaming and filters are those of `reviews_json`.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from whyrec.data import schema as S
from whyrec.data.dataset import RecDataset
from whyrec.data.reviews_json import (
    BadRecord,
    Fields,
    JsonLines,
    load_reviews,
    parse_line,
    read_lines,
)
from whyrec.utils import WhyrecError

REVIEW_FILE = "yelp_academic_dataset_review.json"
BUSINESS_FILE = "yelp_academic_dataset_business.json"
CATEGORIES, CITY = "categories", "city"


def _timestamp(record: dict) -> int | None:
    """Unix seconds of `date`, read as UTC: Yelp gives local time without a zone."""
    value = str(record.get("date") or "").strip()
    for form, width in (("%Y-%m-%d %H:%M:%S", 19), ("%Y-%m-%d", 10)):
        try:
            day = datetime.strptime(value[:width], form)
        except ValueError:
            continue
        return int(day.replace(tzinfo=timezone.utc).timestamp())
    return None


FIELDS = Fields(source="yelp-json", user=("user_id",), item=("business_id",), rating=("stars",),
                text=("text",), summary=None, time=_timestamp,
                hint=f" (is it {REVIEW_FILE}, not the business, user or tip file?)")


def _categories(value) -> str | None:
    if isinstance(value, list):
        value = ", ".join(str(v) for v in value if v)
    text = str(value).strip() if value else ""
    return text or None


def read_businesses(path: str | Path, ids: set[str], progress: bool = False) -> pd.DataFrame:
    """item, title, description, categories, city of the `ids` found in a business file."""
    path = Path(path)
    rows = {}
    for number, line in read_lines(path, progress, f"business {path.name}"):
        if not line.strip():
            continue
        try:
            record = parse_line(line)
        except BadRecord as e:
            raise WhyrecError(f"{path.name} line {number} {e}; is it {BUSINESS_FILE}?") from None
        business = str(record.get("business_id", ""))
        if business in ids and business not in rows:
            categories = _categories(record.get(CATEGORIES))
            place = ", ".join(str(record[k]) for k in ("city", "state") if record.get(k)) or None
            # The description is what a prompt can say about a business beyond its name.
            description = "; ".join(p for p in (categories, place) if p) or None
            title = str(record.get("name") or "").strip() or None
            rows[business] = (business, title, description, categories, record.get(CITY) or None)
    return pd.DataFrame(list(rows.values()), columns=[S.ITEM, S.TITLE, S.DESCRIPTION, CATEGORIES, CITY])


def _inputs(path: Path, business_path: str | Path | None) -> tuple[Path, Path | None]:
    """The review file and business file: a folder means the dataset's own file names, and a
    business file lying beside the reviews is used when none is given."""
    reviews = path / REVIEW_FILE if path.is_dir() else path
    if business_path is not None:
        return reviews, Path(business_path)
    beside = reviews.with_name(BUSINESS_FILE)
    return reviews, beside if beside.is_file() and beside != reviews else None


def load_yelp_json(path: str | Path, business_path: str | Path | None = None, k_core: int = 5,
                   min_rating: float | None = None, max_users: int | None = None, max_items: int | None = None,
                   seed: int = 42, require_review: bool = True, on_error: str = "raise",
                   progress: bool = True) -> RecDataset:
    """A RecDataset (user, item, rating, timestamp, review) from Yelp's review file.

    Args:
        path: `yelp_academic_dataset_review.json` (plain or gzipped), or the folder holding it.
        business_path: the business file, for titles (`name`) and descriptions (categories,
            city); by default `yelp_academic_dataset_business.json` beside the reviews, if
            there is one; otherwise the title is the business_id.
        k_core: keep the largest subset where every user and business has at least this many
            reviews (iterated to a fixed point); 1 or less turns the filter off.
        min_rating: keep reviews with at least this many stars.
        max_users: sample this many users (seeded) before the k-core.
        max_items: keep only this many most-reviewed businesses, before the user sample.
        require_review: drop reviews with empty text.
        on_error: 'raise' stops at the first malformed line, naming it; 'skip' drops and
            counts malformed lines (meta["dropped"]["malformed_lines"]).
    """
    reviews, business = _inputs(Path(path), business_path)

    def item_meta(ids: set[str]) -> pd.DataFrame | None:
        return None if business is None else read_businesses(business, ids, progress)

    return load_reviews(JsonLines(reviews), FIELDS, k_core=k_core, min_rating=min_rating,
                        max_users=max_users, max_items=max_items, seed=seed, require_review=require_review,
                        on_error=on_error, progress=progress, item_meta=item_meta,
                        meta={"metadata": business.name if business else None})
