"""RecAlpaca's serve-strength folder check (`METHOD.check`): what `train_recalpaca` writes (the HF
Trainer keeps `checkpoints/`) and the instruction folders serve builds prompts from."""

from __future__ import annotations

from pathlib import Path

from whyrec.methods.base import check_layout
from whyrec.utils import WhyrecError

LAYOUT = (("config.json", "adapter_config.json", "adapter_model.safetensors"),
          ("README.md", "run_config.json", "train_log.json"), ("checkpoints",))
# config.json sections loading rebuilds: key -> dataclass name in whyrec.config, or a plain type
SECTIONS = {"base_model": dict, "instructions": list}


def check(path: Path) -> None:
    config = check_layout(path, LAYOUT, SECTIONS)
    folders = [Path(s) for s in config.get("instructions") or [] if (Path(s) / "instructions.jsonl").is_file()]
    if not folders:
        raise WhyrecError(f"{path} was trained on {', '.join(config.get('instructions') or ['nothing'])}, which holds "
                          "no instructions.jsonl; serve builds each user's prompt from that `whyrec data "
                          "instructions` folder, so it must stay where training found it")
