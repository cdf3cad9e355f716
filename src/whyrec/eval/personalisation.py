"""Personalisation of explanations, measured without reference texts (issue 20, item 2).

- **User identification**: for each explained (user, item) pair, the explanation and the
  history text of N candidate users (the true user and N-1 others drawn at random, seeded per
  pair, so two systems explaining the same pairs face the same candidates) are embedded with
  the packaged all-MiniLM-L6-v2 (`whyrec.eval.probes.MiniLMEmbedder`); the pair counts as
  identified when the true user's history is the most similar (cosine). A tie at the top counts
  1/(tied users), so an explanation that says nothing about the user scores chance, 1/N, on average.
- **History mentions**: the share of explanations that name a title, or a genre, of the user's
  own training items. Titles match in any case on word boundaries, in their stored and display
  forms and, for 2+ word titles, without the year (one-word stems such as "Heat" would match
  ordinary words). A genre of the user's history is often also the target item's, so the genre
  rate is an upper bound on what the user's history added; the title rate is the stricter one.

A user's history text is their profile (if any) followed by the titles of their most recent
training items ("Liked: A; B; C"); users without any history text are no candidates. Review data
with neither titles nor profiles (Amazon 5-core reviews) uses what each user wrote instead: their
latest training explanations ("Wrote: ..."), so identification asks whether an explanation sounds
like its user's own past reviews.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from whyrec.utils import WhyrecError

Embedder = Callable[[Sequence[str]], np.ndarray]
MAX_TITLES = 30  # MiniLM reads 256 word pieces: later titles would be cut anyway
MAX_WRITTEN = 8  # explanations of ~10-20 words each: about what fits in those 256 word pieces


def history_text(titles: Sequence[str], profile: str = "", max_titles: int = MAX_TITLES) -> str:
    """What a user is recognised by: the profile, then the latest `max_titles` titles."""
    parts = [str(profile).strip()] if profile and str(profile).strip() else []
    shown = [str(t) for t in titles if str(t).strip()][-max_titles:]
    if shown:
        parts.append("Liked: " + "; ".join(shown))
    return ". ".join(parts)


def histories_from_dataset(ds) -> tuple[dict[str, list[str]], dict[str, set[str]], dict[str, str]]:
    """({user: train titles}, {user: genres of those items}, {user: profile}) of a RecDataset; the
    whole data is the history when it has no split column. Items without a title are left out."""
    from whyrec.data import schema as S
    from whyrec.data.metadata import GENRE, split_names
    from whyrec.data.movielens import genre_word

    inter = ds.split(S.TRAIN) if S.SPLIT in ds.interactions else ds.interactions
    titles = {str(i): t for i, t in ds.item_text(S.TITLE).items()}
    genres = ({str(i): {genre_word(g) for g in split_names(v)} for i, v in zip(ds.items[S.ITEM], ds.items[GENRE])}
              if GENRE in ds.items else {})
    by_user: dict[str, list[str]] = {}
    liked: dict[str, set[str]] = {}
    for user, item in zip(inter[S.USER].astype(str), inter[S.ITEM].astype(str)):
        title = titles.get(item)
        if title and title != item:
            by_user.setdefault(user, []).append(title)
        liked.setdefault(user, set()).update(genres.get(item, set()))
    profiles = {str(u): str(p) for u, p in ds.user_text(S.PROFILE).items()} if S.PROFILE in ds.users else {}
    if not by_user and not profiles:
        profiles = _written(inter)
    return by_user, liked, profiles


def _written(inter) -> dict[str, str]:
    """{user: "Wrote: e1; e2; ..."}: the latest MAX_WRITTEN training explanations (else reviews) of
    each user, for review data without item titles or user profiles (Amazon 5-core reviews), where
    what a user wrote about past items is the only history there is."""
    from whyrec.data import schema as S

    column = next((c for c in (S.EXPLANATION, S.REVIEW) if c in inter), None)
    if column is None:
        return {}
    texts: dict[str, list[str]] = {}
    for user, text in zip(inter[S.USER].astype(str), inter[column]):
        if isinstance(text, str) and text.strip():
            texts.setdefault(user, []).append(text.strip())
    return {u: "Wrote: " + "; ".join(ts[-MAX_WRITTEN:]) for u, ts in texts.items()}


def histories_from_catalog(catalog, users: Sequence[str]) -> tuple[dict[str, list[str]], dict[str, str]]:
    """({user: train titles}, {user: profile}) from a served model's catalog (no genres there);
    an item whose title is its id (no metadata) is left out."""
    titles, profiles = {}, {}
    for user in dict.fromkeys(map(str, users)):
        titles[user] = [catalog.title(i) for i in catalog.history(user) if catalog.title(i) != i]
        profiles[user] = catalog.profile(user)
    return titles, profiles


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.clip(np.linalg.norm(x, axis=1, keepdims=True), 1e-12, None)


def candidate_sets(users: Sequence[str], pool: Sequence[str], n_candidates: int, seed: int) -> list[list[str]]:
    """Per pair: the true user first, then n_candidates-1 other users of `pool` drawn with a
    generator seeded by (seed, pair index), so the same pairs always get the same candidates."""
    pool = sorted(set(map(str, pool)))
    out = []
    for k, user in enumerate(map(str, users)):
        others = [u for u in pool if u != user]
        rng = random.Random(f"{seed}:{k}")
        out.append([user, *rng.sample(others, n_candidates - 1)])
    return out


def user_identification(explanations: Sequence[str], users: Sequence[str], histories: Mapping[str, str],
                        n_candidates: int = 10, seed: int = 0, embed: Embedder | None = None) -> dict:
    """Accuracy@1 of picking each pair's user among `n_candidates` by embedding similarity.

    histories: {user: history text} (`history_text`); users without one are no candidates, and a
    pair whose user has none is skipped (counted in `skipped`). `n_candidates` is capped at the
    number of candidates. Returns accuracy, chance (1/N), n, skipped, n_candidates and the
    per-pair scores (`per_pair`, None for a skipped pair; for paired comparisons)."""
    if len(explanations) != len(users):
        raise WhyrecError(f"{len(explanations)} explanations for {len(users)} users; give one user per explanation")
    if n_candidates < 2:
        raise WhyrecError(f"n_candidates must be at least 2 (got {n_candidates})")
    pool = sorted(u for u, text in histories.items() if str(text).strip())
    if len(pool) < 2:
        raise WhyrecError(f"user identification needs at least 2 users with a history ({len(pool)} have one)")
    n = min(n_candidates, len(pool))
    candidates = set(pool)
    kept = [k for k, u in enumerate(map(str, users)) if u in candidates]
    if embed is None:
        from whyrec.eval.probes import MiniLMEmbedder

        embed = MiniLMEmbedder()
    sets = candidate_sets([users[k] for k in kept], pool, n, seed)
    needed = sorted({u for cands in sets for u in cands})  # only the drawn users are embedded
    row = {u: k for k, u in enumerate(needed)}
    users_emb = _unit(embed([histories[u] for u in needed])) if needed else np.zeros((0, 1))
    texts_emb = _unit(embed([str(explanations[k]) for k in kept])) if kept else np.zeros((0, 1))
    per_pair: list[float | None] = [None] * len(users)
    for j, (k, cands) in enumerate(zip(kept, sets)):
        sims = users_emb[[row[u] for u in cands]] @ texts_emb[j]
        top = sims.max()
        tied = np.isclose(sims, top, rtol=0.0, atol=1e-9)
        per_pair[k] = float(1.0 / tied.sum()) if tied[0] else 0.0
    scores = [s for s in per_pair if s is not None]
    return {"accuracy": float(np.mean(scores)) if scores else None, "chance": 1.0 / n, "n": len(scores),
            "skipped": len(users) - len(scores), "n_candidates": n, "per_pair": per_pair}


def _title_forms(title: str) -> set[str]:
    from whyrec.data.metadata import display_title

    forms = set()
    for form in {title, display_title(title)}:
        forms.add(form)
        stem = re.sub(r"\s*\(\d{4}\)\s*$", "", form)
        if stem != form and len(stem.split()) >= 2:
            forms.add(stem)
    return {f.strip().casefold() for f in forms if f.strip()}


def _genre_forms(genre: str) -> set[str]:
    g = genre.casefold()
    return {g, g[:-1] + "ies" if g.endswith("y") else g + "s"}


def _mentions(text: str, phrases: set[str]) -> bool:
    low = text.casefold()
    return any(re.search(r"(?<!\w)" + re.escape(p) + r"(?!\w)", low) for p in phrases)


def history_mentions(explanations: Sequence[str], users: Sequence[str], titles: Mapping[str, Sequence[str]],
                     genres: Mapping[str, set[str]] | None = None) -> dict:
    """Shares of explanations naming a title (`title_rate`), a genre (`genre_rate`, None without
    genres) or either (`rate`) of the user's own training history; `per_pair` 1/0 for `rate`."""
    if len(explanations) != len(users):
        raise WhyrecError(f"{len(explanations)} explanations for {len(users)} users; give one user per explanation")
    title_hits, genre_hits = [], []
    for text, user in zip(map(str, explanations), map(str, users)):
        forms = set().union(*(_title_forms(str(t)) for t in titles.get(user, ()))) if titles.get(user) else set()
        title_hits.append(_mentions(text, forms))
        if genres is not None:
            words = set().union(*(_genre_forms(g) for g in genres.get(user, ()))) if genres.get(user) else set()
            genre_hits.append(_mentions(text, words))
    either = [t or (bool(genre_hits) and genre_hits[k]) for k, t in enumerate(title_hits)]
    share = (lambda xs: float(np.mean(xs)) if xs else None)  # noqa: E731
    return {"rate": share(either), "title_rate": share(title_hits),
            "genre_rate": share(genre_hits) if genres is not None else None, "n": len(either),
            "per_pair": [float(x) for x in either]}


def personalisation(explanations: Sequence[str], users: Sequence[str], titles: Mapping[str, Sequence[str]],
                    profiles: Mapping[str, str] | None = None, genres: Mapping[str, set[str]] | None = None,
                    n_candidates: int = 10, seed: int = 0, embed: Embedder | None = None) -> dict:
    """Both measures: {"identification": user_identification(...), "mentions": history_mentions(...)}."""
    profiles = profiles or {}
    every = set(titles) | set(profiles)
    texts = {u: history_text(titles.get(u, ()), profiles.get(u, "")) for u in every}
    return {"identification": user_identification(explanations, users, texts, n_candidates, seed, embed),
            "mentions": history_mentions(explanations, users, titles, genres)}
