"""XRec (Ma, Ren, Huang; EMNLP 2024): `model` (the nn.Module), `train` (train_explainer) and
`artifact` (the saved folder: save_explainer, load_explainer, Explainer).

`method` holds the registered method object (`whyrec.registry`: "whyrec.methods.xrec.method:METHOD").
Names are exported lazily (PEP 562), so `import whyrec.methods.xrec` does not import torch.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "XRec": "model", "USER_TOKEN": "model", "ITEM_TOKEN": "model", "EXPLAIN_TOKEN": "model",
    "SPECIAL_TOKENS": "model", "add_special_tokens": "model",
    "ARTIFACT_FILES": "artifact", "Explainer": "artifact", "build_module": "artifact",
    "save_explainer": "artifact", "load_explainer": "artifact",
    "train_explainer": "train",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
