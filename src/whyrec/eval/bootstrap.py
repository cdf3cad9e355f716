"""Bootstrap 95% intervals of the text metrics, and the mispaired floor's derangement.

Pairs are resampled with replacement (seeded). Every metric is reduced to per-pair numbers
once, so that a resample is a weighted sum rather than a re-tokenisation:

- BLEU-4 (corpus level, PEPLER/nmt definition, `whyrec.eval.text`): each pair's clipped
  n-gram matches and n-gram totals for n = 1..4 plus its hypothesis and reference lengths;
  a resample sums them with the pair's multiplicity as weight and applies the same formula.
  With every weight 1 this is exactly `pepler_text_metrics`' BLEU-4.
- ROUGE-L F and BERTScore F1 are means of per-pair scores.
- USR (distinct sentences / N) equals the mean over pairs of 1/m, m being how many pairs of
  the full sample share the pair's token sequence; it is bootstrapped as that mean. (Counting
  distinct sentences inside a resample would treat a pair drawn twice as a duplicate and bias
  USR down by about a third.)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from whyrec.eval.text import (
    MAX_TEXT_TOKENS,
    _all_pair_stats,
    _prf_lcs,
    check_pairs,
    lcs_length,
    tokenize,
)
from whyrec.utils import WhyrecError

ORDER = 4  # BLEU-4
RESAMPLES = 1000
_BLOCK = 200  # resamples per weight matrix: bounds memory at 200 x N floats


@dataclass
class PairStats:
    """Per-pair numbers every bootstrapped metric is built from (N pairs)."""

    matches: np.ndarray  # [N, 4] clipped n-gram matches, n = 1..4
    totals: np.ndarray  # [N, 4] hypothesis n-grams
    hyp_len: np.ndarray  # [N]
    ref_len: np.ndarray  # [N]
    rouge_l: np.ndarray  # [N] ROUGE-L F x100
    usr_share: np.ndarray  # [N] 1 / (pairs with the same generated token sequence)
    bertscore_f1: np.ndarray | None = None  # [N], when BERTScore is on

    def __len__(self) -> int:
        return len(self.hyp_len)


def pair_stats(predictions: Sequence[str], references: Sequence[str],
               bertscore_f1: Sequence[float] | None = None) -> PairStats:
    """The per-pair statistics of `predictions[k]` against `references[k]` (PEPLER tokens)."""
    check_pairs(predictions, references)
    hyps = [tokenize(p)[:MAX_TEXT_TOKENS] for p in predictions]
    refs = [tokenize(r)[:MAX_TEXT_TOKENS] for r in references]
    stats = _all_pair_stats(hyps, refs, ORDER)
    counts = Counter(tuple(h) for h in hyps)
    return PairStats(
        matches=np.array([[o.clipped for o in pair] for pair in stats], dtype=np.float64),
        totals=np.array([[o.total for o in pair] for pair in stats], dtype=np.float64),
        hyp_len=np.array([len(h) for h in hyps], dtype=np.float64),
        ref_len=np.array([len(r) for r in refs], dtype=np.float64),
        rouge_l=np.array([100.0 * _prf_lcs(lcs_length(h, r), len(h), len(r))[0] for h, r in zip(hyps, refs)]),
        usr_share=np.array([1.0 / counts[tuple(h)] for h in hyps]),
        bertscore_f1=None if bertscore_f1 is None else np.asarray(bertscore_f1, dtype=np.float64),
    )


def bleu_from_sums(matches: np.ndarray, totals: np.ndarray, hyp_len: np.ndarray, ref_len: np.ndarray,
                   smooth: bool = False) -> np.ndarray:
    """nmt `compute_bleu` (as `whyrec.eval.text._bleu`) for each row of summed statistics:
    matches/totals [B, 4], lengths [B]; returns [B] BLEU x100."""
    if smooth:
        precisions = (matches + 1.0) / (totals + 1.0)
    else:
        precisions = np.divide(matches, totals, out=np.zeros_like(matches), where=totals > 0)
    ok = (precisions.min(axis=1) > 0) & (hyp_len > 0)
    safe = np.where(precisions > 0, precisions, 1.0)
    geo_mean = np.exp(np.log(safe).mean(axis=1))
    ratio = np.divide(ref_len, hyp_len, out=np.zeros_like(ref_len), where=hyp_len > 0)
    brevity = np.where(hyp_len > ref_len, 1.0, np.exp(1.0 - ratio))
    return np.where(ok, 100.0 * geo_mean * brevity, 0.0)


def weighted_metrics(stats: PairStats, weights: np.ndarray, smooth: bool = False) -> dict[str, np.ndarray]:
    """Each metric for each row of `weights` ([B, N] multiplicities of the pairs): a resample."""
    n = weights.sum(axis=1)
    out = {
        "bleu4": bleu_from_sums(weights @ stats.matches, weights @ stats.totals, weights @ stats.hyp_len,
                                weights @ stats.ref_len, smooth),
        "rougeL_f": weights @ stats.rouge_l / n,
        "usr": weights @ stats.usr_share / n,
    }
    if stats.bertscore_f1 is not None:
        out["bertscore_f1"] = weights @ stats.bertscore_f1 / n
    return out


def bootstrap_intervals(stats: PairStats, resamples: int = RESAMPLES, seed: int = 0, smooth: bool = False,
                        level: float = 0.95) -> dict[str, list[float]]:
    """{metric: [lo, hi]}: percentile intervals over `resamples` seeded resamples of the pairs."""
    size = len(stats)
    if size == 0:
        raise WhyrecError("no pairs to bootstrap")
    rng = np.random.default_rng(seed)
    draws: dict[str, list[np.ndarray]] = {}
    for start in range(0, resamples, _BLOCK):
        rows = min(_BLOCK, resamples - start)
        picks = rng.integers(0, size, size=(rows, size))
        weights = np.zeros((rows, size))
        np.add.at(weights, (np.repeat(np.arange(rows), size), picks.ravel()), 1.0)
        for key, values in weighted_metrics(stats, weights, smooth).items():
            draws.setdefault(key, []).append(values)
    tail = 100.0 * (1.0 - level) / 2.0
    return {key: [float(np.percentile(np.concatenate(v), tail)), float(np.percentile(np.concatenate(v), 100.0 - tail))]
            for key, v in draws.items()}


def derangement(n: int, seed: int = 0) -> list[int]:
    """A seeded uniformly random permutation of range(n) with no fixed point (n >= 2)."""
    if n < 2:
        raise WhyrecError(f"a derangement needs at least 2 items, got {n}")
    rng = np.random.default_rng(seed)
    while True:  # about e tries on average: a random permutation is a derangement with p ~ 1/e
        perm = rng.permutation(n)
        if not (perm == np.arange(n)).any():
            return perm.tolist()
