"""Markdown tables of `whyrec benchmark explain`: the comparison and the by-activity breakdown."""

from __future__ import annotations


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


def train_summary(log: dict | None) -> dict | None:
    if not log:
        return None
    if log.get("history"):  # PEPLER logs epochs, not steps
        hist = log["history"]
        return {"steps": f"{len(hist)} epochs", "first_loss": hist[0]["train_loss"],
                "last_loss": hist[-1]["train_loss"], **({"elapsed_s": log["elapsed_s"]} if "elapsed_s" in log else {})}
    keys = ("steps", "first_loss", "last_loss", "elapsed_s")
    return {k: log[k] for k in keys if k in log} or None


def comparison_table(result: dict) -> str:
    """Markdown: one row per system, PEPLER-definition metrics, training and generation cost."""
    bert = any("bertscore" in r["metrics"] for r in result["rows"].values())
    feats = any("features" in r["metrics"] for r in result["rows"].values())
    head = ["system", "BLEU-1", "BLEU-4", "ROUGE-1 F", "ROUGE-2 F", "ROUGE-L F", "USR"] + (["BERTScore F1"] if bert else [])
    head += ["FMR", "FCR", "DIV"] if feats else []
    rated = any(r["metrics"].get("rating") for r in result["rows"].values())
    head += ["RMSE", "MAE"] if rated else []
    head += ["train steps (loss first→last)", "train min", "generate s/pair"]
    lines = [f"Explanations for {result['n_pairs']} '{result['split']}' pairs of {result['data']} (seed {result['seed']}).",
             "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, row in result["rows"].items():
        m, t = row["metrics"]["pepler"], row["train"] or {}
        cells = [name] + [f"{m[k]:.2f}" for k in ("bleu1", "bleu4", "rouge1_f", "rouge2_f", "rougeL_f")] + [f"{m['usr']:.3f}"]
        if bert:
            cells.append(f"{row['metrics']['bertscore']['bertscore_f1']:.4f}" if "bertscore" in row["metrics"] else "–")
        if feats:
            f = row["metrics"].get("features", {})
            cells += [f"{f[k]:.3f}" if k in f else "–" for k in ("fmr", "fcr", "div")]
        if rated:
            r = row["metrics"].get("rating") or {}
            cells += [f"{r[k]:.4f}" if k in r else "–" for k in ("rmse", "mae")]
        steps = f"{t['steps']} ({t.get('first_loss', '?')}→{t.get('last_loss', '?')})" if "steps" in t else "–"
        cells += [steps, f"{t['elapsed_s'] / 60:.1f}" if "elapsed_s" in t else "–",
                  "–" if row["generate_s_per_pair"] is None else f"{row['generate_s_per_pair']:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [f"\nSkipped: {m} ({why})" for m, why in result["skipped"].items()]
    return "\n".join(lines) + "\n"
