"""Top-k evaluation of recommendation lists written as free text (RecAlpaca, METHODS.md §6.3).

RecAlpaca (Allenpai1/RecAlpaca, `testEvalTop1.ipynb`) scores its 200 ML-100k users with
precision@5 / recall@5 averaged over *all* users and an NDCG@5 built on sklearn's
`ndcg_score`. Re-implemented here from that definition, with one change: the original
orders each user's titles by `list(set(...))`, so its NDCG moves with PYTHONHASHSEED
(0.350-0.390, 0.3708 reported). We report two deterministic versions instead:

- `ndcg@k`: RecAlpaca's formula averaged over every ordering of each user's titles, i.e. the
  expectation of what the original prints (closed form, no sampling).
- `ndcg@k_ordered`: the same formula with the titles in the order the model wrote them.

Precision and recall do not depend on order and match the published 0.3337 / 0.1770.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

from whyrec.eval.titles import (
    candidates_from_prompt,
    match_to_candidates,
    normalize_title,
    parse_titles,
    recalpaca_titles,
)
from whyrec.utils import WhyrecError, read_json, write_json, write_text

PARSERS = ("recalpaca", "robust")


def precision_recall(predicted: Sequence[str], truth: Sequence[str]) -> tuple[float, float]:
    """RecAlpaca's per-user precision and recall: a predicted title hits when it equals a
    ground-truth title; repeats in `predicted` count each time, as in the original.
    Empty predictions (or empty truth, for recall) score 0."""
    truth_set = set(truth)
    hits = sum(t in truth_set for t in predicted)
    return (hits / len(predicted) if predicted else 0.0), (hits / len(truth) if truth else 0.0)


def _discounts(k: int) -> list[float]:
    return [1.0 / math.log2(i + 2) for i in range(k)]


def recalpaca_ndcg(
    ranked: Sequence[Sequence[str]],
    truth: Sequence[Sequence[str]],
    k: int = 5,
    average_order: bool = False,
) -> list[float]:
    """Per-user NDCG@k as RecAlpaca's `ndcg_score(y_true, y_score, k)` computes it.

    The columns are the union of every user's predicted titles: a user's titles get
    descending scores, all other columns score 0 and tie, and sklearn averages the gain of a
    tie group over the positions it spans. Ground-truth titles nobody predicted are not
    columns, so they are missing from the ideal DCG too. A user with no relevant column
    scores 0.

    Args:
        ranked: titles per user, best first (repeats are ignored after their first place).
        truth: ground-truth titles per user.
        average_order: return the mean over all orderings of each user's titles instead of
            the given order (what the original's set order gives in expectation).
    """
    columns = {t for titles in ranked for t in titles}
    disc = _discounts(k)
    scores = []
    for titles, gt in zip(ranked, truth):
        own = list(dict.fromkeys(titles))
        gt_cols = set(gt) & columns
        ideal = sum(disc[: min(len(gt_cols), k)])
        if ideal == 0:
            scores.append(0.0)
            continue
        top = own[:k]
        if average_order and own:  # each of the first min(m, k) places holds a hit w.p. h/m
            dcg = sum(t in gt_cols for t in own) / len(own) * sum(disc[: len(top)])
        else:
            dcg = sum(d for t, d in zip(top, disc) if t in gt_cols)
        n_zero = len(columns) - len(own)
        if len(own) < k and n_zero:  # the tied zero-score group fills the remaining places
            zero_hits = len(gt_cols - set(own))
            dcg += zero_hits / n_zero * sum(disc[len(own) : min(k, len(own) + n_zero)])
        scores.append(dcg / ideal)
    return scores


def _parse(text: str, candidates: Sequence[str], parser: str, k: int) -> list[str]:
    if parser == "recalpaca":
        return recalpaca_titles(text, n=k)
    return match_to_candidates(parse_titles(text), candidates)[:k]


def evaluate_topk(
    predictions: Sequence[str],
    candidates: Sequence[Sequence[str]] | None,
    ground_truth: Sequence[Sequence[str]],
    k: int = 5,
    parser: str = "recalpaca",
) -> tuple[dict, list[dict]]:
    """Metrics of generated recommendation texts against each user's held-out titles.

    Args:
        predictions: one generated text per user.
        candidates: the candidate titles shown in each prompt (used by `parser="robust"` to
            map loose spellings onto the candidates; may be None).
        ground_truth: held-out liked titles per user.
        parser: "recalpaca" reproduces the published extraction and exact string matching;
            "robust" uses `parse_titles`, candidate matching and normalised comparison.

    Returns:
        (metrics, per-user rows); metrics hold precision@k, recall@k, ndcg@k,
        ndcg@k_ordered and n_users.
    """
    if parser not in PARSERS:
        raise WhyrecError(f"unknown title parser {parser!r}; choose one of {', '.join(PARSERS)}")
    if len(predictions) != len(ground_truth) or (
        candidates is not None and len(candidates) != len(predictions)
    ):
        raise WhyrecError(
            f"{len(predictions)} predictions, {len(ground_truth)} ground-truth lists and "
            f"{'no' if candidates is None else len(candidates)} candidate lists: they must align"
        )
    if not predictions:
        raise WhyrecError("no users to evaluate")
    cands = candidates if candidates is not None else [[]] * len(predictions)
    titles = [_parse(text, c, parser, k) for text, c in zip(predictions, cands)]
    return score_ranked(titles, ground_truth, k, normalise=parser == "robust", label=parser)


def score_ranked(
    titles: Sequence[Sequence[str]],
    ground_truth: Sequence[Sequence[str]],
    k: int = 5,
    normalise: bool = False,
    label: str = "ranked",
) -> tuple[dict, list[dict]]:
    """RecAlpaca's metrics for ranked title lists (a parsed generation, or a baseline's top-k).

    With `normalise`, titles and ground truth are compared as normalised keys (the robust
    parser); otherwise by exact string, as the original does.
    """
    if normalise:  # compare normalised keys; per-user rows still show the titles
        keys = [[normalize_title(t) for t in ts] for ts in titles]
        truth = [[normalize_title(t) for t in gt] for gt in ground_truth]
    else:
        keys, truth = [list(ts) for ts in titles], [list(gt) for gt in ground_truth]
    pr = [precision_recall(p, t) for p, t in zip(keys, truth)]
    ordered = recalpaca_ndcg(keys, truth, k)
    averaged = recalpaca_ndcg(keys, truth, k, average_order=True)
    n = len(titles)
    metrics = {
        f"precision@{k}": sum(p for p, _ in pr) / n,
        f"recall@{k}": sum(r for _, r in pr) / n,
        f"ndcg@{k}": sum(averaged) / n,
        f"ndcg@{k}_ordered": sum(ordered) / n,
        "n_users": n,
        "parser": label,
    }
    rows = [
        {
            "user": i,
            "titles": list(ts),
            "ground_truth": list(gt),
            "hits": [t in set(tr) for t in key],
            f"precision@{k}": p,
            f"recall@{k}": r,
            f"ndcg@{k}": a,
            f"ndcg@{k}_ordered": o,
        }
        for i, (ts, gt, key, tr, (p, r), a, o) in enumerate(
            zip(titles, ground_truth, keys, truth, pr, averaged, ordered)
        )
    ]
    return metrics, rows


def load_recalpaca_json(
    path: str | Path, field: str = "output2"
) -> tuple[list[str], list[list[str]], list[list[str]]]:
    """(texts, candidate lists, ground-truth lists) from a RecAlpaca test JSON."""
    path = Path(path)
    if path.is_file() and path.stat().st_size == 0:
        raise WhyrecError(
            f"{path} is empty; expected RecAlpaca's test JSON (a list of user records)"
        )
    data = read_json(path)
    if not isinstance(data, list) or not all(isinstance(r, dict) and "testGT" in r for r in data):
        raise WhyrecError(
            f"{path} is not a RecAlpaca test JSON: expected a list of objects with a 'testGT' key"
        )
    if not data:
        raise WhyrecError(f"{path} holds no user records")
    for i, rec in enumerate(data):
        if not isinstance(rec.get(field), str):
            keys = ", ".join(sorted(k for k, v in rec.items() if isinstance(v, str)))
            raise WhyrecError(
                f"{path}: record {i} has no text field {field!r} (text fields: {keys})"
            )
    cands = [candidates_from_prompt(r.get("input", "")) for r in data]
    return [r[field] for r in data], cands, [list(r["testGT"]) for r in data]


def evaluate_recalpaca_json(
    path: str | Path,
    field: str = "output2",
    out: str | Path | None = None,
    k: int = 5,
    parser: str = "recalpaca",
) -> dict:
    """Score one generation field of a RecAlpaca test JSON; with `out`, write
    `out/metrics.json` and `out/per_user.jsonl` (both atomically)."""
    texts, cands, truth = load_recalpaca_json(path, field)
    metrics, rows = evaluate_topk(texts, cands, truth, k=k, parser=parser)
    metrics = {**metrics, "field": field}
    if out is not None:
        out = Path(out)
        write_json(out / "metrics.json", metrics)
        write_text(
            out / "per_user.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        )
    return metrics
