"""Rows the user brings to `whyrec benchmark explain`: other systems' prediction files (`--external`)
and already-trained folders (`--runs`), parsed and checked before anything is trained."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from whyrec.data import schema as S
from whyrec.utils import WhyrecError


def external_predictions(spec: str, pairs: pd.DataFrame) -> tuple[str, list[str]]:
    """`NAME=PREDICTIONS[:REFERENCES]`: another system's outputs, re-linked to `pairs` by reference text
    when its references are given (XRec ships predictions in a different order), else paired in order."""
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
        return name, preds
    by_ref = dict(zip(map(str, read_texts(ref_path, role="reference")), map(str, preds)))
    missing = sum(r not in by_ref for r in wanted)
    if missing:
        raise WhyrecError(f"--external {name}: {missing} of {len(wanted)} benchmark references are not in {ref_path}")
    return name, [by_ref[r] for r in wanted]


def run_spec(spec: str) -> tuple[str, Path]:
    """`NAME=FOLDER` of a trained explainer or PEPLER folder: (name, folder)."""
    name, sep, folder = spec.partition("=")
    if not sep or not (Path(folder) / "config.json").exists():
        raise WhyrecError(f"--runs {spec!r}: write NAME=FOLDER with a trained explainer or PEPLER folder")
    return name, Path(folder)
