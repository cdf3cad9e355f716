"""RecExplainer (Lei et al., KDD 2024): align an LLM to a target recommender, then explain it.

model.py (the LLM wrapper, connectors, `load_recexplainer`), train.py (the Trainer loop and the
saved folder), tasks.py (the alignment task mixture), material.py (what the target model says
about each user), alignment.py + alignment_table.py (alignment metrics, one table over runs),
faithfulness.py (explanations, rubric judge and probes). The target recommenders themselves
(SASRec / MF) are encoders: `whyrec.encoders.target_model`, `whyrec.encoders.target_train`.

Nothing is imported here: the names other code reads from `whyrec.methods.recexplainer` are
loaded on first use (PEP 562), so importing the package (the CLI, the registry) stays torch-free.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "METHOD": "model",
    "EXPLAIN_QUESTION": "model",
    "RecExplainer": "model",
    "RecExplainerConfig": "model",
    "UnalignedBackbone": "model",
    "connector": "model",
    "load_recexplainer": "model",
    "_load_target": "model",
    "train_recexplainer": "train",
    "save_recexplainer": "train",
}

__all__ = [name for name in _EXPORTS if not name.startswith("_")]


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
