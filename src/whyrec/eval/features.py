"""PEPLER's feature metrics: FMR, FCR and DIV, with DIV in O(N·|F|) instead of O(N²).

Source: PEPLER, "Personalized Prompt Learning for Explainable Recommendation", Li, Zhang and
Chen, ACM TOIS 2023 (github.com/lileipisces/PEPLER `utils.py`: `feature_detect`,
`feature_matching_ratio`, `feature_coverage_ratio`, `feature_diversity`), the definitions
PETER, PEPLER and GaVaMoE report. Written from METHODS.md §2.4, not copied:

- feature set = every `feature` string of the whole dataset (all splits);
- F_k = the tokens of generated explanation k that are in the feature set, tokens being
  PEPLER's `postprocess(text).split()`. Matching is exact and single-token: case matters and
  a multi-word feature ("front desk") can never match;
- FMR = (1/N) Σ_k 1[f_k ∈ F_k] with f_k the record's ground-truth feature;
- FCR = |∪_k F_k| / |feature set|;
- DIV = Σ_{i<j} |F_i ∩ F_j| / (N(N−1)/2), lower is better.

PEPLER computes DIV over all pairs, minutes for 32k records. Each feature f found in c_f of
the F_k is shared by exactly c_f(c_f−1)/2 pairs, so Σ_{i<j} |F_i ∩ F_j| = Σ_f c_f(c_f−1)/2:
the same integer, hence the same DIV to the last bit, from one counting pass.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence

from whyrec.data.schema import FEATURE
from whyrec.eval.text import tokenize
from whyrec.utils import WhyrecError


def detect_features(tokens_list: Iterable[Sequence[str]], feature_set: Collection[str]) -> list[set[str]]:
    """PEPLER's `feature_detect`: per token list, the set of its tokens in `feature_set`."""
    return [{t for t in tokens if t in feature_set} for tokens in tokens_list]


def feature_matching_ratio(detected: Sequence[set[str]], gt_features: Sequence[str]) -> float:
    """FMR: share of records whose ground-truth feature is among their detected features."""
    return sum(f in found for found, f in zip(detected, gt_features, strict=True)) / len(detected)


def feature_coverage_ratio(detected: Iterable[set[str]], feature_set: Collection[str]) -> float:
    """FCR: distinct detected features over the size of the feature set."""
    return len(set().union(*detected)) / len(feature_set)


def feature_diversity(detected: Sequence[set[str]]) -> float:
    """DIV = Σ_{i<j} |F_i ∩ F_j| / (N(N−1)/2), computed as Σ_f c_f(c_f−1)/2 over the same
    denominator (see the module docstring). NaN for N < 2: there are no pairs to average."""
    n = len(detected)
    if n < 2:
        return math.nan
    shared_pairs = sum(c * (c - 1) // 2 for c in Counter(f for found in detected for f in found).values())
    return shared_pairs / (n * (n - 1) / 2)  # PEPLER's float denominator, for identical rounding


def _check_inputs(predictions: Sequence[str], gt_features: Sequence[str], feature_set: Collection[str]) -> None:
    if len(predictions) != len(gt_features):
        raise WhyrecError(f"predictions has {len(predictions)} rows but gt_features has "
                          f"{len(gt_features)}; they must be paired record by record")
    if not predictions:
        raise WhyrecError("no predictions; feature metrics need at least one")
    if not feature_set:
        raise WhyrecError("feature_set is empty; build it from the whole dataset with feature_set_from_records")
    for i, text in enumerate(predictions):
        if not isinstance(text, str):
            raise WhyrecError(f"predictions row {i} is {type(text).__name__} ({text!r:.40}), not a string")


def feature_metrics(predictions: Sequence[str], gt_features: Sequence[str],
                    feature_set: Collection[str]) -> dict[str, float]:
    """`{"fmr", "fcr", "div"}` of generated explanations, with PEPLER's definitions.

    Args:
        predictions: generated explanations, tokenised here with PEPLER's postprocessing.
        gt_features: the ground-truth feature of each record (template[0]), same order.
        feature_set: all features of the dataset, e.g. `feature_set_from_records(ds)`.
    """
    _check_inputs(predictions, gt_features, feature_set)
    features = feature_set if isinstance(feature_set, set | frozenset) else set(feature_set)
    detected = detect_features(map(tokenize, predictions), features)
    return {
        "fmr": feature_matching_ratio(detected, gt_features),
        "fcr": feature_coverage_ratio(detected, features),
        "div": feature_diversity(detected),
    }


def _feature_of(record: Mapping) -> object:
    if "template" in record:
        return record["template"][0]
    if FEATURE in record:
        return record[FEATURE]
    raise WhyrecError(f"record has neither 'template' nor '{FEATURE}' (has: {', '.join(map(str, record))})")


def feature_set_from_records(records) -> set[str]:
    """PEPLER's feature set: every non-empty feature string in the data, all splits together.

    Args:
        records: PEPLER record dicts (`template[0]`), dicts with a `feature` key, a table with
            a `feature` column, or a RecDataset (its interactions).
    """
    records = getattr(records, "interactions", records)  # a RecDataset
    if hasattr(records, "columns"):  # a DataFrame
        if FEATURE not in records.columns:
            raise WhyrecError(f"no '{FEATURE}' column (have: {', '.join(map(str, records.columns))}); "
                              "the dataset needs extracted features")
        values = records[FEATURE].tolist()
    else:
        values = [_feature_of(r) for r in records]
    return {v for v in values if isinstance(v, str) and v}
