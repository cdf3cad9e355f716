"""RecExplainer's alignment metrics (Lei et al., KDD 2024; `src/inference.py`, METHODS §5.3).

Pure functions over generated text, plus `evaluate_alignment`, which runs a loaded
RecExplainer on task examples (`whyrec.methods.recexplainer.tasks`) and scores each task:

| task          | metric                                                          | decoding               |
|---------------|-----------------------------------------------------------------|------------------------|
| iid2title     | exact match of the lower-cased, stripped generation            | greedy, 200 new tokens |
| uid2hist      | history coverage                                                | greedy, 200 new tokens |
| uid2next      | HR@5 / NDCG@5, one positive among 5 returned beams              | beam 5, 5 sequences    |
| uidiid2rank   | NDCG@5 with graded relevance (1000, 100, 10, 1, 0)              | greedy, 200 new tokens |
| uidiid2binary | accuracy of logit("Yes") > logit("No") at the last position     | no generation          |

Predicted lists are split on ";" (our answers join titles with "; ", since titles hold commas).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from whyrec.config import GenerationConfig
from whyrec.methods.recexplainer.tasks import SEP
from whyrec.utils import WhyrecError

GRADED_RELEVANCE = (1000, 100, 10, 1, 0)
ALIGNMENT_GENERATION = GenerationConfig(max_new_tokens=200, batch_size=8, repetition_penalty=1.0)
"""The alignment tasks' default decoding: greedy, unpenalised, 200 new tokens, eight prompts a batch."""


def _norm(text: str) -> str:
    return str(text).strip().lower()


def split_items(text: str, sep: str = SEP) -> list[str]:
    """Lower-cased, stripped items of a separator-joined answer; empty pieces dropped."""
    return [p for p in (_norm(x) for x in str(text).split(sep.strip())) if p]


def item_recovery_accuracy(predictions: Sequence[str], titles: Sequence[str]) -> float:
    """Share of generations equal to the title after lower-casing and stripping."""
    _same_length(predictions, titles)
    return sum(_norm(p) == _norm(t) for p, t in zip(predictions, titles)) / len(titles)


def history_coverage(prediction: str | Sequence[str], answer: Sequence[str]) -> float:
    """Sum over the first len(answer) predicted items of 1/len(answer) for each one found in the
    answer list (lower-cased). As in RecExplainer, a repeated correct item counts each time."""
    predicted = split_items(prediction) if isinstance(prediction, str) else [_norm(p) for p in prediction]
    truth = {_norm(a) for a in answer}
    if not answer:
        return 0.0
    return sum(1 / len(answer) for p in predicted[:len(answer)] if p in truth)


def next_item_hit_ndcg(candidates: Sequence[str], target: str, k: int = 5) -> tuple[float, float]:
    """(HR@k, NDCG@k) of one target title among k returned sequences: NDCG = 1/log2(rank + 2)."""
    want = _norm(target)
    for rank, c in enumerate(candidates[:k]):
        if _norm(c) == want:
            return 1.0, 1 / math.log2(rank + 2)
    return 0.0, 0.0


def graded_ndcg(predicted: Sequence[str], labels: Sequence[str], relevance: Sequence[float] = GRADED_RELEVANCE,
                k: int = 5) -> float:
    """NDCG@k where the label at position i has gain relevance[i]; each label is matched once
    (a repeated prediction earns nothing) and IDCG is the labels in their own order."""
    gain = {_norm(lab): relevance[i] for i, lab in enumerate(labels[:len(relevance)])}
    seen, dcg = set(), 0.0
    for pos, p in enumerate(predicted[:k]):
        p = _norm(p)
        if p in gain and p not in seen:
            seen.add(p)
            dcg += gain[p] / math.log2(pos + 2)
    ideal = sorted(gain.values(), reverse=True)[:k]
    idcg = sum(g / math.log2(pos + 2) for pos, g in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0


def chance_levels(n_items: int, relevance: Sequence[float] = GRADED_RELEVANCE, k: int = 5) -> dict:
    """What guessing scores, for the table's reference row: ranking NDCG@k of a uniformly random
    order of the candidates (the exact mean over every order: 0.613 for 1000/100/10/1/0), next-item
    HR@k and NDCG@k of k distinct random items out of `n_items` (history exclusion ignored), and
    Yes/No accuracy of a coin (the pairs are balanced: one positive, one negative per user)."""
    from itertools import permutations

    labels = [str(i) for i in range(len(relevance))]
    orders = list(permutations(labels))
    ndcg = sum(graded_ndcg(list(o), labels, relevance, k) for o in orders) / len(orders)
    hit = min(1.0, k / max(1, n_items))
    next_ndcg = sum(1 / math.log2(r + 2) for r in range(k)) / max(1, n_items)
    return {"uid2next": {"hr@5": hit, "ndcg@5": next_ndcg}, "uidiid2rank": {"ndcg@5": ndcg},
            "uidiid2binary": {"accuracy": 0.5}}


def yes_no_accuracy(logits, labels: Sequence[bool | str]) -> float:
    """Accuracy of "Yes" when logit(Yes) > logit(No); `logits` is (N, 2) as [yes, no]."""
    rows = [(float(r[0]), float(r[1])) for r in logits]
    truth = [(lab if isinstance(lab, bool) else _norm(lab) == "yes") for lab in labels]
    _same_length(rows, truth)
    return sum((y > n) == t for (y, n), t in zip(rows, truth)) / len(truth)


def _same_length(a: Sequence, b: Sequence) -> None:
    if len(a) != len(b) or not len(b):
        raise WhyrecError(f"{len(a)} predictions for {len(b)} references; they must pair up and not be empty")


def _answer(ex: dict) -> str:
    return ex["messages"][-1]["content"]


def _batched(fn, examples: list[dict], batch_size: int, **kw) -> list:
    out: list = []
    for s in range(0, len(examples), batch_size):
        part = examples[s:s + batch_size]
        out += fn([e["messages"] for e in part], [e["placeholders"] for e in part], **kw)
    return out


def alignment_examples(model, users: Sequence[str], material=None, seed: int = 2023,
                       max_items: int | None = None) -> list[dict]:
    """The five evaluation tasks for `users` in the loaded model's mode, from its own target:
    item recovery over every item (or a seeded sample of `max_items`: on ML-1M every item is
    3,883 generations per system), one full-history uid2hist per user (no prefixes), and the
    target's top-1 / top-5 / pos-neg material (`alignment_material` unless given)."""
    import random

    import whyrec.methods.recexplainer.tasks as T

    target, mode, hist = model.target, model.cfg.mode, model.cfg.max_hist_len
    if material is None:
        from whyrec.methods.recexplainer.material import alignment_material

        material = alignment_material(target, list(users), topk=model.cfg.topk, seed=seed)
    items = sorted(target.item2idx)
    if max_items is not None and len(items) > max_items:
        items = sorted(random.Random(seed).sample(items, max_items))
    return (T.iid2title(target, mode, items=items, seed=seed) + T.uid2hist(target, mode, users, hist, prefixes=False, seed=seed)
            + T.uid2next(target, mode, material, hist, seed) + T.uidiid2rank(target, mode, material, hist, seed)
            + T.uidiid2binary(target, mode, material, hist, seed))


def evaluate_alignment(model, examples: Sequence[dict], gen: GenerationConfig = ALIGNMENT_GENERATION,
                       keep_outputs: bool = False) -> dict:
    """Score a loaded RecExplainer (`generate`, `yes_no_logits`) on task examples, per task.

    `gen` is the decoding (`whyrec evaluate --generation.*`), made plain greedy as RecExplainer's
    evaluation decodes (`whyrec.llm.generate.plain_greedy`: no repetition penalty, sampling refused);
    uid2next decodes with at least its 5 beams. Returns {task: {metric: value, "n": count}} for the
    tasks present; others are ignored. With `keep_outputs`, each task also lists {"answer", "output"}
    per example (the 5 beams for uid2next, the [Yes, No] logits for uidiid2binary), to see what a
    system actually answered.
    """
    by_task: dict[str, list[dict]] = {}
    for ex in examples:
        by_task.setdefault(ex["task"], []).append(ex)
    from dataclasses import replace

    from whyrec.llm.generate import plain_greedy

    greedy = plain_greedy(gen, "RecExplainer")
    batch_size = greedy.batch_size

    def generate(exs, beams=None):  # beams: the answers wanted per prompt (uid2next's top 5)
        decode = greedy if beams is None else replace(greedy, num_beams=max(beams, greedy.num_beams))
        return _batched(model.generate, exs, batch_size, gen=decode, num_return_sequences=beams or 1)

    report: dict[str, dict] = {}
    outputs: dict[str, list] = {}
    if exs := by_task.get("iid2title"):
        outputs["iid2title"] = generate(exs)
        report["iid2title"] = {"accuracy": item_recovery_accuracy(outputs["iid2title"], [_answer(e) for e in exs])}
    if exs := by_task.get("uid2hist"):
        outputs["uid2hist"] = generate(exs)
        cov = [history_coverage(p, split_items(_answer(e))) for p, e in zip(outputs["uid2hist"], exs)]
        report["uid2hist"] = {"coverage": sum(cov) / len(cov)}
    if exs := by_task.get("uid2next"):
        outputs["uid2next"] = beams = generate(exs, beams=5)
        scores = [next_item_hit_ndcg(b, _answer(e)) for b, e in zip(beams, exs)]
        report["uid2next"] = {"hr@5": sum(s[0] for s in scores) / len(scores),
                              "ndcg@5": sum(s[1] for s in scores) / len(scores)}
    if exs := by_task.get("uidiid2rank"):
        outputs["uidiid2rank"] = generate(exs)
        nd = [graded_ndcg(split_items(p), split_items(_answer(e))) for p, e in zip(outputs["uidiid2rank"], exs)]
        report["uidiid2rank"] = {"ndcg@5": sum(nd) / len(nd)}
    if exs := by_task.get("uidiid2binary"):
        logits = _batched(lambda m, p: list(model.yes_no_logits(m, p)), exs, batch_size)
        outputs["uidiid2binary"] = [[float(v) for v in lg] for lg in logits]
        report["uidiid2binary"] = {"accuracy": yes_no_accuracy(logits, [_answer(e) for e in exs])}
    for task, metrics in report.items():
        metrics["n"] = len(by_task[task])
        if keep_outputs:
            metrics["outputs"] = [{"answer": _answer(e), "output": o} for e, o in zip(by_task[task], outputs[task])]
    return report
