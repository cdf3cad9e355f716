"""Item facts as a short prompt slot (issue 20: grounding by construction).

A method that puts these in its prompt (XRec with `--xrec.item_facts true`) lets the model copy
facts instead of inventing them: the catalogue fields the grounding checker knows (genres, year,
director, cast; `whyrec.data.metadata`) and, for review data, the item's most frequent feature
words in the training split (the `feature` column PEPLER-style data carries). Only training
records are read, so no valid/test explanation leaks into a prompt.

    genre: crime, thriller; year: 1996; director: Joel Coen; cast: Frances McDormand, Steve Buscemi
    features: sound, price, strings
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict

import pandas as pd

from whyrec.data import schema as S
from whyrec.data.metadata import CAST, DIRECTOR, GENRE, YEAR, split_names
from whyrec.data.movielens import genre_word

MAX_CAST = 3
MAX_FEATURES = 5
_TITLE_YEAR = re.compile(r"\((\d{4})\)\s*$")


def _year(row: pd.Series) -> str:
    value = row.get(YEAR)
    if value is not None and not pd.isna(value) and str(value).strip():
        try:
            return str(int(float(value)))
        except ValueError:
            return str(value).strip()
    found = _TITLE_YEAR.search(str(row.get(S.TITLE) or ""))
    return found.group(1) if found else ""


def top_features(interactions: pd.DataFrame | None, k: int = MAX_FEATURES) -> dict[str, list[str]]:
    """Each item's `k` most frequent feature words in the training split (ties: first seen first)."""
    if interactions is None or S.FEATURE not in interactions:
        return {}
    train = interactions[interactions[S.SPLIT].astype(str) == S.TRAIN] if S.SPLIT in interactions else interactions
    counts: dict[str, Counter] = defaultdict(Counter)
    for item, feature in zip(train[S.ITEM].astype(str), train[S.FEATURE], strict=True):
        if isinstance(feature, str) and feature.strip():
            counts[item][feature.strip()] += 1
    return {item: [f for f, _ in c.most_common(k)] for item, c in counts.items()}


def _clip_words(parts: list[str], max_words: int) -> str:
    """The leading `parts` that fit in `max_words` words, joined by "; ": a part is kept whole or
    left out, as half a name would be a fact of its own (and possibly a false one)."""
    out, used = [], 0
    for part in parts:
        words = len(part.split())
        if used + words > max_words:
            break
        out.append(part)
        used += words
    return "; ".join(out)


def item_facts(items: pd.DataFrame, interactions: pd.DataFrame | None = None, max_words: int = 40) -> dict[str, str]:
    """{item id: its facts slot text} for the items with at least one fact, at most `max_words` words."""
    features = top_features(interactions)
    out = {}
    for _, row in items.iterrows():
        item = str(row[S.ITEM])
        parts = []
        genres = [genre_word(g) for g in split_names(row.get(GENRE))]
        if genres:
            parts.append("genre: " + ", ".join(dict.fromkeys(genres)))
        year = _year(row)
        if year:
            parts.append(f"year: {year}")
        for label, column, most in (("director", DIRECTOR, None), ("cast", CAST, MAX_CAST)):
            names = split_names(row.get(column))[:most]
            if names:
                parts.append(f"{label}: " + ", ".join(names))
        if features.get(item):
            parts.append("features: " + ", ".join(features[item]))
        text = _clip_words(parts, max_words)
        if text:
            out[item] = text
    return out
