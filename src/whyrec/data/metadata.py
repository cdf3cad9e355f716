"""Wikidata film metadata (genre, director, cast, year) for MovieLens-style item tables.

Source: `bokeh_sampledata/_data/movies.db` from the PyPI package `bokeh-sampledata`, an
SQLite file (table `omdb`) with Wikidata (CC0) facts on 17,472 films released 1940-2014.
Films are joined to items on a normalised "title|year" key; keys that name two films are
dropped rather than guessed. With exact years, 1,302 of 1,682 ML-100K movies and 2,923 of
3,883 ML-1M movies match.

Wikidata lists cast members alphabetically, not by billing, so "top" cast here means the
members who appear in the most films of the database (a proxy for prominence); the
director and writers are left out of that list.
"""

from __future__ import annotations

import re
import sqlite3
import unicodedata
from collections import Counter
from collections.abc import Iterable

import pandas as pd

from whyrec.data.packaged import packaged_file
from whyrec.utils import WhyrecError

GENRE, DIRECTOR, CAST, YEAR, IMDB_ID = "genre", "director", "cast", "year", "imdb_id"

# Articles MovieLens moves behind the title ("Usual Suspects, The"); foreign ones too,
# because Wikidata writes "Les Misérables" and MovieLens "Misérables, Les".
_ARTICLES = ("The", "A", "An", "L'", "Le", "La", "Les", "Il", "El", "Das", "Der", "Die",
             "Un", "Une", "Lo", "Los", "Las", "Det", "Den")
_TRAILING_ARTICLE = re.compile(r"^(.*), (" + "|".join(re.escape(a) for a in _ARTICLES) + r")$")
_PARENS = re.compile(r"\([^)]*\)")
_YEAR_SUFFIX = re.compile(r"\((\d{4})\)\s*$")


def split_names(value) -> list[str]:
    """A list of names from a list, numpy array (Parquet round trip), "a, b" string or None."""
    if value is None or (isinstance(value, float) and value != value):
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return [str(v) for v in value]


def display_title(title: str) -> str:
    """'Usual Suspects, The (1995)' -> 'The Usual Suspects (1995)'; other titles unchanged."""
    year = _YEAR_SUFFIX.search(title)
    stem = title[: year.start()].rstrip() if year else title
    alt = re.search(r"\s*(\([^)]*\))$", stem)  # keep "(Alternative Name)" after the moved article
    core, tail = (stem[: alt.start()], alt.group(1)) if alt else (stem, "")
    match = _TRAILING_ARTICLE.match(core)
    if match:
        core = match.group(2) + ("" if match.group(2).endswith("'") else " ") + match.group(1)
    parts = [core, tail, f"({year.group(1)})" if year else ""]
    return " ".join(p for p in parts if p)


def normalise_title(title: str, year) -> str:
    """Join key 'the usual suspects|1995' for 'Usual Suspects, The (Se7en)' and 1995.

    Drops parenthesised parts, moves a trailing article to the front, strips accents,
    lowercases and collapses punctuation and spaces. An unknown year gives 'title|'.
    """
    text = _PARENS.sub("", str(title)).strip()
    match = _TRAILING_ARTICLE.match(text)
    if match:
        text = match.group(2) + ("" if match.group(2).endswith("'") else " ") + match.group(1)
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    text = re.sub(r"[^0-9a-z]+", " ", text.lower().replace("&", " and ")).strip()
    try:
        year = str(int(year))
    except (TypeError, ValueError):
        year = ""
    return f"{text}|{year}"


def _prominence_ranked(cast: list[str], films_per_person: Counter, crew: set[str]) -> list[str]:
    actors = [c for c in cast if c not in crew]
    return sorted(actors, key=lambda name: (-films_per_person[name], name))


def load_film_metadata(max_cast: int = 5) -> pd.DataFrame:
    """Wikidata films: title, year, genre, director, cast (top `max_cast`), runtime, imdb_id, key."""
    path = packaged_file("bokeh-sampledata", "bokeh_sampledata/_data/movies.db")
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as con:
            raw = pd.read_sql(
                'SELECT Title, Year, Genre, Director, Writer, "Cast", Runtime, imdbID FROM omdb', con
            )
    except (sqlite3.Error, pd.errors.DatabaseError) as e:
        raise WhyrecError(f"{path} is not a readable film database ({e}); reinstall bokeh-sampledata") from None
    casts = [split_names(c) for c in raw["Cast"]]
    films_per_person = Counter(name for cast in casts for name in cast)
    directors = [split_names(d) for d in raw["Director"]]
    writers = [split_names(w) for w in raw["Writer"]]
    films = pd.DataFrame({
        "title": raw["Title"].astype(str),
        YEAR: pd.to_numeric(raw["Year"], errors="coerce").astype("Int64"),
        GENRE: [split_names(g) for g in raw["Genre"]],
        DIRECTOR: directors,
        CAST: [_prominence_ranked(c, films_per_person, set(d) | set(w))[:max_cast]
               for c, d, w in zip(casts, directors, writers, strict=True)],
        "runtime": pd.to_numeric(raw["Runtime"], errors="coerce"),
        IMDB_ID: raw["imdbID"].astype(str),
    })
    films["key"] = [normalise_title(t, y) for t, y in zip(films["title"], films[YEAR], strict=True)]
    return films


def _year_of(items: pd.DataFrame, title_col: str, year_col: str) -> pd.Series:
    if year_col in items:
        return pd.to_numeric(items[year_col], errors="coerce").astype("Int64")
    found = items[title_col].astype(str).str.extract(_YEAR_SUFFIX)[0]
    return pd.to_numeric(found, errors="coerce").astype("Int64")


def _unique_keys(films: pd.DataFrame) -> dict[str, dict]:
    """key -> film record, without keys shared by two films (ambiguous, so never joined)."""
    unique = films[~films["key"].duplicated(keep=False)]
    return dict(zip(unique["key"], unique.to_dict("records"), strict=True))


def join_film_metadata(items: pd.DataFrame, films: pd.DataFrame | None = None, *,
                       title_col: str = "title", year_col: str = YEAR, genre_col: str = GENRE,
                       year_tolerance: int = 0) -> pd.DataFrame:
    """Copy of `items` with Wikidata `genre_col`, `director`, `cast`, `year` and `imdb_id`.

    Args:
        items: one row per item with a title ("Title (Year)" or a bare title plus `year_col`).
        films: output of `load_film_metadata()`; loaded when None.
        genre_col: where the Wikidata genre list goes (MovieLens keeps its own in `genre`).
        year_tolerance: also accept a film dated this many years off when the exact year
            fails (0 = exact only, the safe default: remakes share titles).

    Unmatched items get empty lists and a missing `imdb_id`; their `year` is kept.
    """
    if title_col not in items:
        raise WhyrecError(f"items have no {title_col!r} column (have: {', '.join(items.columns)}); "
                          "pass title_col=")
    films = load_film_metadata() if films is None else films
    by_key = _unique_keys(films)
    out = items.copy()
    years = _year_of(out, title_col, year_col)
    titles = out[title_col].astype(str).str.replace(_YEAR_SUFFIX, "", regex=True)
    offsets = [0] + [d for k in range(1, year_tolerance + 1) for d in (-k, k)]
    rows = []
    for title, year in zip(titles, years, strict=True):
        row = None
        for off in offsets if not pd.isna(year) else []:
            key = normalise_title(title, int(year) + off)
            if key in by_key:
                row = by_key[key]
                break
        rows.append(row)
    out[genre_col] = [list(r[GENRE]) if r is not None else [] for r in rows]
    out[DIRECTOR] = [list(r[DIRECTOR]) if r is not None else [] for r in rows]
    out[CAST] = [list(r[CAST]) if r is not None else [] for r in rows]
    out[IMDB_ID] = pd.array([r[IMDB_ID] if r is not None else None for r in rows], dtype="string")
    out[YEAR] = years
    return out


def match_count(items: pd.DataFrame) -> int:
    """How many rows of a `join_film_metadata` result found a Wikidata film."""
    return int(items[IMDB_ID].notna().sum()) if IMDB_ID in items else 0


def join_names(names: Iterable[str]) -> str:
    """['a'] -> 'a'; ['a', 'b'] -> 'a and b'; ['a', 'b', 'c'] -> 'a, b and c'."""
    names = list(names)
    if len(names) <= 1:
        return "".join(names)
    return ", ".join(names[:-1]) + " and " + names[-1]
