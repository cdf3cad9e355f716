"""Text metrics for generated explanations, with PEPLER's exact definitions.

Source: PEPLER, "Personalized Prompt Learning for Explainable Recommendation", Li, Zhang and
Chen, ACM TOIS 2023 (github.com/lileipisces/PEPLER: `utils.py`, `bleu.py`, `rouge.py`), the
evaluation code that PETER, PEPLER, XRec and GaVaMoE all report with. Written here from the
definitions in METHODS.md §2.3-2.4, not copied:

- tokens = `postprocess(text).split()` (Kim-2014 punctuation regex), for both sides;
- BLEU-n: tensorflow/nmt `compute_bleu` at corpus level (clipped counts summed over the corpus);
- ROUGE-1/2 on *sets* of n-grams per pair, ROUGE-L from the sentence LCS with beta = P/R,
  all macro-averaged over pairs;
- USR: distinct generated token sequences / N.

These are not the numbers sacrebleu or rouge-score give; `standard_text_metrics` reports
those separately so both kinds of paper can be compared against.

Both score at most `MAX_TEXT_TOKENS` tokens of a text (its first ones): explanations are 20-100
tokens, and a runaway generation or a file without line breaks must not turn the LCS of ROUGE-L
(time O(n·m)) into minutes. Cut texts are counted in a warning and in the returned metrics
(`truncated_texts`, `max_text_tokens`); the keys appear only when a text was cut.
"""

from __future__ import annotations

import itertools
import math
import re
import warnings
from collections import Counter
from collections.abc import Sequence
from typing import NamedTuple

from whyrec.utils import WhyrecError

Tokens = Sequence[str]

MAX_TEXT_TOKENS = 2000
"""Tokens of one text that any metric scores (the first ones); 20-100 is typical here."""

# Kim (2014) CNN_sentence clean-up, in PEPLER's order: the order matters (":" becomes ","
# only after "," runs were padded, ";" becomes "." before "." runs are padded). The third
# field is a character every match contains, used to skip rules that cannot apply.
_POSTPROCESS_RULES = [
    (re.compile(pattern), replacement, trigger)
    for pattern, replacement, trigger in [
        (r"'s", " 's", "'"),
        (r"'m", " 'm", "'"),
        (r"'ve", " 've", "'"),
        (r"n't", " n't", "'"),
        (r"'re", " 're", "'"),
        (r"'d", " 'd", "'"),
        (r"'ll", " 'll", "'"),
        (r"\(", " ( ", "("),
        (r"\)", " ) ", ")"),
        (r",+", " , ", ","),
        (r":+", " , ", ":"),
        (r";+", " . ", ";"),
        (r"\.+", " . ", "."),
        (r"!+", " ! ", "!"),
        (r"\?+", " ? ", "?"),
    ]
]
_SPACES = re.compile(r" +")


def _pad_punctuation(text: str) -> str:
    # The trigger test runs on the current text, so a character an earlier rule inserted
    # (";" -> " . ") still triggers the later rule: same result as always substituting.
    for pattern, replacement, trigger in _POSTPROCESS_RULES:
        if trigger in text:
            text = pattern.sub(replacement, text)
    return text


def postprocess(text: str) -> str:
    """PEPLER's `postprocessing`: split clitics, pad punctuation, collapse spaces."""
    return _SPACES.sub(" ", _pad_punctuation(text)).strip()


def tokenize(text: str) -> list[str]:
    """PEPLER's evaluation tokens: `postprocess(text).split()`."""
    return _pad_punctuation(text).split()  # split() already ignores runs of spaces


# ---------------------------------------------------------------- n-gram statistics


class _OrderStats(NamedTuple):
    """One pair's n-gram statistics for one order n."""

    clipped: int  # BLEU numerator: hyp n-gram matches, each clipped at its count in the ref
    total: int  # BLEU denominator: n-grams in the hyp, len(hyp) - n + 1
    hyp_set: int  # ROUGE-N: distinct n-grams in the hyp
    ref_set: int  # distinct n-grams in the ref
    shared_set: int  # distinct n-grams in both


def _ngrams(tokens: Tokens, n: int) -> Counter:
    # zip over shifted views builds the n-gram tuples in C, far faster than slicing.
    return (
        Counter(tokens) if n == 1 else Counter(zip(*(tokens[j:] for j in range(n)), strict=False))
    )


def _pair_stats(hyp: Tokens, ref: Tokens, max_order: int) -> list[_OrderStats]:
    stats = []
    for n in range(1, max_order + 1):
        h, r = _ngrams(hyp, n), _ngrams(ref, n)
        shared = h.keys() & r.keys()
        clipped = sum(min(h[g], r[g]) for g in shared)
        stats.append(_OrderStats(clipped, max(len(hyp) - n + 1, 0), len(h), len(r), len(shared)))
    return stats


def _all_pair_stats(hyps: Sequence[Tokens], refs: Sequence[Tokens], max_order: int):
    return [_pair_stats(h, r, max_order) for h, r in zip(hyps, refs, strict=True)]


# ---------------------------------------------------------------- BLEU


def _bleu(stats, hyp_len: int, ref_len: int, max_order: int, smooth: bool) -> float:
    """tensorflow/nmt `compute_bleu` from per-pair statistics of at least `max_order`."""
    precisions = []
    for i in range(max_order):
        matches = sum(pair[i].clipped for pair in stats)
        possible = sum(pair[i].total for pair in stats)
        if smooth:  # Lin & Och (2004) add-one smoothing, as GaVaMoE calls it
            precisions.append((matches + 1.0) / (possible + 1.0))
        else:
            precisions.append(matches / possible if possible else 0.0)
    if min(precisions) <= 0 or hyp_len == 0:
        return 0.0  # nmt: any zero precision zeroes the geometric mean; c = 0 would divide by 0
    geo_mean = math.exp(sum(math.log(p) for p in precisions) / max_order)
    brevity = 1.0 if hyp_len > ref_len else math.exp(1.0 - ref_len / hyp_len)
    return 100.0 * geo_mean * brevity


def corpus_bleu(
    refs_tokens: Sequence[Tokens],
    hyps_tokens: Sequence[Tokens],
    max_order: int,
    smooth: bool = False,
) -> float:
    """BLEU-`max_order` ×100: nmt `compute_bleu` at corpus level, one reference per hypothesis.

    Clipped n-gram matches and hypothesis n-gram counts are summed over the corpus before
    the precisions p_1..p_n are formed; BLEU = BP · exp(mean log p_i), 0 if any p_i = 0
    (unless `smooth`, which uses (m_i + 1) / (possible_i + 1)); BP = 1 if c > r else
    exp(1 - r/c) with c, r the total hypothesis and reference lengths.
    """
    stats = _all_pair_stats(hyps_tokens, refs_tokens, max_order)
    hyp_len, ref_len = sum(map(len, hyps_tokens)), sum(map(len, refs_tokens))
    return _bleu(stats, hyp_len, ref_len, max_order, smooth)


# ---------------------------------------------------------------- ROUGE


def lcs_length(a: Tokens, b: Tokens) -> int:
    """Length of the longest common subsequence, bit-parallel (Hyyrö 2004).

    Bit i of `v` is 0 where row LCS values step up at column i of `b`; one big-int update
    per token of `a` replaces the len(a)×len(b) DP table. Tokens absent from `b` leave `v`
    unchanged, so they are skipped.
    """
    if not a or not b:
        return 0
    if len(b) > len(a):  # LCS is symmetric; masks over the shorter side take the fewest bits
        a, b = b, a
    masks: dict[str, int] = {}
    for i, token in enumerate(b):
        masks[token] = masks.get(token, 0) | (1 << i)
    full = (1 << len(b)) - 1
    v = full
    for mask in filter(None, map(masks.get, a)):
        u = v & mask
        v = ((v + u) | (v - u)) & full
    return len(b) - v.bit_count()


_ROUGE_KEYS = tuple(f"rouge{k}_{m}" for k in ("1", "2", "L") for m in ("f", "p", "r"))


def _prf_sets(order: _OrderStats) -> tuple[float, float, float]:
    p = order.shared_set / order.hyp_set if order.hyp_set else 0.0
    r = order.shared_set / order.ref_set if order.ref_set else 0.0
    return 2.0 * p * r / (p + r + 1e-8), p, r


def _prf_lcs(lcs: int, hyp_len: int, ref_len: int) -> tuple[float, float, float]:
    p = lcs / hyp_len if hyp_len else 0.0
    r = lcs / ref_len if ref_len else 0.0
    beta = p / (r + 1e-12)  # PEPLER's (tf_seq2seq's) beta = P/R, not ROUGE-1.5.5's fixed beta
    f = (1 + beta**2) * r * p / (r + beta**2 * p + 1e-12)
    return f, p, r


def _rouge(hyps: Sequence[Tokens], refs: Sequence[Tokens], stats) -> dict[str, float]:
    sums = [0.0] * len(_ROUGE_KEYS)
    for hyp, ref, pair in zip(hyps, refs, stats, strict=True):
        scores = (
            _prf_sets(pair[0])
            + _prf_sets(pair[1])
            + _prf_lcs(lcs_length(hyp, ref), len(hyp), len(ref))
        )
        sums = [total + value for total, value in zip(sums, scores, strict=True)]
    n = max(len(hyps), 1)
    return {key: 100.0 * total / n for key, total in zip(_ROUGE_KEYS, sums, strict=True)}


def rouge_pepler(hyps_tokens: Sequence[Tokens], refs_tokens: Sequence[Tokens]) -> dict[str, float]:
    """PEPLER's `rouge(hyps, refs)`: per-pair scores macro-averaged over all pairs, ×100.

    Returns `rouge{1,2,L}_{f,p,r}`. ROUGE-1/2 compare the *sets* of n-grams of each pair
    (a repeated n-gram counts once), F = 2PR/(P+R+1e-8). ROUGE-L: P = LCS/len(hyp),
    R = LCS/len(ref), beta = P/(R+1e-12), F = (1+beta²)RP/(R+beta²P+1e-12). An empty side
    scores 0 (PEPLER's string-based code would give two empty strings a ROUGE-1/L match;
    real outputs never hit that case).
    """
    return _rouge(hyps_tokens, refs_tokens, _all_pair_stats(hyps_tokens, refs_tokens, 2))


def unique_sentence_ratio(hyps_tokens: Sequence[Tokens]) -> tuple[float, int]:
    """PEPLER's `unique_sentence_percent`: (distinct token sequences / N, distinct count)."""
    if not hyps_tokens:
        raise WhyrecError("no generated sentences; USR needs at least one")
    unique = len({tuple(tokens) for tokens in hyps_tokens})
    return unique / len(hyps_tokens), unique


# ---------------------------------------------------------------- the per-text token cap


def _check_cap(max_tokens: int) -> None:
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise WhyrecError(f"max_tokens must be a positive integer, got {max_tokens!r}")


def _capped(texts: Sequence[list[str]], max_tokens: int, cut: set[int]) -> list[list[str]]:
    """Each token list cut to its first `max_tokens`; the indices of cut texts go into `cut`."""
    out = []
    for i, tokens in enumerate(texts):
        if len(tokens) > max_tokens:
            cut.add(i)
            tokens = tokens[:max_tokens]
        out.append(tokens)
    return out


def _note_truncation(metrics: dict, cut: int, total: int, max_tokens: int, family: str) -> dict:
    if cut:
        warnings.warn(
            f"{cut} of {total} texts are longer than {max_tokens} tokens; {family} metrics score "
            f"only their first {max_tokens} tokens",
            stacklevel=3,
        )
        metrics |= {"truncated_texts": cut, "max_text_tokens": max_tokens}
    return metrics


# ---------------------------------------------------------------- entry points


def check_pairs(predictions: Sequence[str], references: Sequence[str]) -> None:
    """Refuse unpaired, empty or non-text inputs with a message that names the problem."""
    if len(predictions) != len(references):
        raise WhyrecError(
            f"predictions has {len(predictions)} rows but references has {len(references)}; "
            "they must be paired line by line"
        )
    if not predictions:
        raise WhyrecError("predictions and references are empty; nothing to evaluate")
    for name, texts in (("predictions", predictions), ("references", references)):
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise WhyrecError(
                    f"{name} row {i} is {type(text).__name__} ({text!r:.40}), not a string"
                )


def pepler_text_metrics(
    predictions: Sequence[str],
    references: Sequence[str],
    smooth: bool = False,
    max_tokens: int = MAX_TEXT_TOKENS,
) -> dict[str, float]:
    """BLEU-1/4, ROUGE-1/2/L (f, p, r), USR/USN with PEPLER's definitions, plus `usr_raw`.

    `usr_raw` is USR over raw `s.split()` tokens, which is how XRec reports it. Each text is
    scored on its first `max_tokens` tokens (see the module docstring).
    """
    check_pairs(predictions, references)
    _check_cap(max_tokens)
    cut_hyps: set[int] = set()
    cut_refs: set[int] = set()
    hyps = _capped([tokenize(p) for p in predictions], max_tokens, cut_hyps)
    refs = _capped([tokenize(r) for r in references], max_tokens, cut_refs)
    raw = _capped([p.split() for p in predictions], max_tokens, cut_hyps)
    # One pass of n-gram counting serves BLEU-1, BLEU-4 (orders 1-4) and ROUGE-1/2 (orders 1-2).
    stats = _all_pair_stats(hyps, refs, 4)
    hyp_len, ref_len = sum(map(len, hyps)), sum(map(len, refs))
    usr, usn = unique_sentence_ratio(hyps)
    metrics = {
        "bleu1": _bleu(stats, hyp_len, ref_len, 1, smooth),
        "bleu4": _bleu(stats, hyp_len, ref_len, 4, smooth),
        **_rouge(hyps, refs, stats),
        "usr": usr,
        "usn": usn,
        "usr_raw": unique_sentence_ratio(raw)[0],
    }
    cut = len(cut_hyps) + len(cut_refs)
    return _note_truncation(metrics, cut, 2 * len(predictions), max_tokens, "PEPLER")


class _Pretokenized:
    """A rouge-score tokenizer for texts tokenized (and capped) beforehand: passes lists through."""

    def tokenize(self, tokens: list[str]) -> list[str]:
        return tokens


def _first_words(text: str, max_words: int) -> str:
    """`text` up to the end of its `max_words`-th whitespace-separated word."""
    ends = [m.end() for m in itertools.islice(re.finditer(r"\S+", text), max_words + 1)]
    return text[: ends[max_words - 1]] if len(ends) > max_words else text


def rouge_score_l(target: Tokens, prediction: Tokens) -> tuple[float, float, float]:
    """rouge-score's ROUGE-L (F, P, R) for one pair, from the bit-parallel LCS.

    rouge-score fills a len(target)×len(prediction) table of Python ints (one 1 MB line grew
    it to 14.6 GB); the LCS length, and so every score, is the same.
    """
    from rouge_score.scoring import fmeasure

    if not target or not prediction:
        return 0.0, 0.0, 0.0
    lcs = lcs_length(target, prediction)
    precision, recall = lcs / len(prediction), lcs / len(target)
    return fmeasure(precision, recall), precision, recall


def standard_text_metrics(
    predictions: Sequence[str], references: Sequence[str], max_tokens: int = MAX_TEXT_TOKENS
) -> dict[str, float]:
    """sacrebleu corpus BLEU (13a tokenizer) and rouge-score mean F1 (Porter stemmer), ×100.

    ROUGE scores the first `max_tokens` rouge-score tokens of each text; sacrebleu, which
    tokenizes on its own, the text up to its `max_tokens`-th whitespace-separated word.
    """
    check_pairs(predictions, references)
    _check_cap(max_tokens)
    try:
        import sacrebleu
        from rouge_score import rouge_scorer, tokenizers
    except ImportError as e:
        raise WhyrecError(
            f"standard metrics need sacrebleu and rouge-score ({e.name} is missing): "
            "pip install 'whyrec[eval]'"
        ) from None
    cut_preds: set[int] = set()
    cut_refs: set[int] = set()
    bleu_preds = [_first_words(p, max_tokens) for p in predictions]
    bleu_refs = [_first_words(r, max_tokens) for r in references]
    cut_preds.update(i for i, (a, b) in enumerate(zip(bleu_preds, predictions)) if len(a) < len(b))
    cut_refs.update(i for i, (a, b) in enumerate(zip(bleu_refs, references)) if len(a) < len(b))
    bleu = sacrebleu.corpus_bleu(bleu_preds, [bleu_refs]).score

    stemmed = tokenizers.DefaultTokenizer(use_stemmer=True)  # what RougeScorer(use_stemmer=True) uses
    preds = _capped([stemmed.tokenize(p) for p in predictions], max_tokens, cut_preds)
    refs = _capped([stemmed.tokenize(r) for r in references], max_tokens, cut_refs)
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2"], tokenizer=_Pretokenized())
    sums = {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}
    for pred, ref in zip(preds, refs, strict=True):
        scores = scorer.score(ref, pred)  # rouge-score's order is (target, prediction)
        sums["rouge1"] += scores["rouge1"].fmeasure
        sums["rouge2"] += scores["rouge2"].fmeasure
        sums["rougeL"] += rouge_score_l(ref, pred)[0]
    n = len(predictions)
    metrics = {"sacrebleu_bleu": bleu, **{f"{k}_f": 100.0 * v / n for k, v in sums.items()}}
    cut = len(cut_preds) + len(cut_refs)
    return _note_truncation(metrics, cut, 2 * n, max_tokens, "sacrebleu/rouge-score")
