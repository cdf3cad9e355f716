"""RecExplainer's serve-strength folder check (`METHOD.check`): what `save_recexplainer` writes
(the HF Trainer keeps `checkpoints/`)."""

from __future__ import annotations

from pathlib import Path

from whyrec.methods.base import check_ids, check_layout
from whyrec.utils import WhyrecError

LAYOUT = (("config.json", "connectors.safetensors", "train_log.json"),
          ("README.md", "run_config.json", "adapter_config.json", "adapter_model.safetensors"),
          ("target", "checkpoints"))
# config.json sections loading rebuilds: key -> dataclass name in whyrec.config, or a plain type
SECTIONS = {"base_model": "ModelConfig", "config": "RecExplainerConfig", "target": str}


def check(path: Path) -> None:
    config = check_layout(path, LAYOUT, SECTIONS)
    if config.get("config", {}).get("lora", {}).get("enabled", True):
        missing = [f for f in ("adapter_config.json", "adapter_model.safetensors") if not (path / f).is_file()]
        if missing:
            raise WhyrecError(f"{path} is missing {', '.join(missing)} (the run trained a LoRA); copy the whole folder")
    if config.get("target") != "target":
        raise WhyrecError(f"{path / 'config.json'} points its target model at {config.get('target')!r}; "
                          "serve needs a target folder copied into target/")
    # The target's own resume checkpoint/ is copied along by `save_recexplainer`: legitimate there.
    check_ids(path / "target", None, None, subdirs=("checkpoint",))
