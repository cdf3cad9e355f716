"""Pick the served-model adapter from the folder's config.json `method` (one module per method)."""

from __future__ import annotations

import json
from importlib import import_module
from pathlib import Path

from whyrec.config import GenerationConfig

ADAPTERS = {  # method -> "module:class" in whyrec.serve
    "xrec": "xrec:XRecModel",
    "gavamoe": "gavamoe:GaVaMoEModel",
    "pepler": "pepler:PEPLERModel",
    "recexplainer": "recexplainer:RecExplainerModel",
    "recalpaca": "recalpaca:RecAlpacaModel",
}


def load_served(folder: Path, device: str = "auto", generation: GenerationConfig | None = None):
    """The adapter for a folder `validate.check_artifact` accepted (so the method is one of ADAPTERS)."""
    from whyrec.serve.validate import weights_fit

    method = json.loads((folder / "config.json").read_text()).get("method")
    module, cls = ADAPTERS[method].split(":")
    with weights_fit(folder):  # headers were checked; tensors of the wrong shape only show when loading
        return getattr(import_module(f"whyrec.serve.{module}"), cls)(folder, device=device, generation=generation)
