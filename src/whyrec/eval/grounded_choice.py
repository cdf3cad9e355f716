"""Grounding-aware choice among candidate explanations (issue 20: grounding by construction).

Pure functions over a `whyrec.eval.grounding.Catalogue`; generating the candidates is the
workflow's job (`whyrec.runs.Run` with `--generation.candidates N`).

- `choose` keeps the candidate with the fewest false claims, then the most supported checkable
  claims (claims the checker confirmed), then the earliest (candidate 0 is the greedy output), or
  with `select="consensus"` the one closest on average to the other candidates (`consensus`,
  word n-grams), or with `select="bertscore"` the same by BERTScore F1 (the caller passes those
  scores as `agreement`, from `whyrec.eval.bertscore.BertScorer.agreement`).
- A claim the checker marks false is never emitted silently: the sentences of the chosen
  candidate that carry one are dropped while a sentence without a false claim remains; when
  every sentence carries one, the text is kept whole and the claims are listed in `kept_false`,
  so callers can flag it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from whyrec.eval.grounding import Catalogue, claims_by_sentence, explanation_claims


@dataclass
class Choice:
    """What was emitted for one pair and why."""

    text: str
    """The emitted explanation (the chosen candidate without its false sentences)."""
    candidate: int
    """Index of the chosen candidate (0: the greedy output)."""
    false_claims: list[tuple[str, str]] = field(default_factory=list)
    """(kind, value) of the chosen candidate's false claims, before any sentence was dropped."""
    removed: list[str] = field(default_factory=list)
    """Sentences dropped because they carried a false claim."""
    kept_false: list[tuple[str, str]] = field(default_factory=list)
    """(kind, value) of false claims still in `text` (no sentence without one was left)."""
    checked: int = 0
    """Checkable claims in `text`."""
    candidates: list[str] = field(default_factory=list)
    """Every candidate it was chosen among, in order (0: the greedy output)."""

    @property
    def flagged(self) -> bool:
        """True when `text` differs from the chosen candidate or still holds a false claim."""
        return bool(self.removed or self.kept_false)

    def as_dict(self) -> dict:
        return {"candidate": self.candidate, "checked_claims": self.checked,
                "false_claims": [list(c) for c in self.false_claims], "removed_sentences": list(self.removed),
                "kept_false_claims": [list(c) for c in self.kept_false]}


def score(cat: Catalogue, text: str, user: str, item: str) -> tuple[int, int]:
    """(false claims, supported claims) of one explanation for the pair (`user`, `item`)."""
    claims = explanation_claims(cat, text, str(user), str(item))
    false = sum(not ok for _, _, ok in claims)
    return false, len(claims) - false


def _grams(text: str) -> Counter:
    words = str(text or "").lower().split()
    return Counter(words) + Counter(zip(words, words[1:]))


def _f1(a: Counter, b: Counter) -> float:
    common = sum((a & b).values())
    return 2 * common / (sum(a.values()) + sum(b.values())) if common else 0.0


def consensus(candidates: Sequence[str]) -> list[float]:
    """Each candidate's mean word uni-/bigram F1 against the other candidates: the expected
    similarity to a sample of the model's output, whose maximiser is the minimum-Bayes-risk choice
    (the text the samples agree on rather than one sample's detour). 0.0 for a lone candidate."""
    grams = [_grams(t) for t in candidates]
    others = max(len(grams) - 1, 1)
    return [sum(_f1(g, h) for j, h in enumerate(grams) if j != k) / others for k, g in enumerate(grams)]


def agreement_scores(candidates: Sequence[str], select: str, agreement: Sequence[float] | None = None) -> list[float]:
    """How much each candidate agrees with the others under `select` (all 0.0 for "first")."""
    if agreement is not None:
        if len(agreement) != len(candidates):
            raise ValueError(f"{len(agreement)} agreement scores for {len(candidates)} candidates")
        return list(agreement)
    if select == "consensus":
        return consensus(candidates)
    if select == "first":
        return [0.0] * len(candidates)
    raise ValueError(f"select={select!r} needs agreement scores (whyrec.eval.bertscore.BertScorer.agreement)")


def best_candidate(cat: Catalogue, candidates: Sequence[str], user: str, item: str, select: str = "first",
                   agreement: Sequence[float] | None = None) -> int:
    """Index of the candidate with the fewest false claims, then the most supported, then the first
    (`select="first"`) or the one that agrees most with the others (`agreement_scores`, ties to the first)."""
    if not candidates:
        raise ValueError("best_candidate needs at least one candidate")
    keys = [score(cat, text, user, item) for text in candidates]
    agree = agreement_scores(candidates, select, agreement)
    return min(range(len(candidates)), key=lambda k: (keys[k][0], -keys[k][1], -agree[k], k))


def drop_false_sentences(cat: Catalogue, text: str, user: str, item: str) -> tuple[str, list[str]]:
    """(`text` without the sentences that carry a false claim, the removed sentences); `text`
    unchanged when no sentence would remain. Repeated until stable: a removed sentence may have
    cited the title that vouched for a person named in another."""
    removed: list[str] = []
    while True:
        parts = claims_by_sentence(cat, text, str(user), str(item))
        bad = [s for s, claims in parts if any(not ok for _, _, ok in claims)]
        keep = [s for s, claims in parts if all(ok for _, _, ok in claims)]
        if not bad or not keep:
            return text, removed
        removed += bad
        text = " ".join(s.strip() for s in keep)


def choose(cat: Catalogue, candidates: Sequence[str], user: str, item: str, select: str = "first",
           agreement: Sequence[float] | None = None) -> Choice:
    """The explanation to emit for (`user`, `item`) among `candidates` (module docstring)."""
    k = best_candidate(cat, candidates, user, item, select, agreement)
    chosen = str(candidates[k] or "")
    false = [(kind, value) for kind, value, ok in explanation_claims(cat, chosen, str(user), str(item)) if not ok]
    text, removed = drop_false_sentences(cat, chosen, user, item) if false else (chosen, [])
    left = explanation_claims(cat, text, str(user), str(item))
    return Choice(text=text, candidate=k, false_claims=false, removed=removed,
                  kept_false=[(kind, value) for kind, value, ok in left if not ok], checked=len(left),
                  candidates=[str(c or "") for c in candidates])


def summary(choices: Sequence[Choice]) -> str | None:
    """One line saying what grounding changed in `choices`, or None when nothing was flagged."""
    dropped = sum(bool(c.removed) for c in choices)
    kept = [c for c in choices if c.kept_false]
    if not dropped and not kept:
        return None
    parts = []
    if dropped:
        parts.append(f"{dropped} of {len(choices)} explanation(s) lost sentences with false claims")
    if kept:
        example = ", ".join(f"{kind} {value!r}" for kind, value in kept[0].kept_false[:3])
        parts.append(f"{len(kept)} still hold a false claim no other sentence could replace (e.g. {example})")
    return "grounding: " + "; ".join(parts)
