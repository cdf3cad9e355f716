"""Deprecated location: XRec's driver moved to `whyrec.methods.xrec` (train.py, artifact.py) and
`training_fingerprint` to `whyrec.methods.common` (issue 18). Kept until cli.py imports from there."""

from __future__ import annotations

_XREC = ("train_explainer", "load_explainer", "save_explainer", "Explainer", "build_module", "ARTIFACT_FILES")


def __getattr__(name: str):
    if name == "training_fingerprint":
        from whyrec.methods.common import training_fingerprint

        return training_fingerprint
    if name in _XREC:
        from whyrec.methods import xrec

        return getattr(xrec, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
