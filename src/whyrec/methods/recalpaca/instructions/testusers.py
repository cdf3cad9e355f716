"""Which MovieLens users RecAlpaca's 200-row test file holds, and which titles they must never see.

The test file names no user ids. Each row shows a profile ('He is 24 old, and work as
technician') and the user's liked titles, so a row is tied to the ML-100K user with exactly
those demographics whose >= 4-rated titles cover most of the row's liked titles. That
user's testGT titles are then kept out of every part of the training data.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from whyrec.data import schema as S
from whyrec.data.dataset import RecDataset
from whyrec.methods.recalpaca.instructions.prompts import LIKED_MIN
from whyrec.methods.recalpaca.instructions.titles import title_key, title_list
from whyrec.utils import WhyrecError, read_json

# ../shared/data next to the repository; absent outside the project's machine.
SHARED_TEST = Path(__file__).resolve().parents[3].parent / "shared/data/recalpaca-ml100k/ML100kEvaluationRecAlpaca.json"


@dataclass
class TestMatch:
    """How the rows of the shared test file were tied to MovieLens users."""

    excluded: dict[str, list[str]] = field(default_factory=dict)  # user -> testGT titles
    rows: list[dict] = field(default_factory=list)  # per row: user, overlap, runner-up overlap


def parse_profile(text: str) -> tuple[int, str, str] | None:
    """(age, 'M'/'F', occupation) from 'user profile: He is 24 old, and work as technician'."""
    found = re.search(r"user profile:\s*(He|She) is (\d+) old(?:, and (?:work as (.+?)|\w+ is a student|has retired))?"
                      r"\s*\n", text)
    if not found:
        return None
    occupation = found.group(3) or next((job for job, words in (("student", "is a student"), ("retired", "has retired"))
                                         if words in found.group(0)), "other")
    return int(found.group(2)), "F" if found.group(1) == "She" else "M", occupation.strip()


def match_test_users(path: str | Path, ds: RecDataset, min_overlap: float = 0.5) -> TestMatch:
    """Tie each test row to the ML-100K user with its exact demographics whose >= 4-rated titles
    cover the most of the row's liked titles; WhyrecError if a row has no convincing match."""
    rows = read_json(path)
    if not isinstance(rows, list) or not all(isinstance(r, dict) and "testGT" in r for r in rows):
        raise WhyrecError(f"{path} is not a RecAlpaca test file (a JSON list of rows with testGT)")
    users = ds.users.set_index(S.USER)
    titles = dict(zip(ds.items[S.ITEM], ds.items[S.TITLE], strict=True))
    liked = ds.interactions[ds.interactions[S.RATING] >= LIKED_MIN]
    keys: dict[str, set[str]] = {}
    for user, item in zip(liked[S.USER], liked[S.ITEM], strict=True):
        keys.setdefault(user, set()).add(title_key(titles.get(item, item)))
    match = TestMatch()
    for k, row in enumerate(rows):
        text = row.get("wTop1Input") or row.get("input", "")  # the longer history matches better
        demo, row_liked = parse_profile(text), {title_key(t) for t in title_list(text, "score 5 out 5:")}
        same = users.index[(users["age"] == demo[0]) & (users["gender"] == demo[1])
                           & (users["occupation"] == demo[2])] if demo else []
        scores = sorted(((len(row_liked & keys.get(u, set())) / max(len(row_liked), 1), u) for u in same),
                        reverse=True)
        if not scores or scores[0][0] < min_overlap:
            raise WhyrecError(f"{path}: row {k} ({demo}) matches no ML-100K user "
                              f"(best overlap {scores[0][0] if scores else 0:.2f} < {min_overlap})")
        user = str(scores[0][1])
        match.excluded.setdefault(user, []).extend(t for t in row["testGT"] if t not in match.excluded[user])
        match.rows.append({"row": k, "user": user, "overlap": round(scores[0][0], 3),
                           "runner_up": round(scores[1][0], 3) if len(scores) > 1 else None})
    return match


def banned_items(ds: RecDataset, match: TestMatch | None) -> dict[str, set[str]]:
    """user -> every item whose title is one of that user's testGT titles (any year, any copy)."""
    if match is None:
        return {}
    by_key: dict[str, list[str]] = {}
    for item, title in zip(ds.items[S.ITEM], ds.items[S.TITLE], strict=True):
        by_key.setdefault(title_key(title), []).append(str(item))
    # `same_key` allows a cut of up to 4 letters either way, so index each key under its own cuts:
    # a lookup then costs a few dict probes instead of a pass over every title (ML-100K's 191 test
    # users: 0.04 s against 3.4 s).
    by_cut: dict[str, set[str]] = {}
    for key in by_key:
        for cut in range(max(len(key) - 4, 5), len(key) + 1):
            by_cut.setdefault(key[:cut], set()).add(key)
    out = {}
    for user, gt in match.excluded.items():
        keys = set()
        for g in map(title_key, gt):
            near = by_cut.get(g, set()) | {g[:cut] for cut in range(max(len(g) - 4, 5), len(g) + 1)}
            keys |= {key for key in near | {g} if key in by_key}  # each one `same_key` with g, by construction
        out[user] = {i for key in keys for i in by_key[key]}
    return out
