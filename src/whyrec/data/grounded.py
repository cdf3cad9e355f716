"""Grounded explanation targets for MovieLens, which has ratings but no reviews.

XRec (Ma et al., 2024) trains on gpt-3.5 rewrites of each user's review. MovieLens has no
review to rewrite, so whyrec writes targets from facts alone, with no language model:

1. Evidence comes ONLY from the user's TRAIN ratings plus the target movie's metadata
   (MovieLens genres, Wikidata directors and top cast). The user's "liked" movies are their
   train movies rated >= `min_rating`, excluding the target movie itself and any other
   movie with the same title, so a held-out pair never cites itself.
2. The first kind of evidence that exists is used, in this order:
   - director: a liked movie by the same director ("It was directed by Joel Coen, who
     also directed Raising Arizona (1987), which the user rated 5 out of 5.");
   - cast: a liked movie sharing a top-cast member;
   - genre: the liked movie(s) sharing the most genres with the target, naming only the
     genres that every cited movie and the target have in common;
   - taste (no overlap at all): the target's genres and the genres most frequent among the
     user's liked train movies (or among all train movies when none is liked).
   One or two liked movies are cited; higher-rated, then more recent, come first.
3. The wording is drawn from several templates per kind, and an item fact (year, genres
   or director) may be appended. The choices use `pair_rng(seed, user, item)`
   (a `random.Random` seeded by the CRC32 of "seed|user|item"), so each pair's text is
   reproducible and independent of row order or user sampling.
4. Texts say "on record" for the train split ("the user's highly rated movies on record
   are most often drama"), never "training".
5. Every text has at most 50 words (the extra fact, then the second title, are dropped
   until it fits) and never names the target's own title.

Every statement is true of the data: cited titles were rated >= `min_rating` in train,
named directors, cast members and genres really are shared, and "rated highly" means
rated >= `min_rating`. Texts are written for every interaction, whatever its rating;
filter on `rating` to keep only positive pairs, as XRec does.
"""

from __future__ import annotations

import itertools
import random
import zlib
from collections import Counter, defaultdict
from dataclasses import dataclass

import pandas as pd

from whyrec.data import schema as S
from whyrec.data.dataset import RecDataset
from whyrec.data.metadata import CAST, DIRECTOR, GENRE, YEAR, join_names, split_names
from whyrec.data.movielens import article, genre_word
from whyrec.data.profiles import group_lists, liked_train, top_genres
from whyrec.progress import progress as progress_bar
from whyrec.utils import WhyrecError

MAX_WORDS = 50
KINDS = ("director", "cast", "genre", "taste")


@dataclass(frozen=True)
class ItemFacts:
    title: str
    genres: tuple[str, ...]  # as they read in a sentence: "sci-fi", "film noir"
    directors: tuple[str, ...]
    cast: tuple[str, ...]
    year: int | None


@dataclass(frozen=True)
class Explanation:
    """A text and the facts it states, so tests can check them against the data."""

    text: str
    kind: str  # one of KINDS
    evidence: tuple[str, ...]  # item ids of the cited liked train movies
    shared: tuple[str, ...]  # the shared director / cast member / genres it names
    user_genres: tuple[str, ...] = ()  # only for kind "taste"


def item_facts(items: pd.DataFrame) -> dict[str, ItemFacts]:
    def col(name):
        return items[name] if name in items else [None] * len(items)

    return {
        str(it): ItemFacts(
            title=str(title) if title is not None and not pd.isna(title) else str(it),
            genres=tuple(genre_word(g) for g in split_names(genres)),
            directors=tuple(split_names(directors)), cast=tuple(split_names(cast)),
            year=None if year is None or pd.isna(year) else int(year))
        for it, title, genres, directors, cast, year in zip(
            items[S.ITEM], col(S.TITLE), col(GENRE), col(DIRECTOR), col(CAST), col(YEAR), strict=True)
    }


class UserEvidence:
    """One user's liked train movies, indexed by director, cast member and genre."""

    def __init__(self, liked: list[tuple[str, float]], watched: list[str], facts: dict[str, ItemFacts]):
        self.liked, self.watched, self.facts = liked, watched, facts
        self.rating = dict(liked)
        self.position = {item: k for k, (item, _) in enumerate(liked)}  # liked is best-first
        self._genre_cache: dict[tuple[str, ...], tuple[list[str], Counter]] = {}
        self.by = {k: defaultdict(list) for k in ("directors", "cast", "genres")}
        for item, _ in liked:
            for key, index in self.by.items():
                for value in getattr(facts[item], key):
                    index[value].append(item)

    def _usable(self, items, target: str) -> list[str]:
        title = self.facts[target].title
        return [j for j in items if j != target and self.facts[j].title != title]

    def best_person(self, target: str, key: str) -> tuple[str, list[str]] | None:
        """The target's director (or cast member) shared with the most liked movies."""
        best = None
        for name in getattr(self.facts[target], key):
            items = self._usable(self.by[key].get(name, ()), target)
            if items and (best is None or len(items) > len(best[1])):
                best = (name, items)
        return best

    def _ranked_for(self, genres: tuple[str, ...]) -> tuple[list[str], Counter]:
        """Liked movies sharing any of `genres` (most shared, then best-first) and the counts."""
        cached = self._genre_cache.get(genres)
        if cached is None:
            counts = Counter(j for g in genres for j in self.by["genres"].get(g, ()))
            cached = self._genre_cache[genres] = (sorted(counts, key=lambda j: (-counts[j], self.position[j])), counts)
        return cached

    def best_genre_match(self, target: str, rng: random.Random) -> tuple[list[str], list[str]] | None:
        """Liked movies sharing the most genres with the target, and the shared genres."""
        genres, title = self.facts[target].genres, self.facts[target].title
        order, counts = self._ranked_for(genres)
        ranked = [j for j in order if j != target and self.facts[j].title != title]
        if not ranked:
            return None
        best = (counts[ranked[0]], self.rating[ranked[0]])
        ties = list(itertools.takewhile(lambda j: (counts[j], self.rating[j]) == best, ranked))
        first = rng.choice(ties)  # equally good candidates: pick at random
        shared = [g for g in genres if g in self.facts[first].genres]
        for j in ranked:
            if j != first and self.facts[j].title != self.facts[first].title \
                    and set(shared) <= set(self.facts[j].genres):
                return [first, j], shared
        return [first], shared

    def taste(self, target: str) -> tuple[list[str], bool]:
        """Most frequent genres of the liked (else all) train movies, target excluded.

        Returns the genres and whether they come from liked movies.
        """
        liked = self._usable([j for j, _ in self.liked], target)
        pool = liked or self._usable(self.watched, target)
        return top_genres(pool, {j: self.facts[j].genres for j in pool}), bool(liked)


def _cite(ids: list[str], ev: UserEvidence, variant: int) -> str:
    """Cited titles with a true statement of how the user rated them."""
    titles = [ev.facts[j].title for j in ids]
    ratings = [ev.rating[j] for j in ids]
    if len(ids) == 1:
        options = [f"{titles[0]}, which the user rated {ratings[0]:g} out of 5",
                   f"{titles[0]}, rated {ratings[0]:g}/5 by the user",
                   f"{titles[0]}, a film the user rated highly"]
    else:
        same = f"both of which the user rated {ratings[0]:g} out of 5" if len(set(ratings)) == 1 \
            else f"which the user rated {' and '.join(f'{r:g}' for r in ratings)} out of 5 respectively"
        options = [f"{join_names(titles)}, both rated highly by the user", f"{join_names(titles)}, {same}"]
    return options[variant % len(options)]


# {name}: shared person; {cite}: titles with ratings; {titles}: bare titles; {film}: "a crime film".
_TEMPLATES = {
    "director": ["It was directed by {name}, who also directed {cite}.",
                 "Like {cite}, this film was directed by {name}.",
                 "The user has rated films by {name} highly before, including {titles}; {name} also directed this one.",
                 "{name} directed this film as well as {cite}."],
    "cast": ["{name} is in the cast, as in {cite}.",
             "Like {cite}, this film features {name}.",
             "It shares a cast member, {name}, with {cite}.",
             "{name}, who appears in {titles} (rated highly by the user), is also in this film."],
    "genre": ["Like {cite}, this is {film}.",
              "It is {film}, just like {cite}.",
              "The user rated {titles} highly, and this is also {film}.",
              "This film shares its {genre_noun} with {cite}: it is {film}."],
    "taste": ["This is {film}; the user's {pool} are most often {taste}.",
              "The user's {pool} are most often {taste}, and this one is {film}."],
}
_NO_HISTORY = "This is {film}; the user has no other ratings on record to compare it with."


def _film(genres: list[str] | tuple[str, ...]) -> str:
    """'a crime and thriller film', or 'a film with no listed genre'."""
    g = join_names(genres)
    return f"{article(g)} {g} film" if g else "a film with no listed genre"


def _extras(facts: ItemFacts, kind: str) -> list[str]:
    """Facts about the target alone that may be appended for variety."""
    out = [f"It was released in {facts.year}."] if facts.year else []
    if facts.genres and kind not in ("genre", "taste"):
        out.append(f"It is {_film(facts.genres)}.")
    if facts.directors and kind != "director":
        out.append(f"It was directed by {join_names(facts.directors)}.")
    return out


def _evidence(ev: UserEvidence, item: str, rng: random.Random):
    """(kind, cited ids, shared names) for the strongest evidence that exists."""
    for kind, key in (("director", "directors"), ("cast", "cast")):
        found = ev.best_person(item, key)
        if found:
            return kind, found[1][:2], [found[0]]
    found = ev.best_genre_match(item, rng)
    if found:
        return "genre", found[0], found[1]
    return "taste", [], []


def _text(kind: str, template: int, fields: dict, extra: str) -> str:
    if kind == "taste" and not fields["taste"]:
        body = _NO_HISTORY.format(**fields)
    else:
        body = _TEMPLATES[kind][template].format(**fields)
    return f"{body[0].upper()}{body[1:]} {extra}".strip()


def explain_pair(ev: UserEvidence, item: str, rng: random.Random) -> Explanation:
    """A grounded explanation of why `item` suits the user described by `ev`."""
    facts = ev.facts[item]
    kind, cited, shared = _evidence(ev, item, rng)
    cited = cited[: rng.choice((1, 2))]
    taste, from_liked = ev.taste(item) if kind == "taste" else ([], False)
    extras = _extras(facts, kind) if rng.random() < 0.5 else []  # half the texts add a fact
    extra = rng.choice(extras) if extras else ""
    template = rng.randrange(len(_TEMPLATES[kind]))
    cite_variant = rng.randrange(6)
    fields = {"name": shared[0] if kind in ("director", "cast") else "",
              "film": _film(shared if kind == "genre" else facts.genres),
              "genre_noun": "genres" if len(shared) > 1 else "genre",
              "taste": join_names(taste),
              "pool": "highly rated movies on record" if from_liked else "movies on record"}
    for n_cited, add in ((len(cited), extra), (len(cited), ""), (1, "")):  # shorten until it fits
        ids = cited[:n_cited]
        fields["titles"] = join_names(ev.facts[j].title for j in ids)
        fields["cite"] = _cite(ids, ev, cite_variant) if ids else ""
        text = _text(kind, template, fields, add)
        if len(text.split()) <= MAX_WORDS:
            break
    return Explanation(text, kind, tuple(ids), tuple(shared), tuple(taste))


def pair_rng(seed: int, user: str, item: str) -> random.Random:
    """The RNG of one (user, item) pair: stable across runs, row orders and samples."""
    return random.Random(zlib.crc32(f"{seed}|{user}|{item}".encode()))


def explain_interactions(ds: RecDataset, seed: int = 0, min_rating: float = 4.0,
                         progress: bool = False) -> list[Explanation]:
    """One Explanation per row of `ds.interactions`, in row order (see the module docstring)."""
    if S.SPLIT not in ds.interactions:
        raise WhyrecError("grounded explanations need a split: call ensure_split(ds) first (they use train only)")
    facts = item_facts(ds.items)
    missing = set(ds.interactions[S.ITEM]) - set(facts)
    facts.update({it: ItemFacts(it, (), (), (), None) for it in missing})
    liked_rows, train = liked_train(ds, min_rating), ds.split(S.TRAIN)
    ratings = liked_rows[S.RATING] if S.RATING in liked_rows else pd.Series(min_rating, index=liked_rows.index)
    liked = group_lists(liked_rows[S.USER], liked_rows[S.ITEM], ratings)
    watched = group_lists(train[S.USER], train[S.ITEM])
    out: list[Explanation | None] = [None] * len(ds.interactions)
    groups = ds.interactions.groupby(S.USER, sort=False).indices
    items = ds.interactions[S.ITEM].to_numpy()
    for user, rows in progress_bar(groups.items(), desc="grounded explanations", unit="user", enabled=progress):
        ev = UserEvidence(liked.get(user, []), watched.get(user, []), facts)
        for row in rows:
            item = str(items[row])
            out[row] = explain_pair(ev, item, pair_rng(seed, user, item))
    return out


def add_grounded_explanations(ds: RecDataset, seed: int = 0, min_rating: float = 4.0,
                              progress: bool = False) -> RecDataset:
    """Write the `explanation` column for every interaction (all splits); returns `ds`."""
    explanations = explain_interactions(ds, seed=seed, min_rating=min_rating, progress=progress)
    ds.interactions = ds.interactions.assign(**{S.EXPLANATION: [e.text for e in explanations]})
    ds.meta = {**ds.meta, "explanations": {"method": "grounded", "seed": seed, "min_rating": min_rating}}
    return ds
