"""Movie titles out of free LLM text, for top-k evaluation of RecAlpaca-style generations.

Two parsers live here:

- `recalpaca_titles` reproduces the title extraction of RecAlpaca's `testEvalTop1.ipynb`
  (Allenpai1/RecAlpaca, METHODS.md §6.3), rewritten from its definition: a cascade of
  patterns where the first one yielding 5 titles wins, then RecAlpaca's cleaning. Its quirks
  are kept on purpose because the published P@5/R@5 are only reproduced with them.
- `parse_titles` is the forgiving parser for our own generations: numbered lists, bullets,
  quoted titles, "(1995)", trailing reasons or ratings after a dash or colon.

`normalize_title` + `match_to_candidates` map parsed titles onto the candidate list of the
prompt, so spelling differences ("Usual Suspects, The (1995)") do not count as misses.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

# --- RecAlpaca's cascade (§6.3 step 1). Each step: (pattern, flags, require distinct, cap).
# The first four steps accept a result with 5 *distinct* titles, the later ones a result with
# 5 titles counting repeats; the "^\d\. ... -" step keeps only its first 5 matches.
_QUOTED = re.compile(r'"(.*?)"')
_CASCADE: tuple[tuple[re.Pattern, bool, int | None], ...] = (
    (re.compile(r"\d+\. (.+?) -"), True, None),
    (re.compile(r"\d+\.\s(.*?)\s\(\d+\)"), True, None),
    (re.compile(r"\d+\.\s(.*?)\s\(Liked\)"), True, None),
    (_QUOTED, True, None),
    (None, False, None),  # first quoted string on lines starting "1. " .. "5. "
    (_QUOTED, False, None),
    (re.compile(r"^\d\.\s(.*?)\s-", re.MULTILINE), False, 5),
    (re.compile(r"\d\.\s(.*?)\n"), False, None),
)
_LAST = re.compile(r"\d\.\s(.*?)(?:\n|$)")
_LIST_STARTS = tuple(f"{i}. " for i in range(1, 6))


def _quoted_on_numbered_lines(text: str) -> list[str]:
    found = (_QUOTED.search(line) for line in text.split("\n") if line.startswith(_LIST_STARTS))
    return [m.group(1) for m in found if m]


def recalpaca_raw_titles(text: str, n: int = 5) -> list[str]:
    """Titles in generation order, as RecAlpaca's cascade finds them (repeats kept)."""
    for pattern, distinct, cap in _CASCADE:
        found = _quoted_on_numbered_lines(text) if pattern is None else pattern.findall(text)
        found = found[:cap] if cap else found
        if (len(set(found)) if distinct else len(found)) == n:
            return found
    # No pattern gave n titles (3 of the 200 shipped users): keep what the last one finds.
    found = _LAST.findall(text)
    if found:
        found[-1] = found[-1].replace("</s>", "")
    return found


def clean_recalpaca_title(title: str) -> str:
    """RecAlpaca's cleaning: drop quotes, " (1995)", " (8.5/10)", any " (...)", then cut at ":".

    The colon cut also shortens real titles ("Star Trek: First Contact" -> "Star Trek");
    that is part of the published numbers.
    """
    title = title.replace('"', "")
    title = re.sub(r" \(\d{4}\)", "", title)
    title = re.sub(r" \(\d\.\d/10\)", "", title)
    title = re.sub(r" \([^)]*\)", "", title)
    return title.split(":")[0]


def recalpaca_titles(text: str, n: int = 5) -> list[str]:
    """Cleaned titles, one per distinct raw title in first-occurrence order.

    RecAlpaca dedupes the raw titles with `set()` *before* cleaning, so two raw titles may
    clean to the same string; both are kept (precision@k counts them twice, as published).
    The original's set order is arbitrary; here the model's order is kept.
    """
    return [
        clean_recalpaca_title(t)
        for t in dict.fromkeys(t.replace('"', "") for t in recalpaca_raw_titles(text, n))
    ]


# --- Forgiving parser and normalisation.
_ITEM = re.compile(r"^\s*(?:\(?\d{1,2}[.):]|[-*•+])\s+(.+?)\s*$", re.MULTILINE)
_DOUBLE_QUOTED = re.compile(r'^[*_]*["“]([^"”]+)["”]')
_SINGLE_QUOTED = re.compile(r"^[*_]*['‘](.+?)['’][*_]*(?=$|[\s:,.\-–—(])")
_TAIL = re.compile(r"\s+[-–—]\s+|:\s+|\s+\(\d+(?:\.\d+)?\s*/\s*\d+\)|\s+\|\s+")
_SMALL_WORDS = frozenset("a an and at by for in of on or the to vs. with".split())
_ARTICLE_SUFFIX = re.compile(r"^(.*?),\s*(the|a|an|la|le|les|il|el|das|der|die)$", re.IGNORECASE)
_PAREN = re.compile(r"\s*\([^)]*\)\s*")  # "(1995)", "(8.5/10)", "(Liked)", "(dir. Coen)"


def normalize_title(title: str) -> str:
    """Comparison key: casefolded; quotes, colons, "(year)"/"(rating)" and markdown removed;
    whitespace collapsed; a trailing ", The" moved to the front."""
    t = title.replace("*", "").replace("_", " ")
    t = _PAREN.sub(" ", t).replace(":", " ")  # "E.T.: The Extra-Terrestrial" = "E.T. the ..."
    t = t.strip().strip("\"'“”‘’ .,;")
    t = re.sub(r"\s+", " ", t)
    m = _ARTICLE_SUFFIX.match(t)
    if m:
        t = f"{m.group(2)} {m.group(1)}"
    return t.casefold()


def _looks_like_subtitle(words: list[str]) -> bool:
    """ "First Contact" or "A Space Odyssey" after a colon, unlike "This dark comedy is..."."""
    if not words or len(words) > 6 or words[0][0].isdigit() or words[-1][-1] in ".!?":
        return False
    return all(w[0].isupper() or w[0].isdigit() or w.lower() in _SMALL_WORDS for w in words)


def _title_of_item(item: str) -> str:
    m = _DOUBLE_QUOTED.match(item) or _SINGLE_QUOTED.match(item)
    if m:  # a quoted title may itself hold ":" or " - "
        return m.group(1)
    item = item.strip("*_ ")
    seps = list(_TAIL.finditer(item))
    for i, sep in enumerate(seps):
        stop = seps[i + 1].start() if i + 1 < len(seps) else len(item)
        after = _PAREN.sub(" ", item[sep.end() : stop]).split()
        if not sep.group().startswith(":") or not _looks_like_subtitle(after):
            return item[: sep.start()]
    return item


def parse_titles(text: str) -> list[str]:
    """Distinct titles in the order the text lists them (numbered or bulleted lines; a text
    without any list falls back to its quoted strings). Years and ratings are dropped."""
    items = [_title_of_item(s) for s in _ITEM.findall(text)] or _QUOTED.findall(text)
    seen: dict[str, str] = {}
    for raw in items:
        title = re.sub(r"\s+", " ", _PAREN.sub(" ", raw)).strip().strip("\"'“”‘’ .,;*")
        if title and normalize_title(title) not in seen:
            seen[normalize_title(title)] = title
    return list(seen.values())


def match_to_candidates(titles: Sequence[str], candidates: Sequence[str]) -> list[str]:
    """Replace each title by the candidate it names, keeping unmatched titles as they are.

    Normalised exact match first; failing that, RecAlpaca's own rule (§6.3): compare the parts
    before any ":" (so "Star Trek" matches "Star Trek: First Contact"), accepted only when it
    picks a single candidate.
    """
    exact = {normalize_title(c): c for c in candidates}
    short: dict[str, list[str]] = {}
    for c in candidates:
        short.setdefault(normalize_title(c.split(":")[0]), []).append(c)
    out = []
    for t in titles:
        hit = exact.get(normalize_title(t))
        if hit is None:
            options = short.get(normalize_title(t.split(":")[0]), [])
            hit = options[0] if len(options) == 1 else t
        out.append(hit)
    return out


def candidates_from_prompt(prompt: str) -> list[str]:
    """The bracketed candidate list after "likely to like:" in a RecAlpaca input ([] if absent).

    The shipped prompts quote inconsistently ('Fargo', ''Fargo'', "Ulee's Gold"), so items are
    split on quote-comma-quote boundaries rather than parsed as a Python literal.
    """
    m = re.search(r"likely to like:\s*\[(.*?)\]\s*\.", prompt, re.DOTALL)
    if not m:
        return []
    parts = re.split(r"""['"]\s*,\s*['"]""", m.group(1).strip())
    return [p.strip().strip("'\"").strip() for p in parts if p.strip().strip("'\"").strip()]
