"""PEPLER's serve-strength folder check (`METHOD.check`): what `save_pepler` writes (+ `evaluate_pepler`'s
outputs, written beside the run by default)."""

from __future__ import annotations

from pathlib import Path

from whyrec.methods.base import check_id_map, check_layout, row_count
from whyrec.utils import WhyrecError

LAYOUT = (("config.json", "prompt.safetensors", "user2idx.json", "item2idx.json", "features.json"),
          ("README.md", "run_config.json", "training_log.json", "metrics.json", "predictions.jsonl"), ("lm",))
# config.json sections loading rebuilds: key -> dataclass name in whyrec.config, or a plain type
SECTIONS = {"model": "ModelConfig", "pepler": "PEPLERConfig", "n_users": int, "n_items": int}


def check(path: Path) -> None:
    config = check_layout(path, LAYOUT, SECTIONS)
    if config.get("lm_saved") and not (path / "lm").is_dir():
        raise WhyrecError(f"{path} is missing lm/ (its config.json says the LM was fine-tuned); copy the whole folder")
    for kind in ("user", "item"):
        check_id_map(path / f"{kind}2idx.json", row_count(config, f"n_{kind}s", path / "config.json"), kind)
