"""Evaluate generated explanations against references and write a report.

Two metric families side by side: PEPLER's definitions (Li et al., TOIS 2023), which
PETER, PEPLER, XRec and GaVaMoE tables use, and the standard sacrebleu / rouge-score
numbers most other text-generation papers use. They differ by several points on the same
texts, so each table says which definition it is.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path

from whyrec.eval.text import pepler_text_metrics, standard_text_metrics
from whyrec.utils import write_json, write_text

INSTALL_HINT = "pip install 'whyrec[eval]'"

_PEPLER_ROWS = [
    ("BLEU-1", "bleu1"),
    ("BLEU-4", "bleu4"),
    ("ROUGE-1 F / P / R", ("rouge1_f", "rouge1_p", "rouge1_r")),
    ("ROUGE-2 F / P / R", ("rouge2_f", "rouge2_p", "rouge2_r")),
    ("ROUGE-L F / P / R", ("rougeL_f", "rougeL_p", "rougeL_r")),
    ("USR (unique sentences / N)", "usr"),
    ("USN (unique sentences)", "usn"),
    ("USR on raw `split()` (XRec's USR)", "usr_raw"),
]
_STANDARD_ROWS = [
    ("sacreBLEU (13a)", "sacrebleu_bleu"),
    ("ROUGE-1 F (stemmed)", "rouge1_f"),
    ("ROUGE-2 F (stemmed)", "rouge2_f"),
    ("ROUGE-L F (stemmed)", "rougeL_f"),
]
_BERTSCORE_ROWS = [
    ("BERTScore P (mean / std)", ("bertscore_p", "bertscore_p_std")),
    ("BERTScore R (mean / std)", ("bertscore_r", "bertscore_r_std")),
    ("BERTScore F1 (mean / std)", ("bertscore_f1", "bertscore_f1_std")),
]
_PEPLER_NOTE = (
    "PEPLER definitions (Li et al., TOIS 2023; the numbers PETER, PEPLER, XRec and GaVaMoE "
    "report): texts tokenised by PEPLER's punctuation regex; corpus-level BLEU without "
    "smoothing (any zero n-gram precision gives 0); ROUGE-1/2 on the *sets* of n-grams of "
    "each pair; ROUGE-L from the LCS with beta = P/R; all ×100 and averaged over pairs; "
    "USR = distinct generated sentences / N."
)
_STANDARD_NOTE = (
    "Standard definitions: sacrebleu corpus BLEU with its default 13a tokenizer, and "
    "Google's rouge-score F1 with the Porter stemmer, averaged over pairs (×100)."
)


def _standard_available() -> bool:
    return all(importlib.util.find_spec(name) is not None for name in ("sacrebleu", "rouge_score"))


def evaluate_texts(
    predictions: Sequence[str],
    references: Sequence[str],
    smooth: bool = False,
    bertscore: bool = False,
    bertscore_model: str | None = None,
    bertscore_layers: int | None = None,
    judge=None,
) -> dict:
    """`{"pepler": {...}, "standard": {...}, "n": N}`; standard is skipped without `whyrec[eval]`.

    With a `judge` (`whyrec.eval.judge.JudgeConfig` whose backend is not 'none'), also
    `"judge"` and `"gptscore"` (XRec's 0-100 alignment score, mean and std).

    With `bertscore`, also `"bertscore"`: P/R/F1 means and stds from a local encoder
    (`bertscore_model`, default the packaged all-MiniLM-L6-v2; `bertscore_layers`, default
    BERTScore's tuned layer for a known model), with the model, layer and rescaling recorded.
    """
    pepler = pepler_text_metrics(predictions, references, smooth=smooth)  # validates the inputs
    standard = (
        standard_text_metrics(predictions, references)
        if _standard_available()
        else {"skipped": INSTALL_HINT}
    )
    metrics = {"pepler": pepler, "standard": standard, "n": len(predictions)}
    if judge is not None and judge.backend != "none":
        from whyrec.eval.judge import judge_metrics

        metrics.update(judge_metrics(predictions, references, judge))
    if bertscore:
        from whyrec.eval.bertscore import bertscore as bertscore_metrics

        metrics["bertscore"] = bertscore_metrics(
            predictions, references, bertscore_model, bertscore_layers
        )
    return metrics


def _format(key: str, value) -> str:
    if key == "usn":
        return str(int(value))
    return f"{value:.4f}" if key.startswith(("usr", "bertscore")) else f"{value:.2f}"


def _table(rows, values: dict) -> list[str]:
    lines = ["| metric | value |", "|---|---|"]
    for label, keys in rows:
        keys = (keys,) if isinstance(keys, str) else keys
        if all(k in values for k in keys):
            lines.append(f"| {label} | {' / '.join(_format(k, values[k]) for k in keys)} |")
    return lines


def markdown_report(metrics: dict, title: str, smooth: bool = False) -> str:
    """A readable report of `evaluate_texts` output: one labelled table per definition.

    `smooth` says the metrics were computed with smoothed BLEU, which the note then states.
    """
    lines = [f"# {title}", "", f"{metrics.get('n', '?')} prediction/reference pairs.", ""]
    note = _PEPLER_NOTE
    if smooth:
        note = note.replace(
            "without smoothing (any zero n-gram precision gives 0)",
            "with Lin & Och add-one smoothing (as GaVaMoE reports it)",
        )
    lines += ["## PEPLER definitions", "", note, ""]
    lines += _table(_PEPLER_ROWS, metrics.get("pepler", {})) + [""]
    lines += ["## Standard definitions", "", _STANDARD_NOTE, ""]
    standard = metrics.get("standard", {})
    if "skipped" in standard:
        lines += [
            f"Not computed: sacrebleu and rouge-score are not installed (`{standard['skipped']}`).",
            "",
        ]
    else:
        lines += _table(_STANDARD_ROWS, standard) + [""]
    gpt = metrics.get("gptscore")
    if gpt and gpt.get("gptscore_mean") is not None:
        who = metrics.get("judge", {})
        lines += ["## LLM judge", "", f"GPTScore (XRec's 0-100 alignment prompt) by {who.get('model')} "
                  f"({who.get('backend')}): mean {gpt['gptscore_mean']:.2f}, std {gpt['gptscore_std']:.2f}; "
                  f"{gpt['unparsed']} unparsable replies.", ""]
    bert = metrics.get("bertscore")
    if bert:
        lines += ["## BERTScore", "", _bertscore_note(bert), ""]
        lines += _table(_BERTSCORE_ROWS, bert) + [""]
    return "\n".join(lines)


def _bertscore_note(bert: dict) -> str:
    return (
        f"Zhang et al. (ICLR 2020) greedy cosine matching with {bert['model']}, layer "
        f"{bert['num_layers']}, idf {'on' if bert['idf'] else 'off'}; {bert['note']}. "
        'Std is the population std of the per-pair scores (XRec\'s "stability").'
    )


def evaluate_files(
    predictions: str | Path,
    references: str | Path,
    out: str | Path,
    column: str | None = None,
    smooth: bool = False,
    bertscore: bool = False,
    bertscore_model: str | None = None,
    bertscore_layers: int | None = None,
    judge=None,
) -> dict:
    """Read both files, compute `evaluate_texts`, write `out/metrics.json` and `out/report.md`."""
    from whyrec.eval.readers import read_texts

    preds, refs = read_texts(predictions, column), read_texts(references, column)
    metrics = evaluate_texts(preds, refs, smooth, bertscore, bertscore_model, bertscore_layers, judge)
    title = f"Explanation quality: {Path(predictions).name} vs {Path(references).name}"
    out = Path(out)
    write_json(out / "metrics.json", metrics)
    write_text(out / "report.md", markdown_report(metrics, title, smooth=smooth))
    return metrics
