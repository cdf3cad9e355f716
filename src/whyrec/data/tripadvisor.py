"""TripAdvisor hotel reviews streamed into a RecDataset, users keyed by review author.

Source: the hotel reviews crawled by Wang, Lu and Zhai ("Latent aspect rating analysis
without aspect keyword supervision", KDD 2011), the raw input of PETER/PEPLER's TripAdvisor
set. They ship as a folder of per-hotel JSON files:
`{"HotelInfo": {"HotelID", "Name", ...}, "Reviews": [{"ReviewID", "Author", "Ratings":
{"Overall": "4.0", "Service": ...}, "Content", "Title", "Date": "Dec 21, 2008"}, ...]}`.
A JSON-lines file with one review a line is read too, with either those review keys plus
`HotelID`, or `hotel_id, author, rating, text[, title, date]`.

Files are read one at a time (each is small), so memory stays bounded by the compact pass-1
arrays of `reviews_json`, which also does the filtering. A file that is not a hotel file
counts as one malformed record. Anonymous authors ("A TripAdvisor Member") are one user, as
the data gives no way to tell them apart.
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from whyrec.data import schema as S
from whyrec.data.dataset import RecDataset
from whyrec.data.reviews_json import BadRecord, Fields, JsonLines, Records, load_reviews
from whyrec.progress import progress as progress_bar
from whyrec.utils import WhyrecError

HOTEL = "HotelID"  # the key each review of a hotel file gets, holding its hotel's id
DATE_FORMATS = ("%b %d, %Y", "%B %d, %Y", "%Y-%m-%d")  # "Dec 21, 2008", "December 21, 2008"


def _timestamp(record: dict) -> int | None:
    value = record.get("Date", record.get("date"))
    if isinstance(value, int | float):
        return int(value)
    for form in DATE_FORMATS:
        try:
            day = datetime.strptime(str(value).strip(), form)
        except ValueError:
            continue
        return int(day.replace(tzinfo=timezone.utc).timestamp())
    return None


FIELDS = Fields(source="tripadvisor-json", user=("Author", "author"), item=(HOTEL, "hotel_id"),
                rating=("Ratings.Overall", "Overall", "rating"), text=("Content", "text"),
                summary=("Title", "title"), time=_timestamp,
                hint=" (TripAdvisor data is a folder of per-hotel files or JSON lines of reviews)")


def _hotel_file(file: Path) -> tuple[list, str, str | None]:
    """(reviews, hotel id, hotel name) of one hotel file; the id falls back to the file name."""
    data = file.read_bytes()
    try:
        data = gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
        hotel = json.loads(data)
    except (OSError, EOFError, zlib.error):
        raise BadRecord("cannot be decompressed (truncated or corrupt)") from None
    except ValueError as e:
        raise BadRecord(f"is not valid JSON ({e})") from None
    if not isinstance(hotel, dict) or not isinstance(hotel.get("Reviews"), list):
        raise BadRecord("has no 'Reviews' list; is it a TripAdvisor hotel file?")
    info = hotel.get("HotelInfo") if isinstance(hotel.get("HotelInfo"), dict) else {}
    hotel_id = str(info.get(HOTEL) or file.name.split(".")[0])
    return hotel["Reviews"], hotel_id, (str(info.get("Name") or "").strip() or None)


@dataclass
class HotelFiles:
    """Every `*.json[.gz]` under a folder, in name order; a position counts reviews."""

    folder: Path
    names: dict[str, str | None] = field(default_factory=dict)  # hotel id -> name, filled by read

    @property
    def name(self) -> str:
        return self.folder.name

    def read(self, progress: bool, desc: str) -> Iterator[tuple[int, tuple]]:
        files = sorted(p for p in self.folder.rglob("*") if p.name.endswith((".json", ".json.gz")) and p.is_file())
        if not files:
            raise WhyrecError(f"{self.folder}: no *.json hotel files; pass the folder of per-hotel files "
                              "or a JSON-lines file of reviews")
        position = 0
        for file in progress_bar(files, desc=f"{desc} {self.folder.name}", unit="file", enabled=progress):
            try:
                reviews, hotel_id, hotel_name = _hotel_file(file)
            except BadRecord as e:
                position += 1  # the whole file is one malformed record
                yield position, (file, 0, e)
                continue
            self.names.setdefault(hotel_id, hotel_name)
            for j, review in enumerate(reviews, start=1):
                position += 1
                yield position, (file, j, {**review, HOTEL: hotel_id} if isinstance(review, dict) else review)

    def parse(self, raw: tuple) -> dict:
        value = raw[2]
        if isinstance(value, BadRecord):
            raise value
        if not isinstance(value, dict):
            raise BadRecord(f"is a JSON {type(value).__name__}, not an object")
        return value

    def where(self, position: int, raw: tuple) -> str:
        file, j = raw[0].relative_to(self.folder), raw[1]
        return f"{file}" if j == 0 else f"{file} review {j}"

    def titles(self, ids: set[str]) -> pd.DataFrame:
        return pd.DataFrame([(h, self.names.get(h)) for h in sorted(ids)], columns=[S.ITEM, S.TITLE])


def load_tripadvisor_json(path: str | Path, k_core: int = 5, min_rating: float | None = None,
                          max_users: int | None = None, max_items: int | None = None, seed: int = 42,
                          require_review: bool = True, on_error: str = "raise",
                          progress: bool = True) -> RecDataset:
    """A RecDataset (user, item, rating, timestamp, review, summary) from TripAdvisor reviews.

    Args:
        path: a folder of per-hotel JSON files (searched recursively, `.json` or `.json.gz`),
            or a JSON-lines file (plain or gzipped) with one review a line.
        k_core: keep the largest subset where every author and hotel has at least this many
            reviews (iterated to a fixed point); 1 or less turns the filter off.
        min_rating: keep reviews whose overall rating is at least this.
        max_users: sample this many authors (seeded) before the k-core.
        max_items: keep only this many most-reviewed hotels, before the author sample.
        require_review: drop reviews with empty text.
        on_error: 'raise' stops at the first malformed review or file, naming it; 'skip'
            drops and counts them (meta["dropped"]["malformed_lines"]).
    """
    path = Path(path)
    if not path.exists():
        raise WhyrecError(f"{path} not found")
    records: Records = HotelFiles(path) if path.is_dir() else JsonLines(path)
    titles = records.titles if isinstance(records, HotelFiles) else (lambda ids: None)
    return load_reviews(records, FIELDS, k_core=k_core, min_rating=min_rating, max_users=max_users,
                        max_items=max_items, seed=seed, require_review=require_review, on_error=on_error,
                        progress=progress, item_meta=titles,
                        meta={"layout": "hotel files" if path.is_dir() else "json lines"})
