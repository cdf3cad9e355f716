"""Deprecated location: GaVaMoE stage 2 moved to `whyrec.methods.gavamoe` (train.py, artifact.py;
issue 18). Kept, lazily, until cli.py and the registry entry "whyrec.methods.gavamoe_train:train_gavamoe"
use the new path."""

from __future__ import annotations

_NAMES = ("train_gavamoe", "known_pairs", "load_gavamoe", "save_gavamoe", "build_gavamoe", "GaVaMoEExplainer",
          "ARTIFACT_FILES")


def __getattr__(name: str):
    if name in _NAMES:
        from whyrec.methods import gavamoe

        return getattr(gavamoe, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
