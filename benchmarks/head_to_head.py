"""The head-to-head of issue 20: every explanation method, the retrieval baseline and zero-shot on
three datasets, at one stated training budget, one `whyrec benchmark explain` table per dataset.

    python benchmarks/head_to_head.py [--datasets xrec-amazon,musical-instruments,ml-100k]
        [--methods xrec-lora,...] [--work runs/h2h] [--shared ../shared/data] [--dry-run]

Resumable: every stage is a whyrec command whose outputs are cached and keyed by what made them
(prepared data, the LightGCN encoder, the VAE, each method's trained folder, each row's
predictions chunk by chunk), so an interrupted run continues where it stopped and a finished
stage costs only its check. Run one dataset at a time (`--datasets`) across sessions if needed.
When a dataset's table is complete, its machine-readable comparison goes to
docs/results/<dataset>.json, its markdown to docs/results/<dataset>.md and a plot of every row's
metrics with bootstrap 95% intervals to docs/results/<dataset>.png (commit those, not runs/).

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


def plot(comparison: dict, path: Path) -> None:
    """Every row's BLEU-4, ROUGE-L, BERTScore (bootstrap 95% intervals, mispaired floor as a grey
    tick) and false-claim rate: one panel per metric, one bar per system."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = comparison["rows"]
    names = list(rows)
    metrics = [k for k in ("bleu4", "rougeL_f", "bertscore_f1", "false_claims_pct")
               if any(_value(r, k) is not None for r in rows.values())]
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.6 * len(metrics), 0.45 * len(names) + 1.4),
                             sharey=True, squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        for y, name in enumerate(names):
            row, value = rows[name], _value(rows[name], metric)
            if value is None:
                continue
            ci = row["metrics"].get("intervals", {}).get(metric)
            err = [[value - ci[0]], [ci[1] - value]] if ci else None
            ax.barh(y, value, xerr=err, color="#4477aa", capsize=2)
            floor = (row["metrics"].get("mispaired") or {}).get(metric)
            if floor is not None:
                ax.plot([floor, floor], [y - 0.4, y + 0.4], color="#999", lw=3)
        ax.set_yticks(range(len(names)), names, fontsize=8)
        ax.invert_yaxis()
        ax.set_title({"bleu4": "BLEU-4", "rougeL_f": "ROUGE-L F", "bertscore_f1": "BERTScore F1",
                      "false_claims_pct": "false claims %"}[metric], fontsize=9)
    fig.suptitle(f"{comparison['n_pairs']} test pairs; grey tick: the row's mispaired floor", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", default=",".join(DATASETS))
    ap.add_argument("--methods", default=METHODS)
    ap.add_argument("--work", default="runs/h2h")
    ap.add_argument("--shared", default="../shared/data")
    ap.add_argument("--docs", default="docs/results")
    ap.add_argument("--ablations", default="all", help="CF ablations of every trained row ('none': skip)")
    ap.add_argument("--extra", default="", help="more `benchmark explain` arguments, appended as given")
    ap.add_argument("--dry-run", action="store_true")
    a = ap.parse_args()
    work, docs = Path(a.work), Path(a.docs)
    for name in [d.strip() for d in a.datasets.split(",") if d.strip()]:
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
