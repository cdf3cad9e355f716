"""Paired differences between `whyrec benchmark explain` rows and an external system, pair by pair.

A row "beats" a reference system only if it does so on the same pairs: the per-row bootstrap
intervals of `comparison.md` overlap long before a paired difference stops being distinguishable
from zero. This script re-reads the predictions a benchmark cached (`OUT/predictions/*.jsonl`),
links the external system's outputs to the same seeded pairs (as `--external` does) and reports,
per metric, mean(row - external) with a paired bootstrap 95% interval: smoothed sentence BLEU-4,
PEPLER's ROUGE-L F and BERTScore F1 (the benchmark's packaged encoder).

    python benchmarks/paired_vs_external.py --data runs/xa --max_pairs None \\
        --external "XRec published (Llama-2-7B)=../shared/data/xrec-amazon/tst_pred.pkl:../shared/data/xrec-amazon/tst_ref.pkl" \\
        --rows "rp1.1=runs/xa-h2h/predictions/xrec-lora.jsonl" "rp1.0 nr4=runs/xa-rp10/predictions/xrec-lora-rp1.0-nr4.jsonl" \\
        [--bertscore] [--out paired.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

METRICS = ("bleu4_sentence", "rougeL_f", "bertscore_f1")


def cached_predictions(path: str | Path, pairs) -> list[str]:
    """The predictions of a benchmark's row cache for `pairs` (matched by user and item), in order."""
    from whyrec.data import schema as S

    lines = Path(path).read_text(encoding="utf-8").splitlines()[1:]  # the first line is the cache key
    by_pair = {(str(r["user"]), str(r["item"])): r["prediction"] for r in map(json.loads, lines)}
    wanted = list(zip(pairs[S.USER].astype(str), pairs[S.ITEM].astype(str)))
    missing = [p for p in wanted if p not in by_pair]
    if missing:
        raise SystemExit(f"paired_vs_external: {path} lacks {len(missing)} of the {len(wanted)} pairs "
                         f"(first {missing[0]}); was it made on the same --data, --max_pairs and --seed?")
    return [by_pair[p] for p in wanted]


def paired_table(refs: list[str], external: list[str], rows: dict[str, list[str]], scorer=None,
                 seed: int = 0) -> dict:
    """{row: {metric: paired_bootstrap(external, row)}} plus each side's mean per metric."""
    from whyrec.benchmark_ablations import paired_bootstrap, per_pair_scores

    base, _ = per_pair_scores(external, refs, scorer)
    out = {}
    for name, preds in rows.items():
        scores, _ = per_pair_scores(preds, refs, scorer)
        out[name] = {m: {**paired_bootstrap(base[m], scores[m], seed=seed),
                         "row_mean": sum(scores[m]) / len(scores[m]), "external_mean": sum(base[m]) / len(base[m])}
                     for m in METRICS if m in scores}
    return out


def markdown(table: dict, external: str, n: int) -> str:
    lines = [f"Paired differences against {external} on {n} pairs (row - external, bootstrap 95% interval):", "",
             "| row | " + " | ".join(METRICS) + " |", "|---|" + "---|" * len(METRICS)]
    for name, metrics in table.items():
        cells = [f"{d['delta']:+.4f} [{d['low']:+.4f}, {d['high']:+.4f}]" if m in metrics and (d := metrics[m])
                 else "–" for m in METRICS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--split", default="test")
    ap.add_argument("--max_pairs", default="None")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--external", required=True, help="NAME=PRED[:REF], as `benchmark explain --external`")
    ap.add_argument("--rows", nargs="+", required=True, help="NAME=OUT/predictions/<row>.jsonl")
    ap.add_argument("--bertscore", action="store_true")
    ap.add_argument("--out", default=None, help="also write the table as JSON here")
    a = ap.parse_args()
    from whyrec.benchmark import select_pairs
    from whyrec.benchmark_inputs import external_predictions
    from whyrec.data import schema as S
    from whyrec.data.dataset import RecDataset

    pairs = select_pairs(RecDataset.load(a.data), a.split, None if a.max_pairs == "None" else int(a.max_pairs), a.seed)
    ext = external_predictions(a.external, pairs)
    keep = list(ext.pairs)  # only the pairs the external system answers
    refs = pairs[S.EXPLANATION].astype(str).iloc[keep].tolist()
    rows = {}
    for spec in a.rows:
        name, _, path = spec.partition("=")
        preds = cached_predictions(path, pairs)
        rows[name] = [preds[k] for k in keep]
    scorer = None
    if a.bertscore:
        from whyrec.eval.bertscore import BertScorer

        scorer = BertScorer(device="cpu")
    table = paired_table(refs, ext.predictions, rows, scorer, a.seed)
    print(markdown(table, ext.name, len(refs)), end="")
    if a.out:
        Path(a.out).write_text(json.dumps({"external": ext.name, "n_pairs": len(refs), "rows": table}, indent=1))


if __name__ == "__main__":
    main()
