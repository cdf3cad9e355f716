"""Factual user profiles built from the TRAIN split only (no LLM, nothing invented).

XRec (Ma et al., 2024) asks gpt-3.5 to summarise each user's reviews into a profile. MovieLens
has no reviews, so a profile here states what the training ratings show: demographics where
known, the most frequent genres among the user's highly rated (>= `min_rating`) training
movies, and a few of those titles. Built after splitting so valid/test ratings never leak;
the text says "on record" for what the train split holds.
"""

from __future__ import annotations

from collections import Counter, defaultdict

import pandas as pd

from whyrec.data import schema as S
from whyrec.data.dataset import RecDataset
from whyrec.data.metadata import GENRE, join_names, split_names
from whyrec.data.movielens import genre_word
from whyrec.utils import WhyrecError

USER_PROFILE_MAX_WORDS = 40
_UNSPECIFIED_JOBS = {"other", "none", ""}


def liked_train(ds: RecDataset, min_rating: float = 4.0) -> pd.DataFrame:
    """Train rows rated >= min_rating (all train rows if unrated), best and latest first per user."""
    train = ds.split(S.TRAIN)
    if S.RATING in train:
        train = train[train[S.RATING] >= min_rating]
    keys = [S.USER] + [c for c in (S.RATING, S.TIMESTAMP) if c in train] + [S.ITEM]
    ascending = [True] + [False] * (len(keys) - 2) + [True]
    return train.sort_values(keys, ascending=ascending, kind="mergesort")


def group_lists(keys: pd.Series, *values: pd.Series) -> dict[str, list]:
    """key -> list of values (tuples if several columns), in row order.

    A plain loop over numpy object arrays: much faster than `groupby().agg(list)` on
    Arrow-backed strings.
    """
    out: dict[str, list] = defaultdict(list)
    arrays = [v.to_numpy(dtype=object) for v in values]
    rows = arrays[0] if len(arrays) == 1 else zip(*arrays, strict=True)
    for key, row in zip(keys.to_numpy(dtype=object), rows, strict=True):
        out[key].append(row)
    return out


def top_genres(items: list[str], genres: dict[str, list[str]], k: int = 3) -> list[str]:
    """The k genres most frequent over `items`, ties broken alphabetically."""
    counts = Counter(g for it in items for g in genres.get(it, ()))
    return [g for g, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:k]]


def demographics(row: dict) -> str:
    """'Male, age 24, technician.' from whichever of gender/age/occupation are known."""
    parts = []
    gender = str(row.get("gender") or "")
    if gender:
        parts.append({"M": "Male", "F": "Female"}.get(gender, gender))
    age = row.get("age")
    if age is not None and not pd.isna(age):
        parts.append(f"age {age}")
    job = str(row.get("occupation") or "")
    if job.lower() not in _UNSPECIFIED_JOBS and job != "nan":
        parts.append(job)
    text = ", ".join(parts)
    return text[:1].upper() + text[1:] + "." if text else ""


def user_profile(demo: str, n_liked: int, genres: list[str], titles: list[str],
                 min_rating: float | None, fallback_genres: list[str]) -> str:
    """At most 40 words; titles are dropped from the end until it fits.

    `min_rating=None` means unrated (implicit) data: every train item counts as liked.
    """
    bar = f" {min_rating:g} or higher" if min_rating is not None else ""
    if n_liked == 0:
        watched = f"; most watched genres: {join_names(fallback_genres)}" if fallback_genres else ""
        return f"{demo} No movies on record{' rated' + bar if bar else ''}{watched}.".strip()
    for n in range(len(titles), -1, -1):
        text = f"{demo} {n_liked} movie{'s' if n_liked > 1 else ''} on record"
        text += f" rated{bar}" if bar else ""
        if genres:
            text += f", most often {join_names(genres)}"
        if n:
            text += f"; favourites include {join_names(titles[:n])}"
        text = text.strip() + "."
        if len(text.split()) <= USER_PROFILE_MAX_WORDS:
            return text
    return text


def add_profiles(ds: RecDataset, min_rating: float = 4.0, max_titles: int = 3) -> RecDataset:
    """Fill `users.profile` from each user's train ratings; returns `ds` (modified in place)."""
    if S.SPLIT not in ds.interactions:
        raise WhyrecError("add_profiles needs a split: call ensure_split(ds) first (profiles use train only)")
    titles = ds.item_text(S.TITLE)
    genres = {it: [genre_word(g) for g in split_names(gs)]
              for it, gs in zip(ds.items[S.ITEM], ds.items[GENRE], strict=True)} if GENRE in ds.items else {}
    bar = min_rating if S.RATING in ds.interactions else None
    liked_rows, train = liked_train(ds, min_rating), ds.split(S.TRAIN)
    liked = group_lists(liked_rows[S.USER], liked_rows[S.ITEM])
    watched = group_lists(train[S.USER], train[S.ITEM])
    profiles = []
    for row in ds.users.to_dict("records"):
        user = row[S.USER]
        items = liked.get(user, [])
        shown = [titles.get(it) or it for it in items[:max_titles]]
        profiles.append(user_profile(demographics(row), len(items), top_genres(items, genres), shown,
                                     bar, top_genres(watched.get(user, []), genres)))
    ds.users = ds.users.assign(**{S.PROFILE: profiles})
    return ds
