"""Which candidate to emit: every selection rule on the same sampled candidates, scored pair by pair.

`whyrec benchmark explain ... --generation.candidates N` keeps each pair's N candidates (0: the
greedy output, 1..N-1 sampled) in `OUT/predictions/<row>.jsonl`. This script re-reads them and
re-chooses offline, so the rules differ only in the choice, never in the candidates:

- greedy: candidate 0, no check (what `--generation.candidates 1` emits);
- grounded, first / consensus / bertscore: `whyrec.eval.grounded_choice.choose` with that `select`
  (fewest false claims, then most supported, then the rule; false sentences dropped);
- bertscore MBR, ungrounded: the candidate with the highest mean BERTScore F1 against the others,
  with no grounding check (what minimum-Bayes-risk decoding alone would emit);
- oracle: the candidate closest to the reference by BERTScore F1. It reads the reference, so it is
  no system: it shows how much a perfect chooser could gain from these candidates;
- with `--check_encoder`, also grounded bertscore chosen by that encoder instead (its gain on the
  packaged encoder's column then owes nothing to sharing an encoder with the metric).

Each rule gets corpus BLEU-4 and ROUGE-L F (PEPLER's), BERTScore P/R/F1, mean length, distinct
texts, and with `--external` its paired difference against that system (bootstrap 95% intervals,
as `paired_vs_external.py`). `select="bertscore"` chooses with the packaged encoder that also scores
the BERTScore column, so `--check_encoder DIR --check_layers N` scores BERTScore F1 once more with
an encoder the choice never saw (e.g. all-mpnet-base-v2), to tell a real gain from agreement with
the chooser's own encoder.

    python benchmarks/candidate_selection.py --data runs/h2h/xrec-amazon/data --max_pairs None \\
        --row runs/xa-mbr8/predictions/xrec-lora-mbr8.jsonl \\
        --external "XRec published (Llama-2-7B)=../shared/data/xrec-amazon/tst_pred.pkl:../shared/data/xrec-amazon/tst_ref.pkl" \\
        --out docs/results/xrec-amazon-candidate-selection.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

RULES = ("greedy", "grounded, first", "grounded, consensus", "grounded, bertscore", "bertscore MBR, ungrounded",
         "oracle (reads the reference)")


def stored_candidates(path: str | Path, pairs, first: int | None = None) -> list[list[str]]:
    """Each pair's candidates from a benchmark row's cache, in the pairs' order; with `first`, only
    each pair's first `first` of them. Candidate k is drawn from seeded stream k whatever the number
    asked for, so these are what a decode with `--generation.candidates first` would have made."""
    from whyrec.data import schema as S

    rows = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()[1:]]
    by_pair = {(str(r["user"]), str(r["item"])): r.get("candidates") for r in rows}
    wanted = list(zip(pairs[S.USER].astype(str), pairs[S.ITEM].astype(str)))
    missing = [p for p in wanted if not by_pair.get(p)]
    if missing:
        raise SystemExit(f"candidate_selection: {path} has no candidates for {len(missing)} of {len(wanted)} pairs "
                         f"(first {missing[0]}); make it with --generation.candidates N > 1 on the same pairs")
    return [by_pair[p][:first] for p in wanted]


CHECK_CHOOSES = "grounded, bertscore chosen by the check encoder"


def select_all(cat, candidates: list[list[str]], users: list[str], items: list[str], refs: list[str],
               scorer, check=None) -> dict[str, list[str]]:
    """{rule: the emitted text per pair} for every rule in RULES (and CHECK_CHOOSES with `check`)."""
    from whyrec.eval.grounded_choice import choose

    agree = scorer.agreement(candidates)
    out = {"greedy": [c[0] for c in candidates]}
    for select in ("first", "consensus", "bertscore"):
        out[f"grounded, {select}"] = [
            choose(cat, c, u, i, select, a if select == "bertscore" else None).text
            for c, u, i, a in zip(candidates, users, items, agree)]
    out["bertscore MBR, ungrounded"] = [c[max(range(len(c)), key=lambda k: (a[k], -k))] for c, a in zip(candidates, agree)]
    flat = [(t, r) for c, r in zip(candidates, refs) for t in c]
    f1 = scorer.score([t for t, _ in flat], [r for _, r in flat])[:, 2].tolist()
    oracle, start = [], 0
    for c in candidates:
        scores = f1[start:start + len(c)]
        oracle.append(c[max(range(len(c)), key=lambda k: (scores[k], -k))])
        start += len(c)
    out["oracle (reads the reference)"] = oracle
    if check is not None:
        out[CHECK_CHOOSES] = [choose(cat, c, u, i, "bertscore", a).text
                              for c, u, i, a in zip(candidates, users, items, check.agreement(candidates))]
    return out


def remember_scores(scorer):
    """Make `scorer.score` remember what it scored: each rule's texts are scored for its table row and
    again by the paired bootstrap against the external row (the same texts and references on
    XRec-amazon), which doubled the run's BERTScore time."""
    plain, seen = scorer.score, {}

    def score(predictions, references):
        key = (tuple(map(str, predictions)), tuple(map(str, references)))
        if key not in seen:
            seen[key] = plain(predictions, references)
        return seen[key]

    scorer.score = score  # an instance attribute: BertScorer.__call__ reaches it through self.score
    return scorer


def describe(preds: list[str], refs: list[str], scorer, check=None) -> dict:
    from whyrec.eval.report import evaluate_texts

    pepler = evaluate_texts(preds, refs)["pepler"]
    bs = scorer(preds, refs)
    out = {"bleu4": pepler["bleu4"], "rougeL_f": pepler["rougeL_f"], "bertscore_f1": bs["bertscore_f1"],
           "bertscore_p": bs["bertscore_p"], "bertscore_r": bs["bertscore_r"],
           "mean_words": sum(len(p.split()) for p in preds) / len(preds), "distinct": len(set(preds))}
    if check is not None:
        out["check_bertscore_f1"] = check(preds, refs)["bertscore_f1"]
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--row", required=True, help="OUT/predictions/<row>.jsonl made with --generation.candidates N")
    ap.add_argument("--split", default="test")
    ap.add_argument("--max_pairs", default="None")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--external", default=None, help="NAME=PRED[:REF], as `benchmark explain --external`")
    ap.add_argument("--out", default=None, help="write the table as JSON here (and .md beside it)")
    ap.add_argument("--check_encoder", default=None, help="a second local encoder folder for BERTScore F1")
    ap.add_argument("--first", type=int, default=None, help="choose among each pair's first K candidates only")
    ap.add_argument("--check_layers", type=int, default=None, help="its layer (needed unless its name is known)")
    a = ap.parse_args(argv)
    from whyrec.benchmark import select_pairs
    from whyrec.data import schema as S
    from whyrec.data.dataset import RecDataset
    from whyrec.eval.bertscore import BertScorer
    from whyrec.eval.grounding import Catalogue

    ds = RecDataset.load(a.data)
    pairs = select_pairs(ds, a.split, None if a.max_pairs == "None" else int(a.max_pairs), a.seed)
    candidates = stored_candidates(a.row, pairs, a.first)
    users, items = pairs[S.USER].astype(str).tolist(), pairs[S.ITEM].astype(str).tolist()
    refs = pairs[S.EXPLANATION].astype(str).tolist()
    scorer = remember_scores(BertScorer(device="cpu", progress=False))
    check = (remember_scores(BertScorer(a.check_encoder, a.check_layers, device="cpu", progress=False))
             if a.check_encoder else None)
    print(f"candidate_selection: {len(pairs)} pairs, {len(candidates[0])} candidates each", file=sys.stderr)
    chosen = select_all(Catalogue(ds), candidates, users, items, refs, scorer, check)
    result = {"row": str(a.row), "n_pairs": len(pairs), "candidates": len(candidates[0]),
              "rules": {rule: describe(texts, refs, scorer, check) for rule, texts in chosen.items()}}
    if check is not None:
        result["check_encoder"] = check.settings()
    if a.external:
        # a sibling script, importable by name: benchmarks/ is sys.path[0] when this runs
        from paired_vs_external import paired_table

        from whyrec.benchmark_inputs import external_predictions

        ext = external_predictions(a.external, pairs)
        keep = list(ext.pairs)
        kept = [refs[k] for k in keep]
        rows = {r: [t[k] for k in keep] for r, t in chosen.items()}
        paired = paired_table(kept, ext.predictions, rows, scorer, a.seed)
        if check is not None:  # BERTScore F1 by the second encoder, paired the same way
            again = paired_table(kept, ext.predictions, rows, check, a.seed)
            for rule in paired:
                paired[rule]["check_bertscore_f1"] = again[rule]["bertscore_f1"]
        result |= {"external": ext.name, "external_metrics": describe(ext.predictions, kept, scorer, check),
                   "paired_n": len(keep), "paired": paired}
    table = markdown(result)
    print(table, end="")
    if a.out:
        Path(a.out).write_text(json.dumps(result, indent=1))
        Path(a.out).with_suffix(".md").write_text(table)
    return result


def markdown(result: dict) -> str:
    ext = result.get("external")
    checked = "check_encoder" in result
    head = "| rule | BLEU-4 | ROUGE-L F | BERTScore F1 | P / R | words | distinct |" + (" F1, check encoder |" if checked else "")
    extra = [f" Δ BERTScore vs {ext} [95% CI] |"] + ([" Δ check F1 [95% CI] |"] if checked else []) if ext else []
    lines = [f"{result['n_pairs']} pairs, {result['candidates']} candidates each ({result['row']})", "",
             head + "".join(extra), "|---" * (7 + checked + len(extra)) + "|"]
    rows = dict(result["rules"]) | ({ext: result["external_metrics"]} if ext else {})
    for rule, m in rows.items():
        cells = [f"{m['bleu4']:.2f}", f"{m['rougeL_f']:.2f}", f"{m['bertscore_f1']:.4f}",
                 f"{m['bertscore_p']:.3f} / {m['bertscore_r']:.3f}", f"{m['mean_words']:.1f}", str(m["distinct"])]
        if checked:
            cells.append(f"{m['check_bertscore_f1']:.4f}")
        for key in ("bertscore_f1", "check_bertscore_f1")[:1 + checked] if ext else ():
            d = result["paired"].get(rule, {}).get(key)
            cells.append(f"{d['delta']:+.4f} [{d['low']:+.4f}, {d['high']:+.4f}]" if d else "–")
        lines.append(f"| {rule} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
