"""Grounding: the share of checkable claims in explanations that the data contradicts.

No seed system measures this (issue 3, "Grounding"); whyrec's own definition. A claim is a
catalogue fact an explanation names; it is checked against the dataset, never against a
model. Precision over recall: only claims detected reliably are counted, so the rate is a
lower bound on hallucination.

Checked (kind in `per_kind`):
- `title`: a catalogue title ("Fargo (1996)", "The Usual Suspects (1995)"; without the year,
  and without a leading article, only if it has 2+ words, is capitalised as in the
  catalogue and names one film) in a sentence about
  the user ("user", "you", "rated", "liked", "watched" ...) must be the target item or an item
  of the user's TRAIN history. Titles in other sentences are not claims.
- `genre`: a catalogue genre ("crime", "sci-fi"; plurals like "comedies" always, singulars
  only in a sentence that says film/movie/genre) must be one of the item's genres, of the
  genres of titles cited in the same sentence, or, in a sentence about the user, of the
  user's train items. Genres right after a negation ("not", "unlike", "rather than") are
  skipped.
- `person`: a director or cast member of the catalogue (2+ word names, case-sensitive) must
  belong to the item or to a cited title of the user's train history; after "directed by"
  or before "directed" the person must be a director of one of them.
- `feature` (review datasets): a word of the dataset's feature vocabulary (every `feature`
  value, PEPLER's feature set) must be in the item's vocabulary: the features of its train
  records plus those found in its train reviews (single-token matching, as PEPLER's FMR).
- `year`: a year quoted after a catalogue title ("It's a Wonderful Life (1950)") must be that
  title's year; a year worded as a film's ("the 1946 film", "a 1971 adventure film", "released
  in 1971") must be the target's or a cited title's (in a sentence about the user, also a train
  item's). Exact wordings and exclusions: `whyrec.eval.grounding_numbers`.
- `rating`: a rating the user is said to have given ("the user rated it 4 out of 5", "gave
  Fargo (1996) 5 stars", "rated as an 83 out of 10 by the user") must exist on the data's scale
  and be the user's TRAIN rating of the title it is about; quoted for the target (a
  recommendation, unrated in train) it is false. Ratings attributed to others ("critics rate
  it", "IMDb 8.1"), hedged or predicted ("would rate it 5") are not claims
  (`whyrec.eval.grounding_numbers`).

Not checked: invented titles or names absent from the catalogue (they cannot be told from
ordinary capitalised words), years and ratings in other wordings than those above, opinions,
and claims about users' demographics. Without a split column the whole data is the history.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence

import pandas as pd

from whyrec.data import schema as S
from whyrec.data.dataset import RecDataset
from whyrec.data.metadata import CAST, DIRECTOR, GENRE, display_title, split_names
from whyrec.data.movielens import genre_word
from whyrec.eval.grounding_numbers import number_facts, rating_claims, year_claims
from whyrec.utils import WhyrecError

KINDS = ("title", "genre", "person", "feature", "year", "rating")
_USER_CUES = frozenset("""user user's users you your you've you'd yours rated rates rating liked
likes loved loves enjoyed enjoys watched watches seen saw favorite favourite""".split())
_FILM_CUES = frozenset("film films movie movies genre genres flick flicks picture pictures".split())
_NEGATION = frozenset("not no never unlike n't nor".split())
_PLURALS = {"comedy": "comedies", "drama": "dramas", "thriller": "thrillers", "western": "westerns",
            "musical": "musicals", "documentary": "documentaries", "mystery": "mysteries",
            "romance": "romances", "war": "war films", "horror": "horrors", "fantasy": "fantasies"}
_TOKEN = re.compile(r"[\w'-]+|[^\w\s]")
_SENTENCES = re.compile(r"(?<=[.!?])\s+")
# A period that ends no sentence: "The People vs. Larry Flynt", "Dr. Strangelove", "J. Doe".
_ABBREVIATION = re.compile(r"(?:\b(?:vs|Mr|Mrs|Ms|Dr|St|Jr|Sr|Vol|No)|\b[A-Z])\.$")


def _tokens(text: str) -> list[str]:
    return _TOKEN.findall(text)


class _Phrases:
    """Longest-first lookup of multi-token phrases (titles, names) in a token list."""

    def __init__(self, lower: bool):
        self.lower, self.table, self.longest = lower, {}, 1

    def add(self, phrase: str, value) -> None:
        key = tuple(_tokens(phrase.lower() if self.lower else phrase))
        if key:
            self.table.setdefault(key, set()).add(value)
            self.longest = max(self.longest, len(key))

    def find(self, tokens: list[str]) -> list[tuple[int, int, set]]:
        """(start, end, values) of non-overlapping matches, longest match at each position."""
        toks = [t.lower() for t in tokens] if self.lower else tokens
        out, i = [], 0
        while i < len(toks):
            for n in range(min(self.longest, len(toks) - i), 0, -1):
                values = self.table.get(tuple(toks[i:i + n]))
                if values:
                    out.append((i, i + n, values))
                    i += n
                    break
            else:
                i += 1
        return out


def _column(items: pd.DataFrame, name: str) -> dict[str, list[str]]:
    if name not in items:
        return {}
    return {str(it): split_names(v) for it, v in zip(items[S.ITEM], items[name], strict=True)}


class Catalogue:
    """Item facts and phrase tables for one dataset, built once per report."""

    def __init__(self, ds: RecDataset):
        items = ds.items
        self.genres = {it: {genre_word(g) for g in gs} for it, gs in _column(items, GENRE).items()}
        self.directors = {it: set(v) for it, v in _column(items, DIRECTOR).items()}
        self.cast = {it: set(v) for it, v in _column(items, CAST).items()}
        self.title_of = ds.item_text(S.TITLE)
        self.titles, self.stems = _titles(self.title_of)
        self.people = _Phrases(lower=False)
        for table in (self.directors, self.cast):
            for names in table.values():
                for name in names:
                    if len(name.split()) >= 2:  # one-word names clash with ordinary words
                        self.people.add(name, name)
        self.genre_words = {g for gs in self.genres.values() for g in gs}
        self.history = _history(ds)
        self.features, self.item_features = _feature_tables(ds)
        self.numbers = number_facts(ds, self.title_of)  # years, train ratings, rating scale

    def person_items(self, item: str, cited: set[str], director_only: bool) -> set[str]:
        names = set()
        for it in {item, *cited}:
            names |= self.directors.get(it, set())
            if not director_only:
                names |= self.cast.get(it, set())
        return names


def _titles(titles: dict[str, str]) -> tuple[_Phrases, _Phrases]:
    """Full titles, stored and displayed, matched in any case; and unambiguous 2+ word stems
    without the year, matched only as capitalised in the catalogue."""
    full, stem_ids = _Phrases(lower=True), defaultdict(set)
    for item, title in titles.items():
        if not title or title == item:  # Amazon items without metadata: the ASIN is no title
            continue
        for form in {title, display_title(title)}:
            full.add(form, item)
            stem = re.sub(r"\s*\(\d{4}\)\s*$", "", form)
            bare = re.sub(r"^(The|A|An) ", "", stem)  # "The Usual Suspects" is also "Usual Suspects"
            for short in {stem, bare}:
                if short != form and len(short.split()) >= 2:
                    stem_ids[short].add(item)
    stems = _Phrases(lower=False)
    for stem, ids in stem_ids.items():
        if len(ids) == 1:
            stems.add(stem, next(iter(ids)))
    return full, stems


def _history(ds: RecDataset) -> dict[str, set[str]]:
    inter = ds.split(S.TRAIN) if S.SPLIT in ds.interactions else ds.interactions
    out = defaultdict(set)
    for user, item in zip(inter[S.USER].astype(str), inter[S.ITEM].astype(str), strict=True):
        out[user].add(item)
    return out


def _feature_tables(ds: RecDataset) -> tuple[set[str], dict[str, set[str]]]:
    inter = ds.interactions
    if S.FEATURE not in inter:
        return set(), {}
    features = {f for f in inter[S.FEATURE].dropna().astype(str) if f}
    train = inter[inter[S.SPLIT] == S.TRAIN] if S.SPLIT in inter else inter
    per_item = defaultdict(set)
    for item, feature in zip(train[S.ITEM].astype(str), train[S.FEATURE], strict=True):
        if isinstance(feature, str) and feature:
            per_item[item].add(feature)
    if S.REVIEW in train:  # every feature word an item's train reviews use, not only the chosen one
        for item, review in zip(train[S.ITEM].astype(str), train[S.REVIEW].fillna(""), strict=True):
            per_item[item] |= features.intersection(w.lower() for w in _tokens(str(review)))
    return features, per_item


# ---------------------------------------------------------------- claims of one sentence


def _title_matches(cat: Catalogue, tokens: list[str]) -> list[tuple[int, int, set[str]]]:
    """(start, end, item ids) of titles; full titles win over overlapping stems."""
    spans = []
    for table in (cat.titles, cat.stems):
        for start, stop, ids in table.find(tokens):
            if all(end <= start or stop <= s for s, end, _ in spans):
                spans.append((start, stop, ids))
    return spans


def _negated(low: list[str], i: int) -> bool:
    window = low[max(0, i - 3):i]
    return any(w in _NEGATION for w in window) or "rather than" in " ".join(window)


def _genre_hits(cat: Catalogue, low: list[str], masked: set[int]) -> list[str]:
    """Genres named outside title spans and not negated (module docstring)."""
    film_cue = any(w in _FILM_CUES for w in low)
    hits = []
    for genre in cat.genre_words:
        forms = [(tuple(_tokens(genre)), film_cue)]
        if genre in _PLURALS:
            forms.append((tuple(_tokens(_PLURALS[genre])), True))
        for key, allowed in forms:
            for i in range(len(low) - len(key) + 1):
                if allowed and tuple(low[i:i + len(key)]) == key and i not in masked and not _negated(low, i):
                    hits.append(genre)
    return hits


def _is_director_claim(low: list[str], start: int, end: int) -> bool:
    before = " ".join(low[max(0, start - 2):start])
    return before.endswith("directed by") or "directed" in low[end:end + 4]


def sentence_claims(cat: Catalogue, sentence: str, user: str, item: str,
                    cited_history: set[str]) -> list[tuple[str, str, bool]]:
    """(kind, value, is_true) for every checkable claim of one sentence."""
    tokens = _tokens(sentence)
    low = [t.lower() for t in tokens]
    about_user = any(w in _USER_CUES for w in low)
    history = cat.history.get(user, set())
    spans = _title_matches(cat, tokens)
    masked = {i for s, e, _ in spans for i in range(s, e)}
    cited = set().union(*(ids for _, _, ids in spans)) if spans else set()
    claims = []
    if about_user:
        claims += [("title", cat.title_of[min(ids)], item in ids or bool(ids & history)) for _, _, ids in spans]
    allowed = set(cat.genres.get(item, set())).union(*(cat.genres.get(j, set()) for j in cited))
    if about_user:
        allowed = allowed.union(*(cat.genres.get(j, set()) for j in history))
    claims += [("genre", g, g in allowed) for g in dict.fromkeys(_genre_hits(cat, low, masked))]
    for start, end, names in cat.people.find(tokens):
        if start in masked:
            continue
        director = _is_director_claim(low, start, end)
        ok = cat.person_items(item, cited_history | (cited & history), director)
        claims += [("person", name, name in ok) for name in names]
    if cat.features:
        words = dict.fromkeys(w for i, w in enumerate(low) if w in cat.features and i not in masked)
        claims += [("feature", w, w in cat.item_features.get(item, set())) for w in words]
    claims += year_claims(cat.numbers, tokens, spans, cat.title_of, item, history, about_user)
    claims += rating_claims(cat.numbers, sentence, tokens, spans, user, item, cited_history)
    return claims


# ---------------------------------------------------------------- report


def split_sentences(text: str) -> list[str]:
    """Sentences split after . ! ? and a space, except after abbreviations and initials."""
    out: list[str] = []
    for part in _SENTENCES.split(text):
        if out and _ABBREVIATION.search(out[-1]):
            out[-1] = f"{out[-1]} {part}"
        elif part.strip():
            out.append(part)
    return out


def claims_by_sentence(cat: Catalogue, text: str, user: str, item: str
                       ) -> list[tuple[str, list[tuple[str, str, bool]]]]:
    """(sentence, its claims) for every sentence of one explanation, checked as in
    `explanation_claims` (a title cited in any sentence may vouch for people in another)."""
    sentences = split_sentences(str(text or ""))
    history = cat.history.get(user, set())
    cited = set()
    for sentence in sentences:
        for _, _, ids in _title_matches(cat, _tokens(sentence)):
            cited |= ids & history
    return [(s, sentence_claims(cat, s, user, item, cited)) for s in sentences]


def explanation_claims(cat: Catalogue, text: str, user: str, item: str) -> list[tuple[str, str, bool]]:
    """Claims of one explanation: titles cited in any sentence may vouch for people."""
    return [c for _, claims in claims_by_sentence(cat, text, user, item) for c in claims]


def _rate(false: int, checked: int) -> float | None:
    return false / checked if checked else None


def grounding_report(explanations: Sequence[str], users: Sequence, items: Sequence,
                     ds: RecDataset, max_examples: int = 20) -> dict:
    """Hallucination rate of `explanations[k]` for pair (`users[k]`, `items[k]`) against `ds`.

    Returns checked_claims, false_claims, hallucination_rate (false / checked, None when
    nothing was checkable), explanations, explanations_with_claims,
    explanations_with_false_claim, per_kind {kind: {checked, false, rate}} and up to
    `max_examples` false claims as {index, kind, value}.
    """
    if not len(explanations) == len(users) == len(items):
        raise WhyrecError(f"grounding needs one user and item per explanation; got {len(explanations)} "
                          f"explanations, {len(users)} users, {len(items)} items")
    cat = Catalogue(ds)
    per_kind = {k: {"checked": 0, "false": 0} for k in KINDS}
    with_claims = with_false = 0
    examples = []
    for k, (text, user, item) in enumerate(zip(explanations, users, items, strict=True)):
        claims = explanation_claims(cat, text, str(user), str(item))
        with_claims += bool(claims)
        with_false += any(not ok for _, _, ok in claims)
        for kind, value, ok in claims:
            per_kind[kind]["checked"] += 1
            per_kind[kind]["false"] += not ok
            if not ok and len(examples) < max_examples:
                examples.append({"index": k, "kind": kind, "value": value})
    checked = sum(v["checked"] for v in per_kind.values())
    false = sum(v["false"] for v in per_kind.values())
    for v in per_kind.values():
        v["rate"] = _rate(v["false"], v["checked"])
    return {"checked_claims": checked, "false_claims": false, "hallucination_rate": _rate(false, checked),
            "explanations": len(explanations), "explanations_with_claims": with_claims,
            "explanations_with_false_claim": with_false, "per_kind": per_kind, "false_examples": examples}
