"""GaVaMoE's serve-strength folder check (`METHOD.check`): what `save_gavamoe` writes."""

from __future__ import annotations

from pathlib import Path

from whyrec.methods.base import check_ids, check_layout
from whyrec.utils import WhyrecError

LAYOUT = (("config.json", "adapter_model.safetensors", "items.parquet", "pairs.parquet"),
          ("README.md", "run_config.json", "training_log.json"), ("vae",))
# config.json sections loading rebuilds: key -> dataclass name in whyrec.config, or a plain type
SECTIONS = {"model": "ModelConfig", "gavamoe": "GaVaMoEConfig", "vae": str}


def check(path: Path) -> None:
    config = check_layout(path, LAYOUT, SECTIONS)
    if config.get("vae") != "vae":
        raise WhyrecError(f"{path / 'config.json'} points its VAE at {config.get('vae')!r}; "
                          "serve needs the VAE folder copied into vae/ (re-train with a `whyrec cluster` folder)")
    check_ids(path / "vae", "user_emb.weight", "item_emb.weight")
