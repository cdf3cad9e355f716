"""Metrics by user activity: train-frequency quintiles and zero-shot users, with a plot.

Source: XRec (Ma, Ren and Huang, EMNLP 2024) §4.4 "Model Robustness against Data
Sparsity", as its authors describe the split (HKUDS/XRec issue #6, METHODS.md §3.5): users
are ranked by how often they appear in the training data and cut into five groups with the
same number of users (`tst1` … `tst5`); users who appear only in validation/test are the
zero-shot group. Here the ranked users are the distinct evaluated users with training
interactions, so every group holds evaluated pairs.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from pathlib import Path

from whyrec.utils import WhyrecError, atomic_path

ZERO_SHOT = "zero-shot"
MetricFn = Callable[[Sequence[str], Sequence[str]], Mapping[str, float]]


def group_label(index: int, n_groups: int) -> str:
    """`G1 (sparsest)` … `G<n> (densest)` for the 0-based quantile `index`."""
    label = f"G{index + 1}"
    if n_groups > 1 and index == 0:
        return f"{label} (sparsest)"
    if n_groups > 1 and index == n_groups - 1:
        return f"{label} (densest)"
    return label


def activity_groups(
    train_users: Iterable[Hashable], eval_users: Sequence[Hashable], n_groups: int = 5
) -> list[str]:
    """The activity group of each evaluated row.

    Args:
        train_users: the user of every training interaction (repeats count as activity).
        eval_users: the user of every evaluated pair, in evaluation order.
        n_groups: how many equal-size groups of users (XRec uses 5).

    Returns:
        One label per row of `eval_users`: `ZERO_SHOT` for users with no training
        interaction, otherwise the group of the user among the distinct evaluated users
        ranked by training count (ties broken by user id so the split is deterministic);
        group sizes in users differ by at most one, the sparser groups taking the extra.
    """
    if n_groups < 1:
        raise WhyrecError(f"n_groups must be at least 1, got {n_groups}")
    counts = Counter(train_users)
    seen = [u for u in dict.fromkeys(eval_users) if counts[u] > 0]
    if counts and eval_users and not seen:
        warnings.warn(
            "no evaluated user appears in the training users; are both given as the same "
            f"type (e.g. {type(next(iter(counts))).__name__} vs {type(eval_users[0]).__name__})?",
            stacklevel=2,
        )
    ranked = sorted(seen, key=lambda u: (counts[u], str(u)))
    base, extra = divmod(len(ranked), n_groups)
    label_of: dict[Hashable, str] = {}
    start = 0
    for g in range(n_groups):
        size = base + (g < extra)
        label_of.update((u, group_label(g, n_groups)) for u in ranked[start : start + size])
        start += size
    return [label_of.get(u, ZERO_SHOT) for u in eval_users]


def _order(label: str) -> tuple:
    # G1..Gn in numeric order, then zero-shot, then any other labels alphabetically.
    head = label.split(" ", 1)[0]
    if head[:1] == "G" and head[1:].isdigit():
        return (0, int(head[1:]), label)
    return (1 if label == ZERO_SHOT else 2, 0, label)


def grouped_metrics(
    predictions: Sequence[str],
    references: Sequence[str],
    groups: Sequence[str],
    metric_fn: MetricFn,
) -> dict[str, dict]:
    """`metric_fn` on each group's pairs: `{group: {"n": pairs, **metrics}}`, groups in order.

    `metric_fn(predictions, references) -> dict` is any corpus metric, e.g.
    `whyrec.eval.text.pepler_text_metrics` or a `whyrec.eval.bertscore.BertScorer`.
    """
    if not len(predictions) == len(references) == len(groups):
        raise WhyrecError(
            f"predictions, references and groups have {len(predictions)}, {len(references)} "
            f"and {len(groups)} rows; they must be paired row by row"
        )
    rows: dict[str, list[int]] = {}
    for i, group in enumerate(groups):
        rows.setdefault(group, []).append(i)
    result = {}
    for group in sorted(rows, key=_order):
        idx = rows[group]
        metrics = metric_fn([predictions[i] for i in idx], [references[i] for i in idx])
        result[group] = {"n": len(idx), **metrics}
    return result


def _numeric(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def plot_groups(
    grouped: Mapping[str, Mapping],
    metrics: Sequence[str] = ("bleu4", "rougeL_f", "usr"),
    path: str | Path = "groups.png",
) -> Path:
    """A PNG with one bar panel per metric, groups on the x axis labelled with their sizes.

    Uses matplotlib's Agg canvas directly, so no pyplot state or global backend is touched.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not grouped:
        raise WhyrecError("no groups to plot")
    missing = [m for m in metrics if not any(_numeric(g.get(m)) for g in grouped.values())]
    if missing:
        available = sorted({k for g in grouped.values() for k, v in g.items() if _numeric(v)})
        raise WhyrecError(f"no group has metric(s) {missing}; available: {', '.join(available)}")
    labels = [f"{name}\n{g.get('n', '?')} pairs" for name, g in grouped.items()]
    colors = ["tab:orange" if name == ZERO_SHOT else "tab:blue" for name in grouped]
    fig = Figure(figsize=(4.2 * len(metrics), 3.8), layout="constrained")
    FigureCanvasAgg(fig)
    for ax, metric in zip(fig.subplots(1, len(metrics), squeeze=False)[0], metrics):
        values = [g[metric] if _numeric(g.get(metric)) else float("nan") for g in grouped.values()]
        bars = ax.bar(range(len(values)), values, color=colors)
        ax.bar_label(bars, fmt="%.4g", fontsize=7)
        ax.set_xticks(range(len(values)), labels, fontsize=7)
        ax.set_title(metric)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle("Metrics by user activity (train-frequency groups)")
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)  # the temp name ends in .tmp: say png
    return path


def plot_systems_by_group(
    grouped: Mapping[str, Mapping[str, Mapping]],
    metrics: Sequence[str] = ("bleu4", "rougeL_f", "usr"),
    path: str | Path = "by_activity.png",
) -> Path:
    """One line per system across the activity groups, a panel per metric (PNG).

    `grouped` maps system name -> `grouped_metrics(...)` output; all systems share groups.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not grouped:
        raise WhyrecError("no systems to plot")
    first = next(iter(grouped.values()))
    names = list(first)
    labels = [f"{g}\n{first[g].get('n', '?')} pairs" for g in names]
    fig = Figure(figsize=(4.6 * len(metrics), 4.0), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    for ax, metric in zip(axes, metrics):
        for system, groups in grouped.items():
            values = [groups[g][metric] if _numeric(groups.get(g, {}).get(metric)) else float("nan") for g in names]
            ax.plot(range(len(names)), values, marker="o", label=system)
        ax.set_xticks(range(len(names)), labels, fontsize=7)
        ax.set_title(metric)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle("Metrics by user activity: sparsest group left, zero-shot users last")
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    return path
