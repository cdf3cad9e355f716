"""The head-to-head of issue 20: every explanation method, the retrieval baseline and zero-shot on
three datasets, at one stated training budget, one table per dataset assembled from one
`whyrec benchmark explain` stage per system.

    python benchmarks/head_to_head.py [--datasets xrec-amazon,musical-instruments,ml-100k]
        [--methods xrec-lora,...] [--work runs/h2h] [--shared ../shared/data] [--dry-run] [--redo SYSTEM]
    python benchmarks/head_to_head.py --assemble-only --datasets ml-100k   # the table from the stage files
    python benchmarks/head_to_head.py --plot-only --datasets xrec-amazon   # redraw from docs/results

Across sessions (runs/ does not survive one; one dataset takes longer than a session):
1. run the command; each system of --methods (and the dataset's --external files, as the stage
   `external`) is its own `benchmark explain` call into WORK/<dataset>/stages/<system>, and when one
   finishes its comparison.json is copied, with the settings that made it, to
   docs/results/stages/<dataset>/<system>.json;
2. commit docs/results/stages/* (and docs/results/<dataset>.{json,md,png}) before the session ends;
3. the next session reruns the same command: stages with a stage file made with the same settings
   (the stage's arguments and the prepared data's digest) are skipped, the others run. A stage file
   made with other settings is refused, naming what changed, unless `--redo SYSTEM` replaces it.
Within a session an interrupted stage resumes from its caches under WORK (trained folders,
predictions chunk by chunk). After the stages, and with `--assemble-only`, the stage files are
merged into docs/results/<dataset>.json, the benchmark's own markdown docs/results/<dataset>.md
(naming the systems still missing, so a partial table can be committed and read) and a plot of
every row's metrics with bootstrap 95% intervals, docs/results/<dataset>.png. An external row
covering only part of the pairs gets its own table and row of panels; the rows of the other stages
are not rescored on its pairs (the markdown says so).

XRec's rows and the retrieval row (CF nearest pair) read one LightGCN encoder, trained once per
dataset into WORK/<dataset>/encoder (`whyrec train encoder`, as the benchmark trains it) when a stage
that needs it runs. The budget is the same for every trained row: BUDGET_STEPS optimizer steps of
BATCH rows (PEPLER: one epoch of each phase, capped at half as many steps, `SYSTEM_BUDGET`); minutes
are measured and written into each table, they are not the budget.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from whyrec.utils import WhyrecError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

BUDGET_STEPS = 300  # one epoch of the 2,400 XRec-amazon training explanations at batch 8, as XRec trains one epoch
BATCH = 8
LR = 3e-4
METHODS = "xrec,xrec-lora,gavamoe,pepler-continuous,recexplainer,zero-shot,retrieval"
EXTERNAL = "external"  # the stage scoring a dataset's --external files: each external row once
ENCODER_SYSTEMS = ("xrec", "xrec-lora", "retrieval")  # rows that read the dataset's LightGCN encoder
# PEPLER runs its own epoch loop (batch 128, up to 100 epochs per phase): without these it would run
# epochs without end. One epoch of each phase at BUDGET_STEPS // 2 steps of BATCH rows: the same
# BUDGET_STEPS steps of BATCH rows as every other trained row, half of them with the LM frozen.
# The batch is also set on each method's own config: until --train.* fields given at TrainConfig's
# default reached the methods (2026-12-07), --train.batch_size 8 did not, and the stages recorded then
# are cached under these configs.
SYSTEM_BUDGET = {"pepler-continuous": f"--pepler.batch_size {BATCH} --pepler.epochs 1 --pepler.epochs_phase2 1 "
                                      f"--train.max_steps {BUDGET_STEPS // 2}",
                 # RecExplainer's Trainer steps on 4 micro-batches of 4 by default (its paper's 64 rows on 4 GPUs):
                 # one micro-batch of BATCH rows per step is the others' budget
                 "recexplainer": f"--recexplainer.micro_batch_size {BATCH} --recexplainer.grad_accum 1"}
GENERATION = "--generation.max_new_tokens 80 "


class Dataset(NamedTuple):  # not a dataclass: tests load this file by path, outside sys.modules
    """One dataset of the head-to-head; `{shared}` stands for the --shared folder."""

    prepare: str
    """`whyrec data prepare` arguments."""
    benchmark: str
    """`whyrec benchmark explain` arguments specific to the dataset, given to every stage."""
    lightgcn: str = ""
    """`whyrec train encoder` arguments of the LightGCN encoder XRec's rows and the retrieval row read."""
    external: str = ""
    """`--external` of the dataset's `external` stage (empty: no such stage)."""
    per_system: dict[str, str] | None = None
    """More `benchmark explain` arguments of one stage of this dataset only, by system."""


DATASETS = {
    "xrec-amazon": Dataset(
        "--source xrec --path {shared}/xrec-amazon --text_test_size 600 --seed 0",
        "--max_pairs None --xrec.item_noun book --gavamoe.item_noun book",
        lightgcn="--lightgcn.epochs 40 --lightgcn.batch_size 8192 --lightgcn.lr 0.005",
        external="'XRec published (Llama-2-7B)={shared}/xrec-amazon/tst_pred.pkl:{shared}/xrec-amazon/tst_ref.pkl'",
        # 289k training interactions (+ as many sampled pairs: no ratings): the paper's VAE (768-wide IDs,
        # up to 80 epochs) would take hours on this CPU (3 min/epoch), so a narrower one trained 10 + 10 epochs
        per_system={"gavamoe": "--vae_config.embedding_dim 128 --vae_config.ff_dim 256 --vae_config.latent_dim 64 "
                               "--vae_config.decoder_dims [256,128] --vae_config.pretrain_epochs 10 "
                               "--vae_config.elbo_epochs 10"},
    ),
    "musical-instruments": Dataset(
        "--source amazon-json --path {shared}/amazon-musical-instruments/reviews_Musical_Instruments_5.json.gz "
        "--extract_features",
        "--max_pairs 600 --xrec.item_noun product --gavamoe.item_noun product",
    ),
    "ml-100k": Dataset(
        "--source ml-100k --split random --seed 42",
        "--max_pairs 600 --xrec.item_noun movie --gavamoe.item_noun movie",
    ),
}
COMMON = (f"--train.max_steps {BUDGET_STEPS} --train.max_minutes None --train.lr {LR} --train.batch_size {BATCH} "
          f"{GENERATION}--gavamoe.n_experts 4 --gavamoe.moe_layers [24,25,26,27,28,29] "
          "--bertscore true")


def whyrec(args: str, dry: bool) -> None:
    cmd = [sys.executable, "-m", "whyrec", *shlex.split(args)]
    print("$ whyrec " + args, flush=True)
    if not dry and subprocess.run(cmd).returncode:
        raise WhyrecError(f"`whyrec {' '.join(args.split()[:2])}` failed (its error is above); rerun the same "
                          "command to continue from its caches")


def decodes_its_own_way(system: str) -> bool:
    """Whether benchmark row `system` ignores --generation (PEPLER decodes its own --pepler.words
    greedily and refuses every --generation.* option but batch_size), as its method declares."""
    from whyrec.benchmark import benchmark_systems
    from whyrec.methods.base import uses_generation

    systems = benchmark_systems()
    return system in systems and not uses_generation(systems[system][0])


def stage_arguments(dataset: str, system: str, ablations: str, extra: str) -> str:
    """The `benchmark explain` arguments of one stage, with the --work and --shared folders left as
    {work} and {shared}: what its stage file records, valid wherever those folders are."""
    spec, root = DATASETS[dataset], f"{{work}}/{dataset}"
    who = (f"--methods none --external {spec.external}" if system == EXTERNAL
           else f"--methods {system}" + (f" --encoder {root}/encoder" if system in ENCODER_SYSTEMS else ""))
    common = COMMON.replace(GENERATION, "") if decodes_its_own_way(system) else COMMON
    return (f"benchmark explain --data {root}/data --out {root}/stages/{system} {who} {spec.benchmark} {common}"
            + (f" {SYSTEM_BUDGET[system]}" if system in SYSTEM_BUDGET else "")
            + (f" {spec.per_system[system]}" if system in (spec.per_system or {}) else "")
            + (f" --ablations {ablations}" if ablations != "none" else "") + (f" {extra}" if extra else ""))


def systems_of(dataset: str, methods: str) -> list[str]:
    """The stages of `dataset`: its `external` stage when it has external files, then each method."""
    names = [m.strip() for m in methods.split(",") if m.strip()]
    if EXTERNAL in names or not all(c.isalnum() or c in "-_." for m in names for c in m):  # each names a folder
        raise WhyrecError(f"--methods {methods!r}: give benchmark method names (not {EXTERNAL!r}), comma-separated")
    return ([EXTERNAL] if DATASETS[dataset].external else []) + names


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
        raise WhyrecError(f"--plot-only found no {', '.join(f'{n}.json' for n in DATASETS)} in {docs}")
    missing = [n for n in names if not (docs / f"{n}.json").is_file()]
    if missing:
        raise WhyrecError(f"--plot-only needs {', '.join(str(docs / f'{n}.json') for n in missing)}; "
                          "a run or --assemble-only writes it")
    for name in names:
        plot(json.loads((docs / f"{name}.json").read_text()), docs / f"{name}.png")
        print(f"{name}: plot in {docs / name}.png", flush=True)


def _stages():
    """benchmarks/h2h_stages.py, imported by name: this file's folder is on sys.path when it runs as a
    script, whereas tests load this file by path for plot() alone."""
    import h2h_stages

    return h2h_stages


def assemble(dataset: str, systems: list[str], docs: Path) -> None:
    """docs/<dataset>.{json,md,png} from the dataset's stage files; a partial table names what is missing,
    counted against the whole table (the default METHODS too), not only this call's --methods."""
    systems = list(dict.fromkeys([*systems_of(dataset, METHODS), *systems]))  # one row order, whatever --methods
    merged, missing = _stages().assemble(docs, dataset, systems)
    if merged["rows"]:
        plot(merged, docs / f"{dataset}.png")
    print(f"{dataset}: table in {docs / dataset}.md"
          + (f", still missing {', '.join(missing)}" if missing else ", every stage in"), flush=True)


def run_stages(dataset: str, a: argparse.Namespace, redo: set[str]) -> None:
    """Prepare the data, then run every stage of `dataset` without a stage file of the same settings
    (all of them checked before anything runs) and keep each finished one in docs/results/stages."""
    stages, docs, spec = _stages(), Path(a.docs), DATASETS[dataset]

    def fill(args: str) -> str:  # the stage files keep {work} and {shared}; the commands get the folders
        return args.replace("{work}", a.work).replace("{shared}", a.shared)

    data = Path(a.work) / dataset / "data"
    if not (data / "dataset.json").is_file():
        whyrec(fill(f"data prepare {spec.prepare} --out {{work}}/{dataset}/data"), a.dry_run)
    digest, systems = stages.data_digest(data), systems_of(dataset, a.methods)
    plan = {s: stage_arguments(dataset, s, a.ablations, a.extra) for s in systems}
    todo = [s for s in systems if stages.must_run(stages.stage_path(docs, dataset, s), s,
                                                  {"arguments": plan[s], "data_digest": digest}, s in redo)]
    for system in (s for s in systems if s not in todo):
        print(f"{dataset}/{system}: done in {stages.stage_path(docs, dataset, system)}, skipped", flush=True)
    if set(todo) & set(ENCODER_SYSTEMS):
        whyrec(fill(f"train encoder --data {{work}}/{dataset}/data --out {{work}}/{dataset}/encoder {spec.lightgcn}".strip()),
               a.dry_run)
    for system in todo:
        if a.dry_run:
            whyrec(fill(plan[system]), a.dry_run)
            continue
        start = stages.run_start()
        log = Path(a.work) / dataset / "stages" / f"{system}.attempts.json"  # every call, interrupted ones too
        with stages.attempt(log, start) as calls:
            whyrec(fill(plan[system]), a.dry_run)
        path = stages.stage_path(docs, dataset, system)
        encoder = Path(a.work) / dataset / "encoder" if system in ENCODER_SYSTEMS else None
        run = stages.run_record(start, calls)
        stages.save_stage(Path(a.work) / dataset / "stages" / system / "comparison.json", path, system, plan[system],
                          encoder, run)
        log.unlink()  # the stage file keeps the calls; a --redo starts a new log
        print(f"{dataset}/{system}: stage in {path} ({run['minutes']} min); commit it "
              f"(git add {path}) so that the next session skips it", flush=True)
    if not a.dry_run:
        assemble(dataset, systems, docs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", default=None, help=f"default: {','.join(DATASETS)} (with --plot-only: those in DOCS)")
    ap.add_argument("--methods", default=METHODS, help="the systems, one stage each (besides the `external` stage)")
    ap.add_argument("--work", default="runs/h2h")
    ap.add_argument("--shared", default="../shared/data")
    ap.add_argument("--docs", default="docs/results")
    ap.add_argument("--ablations", default="all", help="CF ablations of every trained row ('none': skip)")
    ap.add_argument("--extra", default="", help="more `benchmark explain` arguments, appended as given")
    ap.add_argument("--redo", action="append", default=[], metavar="SYSTEM",
                    help="run this system's stage again, replacing its stage file (repeatable, or comma-separated)")
    ap.add_argument("--dry-run", action="store_true")
    ap.add_argument("--assemble-only", action="store_true",
                    help="only merge DOCS/stages/<dataset>/*.json into DOCS/<dataset>.{json,md,png}")
    ap.add_argument("--plot-only", action="store_true",
                    help="only (re)draw DOCS/<dataset>.png from DOCS/<dataset>.json of an earlier run")
    a = ap.parse_args()
    try:
        _main(a)
    except WhyrecError as e:
        print(f"head_to_head: error: {e}", file=sys.stderr)
        sys.exit(2)


def _main(a: argparse.Namespace) -> None:
    docs = Path(a.docs)
    asked = [d.strip() for d in a.datasets.split(",") if d.strip()] if a.datasets else None
    if a.plot_only:
        return replot(asked if asked is not None else [n for n in DATASETS if (docs / f"{n}.json").is_file()], docs)
    names = asked or (list(DATASETS) if not a.assemble_only else [n for n in DATASETS if (docs / "stages" / n).is_dir()])
    unknown = [n for n in names if n not in DATASETS]
    if unknown or not names:
        raise WhyrecError(f"unknown dataset {unknown[0]!r}; choose from {', '.join(DATASETS)}" if unknown
                          else f"--assemble-only found no stage folders in {docs / 'stages'}")
    redo = {s.strip() for spec in a.redo for s in spec.split(",") if s.strip()}
    systems = {name: systems_of(name, a.methods) for name in names}
    if stray := sorted(redo - {s for each in systems.values() for s in each}):
        raise WhyrecError(f"--redo {stray[0]}: not a stage of {', '.join(names)}")
    for name in names:
        if a.assemble_only:
            assemble(name, systems[name], docs)
        else:
            run_stages(name, a, redo)


if __name__ == "__main__":
    main()
