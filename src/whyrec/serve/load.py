"""Pick the served-model adapter from the folder's config.json `method` (`whyrec.methods.<name>.served`)."""

from __future__ import annotations

import json
from importlib import import_module
from pathlib import Path

from whyrec.config import GenerationConfig

ADAPTERS = {  # method -> "module:class"
    "xrec": "whyrec.methods.xrec.served:XRecModel",
    "gavamoe": "whyrec.methods.gavamoe.served:GaVaMoEModel",
    "pepler": "whyrec.methods.pepler.served:PEPLERModel",
    "recexplainer": "whyrec.methods.recexplainer.served:RecExplainerModel",
    "recalpaca": "whyrec.methods.recalpaca.served:RecAlpacaModel",
}


def load_served(folder: Path, device: str = "auto", generation: GenerationConfig | None = None):
    """The adapter for a folder `validate.check_artifact` accepted (so the method is one of ADAPTERS)."""
    from whyrec.serve.validate import weights_fit

    method = json.loads((folder / "config.json").read_text()).get("method")
    module, cls = ADAPTERS[method].split(":")
    with weights_fit(folder):  # headers were checked; tensors of the wrong shape only show when loading
        return getattr(import_module(module), cls)(folder, device=device, generation=generation)
