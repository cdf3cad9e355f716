"""Rows the user brings to `whyrec benchmark explain`: other systems' prediction files (`--external`)
and already-trained folders (`--runs`), parsed and checked before anything is trained.

An external file with references is re-linked to the benchmark's pairs by reference text. When
only n of the N benchmark references are in it (XRec's own yelp files hold about half of a seeded
sample), the row covers those n pairs only (`External.pairs`). It is then not a row of the main
table, whose rows are all scored on the N pairs: comparison.md gets a table "On the n pairs NAME
covers" where every other row is rescored on exactly those pairs, and comparison.json a list
`subsets`, one entry per distinct set of covered pairs:

- `n_pairs`: n; `of_pairs`: N; `pair_indices`: the n positions in the benchmark's pairs (the row
  order of out/predictions/*.jsonl).
- `external`: {row name: REF file} of the external rows covering exactly these pairs.
- `rows`: those external rows, then every row of the main `rows` rescored on the n pairs, with the
  keys of `rows` (text metrics, `mispaired` floor, bootstrap `intervals`, BERTScore, grounding,
  features and PEPLER's rating metrics all on the n pairs; `train` and `generate_s_per_pair` as in
  the main table, since the predictions are the same).
- `references_grounding`: the references' own false-claim rate on the n pairs.

Such a row is left out of `by_activity`. A file that covers every pair is a main-table row as
before, and the output has no `subsets`.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from whyrec.data import schema as S
from whyrec.utils import WhyrecError


@dataclass(frozen=True)
class External:
    """One `--external` row: its predictions for the benchmark pairs it covers."""

    name: str
    predictions: list[str]
    """One per covered pair, in the benchmark's order."""
    pairs: tuple[int, ...]
    """Positions (in the benchmark's pairs) of the pairs `predictions` answer."""
    references: str | None = None
    """The REF file the pairs were matched through (None: paired in order)."""


def external_predictions(spec: str, pairs: pd.DataFrame) -> External:
    """`NAME=PREDICTIONS[:REFERENCES]`: another system's outputs, re-linked to `pairs` by reference text
    when its references are given (XRec ships predictions in a different order), else paired in order.
    With references, the pairs whose reference is not in REF are left out (`External.pairs`)."""
    from whyrec.eval.readers import read_texts

    name, sep, paths = spec.partition("=")
    if not sep or not paths:
        raise WhyrecError(f"--external {spec!r}: write NAME=PREDICTIONS_FILE[:REFERENCES_FILE]")
    pred_path, _, ref_path = paths.partition(":")
    preds = read_texts(pred_path, role="prediction")
    wanted = pairs[S.EXPLANATION].astype(str).tolist()
    if not ref_path:
        if len(preds) != len(wanted):
            raise WhyrecError(f"--external {name}: {len(preds)} predictions for {len(wanted)} pairs; give its "
                              "references too (NAME=PRED:REF) so they can be matched by text")
        return External(name, list(preds), tuple(range(len(wanted))))
    by_ref = dict(zip(map(str, read_texts(ref_path, role="reference")), map(str, preds)))
    matched = tuple(k for k, r in enumerate(wanted) if r in by_ref)
    if not matched:
        raise WhyrecError(f"--external {name}: none of the {len(wanted)} benchmark references is in {ref_path}; "
                          "give the references of the same split and --data (one per prediction, in its order)")
    if len(matched) < len(wanted):
        print(f"whyrec: --external {name}: {len(wanted) - len(matched)} of {len(wanted)} benchmark references are not "
              f"in {ref_path}; it is scored on the other {len(matched)}, beside every row rescored on them",
              file=sys.stderr)
    return External(name, [by_ref[wanted[k]] for k in matched], matched, ref_path)


def run_spec(spec: str) -> tuple[str, Path]:
    """`NAME=FOLDER` of a trained explainer or PEPLER folder: (name, folder)."""
    name, sep, folder = spec.partition("=")
    if not sep or not (Path(folder) / "config.json").exists():
        raise WhyrecError(f"--runs {spec!r}: write NAME=FOLDER with a trained explainer or PEPLER folder")
    return name, Path(folder)
