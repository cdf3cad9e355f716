"""GaVaMoE cluster-count sweep (K = 2..5, METHODS §4): stage 1 per K, optionally stage 2, one table + plot.

    python benchmarks/gavamoe_k_sweep.py --data runs/mi --work runs/mi-ksweep --ks 2,3,4,5 \
        [--stage2-steps 30 | --stage2-minutes 4] [--max-pairs 150]

For each K: `whyrec cluster` (VAE-GMM, the given epochs) into WORK/vae-k{K}; its valid rating
accuracy/RMSE, the cluster sizes and their balance (normalised entropy: 1 = equal sizes).
With --stage2-steps (or --stage2-minutes) > 0, GaVaMoE stage 2 trains on each VAE for that budget (same seed,
same pairs, same LLM settings) and its explanations are scored with PEPLER's metrics, so the
only thing that changes between rows is K. Writes WORK/k_sweep.{md,json,png}; every stage is
cached, so a re-run only does what is missing.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from whyrec.config import GaVaMoEConfig, GenerationConfig, TrainConfig, VaeGmmConfig


def balance(sizes: list[int]) -> float:
    """Normalised entropy of the cluster sizes: 1.0 when all clusters are equal, 0 when one holds all."""
    total = sum(sizes)
    if len(sizes) < 2 or total == 0:
        return float("nan")
    probs = [s / total for s in sizes if s]
    return -sum(p * math.log(p) for p in probs) / math.log(len(sizes))


def baselines(data: str) -> dict:
    """What the VAE's rating head must beat on valid: the majority class and the train mean."""
    import numpy as np

    from whyrec.data import schema as S
    from whyrec.data.dataset import RecDataset

    inter = RecDataset.load(data).interactions
    train, valid = inter[inter[S.SPLIT] == S.TRAIN][S.RATING], inter[inter[S.SPLIT] == S.VALID][S.RATING]
    majority = float(train.round().mode().iloc[0])
    return {"K": "majority class / train mean", "valid_accuracy": float((valid.round() == majority).mean()),
            "valid_rmse": float(np.sqrt(((valid - train.mean()) ** 2).mean()))}


def run_k(args, k: int) -> dict:
    from whyrec.encoders.vae_train import cluster_command

    vae_dir = Path(args.work) / f"vae-k{k}"
    cfg = VaeGmmConfig(n_clusters=k, pretrain_epochs=args.pretrain_epochs, elbo_epochs=args.elbo_epochs)
    stage1 = cluster_command(args.data, str(vae_dir), cfg, device=args.device)
    row = {"K": k, "cluster_sizes": stage1["cluster_sizes"], "balance": balance(stage1["cluster_sizes"]),
           "valid_accuracy": (stage1["valid"] or {}).get("accuracy"), "valid_rmse": (stage1["valid"] or {}).get("rmse")}
    if args.stage2_minutes > 0 or args.stage2_steps > 0:
        from whyrec.benchmark import benchmark_explain

        gav = GaVaMoEConfig(n_experts=args.experts, moe_layers=args.moe_layers, item_noun=args.item_noun)
        budget = ({"max_steps": args.stage2_steps, "max_minutes": None} if args.stage2_steps > 0
                  else {"max_minutes": args.stage2_minutes})  # a step count is the fair budget across K
        train = TrainConfig(**budget, lr=3e-4, batch_size=4, max_target_tokens=64)
        result = benchmark_explain(args.data, str(Path(args.work) / f"k{k}"), methods=["gavamoe"], vae=str(vae_dir),
                                   gavamoe=gav, train=train, max_pairs=args.max_pairs, seed=0, device=args.device,
                                   generation=GenerationConfig(max_new_tokens=48), groups=False)
        m = result["rows"]["gavamoe"]["metrics"]
        row.update({key: m["pepler"][key] for key in ("bleu1", "bleu4", "rougeL_f", "usr")})
        row.update({key: m.get("features", {}).get(key) for key in ("fmr", "div")})
        row["train_steps"] = (result["rows"]["gavamoe"]["train"] or {}).get("steps")
    return row


def table(rows: list[dict]) -> str:
    cols = [("K", "K", "{}"), ("cluster_sizes", "train cluster sizes", "{}"), ("balance", "balance", "{:.3f}"),
            ("valid_accuracy", "valid rating acc", "{:.4f}"), ("valid_rmse", "valid RMSE", "{:.4f}"),
            ("bleu1", "BLEU-1", "{:.2f}"), ("bleu4", "BLEU-4", "{:.2f}"), ("rougeL_f", "ROUGE-L F", "{:.2f}"),
            ("usr", "USR", "{:.3f}"), ("fmr", "FMR", "{:.3f}"), ("div", "DIV", "{:.3f}"),
            ("train_steps", "stage-2 steps", "{}")]
    cols = [c for c in cols if any(r.get(c[0]) is not None for r in rows)]
    lines = ["| " + " | ".join(c[1] for c in cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join("–" if r.get(key) is None else fmt.format(r[key]) for key, _, fmt in cols) + " |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    panels = [k for k in ("valid_accuracy", "balance", "bleu4", "rougeL_f", "usr") if any(r.get(k) is not None for r in rows)]
    fig = Figure(figsize=(3.6 * len(panels), 3.4), layout="constrained")
    FigureCanvasAgg(fig)
    ks = [r["K"] for r in rows]
    for ax, key in zip(fig.subplots(1, len(panels), squeeze=False)[0], panels):
        values = [float("nan") if r.get(key) is None else r[key] for r in rows]
        ax.plot(ks, values, marker="o")
        # from zero: an auto-zoomed axis makes differences in the 4th decimal look like trends
        top = 1.05 if key in ("valid_accuracy", "balance", "usr") else 1.25 * max(v for v in values if v == v)
        ax.set_ylim(0, top)
        ax.set_xticks(ks)
        ax.set_xlabel("K (clusters = routers)")
        ax.set_title(key)
        ax.grid(alpha=0.3)
    fig.suptitle("GaVaMoE cluster-count sweep")
    fig.savefig(path, format="png", dpi=110)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True, help="dataset folder with ratings and explanation records")
    p.add_argument("--work", required=True)
    p.add_argument("--ks", default="2,3,4,5")
    p.add_argument("--pretrain-epochs", type=int, default=50)
    p.add_argument("--elbo-epochs", type=int, default=30)
    p.add_argument("--stage2-minutes", type=float, default=0.0, help="stage-2 wall-time budget per K")
    p.add_argument("--stage2-steps", type=int, default=0, help="stage-2 optimiser steps per K (wins over minutes)")
    p.add_argument("--max-pairs", type=int, default=150)
    p.add_argument("--experts", type=int, default=4)
    p.add_argument("--moe-layers", default="24,25,26,27,28,29")
    p.add_argument("--item-noun", default="product")
    p.add_argument("--device", default="auto")
    args = p.parse_args(argv)
    args.moe_layers = [int(x) for x in args.moe_layers.split(",")] if args.moe_layers else None
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    rows = sorted((run_k(args, int(k)) for k in args.ks.split(",")), key=lambda r: r["K"])
    md = table(rows + [baselines(args.data)])
    (work / "k_sweep.md").write_text(md)
    (work / "k_sweep.json").write_text(json.dumps(rows, indent=2))
    plot(rows, work / "k_sweep.png")
    print(md, end="")
    print(f"plot: {work / 'k_sweep.png'}")


if __name__ == "__main__":
    main()
