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
from whyrec.utils import WhyrecError, write_json, write_text

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


# Definition tag of every number, so a metrics.json says which formula produced it. The
# PEPLER tags are our re-implementation of PEPLER's utils.py/bleu.py/rouge.py (METHODS §2.4).
_ROUGE_TAGS = {
    f"rouge{n}_{m}": tag
    for n, tag in (("1", "pepler-rouge-n-sets"), ("2", "pepler-rouge-n-sets"), ("L", "pepler-rouge-l"))
    for m in "fpr"
}
_PEPLER_TAGS = {"usr": "pepler-usr", "usn": "pepler-usr", "usr_raw": "xrec-usr-raw-split", **_ROUGE_TAGS}
_STANDARD_TAGS = {
    "sacrebleu_bleu": "sacrebleu-corpus-bleu",
    **{f"rouge{n}_f": "rouge-score-f1-porter-stemmer" for n in ("1", "2", "L")},
}


def _version(distribution: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return None


def metric_versions(metrics: dict, smooth: bool = False) -> dict:
    """Which implementation, version and definition produced each number of `metrics`.

    `metrics` is `evaluate_texts` output; `smooth` is what it was computed with. Written into
    metrics.json as `"metric_versions"`: the same name can mean numbers several points apart
    (PEPLER's vs sacrebleu's BLEU), and libraries change defaults between releases.
    """
    from whyrec._version import __version__

    bleu = "pepler-bleu-add-one-smoothed" if smooth else "pepler-bleu"
    info: dict = {
        "whyrec": __version__,
        "definitions": {"pepler": {"bleu1": bleu, "bleu4": bleu, **_PEPLER_TAGS}},
    }
    if "skipped" not in metrics.get("standard", {"skipped": True}):
        sacrebleu = _version("sacrebleu")
        info |= {"sacrebleu": sacrebleu, "rouge-score": _version("rouge-score")}
        # sacrebleu's own signature for corpus_bleu's defaults with one reference per text.
        info["sacrebleu_signature"] = f"nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:{sacrebleu}"
        info["definitions"]["standard"] = dict(_STANDARD_TAGS)
    bert = metrics.get("bertscore")
    if bert:
        # whyrec's own BERTScore (eval/bertscore.py), checked against bert-score 0.3.13.
        info["bertscore"] = {k: bert.get(k) for k in ("model", "num_layers", "idf", "rescaled", "note")}
        info["bertscore"]["transformers"] = _version("transformers")
        tag = "bertscore-rescaled" if bert.get("rescaled") else "bertscore-raw"
        info["definitions"]["bertscore"] = {
            k: tag for k in bert if k.startswith(("bertscore_p", "bertscore_r", "bertscore_f1"))
        }
    if "gptscore" in metrics:
        info["definitions"]["gptscore"] = "xrec-gptscore-0-100"  # the judge model is under "judge"
    return info


def _judge_config(judge):
    """The JudgeConfig of a judge (or the config itself): what metrics.json and fingerprints record."""
    return getattr(judge, "config", judge)


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

    With a `judge` (a `whyrec.eval.judge.Judge`, e.g. `whyrec.llm.judge_client.LLMJudge(config)`,
    whose config's backend is not 'none'), also `"judge"` and `"gptscore"` (XRec's 0-100
    alignment score, mean and std).

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
    if judge is not None and _judge_config(judge).backend != "none":
        from whyrec.eval.judge import judge_metrics

        if not hasattr(judge, "answer"):  # eval builds no LLM client: the caller hands the judge in
            raise WhyrecError("evaluate_texts needs the judge itself, not its JudgeConfig: pass "
                              "judge=whyrec.llm.judge_client.LLMJudge(config)")
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
    versions = metrics.get("metric_versions")
    if versions:
        libs = [f"{name} {versions[name]}" for name in ("whyrec", "sacrebleu", "rouge-score")
                if versions.get(name)]
        lines += [f"Computed with {', '.join(libs)}; metrics.json names each metric's definition.", ""]
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
    overwrite: bool = False,
) -> dict:
    """Read both files, compute `evaluate_texts`, write `out/metrics.json` and `out/report.md`.

    Either side may be any format `read_texts` takes; PEPLER's generated.txt holds both, so
    it can be given twice. metrics.json also gets `"metric_versions"` (see `metric_versions`).
    `out` is guarded by `whyrec.outputs`: a folder holding anything but this evaluation of the
    same files and settings is refused unless `overwrite`.
    """
    from whyrec.eval.readers import is_pepler_generated, read_texts
    from whyrec.outputs import fingerprint_of, folder_digest, output_folder

    if Path(predictions).resolve() == Path(references).resolve() and not is_pepler_generated(
        Path(predictions)
    ):
        raise WhyrecError(
            f"{predictions} is given as both predictions and references; only PEPLER's "
            "generated*.txt holds both sides"
        )
    inputs = {name: folder_digest(p) if Path(p).exists() else str(p)
              for name, p in (("predictions", predictions), ("references", references))}
    settings = {"column": column, "smooth": smooth, "bertscore": bertscore, "bertscore_model": bertscore_model,
                "bertscore_layers": bertscore_layers, "judge": fingerprint_of(_judge_config(judge))}
    with output_folder(out, "evaluation", {**inputs, **settings}, overwrite=overwrite) as work:
        preds = read_texts(predictions, column, role="prediction")
        refs = read_texts(references, column, role="reference")
        metrics = evaluate_texts(preds, refs, smooth, bertscore, bertscore_model, bertscore_layers, judge)
        metrics["metric_versions"] = metric_versions(metrics, smooth)
        title = f"Explanation quality: {Path(predictions).name} vs {Path(references).name}"
        write_json(work / "metrics.json", metrics)
        write_text(work / "report.md", markdown_report(metrics, title, smooth=smooth))
    return metrics
