"""The head-to-head of issue 20: every explanation method, the retrieval baseline and zero-shot on
three datasets, at one stated training budget, one `whyrec benchmark explain` table per dataset.

    python benchmarks/head_to_head.py [--datasets xrec-amazon,musical-instruments,ml-100k]
        [--methods xrec-lora,...] [--work runs/h2h] [--shared ../shared/data] [--dry-run]
    python benchmarks/head_to_head.py --plot-only --datasets xrec-amazon   # redraw from docs/results

Resumable: every stage is a whyrec command whose outputs are cached and keyed by what made them
(prepared data, the LightGCN encoder, the VAE, each method's trained folder, each row's
predictions chunk by chunk), so an interrupted run continues where it stopped and a finished
stage costs only its check. Run one dataset at a time (`--datasets`) across sessions if needed.
When a dataset's table is complete, its machine-readable comparison goes to
docs/results/<dataset>.json, its markdown to docs/results/<dataset>.md and a plot of every row's
metrics with bootstrap 95% intervals to docs/results/<dataset>.png (commit those, not runs/); an
external row covering only part of the pairs gets its own row of panels there, every other row
rescored on its pairs, as in the markdown.

The budget is the same for every trained row: BUDGET_STEPS optimizer steps of BATCH rows (PEPLER:
at most that many steps per epoch of each phase, see its method page); minutes are measured and
written into each table, they are not the budget.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.figure import Figure

BUDGET_STEPS = 300  # one epoch of the 2,400 XRec-amazon training explanations at batch 8, as XRec trains one epoch
BATCH = 8
LR = 3e-4
METHODS = "xrec,xrec-lora,gavamoe,pepler-continuous,zero-shot,retrieval"

# name -> (prepare arguments with {shared}, benchmark arguments specific to the dataset)
DATASETS = {
    "xrec-amazon": (
        "--source xrec --path {shared}/xrec-amazon --text_test_size 600 --seed 0",
        "--max_pairs None --xrec.item_noun book --gavamoe.item_noun book "
        "--lightgcn.epochs 40 --lightgcn.batch_size 8192 --lightgcn.lr 0.005 "
        "--external 'XRec published (Llama-2-7B)={shared}/xrec-amazon/tst_pred.pkl:{shared}/xrec-amazon/tst_ref.pkl'",
    ),
    "musical-instruments": (
        "--source amazon-json --path {shared}/amazon-musical-instruments/reviews_Musical_Instruments_5.json.gz "
        "--extract_features",
        "--max_pairs 600 --xrec.item_noun product --gavamoe.item_noun product",
    ),
    "ml-100k": (
        "--source ml-100k --split random --seed 42",
        "--max_pairs 600 --xrec.item_noun movie --gavamoe.item_noun movie",
    ),
}
COMMON = (f"--train.max_steps {BUDGET_STEPS} --train.max_minutes None --train.lr {LR} --train.batch_size {BATCH} "
          "--generation.max_new_tokens 80 --gavamoe.n_experts 4 --gavamoe.moe_layers [24,25,26,27,28,29] "
          "--bertscore true")


def whyrec(args: str, dry: bool) -> None:
    cmd = [sys.executable, "-m", "whyrec", *shlex.split(args)]
    print("$ whyrec " + args, flush=True)
    if not dry:
        subprocess.run(cmd, check=True)


def _value(row: dict, metric: str) -> float | None:
    m = row["metrics"]
    if metric == "bertscore_f1":
        return (m.get("bertscore") or {}).get("bertscore_f1")
    if metric == "false_claims_pct":
        rate = (m.get("grounding") or {}).get("hallucination_rate")
        return None if rate is None else 100 * rate
    return m["pepler"].get(metric)


METRIC_TITLES = {"bleu4": "BLEU-4", "rougeL_f": "ROUGE-L F", "bertscore_f1": "BERTScore F1",
                 "false_claims_pct": "false claims %"}


def _tables(comparison: dict) -> list[tuple[str, dict]]:
    """(title, rows) of the main table, then of each `subsets` entry (rows rescored on fewer pairs)."""
    tables = [(f"All {comparison['n_pairs']} test pairs; grey tick: the row's mispaired floor", comparison["rows"])]
    tables += [(f"On the {sub['n_pairs']} pairs {' and '.join(sub['external'])} covers", sub["rows"])
               for sub in comparison.get("subsets", ())]
    return tables


def _bars(ax, rows: dict, metric: str) -> None:
    """One bar per system with its bootstrap 95% interval and its mispaired floor as a grey tick."""
    names = list(rows)
    for y, name in enumerate(names):
        metrics, value = rows[name]["metrics"], _value(rows[name], metric)
        if value is None:
            continue
        ci = metrics.get("intervals", {}).get(metric)
        err = [[value - ci[0]], [ci[1] - value]] if ci else None
        ax.barh(y, value, xerr=err, color="#4477aa", capsize=2)
        floor = (metrics.get("mispaired") or {}).get(metric)
        if floor is not None:
            ax.plot([floor, floor], [y - 0.4, y + 0.4], color="#999", lw=3)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.set_ylim(len(names) - 0.5, -0.5)  # first system on top, as in the markdown table


def plot(comparison: dict, path: Path) -> Figure:
    """Every row's BLEU-4, ROUGE-L, BERTScore (bootstrap 95% intervals, mispaired floor as a grey
    tick) and false-claim rate: one panel per metric, one bar per system; then one more row of
    panels per `subsets` entry, since a row covering part of the pairs is only comparable with the
    others rescored on those pairs. Writes `path` and returns the figure."""
    from matplotlib.figure import Figure  # no pyplot: no global figure state, no display backend

    tables = _tables(comparison)
    metrics = [k for k in METRIC_TITLES
               if any(_value(r, k) is not None for _, rows in tables for r in rows.values())]
    heights = [0.45 * len(rows) + 1.0 for _, rows in tables]
    fig = Figure(figsize=(3.6 * len(metrics), sum(heights) + 0.3), layout="constrained")
    for sub, (title, rows) in zip(fig.subfigures(len(tables), 1, height_ratios=heights, squeeze=False)[:, 0], tables):
        for ax, metric in zip(sub.subplots(1, len(metrics), sharey=True, squeeze=False)[0], metrics):
            _bars(ax, rows, metric)
            ax.set_title(METRIC_TITLES[metric], fontsize=9)
        sub.suptitle(title, fontsize=9)
    fig.savefig(path, dpi=110)
    return fig


def replot(names: list[str], docs: Path) -> None:
    """Draw docs/<name>.png again from docs/<name>.json, running nothing else."""
    if not names:
        sys.exit(f"head_to_head: --plot-only found no {', '.join(f'{n}.json' for n in DATASETS)} in {docs}")
    missing = [n for n in names if not (docs / f"{n}.json").is_file()]
    if missing:
        sys.exit(f"head_to_head: --plot-only needs {', '.join(str(docs / f'{n}.json') for n in missing)}; "
                 "a full run writes it")
    for name in names:
        plot(json.loads((docs / f"{name}.json").read_text()), docs / f"{name}.png")
        print(f"{name}: plot in {docs / name}.png", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", default=None, help=f"default: {','.join(DATASETS)} (with --plot-only: those in DOCS)")
    ap.add_argument("--methods", default=METHODS)
    ap.add_argument("--work", default="runs/h2h")
    ap.add_argument("--shared", default="../shared/data")
    ap.add_argument("--docs", default="docs/results")
    ap.add_argument("--ablations", default="all", help="CF ablations of every trained row ('none': skip)")
    ap.add_argument("--extra", default="", help="more `benchmark explain` arguments, appended as given")
    ap.add_argument("--dry-run", action="store_true")
    ap.add_argument("--plot-only", action="store_true",
                    help="only (re)draw DOCS/<dataset>.png from DOCS/<dataset>.json of an earlier run")
    a = ap.parse_args()
    work, docs = Path(a.work), Path(a.docs)
    if a.plot_only:
        return replot([d.strip() for d in a.datasets.split(",") if d.strip()] if a.datasets
                      else [n for n in DATASETS if (docs / f"{n}.json").is_file()], docs)
    names = [d.strip() for d in (a.datasets or ",".join(DATASETS)).split(",") if d.strip()]
    for name in names:
        if name not in DATASETS:
            sys.exit(f"head_to_head: unknown dataset {name!r}; choose from {', '.join(DATASETS)}")
        prep, bench = (s.format(shared=a.shared) for s in DATASETS[name])
        data, out = work / name / "data", work / name / "bench"
        start = time.time()
        if not (data / "dataset.json").exists():
            whyrec(f"data prepare {prep} --out {data}", a.dry_run)
        whyrec(f"benchmark explain --data {data} --out {out} --methods {a.methods} {bench} {COMMON} "
               + (f"--ablations {a.ablations} " if a.ablations != "none" else "") + a.extra,
               a.dry_run)
        if a.dry_run:
            continue
        docs.mkdir(parents=True, exist_ok=True)
        comparison = json.loads((out / "comparison.json").read_text())
        shutil.copyfile(out / "comparison.json", docs / f"{name}.json")
        shutil.copyfile(out / "comparison.md", docs / f"{name}.md")
        plot(comparison, docs / f"{name}.png")
        print(f"{name}: table in {docs / name}.md ({(time.time() - start) / 60:.1f} min this call)", flush=True)


if __name__ == "__main__":
    main()
