"""PEPLER's metric suite on 32,000 pairs: whyrec vs a straight port of PEPLER's definitions.

    python benchmarks/pepler_metrics.py [--n 32000] [--repeats 1] [--shared ../shared/data]

Data: XRec's 3,000 published Amazon-books explanations (`tst_pred.pkl`, Llama-2-7B) with their
references (`tst_ref.pkl`), drawn with replacement (fixed seed) up to --n pairs, so repeated
outputs occur as in real generators (PEPLER's own USR on TripAdvisor is 0.20). The feature set
and each pair's ground-truth feature come from whyrec's Sentires-style extractor run on the
references and predictions (`whyrec.data.features`, min_count 2); a pair's ground-truth
feature is its reference's extracted feature, else the reference's first token in the feature
set; pairs with neither are not drawn.

The reference implementation below is written from the definitions in METHODS.md §2.3-2.4
(PEPLER `utils.py`): the Kim-2014 post-processing applied rule by rule, USR by scanning the
list of unique sentences seen so far (O(N·U)), feature detection per sentence, FMR and FCR by
their formulas, DIV over all N(N-1)/2 pairs (O(N²)). Both sides are timed in the same process,
alternating, step by step from the raw strings; every number must match exactly (the script
exits non-zero otherwise). whyrec's public entry points are timed too, for the whole suite.
"""

from __future__ import annotations

import argparse
import random
import re
import statistics
import time
from pathlib import Path

from whyrec.data.features import build_feature_vocabulary, extract_quadruples
from whyrec.data.safe_pickle import safe_load_pickle
from whyrec.eval.features import (
    detect_features,
    feature_coverage_ratio,
    feature_diversity,
    feature_matching_ratio,
    feature_metrics,
)
from whyrec.eval.text import pepler_text_metrics, tokenize, unique_sentence_ratio

REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- reference (PEPLER's definitions)
def ref_postprocessing(string: str) -> str:
    """Kim (2014) clean-up in PEPLER's order, every rule applied unconditionally."""
    for pattern, repl in [("'s", " 's"), ("'m", " 'm"), ("'ve", " 've"), ("n't", " n't"), ("'re", " 're"),
                          ("'d", " 'd"), ("'ll", " 'll"), (r"\(", " ( "), (r"\)", " ) "), (",+", " , "),
                          (":+", " , "), (";+", " . "), (r"\.+", " . "), ("!+", " ! "), (r"\?+", " ? "),
                          (" +", " ")]:
        string = re.sub(pattern, repl, string)
    return string.strip()


def ref_unique_sentence_percent(sequences: list[list[str]]) -> tuple[float, int]:
    """USR: keep a list of distinct sequences, comparing each new one against all kept."""
    unique: list[list[str]] = []
    for seq in sequences:
        found = False
        for kept in unique:
            if seq == kept:
                found = True
                break
        if not found:
            unique.append(seq)
    return len(unique) / len(sequences), len(unique)


def ref_feature_detect(sequences: list[list[str]], feature_set: set[str]) -> list[set[str]]:
    out = []
    for seq in sequences:
        found = set()
        for token in seq:
            if token in feature_set:
                found.add(token)
        out.append(found)
    return out


def ref_feature_matching_ratio(detected: list[set[str]], gt_features: list[str]) -> float:
    count = 0
    for found, feature in zip(detected, gt_features, strict=True):
        if feature in found:
            count += 1
    return count / len(detected)


def ref_feature_coverage_ratio(detected: list[set[str]], feature_set: set[str]) -> float:
    covered = set()
    for found in detected:
        covered = covered | found
    return len(covered) / len(feature_set)


def ref_feature_diversity(detected: list[set[str]]) -> float:
    """DIV = Σ_{i<j} |F_i ∩ F_j| / (N(N-1)/2), over every pair."""
    n = len(detected)
    total = 0
    for i, x in enumerate(detected):
        for j in range(i + 1, n):
            total += len(x & detected[j])
    return total / (n * (n - 1) / 2)


REFERENCE = dict(tokenize=lambda p: ref_postprocessing(p).split(), usr=ref_unique_sentence_percent,
                 detect=ref_feature_detect, fmr=ref_feature_matching_ratio, fcr=ref_feature_coverage_ratio,
                 div=ref_feature_diversity)
WHYREC = dict(tokenize=tokenize, usr=unique_sentence_ratio, detect=detect_features, fmr=feature_matching_ratio,
              fcr=feature_coverage_ratio, div=feature_diversity)


def timed_suite(impl: dict, preds: list[str], gt_features: list[str], feature_set: set[str]) -> tuple[dict, dict]:
    """USR/USN, FMR, FCR and DIV through one implementation (REFERENCE or WHYREC), timed step by step."""
    times, out = {}, {}
    tic = time.perf_counter()
    tokens = [impl["tokenize"](p) for p in preds]
    times["tokenise"] = time.perf_counter() - tic
    tic = time.perf_counter()
    out["usr"], out["usn"] = impl["usr"](tokens)
    times["usr"] = time.perf_counter() - tic
    tic = time.perf_counter()
    detected = impl["detect"](tokens, feature_set)
    out["fmr"] = impl["fmr"](detected, gt_features)
    out["fcr"] = impl["fcr"](detected, feature_set)
    times["fmr+fcr"] = time.perf_counter() - tic
    tic = time.perf_counter()
    out["div"] = impl["div"](detected)
    times["div"] = time.perf_counter() - tic
    return out, times


def whyrec_entry_points(preds: list[str], refs: list[str], gt_features: list[str], feature_set: set[str]):
    """What a user calls: pepler_text_metrics (BLEU, ROUGE, USR) + feature_metrics (FMR, FCR, DIV)."""
    tic = time.perf_counter()
    text = pepler_text_metrics(preds, refs)
    feats = feature_metrics(preds, gt_features, feature_set)
    return {**text, **feats}, time.perf_counter() - tic


# ---------------------------------------------------------------- data
def load_pairs(shared: Path, n: int, seed: int) -> tuple[list[str], list[str], list[str], set[str]]:
    preds = [str(p) for p in safe_load_pickle(shared / "xrec-amazon" / "tst_pred.pkl")]
    refs = [str(r) for r in safe_load_pickle(shared / "xrec-amazon" / "tst_ref.pkl")]
    vocab = build_feature_vocabulary(refs + preds, min_count=2)
    feature_set = set(vocab)
    # The reference's extracted feature; else its first token in the feature set (a mentioned aspect).
    gt = [next(iter(extract_quadruples(r, vocab)), (None,))[0]
          or next((t for t in tokenize(r) if t in feature_set), None) for r in refs]
    usable = [k for k, f in enumerate(gt) if f is not None]
    rng = random.Random(seed)
    pick = [rng.choice(usable) for _ in range(n)]
    return [preds[k] for k in pick], [refs[k] for k in pick], [gt[k] for k in pick], feature_set


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "data")
    p.add_argument("--n", type=int, default=32000, help="pairs (PEPLER's TripAdvisor test set: ~32,000)")
    p.add_argument("--repeats", type=int, default=1, help="alternating rounds; medians are reported")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    preds, refs, gt, feature_set = load_pairs(args.shared, args.n, args.seed)
    print(f"{len(preds)} pairs, {len(set(preds))} distinct predictions, feature set {len(feature_set)}")
    runs: dict[str, list[dict]] = {"whyrec": [], "reference": []}
    full_times = []
    for r in range(args.repeats):  # alternate so machine contention hits both sides alike
        mine, t_mine = timed_suite(WHYREC, preds, gt, feature_set)
        everything, t_full = whyrec_entry_points(preds, refs, gt, feature_set)
        theirs, t_theirs = timed_suite(REFERENCE, preds, gt, feature_set)
        runs["whyrec"].append(t_mine)
        runs["reference"].append(t_theirs)
        full_times.append(t_full)
        print(f"round {r + 1}: whyrec {sum(t_mine.values()):.3f} s, reference {sum(t_theirs.values()):.1f} s")
    keys = ("usr", "usn", "fmr", "fcr", "div")
    mismatch = [k for k in keys if mine[k] != theirs[k] or everything[k] != theirs[k]]

    def med(side: str, steps) -> float:
        return statistics.median(sum(t[s] for s in steps) for t in runs[side])

    print("\n| metric | whyrec | reference port | equal |")
    print("|---|---|---|---|")
    for k in keys:
        same = mine[k] == theirs[k] and everything[k] == theirs[k]
        print(f"| {k.upper()} | {mine[k]!r} | {theirs[k]!r} | {'yes' if same else 'NO'} |")
    print("\n| step | reference port (s) | whyrec (s) | speed-up |")
    print("|---|---|---|---|")
    rows = [(s, (s,)) for s in runs["whyrec"][0]]
    rows += [("USR + DIV (the O(N²) definitions)", ("usr", "div")),
             ("all five numbers from the raw strings", tuple(runs["whyrec"][0]))]
    for label, steps in rows:
        a, b = med("reference", steps), med("whyrec", steps)
        print(f"| {label} | {a:.3f} | {b:.4f} | {a / b:,.0f}× |")
    full = statistics.median(full_times)
    print(f"\nwhyrec's entry points, whole suite (pepler_text_metrics + feature_metrics: BLEU-1/4, ROUGE-1/2/L, "
          f"USR, FMR, FCR, DIV): {full:.2f} s vs {med('reference', tuple(runs['reference'][0])):.2f} s for the "
          "reference port's five numbers alone")
    print(f"BLEU-1 {everything['bleu1']:.4f}  BLEU-4 {everything['bleu4']:.4f}  "
          f"ROUGE-L F {everything['rougeL_f']:.4f}")
    if mismatch:
        raise SystemExit(f"MISMATCH in {mismatch}")

if __name__ == "__main__":
    main()
