"""Plot issue 20 item 5's runs: ROUGE-L against BERTScore for every lever tried, with the 7B's point.

    python benchmarks/plot_item5_levers.py [--data docs/results/xrec-amazon-item5-levers.json]
        [--out docs/results/xrec-amazon-item5-levers.png]

The data file lists each full 600-pair XRec-amazon run recorded in docs/results.md 5c-5h (its
section named per row). The goal is the 7B's upper-right quadrant (both dashed lines passed) with
BLEU-4 above the 7B's too; filled markers beat its BLEU-4, hollow ones do not.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
REFERENCE = "reference"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=REPO / "docs" / "results" / "xrec-amazon-item5-levers.json")
    p.add_argument("--out", type=Path, default=REPO / "docs" / "results" / "xrec-amazon-item5-levers.png")
    args = p.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = json.loads(args.data.read_text())["rows"]
    ref = next(r for r in rows if r["section"] == REFERENCE)
    ours = [r for r in rows if r["section"] != REFERENCE]
    sections = sorted({r["section"] for r in ours})
    colors = dict(zip(sections, plt.get_cmap("tab10").colors, strict=False))
    fig, ax = plt.subplots(figsize=(9, 6.5))
    for r in ours:
        wins_bleu = r["bleu4"] > ref["bleu4"]
        ax.scatter(r["rougeL_f"], r["bertscore_f1"], s=46, color=colors[r["section"]] if wins_bleu else "none",
                   edgecolors=colors[r["section"]], linewidths=1.4, zorder=3)
        ax.annotate(r["system"], (r["rougeL_f"], r["bertscore_f1"]), fontsize=6.5, xytext=(4, 2),
                    textcoords="offset points")
    ax.scatter(ref["rougeL_f"], ref["bertscore_f1"], marker="*", s=220, color="black", zorder=4)
    ax.annotate(ref["system"], (ref["rougeL_f"], ref["bertscore_f1"]), fontsize=8, xytext=(6, 4),
                textcoords="offset points")
    ax.axvline(ref["rougeL_f"], color="grey", linestyle="--", linewidth=0.8)
    ax.axhline(ref["bertscore_f1"], color="grey", linestyle="--", linewidth=0.8)
    for section in sections:
        ax.scatter([], [], color=colors[section], label=f"results §{section}")
    ax.scatter([], [], color="none", edgecolors="grey", label="BLEU-4 below the 7B's")
    ax.legend(fontsize=8, loc="upper left")
    ax.set_xlabel("ROUGE-L F (600 XRec-amazon test pairs)")
    ax.set_ylabel("BERTScore F1 (raw, all-MiniLM-L6-v2)")
    ax.set_title("Issue 20 item 5: SmolLM2-135M + XRec/LoRA runs against XRec's Llama-2-7B\n"
                 "goal: above and right of the dashed lines, with BLEU-4 above the 7B's (filled)", fontsize=10)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=130)
    print(f"wrote {args.out} ({len(ours)} runs)")


if __name__ == "__main__":
    main()
