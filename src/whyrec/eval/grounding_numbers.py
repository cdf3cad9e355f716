"""Years and quoted user ratings in explanations, checked against the dataset (issue 20 item 1).

Two claim kinds of `whyrec.eval.grounding` (same rule: precision over recall, so a phrase is a
claim only when its wording leaves no doubt about what it states).

`year`, from two wordings:
- a catalogue title (full or stem match, as `grounding._title_matches`) with "(YYYY)" right
  after it or as part of it: YYYY must be one of that title's catalogue years. A stem whose
  quoted year is later than every catalogue year is skipped (a later remake of that name is
  no catalogue film) unless it names the target or an item of the user's train history;
- a 4-digit year right before a lower-case singular film noun, with up to three modifiers
  between ("the 1946 film", "a 1971 adventure film", "a 1996 American action-adventure
  movie"), or after "released in" / "came out in": YYYY must be a year of the target or of a
  title cited in the same sentence; in a sentence about the user also of the user's train
  items (that sentence may describe the history), except after "this" ("this 1971 film" is the
  target). When a catalogue title follows the noun ("the 1977 film Apocalypse Now") the year
  must be that title's; when another capitalised word follows ("Danny Boyle's 1997 film A Life
  Less Ordinary") it names a film the catalogue may lack, so it is no claim; nor is "the 2018
  Venice Film Festival" or "film festival". Skipped when the target has no known year.
Catalogue years are the "(YYYY)" ending a title and the `year` column when there is one
(`whyrec.data.metadata.YEAR`; either one counts). Not checked: decades ("1990s"), plural
"the 1995 films", years in other wordings ("in 1971", "from 1971"), one-word or ambiguous title
stems followed by a year.

`rating`, a rating the user is said to have given, in a sentence that names the user ("user",
"you", "your"), names no one else ("critics", "IMDb", "viewers", "fans", "other users" ...)
and has no "respectively". Wordings: "N out of M", "N/M" (with "stars" after it or a rating
word in the sentence: rated, rating, score, gave ...), "N stars", "N-star", and a bare N right
after a rating verb and its object ("rated it 4.", "gave Fargo (1996) a 5", "a rating of 4").
Not claims: a hedge or prediction in the 8 tokens before N ("would", "will", "likely",
"predicted", "average", "usually" ...), thresholds ("at least 4", "4 or higher", "4+"), and
counts or other people's ratings ("8 out of 10 viewers", "5-star ratings": a plural noun after).
The claim is false when the scale does not exist in the data (N not a rating value of the data,
or M not its highest value: "83 out of 10", "7 stars" on 1-5); otherwise it is true when one of
the items it may be about has that TRAIN rating from the user: the titles cited in the
sentence (plus history items whose title stem appears there verbatim, which only ever makes a
claim true); with no title, the target and the history titles cited anywhere in the
explanation ("it" may point to the previous sentence). A sentence that quotes a "(YYYY)" of no
catalogue title names a film the checker cannot identify: only the scale is checked there. The target is a recommendation, not in
the user's train ratings, so a rating quoted for it is false. Datasets without a `rating`
column have no rating claims.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field

import pandas as pd

from whyrec.data import schema as S
from whyrec.data.dataset import RecDataset
from whyrec.data.metadata import YEAR, display_title

Claim = tuple[str, str, bool]
Span = tuple[int, int, set[str]]

_YEAR_TOKEN = re.compile(r"1[89]\d\d|20\d\d")
_DIGITS = re.compile(r"\d+")
_STAR_TOKEN = re.compile(r"(\d+)-stars?")
_TITLE_YEAR = re.compile(r"\s*\((\d{4})\)\s*$")
_WORD = re.compile(r"[a-z][\w'-]*")
_GLUE = re.compile(r"[\w'-]")
_FILM_NOUNS = frozenset("film movie flick picture classic release feature".split())
_NOT_MODIFIERS = frozenset("""and or but as of in on at to than with for by from the a an that which who
whose is was are were be been has had have it its this films movies flicks pictures classics""".split())
_USER_WORDS = frozenset("user user's you your you've yours".split())
_OTHERS = frozenset("""critics critic imdb rotten tomatoes metacritic audiences audience viewers viewer
reviewers reviewer fans others other people users everyone public moviegoers press""".split())
_HEDGES = frozenset("""would will might may could should likely probably expected expect expects
predicted predict predicts prediction if average typically usually often tends tend generally""".split())
_RATING_WORDS = frozenset("rated rate rates rating score scored gave given gives give".split())
_RATING_VERBS = frozenset("rated gave given gives scored rating score".split())
_FILLERS = frozenset("it this that film movie the a an as of perfect solid full high top rating score".split())
_THRESHOLDS = frozenset("least over above under below than average around about nearly almost between from more less".split())
_SCALE_WORDS = frozenset("stars star points".split())
_BARE_END = frozenset(". , ; ! ) by".split())
_COMPOUNDS = frozenset("""festival festivals award awards industry critics studio studios school society
institute academy market circuit season""".split())  # "film festival": not a film
_NOT_PLURAL = frozenset("this his hers yours stars points its was has always perhaps".split())


@dataclass
class NumberFacts:
    """Years, train ratings and the rating scale of one dataset."""

    years: dict[str, set[int]] = field(default_factory=dict)
    latest: int | None = None
    ratings: dict[str, dict[str, set[float]]] = field(default_factory=dict)
    """user -> item -> the user's TRAIN rating(s) of it."""
    scale: frozenset[float] = frozenset()
    """Every rating value of the data (all splits); empty without a rating column."""
    stems: dict[str, set[str]] = field(default_factory=dict)
    """item -> its title without the year, as stored and displayed (for verbatim lookups)."""


def number_facts(ds: RecDataset, title_of: dict[str, str]) -> NumberFacts:
    """Years of every item (title "(YYYY)" and `year` column), train ratings and scale of `ds`."""
    years: dict[str, set[int]] = defaultdict(set)
    stems: dict[str, set[str]] = defaultdict(set)
    for item, title in title_of.items():
        found = _TITLE_YEAR.search(title)
        if found:
            years[item].add(int(found.group(1)))
        if title and title != item:
            stems[item] = {_TITLE_YEAR.sub("", form) for form in (title, display_title(title))} - {""}
    if YEAR in ds.items:
        for item, year in zip(ds.items[S.ITEM].astype(str), pd.to_numeric(ds.items[YEAR], errors="coerce"),
                              strict=True):
            if not pd.isna(year):
                years[item].add(int(year))
    all_years = [y for ys in years.values() for y in ys]
    facts = NumberFacts(years=dict(years), latest=max(all_years, default=None), stems=dict(stems))
    inter = ds.interactions
    if S.RATING not in inter:
        return facts
    values = pd.to_numeric(inter[S.RATING], errors="coerce")
    facts.scale = frozenset(float(v) for v in values.dropna().unique())
    train = (inter[S.SPLIT] == S.TRAIN) if S.SPLIT in inter else pd.Series(True, index=inter.index)
    ratings: dict[str, dict[str, set[float]]] = defaultdict(lambda: defaultdict(set))
    for user, item, rating in zip(inter[S.USER][train].astype(str).tolist(),
                                  inter[S.ITEM][train].astype(str).tolist(), values[train].tolist(), strict=True):
        if rating == rating:  # not NaN
            ratings[user][item].add(float(rating))
    facts.ratings = {u: dict(v) for u, v in ratings.items()}
    return facts


# ---------------------------------------------------------------- years


def _paren_year(tokens: list[str], i: int) -> int | None:
    """YYYY when tokens[i:i+3] read "(", YYYY, ")"."""
    if i >= 0 and tokens[i:i + 1] == ["("] and tokens[i + 2:i + 3] == [")"] \
            and i + 1 < len(tokens) and _YEAR_TOKEN.fullmatch(tokens[i + 1]):
        return int(tokens[i + 1])
    return None


def _title_year(facts: NumberFacts, tokens: list[str], span: Span, title_of: dict[str, str],
                related: set[str]) -> Claim | None:
    start, end, ids = span
    known = set().union(*(facts.years.get(j, set()) for j in ids))
    inside = _paren_year(tokens, end - 3) if end - 3 > start else None
    year = inside or _paren_year(tokens, end)
    if year is None or not known:
        return None
    if inside is None and not ids & related and facts.latest is not None and year > facts.latest:
        return None  # a later film of the same name, not this catalogue's
    stem = _TITLE_YEAR.sub("", display_title(title_of.get(min(ids), ""))) or " ".join(tokens[start:end])
    return "year", f"{stem} ({year})", year in known


def _year_phrase(tokens: list[str], low: list[str], i: int) -> tuple[str, int] | None:
    """('1971 adventure film' or 'released in 1971', index after it) when the year at i is
    worded as a film's."""
    if low[max(0, i - 2):i] == ["released", "in"] or low[max(0, i - 3):i] == ["came", "out", "in"]:
        return f"released in {tokens[i]}", i + 1
    for k in range(i + 1, min(i + 5, len(low))):
        if tokens[k] in _FILM_NOUNS:  # lower case: "the 2018 Venice Film Festival" names no film
            after = low[k + 1] if k + 1 < len(low) else ""
            return None if after in _COMPOUNDS else (" ".join(tokens[i:k + 1]), k + 1)
        if not _WORD.fullmatch(low[k]) or low[k] in _NOT_MODIFIERS:
            return None
    return None


def year_claims(facts: NumberFacts, tokens: list[str], spans: list[Span], title_of: dict[str, str],
                item: str, history: set[str], about_user: bool) -> list[Claim]:
    """Year claims of one sentence (module docstring)."""
    low = [t.lower() for t in tokens]
    related = {item} | history
    claims = [c for span in spans if (c := _title_year(facts, tokens, span, title_of, related))]
    masked = {i for s, e, _ in spans for i in range(s, e)}
    cited = set().union(*(ids for _, _, ids in spans)) if spans else set()
    for i, tok in enumerate(tokens):
        if i in masked or not _YEAR_TOKEN.fullmatch(tok) or not facts.years.get(item):
            continue
        found = _year_phrase(tokens, low, i)
        if found is None:
            continue
        phrase, k = found
        named = [ids for s, _, ids in spans if s == k]
        if named:  # "the 1946 film It's a Wonderful Life": that title's year
            pool = named[0]
        elif k < len(tokens) and tokens[k][:1].isupper():
            continue  # "Danny Boyle's 1997 film A Life Less Ordinary": a film the catalogue lacks
        else:
            pool = {item} | cited
            if about_user and (i == 0 or low[i - 1] != "this"):
                pool |= history
        allowed = set().union(*(facts.years.get(j, set()) for j in pool))
        claims.append(("year", phrase, int(tok) in allowed))
    return claims


# ---------------------------------------------------------------- ratings


def _number(low: list[str], i: int) -> tuple[float, int] | None:
    """(value, index after it) of an integer or decimal ("4", ".", "5") at i."""
    if i >= len(low) or not _DIGITS.fullmatch(low[i]):
        return None
    if low[i + 1:i + 2] == ["."] and i + 2 < len(low) and _DIGITS.fullmatch(low[i + 2]):
        return float(f"{low[i]}.{low[i + 2]}"), i + 3
    return float(low[i]), i + 1


def _plural(word: str) -> bool:
    return len(word) > 3 and word.endswith("s") and word not in _NOT_PLURAL and word.isalpha()


def _verb_before(low: list[str], i: int, masked: set[int]) -> bool:
    """A rating verb before i, with only its object (fillers, a cited title) between."""
    for k in range(i - 1, max(-1, i - 12), -1):
        if low[k] in _RATING_VERBS:
            return True
        if k not in masked and low[k] not in _FILLERS:
            return False
    return False


def _expression(low: list[str], i: int, masked: set[int]) -> tuple[float, float | None, int] | None:
    """(value, scale top or None, index after) of a user rating worded at i, or None."""
    star = _STAR_TOKEN.fullmatch(low[i])
    number = None if star else _number(low, i)
    if i in masked or (not star and number is None) or low[i - 1:i] == ["("]:
        return None
    top, stars_after = None, False
    decimal_star = low[i + 1:i + 2] == ["."] and i + 2 < len(low) and _STAR_TOKEN.fullmatch(low[i + 2])
    if decimal_star and number:  # "4.5-star": one token after the point
        value, k, form = float(f"{low[i]}.{decimal_star.group(1)}"), i + 3, "stars"
    elif star:
        value, k, form = float(star.group(1)), i + 1, "stars"
    else:
        value, k = number
        scale = _number(low, k + 2) if low[k:k + 2] == ["out", "of"] else (
            _number(low, k + 1) if low[k:k + 1] == ["/"] else None)
        if scale:
            (top, k), form = scale, "scale"
        elif low[k:k + 1] in (["stars"], ["star"]):
            k, form = k + 1, "stars"
        else:
            form = "bare"
    if form == "scale" and low[k:k + 1] and low[k] in _SCALE_WORDS:
        k, stars_after = k + 1, True
    after = low[k] if k < len(low) else None
    if after and (after in ("or", "+", "plus") or low[k:k + 2] in (["and", "above"], ["and", "up"], ["and", "higher"])):
        return None  # a threshold, not a rating
    if after and _plural(after):
        return None  # "8 out of 10 viewers", "5-star ratings": a count or others' ratings
    before = low[max(0, i - 8):i]
    if _THRESHOLDS.intersection(before[-3:]) or _HEDGES.intersection(before):
        return None
    if any(k not in masked and (_DIGITS.fullmatch(low[k]) or _plural(low[k])) for k in range(max(0, i - 3), i)):
        return None  # "rated 12 films 5 stars", "gives comedies 4 stars": counts and habits
    if form == "scale" and not stars_after and not _RATING_WORDS.intersection(low):
        return None
    if form == "bare" and not (_verb_before(low, i, masked) and (after is None or after in _BARE_END)):
        return None
    return value, top, k


def _named_history(facts: NumberFacts, sentence: str, history: set[str]) -> set[str]:
    """History items whose title stem appears verbatim in the sentence (one-word stems too)."""
    return {j for j in history if any(stem in sentence and _whole_word(sentence, stem)
                                      for stem in facts.stems.get(j, ()))}


def _whole_word(text: str, phrase: str) -> bool:
    """`phrase` occurs in `text` with no word character glued to either end."""
    start = text.find(phrase)
    while start >= 0:
        end = start + len(phrase)
        if not _GLUE.match(text[start - 1:start]) and not _GLUE.match(text[end:end + 1]):
            return True
        start = text.find(phrase, start + 1)
    return False


def rating_claims(facts: NumberFacts, sentence: str, tokens: list[str], spans: list[Span], user: str,
                  item: str, cited_history: set[str]) -> list[Claim]:
    """Rating claims of one sentence (module docstring)."""
    low = [t.lower() for t in tokens]
    if not facts.scale or not _USER_WORDS.intersection(low) or _OTHERS.intersection(low) \
            or "respectively" in low:
        return []
    masked = {i for s, e, _ in spans for i in range(s, e)}
    given = facts.ratings.get(user, {})
    cited = set().union(*(ids for _, _, ids in spans)) if spans else set()
    named: set[str] | None = None  # computed only when a quoted rating needs it
    ends = {e for _, e, _ in spans}
    unknown_film = any(_paren_year(tokens, i) and i not in masked and i not in ends for i in range(len(tokens)))
    claims, i = [], 0
    while i < len(low):
        found = _expression(low, i, masked)
        if found is None:
            i += 1
            continue
        value, top, stop = found
        in_scale = value in facts.scale and (top is None or top == max(facts.scale))
        ok = in_scale and any(value in given.get(j, ()) for j in cited)
        if in_scale and not ok:
            named = _named_history(facts, sentence, set(given)) if named is None else named
            referents = (cited | named) or ({item} | cited_history)
            ok = any(value in given.get(j, ()) for j in referents)
        if not unknown_film or not in_scale:  # a film the checker cannot name: only the scale is checked
            text = " ".join(tokens[i:stop]).replace(" . ", ".").replace(" / ", "/")
            claims.append(("rating", text, ok))
        i = stop
    return claims
