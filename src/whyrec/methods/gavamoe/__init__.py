"""GaVaMoE stage 2 (Tang et al. 2024): `model` (the nn.Module), `train` (train_gavamoe) and
`artifact` (the saved folder: save_gavamoe, load_gavamoe, GaVaMoEExplainer). Stage 1, the
VAE-GMM, is the registered encoder `vae_gmm` (`whyrec.encoders.vae_gmm`, `vae_train`).

Names are exported lazily (PEP 562): `import whyrec.methods.gavamoe` does not import torch.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "GaVaMoE": "model", "GaVaMoEConfig": "model", "USER_TOKEN": "model", "ITEM_TOKEN": "model",
    "ARTIFACT_FILES": "artifact", "GaVaMoEExplainer": "artifact", "build_gavamoe": "artifact",
    "save_gavamoe": "artifact", "load_gavamoe": "artifact",
    "train_gavamoe": "train", "known_pairs": "train",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
