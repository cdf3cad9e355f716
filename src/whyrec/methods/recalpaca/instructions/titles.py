"""Movie titles as RecAlpaca's text writes them, and recognising them in a teacher's answer.

The shared test file shortens MovieLens titles ('Usual Suspects, The (1995)' ->
'The Usual Suspects') and sometimes cuts them ('A Clockwork Orang'); a teacher may quote,
bold or re-order them. Everything here compares titles through one key so that these forms
meet, without ever matching a different film ('Seven' is not 'Seven Years in Tibet').
"""

from __future__ import annotations

import ast
import re
from collections.abc import Sequence

from whyrec.data.metadata import display_title


def short_title(title: str) -> str:
    """'Usual Suspects, The (1995)' -> 'The Usual Suspects': the test file's title form."""
    return re.sub(r"\s*\([^)]*\)", "", display_title(str(title))).strip() or str(title)


def title_key(title: str) -> str:
    """Comparison key: article in front, no parentheses or quotes, lowercase ASCII words."""
    text = display_title(str(title).strip().strip("'\"*` ").strip())
    text = re.sub(r"\([^)]*\)", " ", text).lower().replace("&", " and ")
    return re.sub(r"[^0-9a-z]+", " ", text).strip()


def same_title(a: str, b: str) -> bool:
    """Equal keys, or one cut short by up to 4 letters (the test file has 'A Clockwork Orang')."""
    return same_key(title_key(a), title_key(b))


def same_key(a: str, b: str) -> bool:
    """`same_title` on keys already computed."""
    short, long = sorted((a, b), key=len)
    return a == b or (len(short) >= 5 and long.startswith(short) and len(long) - len(short) <= 4)


def title_list(text: str, label: str) -> list[str]:
    """The titles of the Python-style list after `label` (e.g. 'score 5 out 5:') up to the line end."""
    found = re.search(re.escape(label) + r"\s*(\[.*?\])\s*\n", text, re.DOTALL)
    if not found:
        return []
    try:
        return [str(t) for t in ast.literal_eval(found.group(1))]
    except (ValueError, SyntaxError):  # the file's `input` has broken quoting; take quoted runs
        return [a or b for a, b in re.findall(r"'([^']+)'|\"([^\"]+)\"", found.group(1))]


_LISTED = re.compile(r"^\s*(?:\d{1,2}\s*[.):]|[-*\u2022])\s*(.+?)\s*$", re.MULTILINE)


def parse_choices(text: str, candidates: Sequence[str]) -> tuple[list[int], list[str]]:
    """(indices of the candidates named by numbered/bulleted lines, names matching no candidate).

    A line names candidate c when its key starts with c's key (the longest such c wins), so
    'N. "Fargo" (1996): reason' and 'N. Fargo - reason' both name 'Fargo'; so does a line whose
    part before ':' or ' - ' has c's key ('Full Monty, The - reason').
    """
    keys = [title_key(c) for c in candidates]
    chosen, outside = [], []
    for body in _LISTED.findall(text or ""):
        body = body.replace("**", "")
        line, head = title_key(body), title_key(re.split(r":| - ", body, maxsplit=1)[0])
        hits = [i for i, k in enumerate(keys) if k and (line == k or line.startswith(k + " ") or head == k)]
        if hits:
            best = max(hits, key=lambda i: len(keys[i]))
            if best not in chosen:
                chosen.append(best)
        else:
            outside.append(re.split(r":| - ", body, maxsplit=1)[0].strip(" \"'"))
    return chosen, outside


def mentions(text: str, titles: Sequence[str]) -> bool:
    """Whether `text` contains any of `titles` as whole words (keys compared)."""
    padded = f" {title_key(text)} "
    return any(k and f" {k} " in padded for k in map(title_key, titles))
