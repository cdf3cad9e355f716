"""Does a method's collaborative-filtering (CF) signal shape its explanations? (issue 20, item 2)

One trained folder is loaded once; its explanations of the benchmark's pairs are generated as
the method makes them ("full") and under each ablation its served model offers
(`cf_ablation(kind, seed)`, `whyrec.methods.cf_ablation`): CF vectors shuffled across users or
items, random, zeroed, or the prompt without profiles. Each set is scored against the references
(`whyrec.eval.report.evaluate_texts`) and by the reference-free personalisation measures
(`whyrec.eval.personalisation`), and each per-pair score's change against the full method gets a
paired bootstrap 95% interval (the pairs resampled together, the same resample for both sides).

Corpus BLEU-4 is no mean of per-pair scores, so its change is measured on the mean of smoothed
sentence-level BLEU-4 (`bleu4_sentence`, Lin & Och add-one); ROUGE-L F and BERTScore F1 are
per-pair means already. An interval that excludes 0 says the ablation changed the explanations'
scores; one around 0, that these pairs do not show the method using that input.

Generated texts are cached under `out_dir/ablations/<kind>.jsonl` (`full.jsonl` for the method
itself), keyed like the benchmark's predictions (`whyrec.benchmark_cache.cached_predictions`):
an interrupted run resumes, a changed folder, pair set, decoding or seed regenerates.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from whyrec.config import GenerationConfig
from whyrec.data import schema as S
from whyrec.utils import WhyrecError

FULL = "full"
PER_PAIR = {"bleu4_sentence": "BLEU-4 (sentence)", "rougeL_f": "ROUGE-L F", "bertscore_f1": "BERTScore F1",
            "user_identification": "User id @1", "history_mentions": "History mention"}
# BERTScore F1 moves in the third decimal (an ablation's change is often ~0.005): two would print it as 0.00
DIGITS = {"bertscore_f1": 4, "user_identification": 3, "history_mentions": 3}
BLEU_NOTE = ("BLEU-4 is corpus-level; its change is measured on the mean smoothed sentence-level BLEU-4 "
             "(bleu4_sentence), whose values differ from the corpus score")


def paired_bootstrap(base: Sequence[float], other: Sequence[float], n_resamples: int = 1000,
                     seed: int = 0) -> dict:
    """mean(other - base) and its percentile 95% interval over `n_resamples` resamples of the pairs
    (with replacement, the same pairs for both sides). Pairs where either side is None are left out."""
    kept = [(a, b) for a, b in zip(base, other, strict=True) if a is not None and b is not None]
    if not kept:
        return {"delta": None, "low": None, "high": None, "n": 0}
    diff = np.array([b - a for a, b in kept], dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), size=(n_resamples, len(diff)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return {"delta": float(diff.mean()), "low": float(low), "high": float(high), "n": len(diff)}


def per_pair_scores(predictions: Sequence[str], references: Sequence[str], scorer=None) -> tuple[dict, dict | None]:
    """({metric: per-pair scores}, BERTScore summary or None) for the paired bootstrap: smoothed
    sentence BLEU-4 and PEPLER's ROUGE-L F (x100, as evaluate_texts reports them), and with a
    `scorer` (a `whyrec.eval.bertscore.BertScorer`, loaded once for every system) BERTScore F1,
    whose summary is the one `evaluate_texts(bertscore=True)` reports, from the same per-pair run."""
    from whyrec.eval.text import MAX_TEXT_TOKENS, corpus_bleu, rouge_pepler, tokenize

    hyps = [tokenize(str(p))[:MAX_TEXT_TOKENS] for p in predictions]
    refs = [tokenize(str(r))[:MAX_TEXT_TOKENS] for r in references]
    out = {"bleu4_sentence": [corpus_bleu([r], [h], 4, smooth=True) for h, r in zip(hyps, refs, strict=True)],
           "rougeL_f": [rouge_pepler([h], [r])["rougeL_f"] for h, r in zip(hyps, refs, strict=True)]}
    if scorer is None:
        return out, None
    pairs = scorer.score(list(map(str, predictions)), list(map(str, references))).double()  # [N, 3]: P, R, F1
    summary = {}
    for j, key in enumerate(("bertscore_p", "bertscore_r", "bertscore_f1")):  # as BertScorer.__call__
        summary[key], summary[f"{key}_std"] = float(pairs[:, j].mean()), float(pairs[:, j].std(correction=0))
    out["bertscore_f1"] = pairs[:, 2].tolist()
    return out, summary | scorer.settings()


def _histories(run, data: str | None) -> tuple[dict, dict, dict | None]:
    """(titles, profiles, genres or None) of every user: from the dataset folder when given (genres
    too), else from the run's own catalog."""
    from whyrec.eval.personalisation import histories_from_catalog, histories_from_dataset

    if data is not None:
        from whyrec.data.dataset import RecDataset

        titles, genres, profiles = histories_from_dataset(RecDataset.load(data))
        return titles, profiles, genres
    titles, profiles = histories_from_catalog(run.catalog, run.catalog.users)
    return titles, profiles, None


def run_ablations(folder: str | Path, pairs: pd.DataFrame, kinds: Sequence[str], generation: GenerationConfig | None,
                  device: str, seed: int, out_dir: str | Path, *, bertscore: bool = False, data: str | None = None,
                  n_candidates: int = 10, n_resamples: int = 1000, embed=None,
                  full: Sequence[str] | None = None) -> dict:
    """Score `folder`'s explanations of `pairs` (user, item, explanation columns) in full and under
    each ablation `kinds`, and their changes; writes `out_dir/ablations/` (the cached texts,
    ablations.json, ablations.md) and returns:

    {"method", "folder", "n", "seed", "kinds", "offered", "bleu_note",
     "systems": {"full" | kind: {"metrics": evaluate_texts(...), "means": {metric: mean per-pair score},
                                  "personalisation": {"identification": {...}, "mentions": {...}}}},
     "deltas": {kind: {metric: {"delta", "low", "high", "n"}}},   # kind minus full, x100 scale for text
     "skipped": {kind: why}}                                      # e.g. "no CF input to ablate"

    Personalisation histories come from `data` (a dataset folder: train titles, genres, profiles)
    when given, else from the run's catalog (titles and profiles); `embed` replaces the packaged
    MiniLM sentence encoder of user identification (texts -> (N, d) array). `full`: the full method's
    texts of `pairs` (in order) when the caller has just made them with this folder and decoding, as
    the benchmark's row has; else they are generated and cached as full.jsonl."""
    from whyrec.benchmark_cache import cached_predictions, generation_settings, pairs_key
    from whyrec.eval.personalisation import personalisation
    from whyrec.eval.report import evaluate_texts
    from whyrec.identity import run_identity
    from whyrec.llm.continuous_rows import rows_per_call
    from whyrec.methods.base import uses_generation
    from whyrec.methods.cf_ablation import NO_CF_INPUT, check_kinds
    from whyrec.registry import method_of
    from whyrec.runs import load_run
    from whyrec.utils import write_json, write_text

    kinds = list(dict.fromkeys(check_kinds(kinds)))
    missing = [c for c in (S.USER, S.ITEM, S.EXPLANATION) if c not in pairs]
    if missing or len(pairs) == 0:
        raise WhyrecError(f"ablations need pairs with {S.USER}, {S.ITEM} and {S.EXPLANATION} columns and at "
                          f"least one row (missing: {', '.join(missing) or 'rows'})")
    if full is not None and len(full) != len(pairs):
        raise WhyrecError(f"ablations got {len(full)} full-method texts for {len(pairs)} pairs")
    gen = generation or GenerationConfig()
    # PEPLER decodes its own words greedily and refuses the benchmark's --generation fields: only the batch applies
    honours_generation = uses_generation(method_of(folder))
    own = gen if honours_generation else GenerationConfig(batch_size=gen.batch_size)
    run = load_run(folder, device=device, generation=own)
    model = run.model
    offered = tuple(getattr(model, "cf_ablations", ())) if callable(getattr(model, "cf_ablation", None)) else ()
    skipped = {k: NO_CF_INPUT if not offered else f"not offered (this model offers {', '.join(offered)})"
               for k in kinds if k not in offered}
    todo = [k for k in kinds if k in offered]

    work = Path(out_dir) / "ablations"
    work.mkdir(parents=True, exist_ok=True)
    users = pairs[S.USER].astype(str).tolist()
    refs = pairs[S.EXPLANATION].astype(str).tolist()
    producer = {"pairs": pairs_key(pairs), "folder": run_identity(folder)}
    if honours_generation:
        producer["generation"] = generation_settings(gen)

    def generator(kind: str):
        def generate(chunk: pd.DataFrame) -> list[str]:
            us, its = chunk[S.USER].astype(str).tolist(), chunk[S.ITEM].astype(str).tolist()
            if kind == FULL:
                return run.explain_many(us, its)
            with model.cf_ablation(kind, seed):
                return run.explain_many(us, its)

        return lambda: generate

    titles, profiles, genres = _histories(run, data)
    if embed is None:  # one encoder for every system, loaded once
        from whyrec.eval.probes import MiniLMEmbedder

        embed = MiniLMEmbedder(device=device)
    scorer = None
    if bertscore:
        from whyrec.eval.bertscore import BertScorer

        scorer = BertScorer(device=device)
    systems, scores, texts = {}, {}, {}
    chunk = rows_per_call(gen)  # explain_many batches itself; a continuous decoder refills across the chunk
    for kind in [FULL, *todo]:
        if kind == FULL and full is not None:
            preds = list(full)
        else:
            key = {**producer, "ablation": kind, **({"seed": seed} if kind != FULL else {}), "chunk": chunk}
            preds, _ = cached_predictions(work / f"{kind}.jsonl", key, pairs, chunk, generator(kind),
                                          label=f"ablations/{kind}.jsonl")
        texts[kind] = list(map(str, preds))
        scores[kind], summary = per_pair_scores(preds, refs, scorer)
        person = personalisation(preds, users, titles, profiles, genres, n_candidates, seed, embed)
        scores[kind]["user_identification"] = person["identification"]["per_pair"]
        scores[kind]["history_mentions"] = person["mentions"]["per_pair"]
        means = {m: _mean(v) for m, v in scores[kind].items()}
        person = {part: {k: v for k, v in res.items() if k != "per_pair"} for part, res in person.items()}
        metrics = evaluate_texts(preds, refs) | ({"bertscore": summary} if summary else {})
        systems[kind] = {"metrics": metrics, "means": means, "personalisation": person}
    deltas = {kind: {m: paired_bootstrap(scores[FULL][m], scores[kind][m], n_resamples, seed)
                     for m in scores[FULL]} for kind in todo}
    result = {"method": run.info().get("method"), "folder": str(folder), "n": len(pairs), "seed": seed,
              "kinds": kinds, "offered": list(offered), "bleu_note": BLEU_NOTE, "systems": systems,
              "deltas": deltas, "skipped": skipped,
              # e.g. no-profiles on data without profiles: the perturbed prompt was the full one
              "identical_to_full": [k for k in todo if texts[k] == texts[FULL]]}
    write_json(work / "ablations.json", result)
    write_text(work / "ablations.md", ablation_table(result))
    return result


def _mean(values) -> float | None:
    kept = [v for v in values if v is not None]
    return float(np.mean(kept)) if kept else None


def _num(x, digits: int = 2) -> str:
    return "-" if x is None else f"{round(x, digits) + 0.0:.{digits}f}"


def _delta(d: dict | None, digits: int = 2) -> str:
    if not d or d.get("delta") is None:
        return "-"
    sign = lambda v: f"{round(v, digits) + 0.0:+.{digits}f}"  # noqa: E731  (+ 0.0: no "-0.00")
    return f"{sign(d['delta'])} [{sign(d['low'])}, {sign(d['high'])}]"


def ablation_table(result: dict) -> str:
    """Markdown: one row for the full method and one per ablation, each per-pair metric's mean and
    (ablations) its change against the full method with the paired-bootstrap 95% interval; the
    personalisation columns beside the chance level; ablations not run say why."""
    full = result["systems"][FULL]
    metrics = [m for m in PER_PAIR if m in full["means"]]
    ident = full["personalisation"]["identification"]
    head = ["System", "BLEU-4 (corpus)", *(PER_PAIR[m] for m in metrics)]
    lines = [f"Ablations of {result.get('method')} ({result['folder']}), {result['n']} pairs, seed {result['seed']}; "
             f"user identification among {ident['n_candidates']} candidates (chance {ident['chance']:.3f}).", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    same = set(result.get("identical_to_full", ()))
    for kind in [FULL, *result["deltas"]]:
        system = result["systems"][kind]
        bleu = system["metrics"]["pepler"]["bleu4"]
        cells = [f"{kind} (every text identical to full: nothing was removed)" if kind in same else kind, _num(bleu)]
        for m in metrics:
            digits = DIGITS.get(m, 2)
            value = _num(system["means"][m], digits)
            cells.append(value if kind == FULL else f"{value} ({_delta(result['deltas'][kind][m], digits)})")
        lines.append("| " + " | ".join(cells) + " |")
    for kind, why in result["skipped"].items():
        lines.append("| " + " | ".join([kind, why] + [""] * (len(head) - 2)) + " |")
    lines += ["", "Ablation cells: mean (change vs full [95% paired-bootstrap interval]). " + result["bleu_note"] + ".",
              ""]
    return "\n".join(lines)
