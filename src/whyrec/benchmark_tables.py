"""Markdown tables of `whyrec benchmark explain`: the comparison and the by-activity breakdown.

An `--external` row that covers only part of the pairs is not in the main table: each such set of
pairs gets a table of its own (comparison.json `subsets`), every other row rescored on it.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from whyrec.data import schema as S
from whyrec.utils import write_text


def activity_table(grouped: dict[str, dict]) -> str:
    """Markdown: BLEU-1/4, ROUGE-L F and USR of every system (rows) in every activity group (columns)."""
    names = list(grouped)
    group_names = list(next(iter(grouped.values())))
    head = ["system", "metric"] + [f"{g} (n={grouped[names[0]][g]['n']})" for g in group_names]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in names:
        for key, label in (("bleu1", "BLEU-1"), ("bleu4", "BLEU-4"), ("rougeL_f", "ROUGE-L F"), ("usr", "USR")):
            lines.append("| " + " | ".join([name, label] + [f"{grouped[name][g][key]:.3f}" for g in group_names]) + " |")
    return "\n".join(lines) + "\n"


def activity_breakdown(ds, pairs: pd.DataFrame, predictions: dict[str, list[str]], refs: list[str],
                       out_dir: Path, smooth: bool = False) -> dict:
    """Each system's PEPLER metrics per user-activity quintile and for zero-shot users (XRec §4.4).

    The groups are drawn once from the shared pairs, so every system is scored on the same
    users in each group: this is the table that tests a claim of robustness for sparse users.
    """
    from functools import partial

    from whyrec.eval.groups import activity_groups, grouped_metrics, plot_systems_by_group
    from whyrec.eval.text import pepler_text_metrics

    inter = ds.interactions
    train_users = inter.loc[inter[S.SPLIT] == S.TRAIN, S.USER].astype(str).tolist()
    users = pairs[S.USER].astype(str).tolist()
    seen = set(train_users)  # groups split the users with training activity; the others are zero-shot
    labels = activity_groups(train_users, users, n_groups=min(5, max(1, len(set(users) & seen))))
    metric_fn = partial(pepler_text_metrics, smooth=smooth)
    grouped = {name: grouped_metrics(preds, refs, labels, metric_fn) for name, preds in predictions.items()}
    plot_systems_by_group(grouped, metrics=("bleu1", "rougeL_f", "usr"), path=out_dir / "by_activity.png")
    write_text(out_dir / "by_activity.md", activity_table(grouped))
    return grouped



def train_summary(log: dict | None) -> dict | None:
    if not log:
        return None
    if log.get("history"):  # PEPLER logs epochs, not steps
        hist = log["history"]
        return {"steps": f"{len(hist)} epochs", "first_loss": hist[0]["train_loss"],
                "last_loss": hist[-1]["train_loss"], **({"elapsed_s": log["elapsed_s"]} if "elapsed_s" in log else {})}
    keys = ("steps", "first_loss", "last_loss", "elapsed_s")
    return {k: log[k] for k in keys if k in log} or None


FLOOR_NOTE = ("`↳ mispaired` scores a row's own predictions against the references of other pairs (a seeded "
              "derangement): the gap between a row and its floor is what the text metrics credit to "
              "pairing-specific content, and a row at its floor says nothing specific to its pair.")
INTERVAL_NOTE = "Brackets: bootstrap 95% intervals over the pairs (1000 seeded resamples)."


def _with_interval(value: float, interval, fmt: str) -> str:
    return f"{value:{fmt}}" + (f" [{interval[0]:{fmt}}, {interval[1]:{fmt}}]" if interval else "")


def _loss(value) -> str:
    return f"{value:#.4g}" if isinstance(value, (int, float)) else "?"


def _grounding_cell(report: dict | None) -> str:
    if not report:
        return "–"
    rate = report.get("hallucination_rate")
    return f"{'–' if rate is None else f'{100 * rate:.1f}'} ({report['checked_claims']})"


def comparison_table(result: dict) -> str:
    """Markdown: one row per system, PEPLER-definition metrics with bootstrap intervals, each row's
    mispaired floor under it, the false-claim rate, training and generation cost; then a table per
    `subsets` entry (an external row covering part of the pairs, the other rows rescored on them)."""
    lines = [f"Explanations for {result['n_pairs']} '{result['split']}' pairs of {result['data']} (seed {result['seed']}).",
             "", *_table(result["rows"], result.get("references_grounding"))]
    for sub in result.get("subsets", ()):
        lines += ["", f"### On the {sub['n_pairs']} pairs {' and '.join(sub['external'])} covers", "",
                  _subset_caption(sub), "", *_table(sub["rows"], sub.get("references_grounding"))]
    lines += ["", FLOOR_NOTE, INTERVAL_NOTE]
    lines += [f"\nSkipped: {m} ({why})" for m, why in result["skipped"].items()]
    return "\n".join(lines) + "\n"


def _subset_caption(sub: dict) -> str:
    scored = "; ".join(f"{name} is scored on {sub['n_pairs']} of {sub['of_pairs']} pairs whose references are in {ref}"
                       for name, ref in sub["external"].items())
    return (f"{scored} (the others' references are not in it). Every other row is rescored on exactly these "
            f"{sub['n_pairs']} pairs, so this table compares like for like; the table above is on all {sub['of_pairs']}.")


def _table(systems: dict, references_grounding: dict | None) -> list[str]:
    """The lines of one markdown table: a row per system (floor under it), the references' grounding."""
    rows = systems.values()
    bert = any("bertscore" in r["metrics"] for r in rows)
    feats = any("features" in r["metrics"] for r in rows)
    grounded = any("grounding" in r["metrics"] for r in rows) or references_grounding is not None
    head = ["system", "BLEU-1", "BLEU-4", "ROUGE-1 F", "ROUGE-2 F", "ROUGE-L F", "USR"] + (["BERTScore F1"] if bert else [])
    head += ["FMR", "FCR", "DIV"] if feats else []
    rated = any(r["metrics"].get("rating") for r in rows)
    head += ["RMSE", "MAE"] if rated else []
    head += ["false claims % (n checkable)"] if grounded else []
    head += ["train steps (loss first→last)", "train min", "generate s/pair"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, row in systems.items():
        m, t = row["metrics"]["pepler"], row["train"] or {}
        ci = row["metrics"].get("intervals", {})
        cells = [name, f"{m['bleu1']:.2f}", _with_interval(m["bleu4"], ci.get("bleu4"), ".2f"),
                 *(f"{m[k]:.2f}" for k in ("rouge1_f", "rouge2_f")), _with_interval(m["rougeL_f"], ci.get("rougeL_f"), ".2f"),
                 _with_interval(m["usr"], ci.get("usr"), ".3f")]
        if bert:
            b = row["metrics"].get("bertscore")
            cells.append(_with_interval(b["bertscore_f1"], ci.get("bertscore_f1"), ".4f") if b else "–")
        if feats:
            f = row["metrics"].get("features", {})
            cells += [f"{f[k]:.3f}" if k in f else "–" for k in ("fmr", "fcr", "div")]
        if rated:
            r = row["metrics"].get("rating") or {}
            cells += [f"{r[k]:.4f}" if k in r else "–" for k in ("rmse", "mae")]
        cells += [_grounding_cell(row["metrics"].get("grounding"))] if grounded else []
        steps = f"{t['steps']} ({_loss(t.get('first_loss'))}→{_loss(t.get('last_loss'))})" if "steps" in t else "–"
        cells += [steps, f"{t['elapsed_s'] / 60:.1f}" if "elapsed_s" in t else "–",
                  "–" if row["generate_s_per_pair"] is None else f"{row['generate_s_per_pair']:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
        if "mispaired" in row["metrics"]:
            lines.append(_floor_line(row["metrics"]["mispaired"], head))
    if references_grounding is not None:
        cells = ["references (the data's own texts)"] + [""] * (len(head) - 1)
        cells[head.index("false claims % (n checkable)")] = _grounding_cell(references_grounding)
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _floor_line(floor: dict, head: list[str]) -> str:
    """`↳ mispaired` under its row: BLEU-4, ROUGE-L F and BERTScore F1, the other cells empty."""
    cells = ["↳ mispaired"] + [""] * (len(head) - 1)
    for label, key, fmt in (("BLEU-4", "bleu4", ".2f"), ("ROUGE-L F", "rougeL_f", ".2f"),
                            ("BERTScore F1", "bertscore_f1", ".4f")):
        if label in head and key in floor:
            cells[head.index(label)] = f"{floor[key]:{fmt}}"
    return "| " + " | ".join(cells) + " |"
