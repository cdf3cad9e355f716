"""RecAlpaca's registered method object (`whyrec.registry.METHODS["recalpaca"]`); torch-free at import."""

from __future__ import annotations

from pathlib import Path

from whyrec.config import ModelConfig, TrainConfig
from whyrec.methods.base import not_wired
from whyrec.methods.recalpaca.config import RecAlpacaConfig


class RecAlpacaMethod:
    name = "recalpaca"
    config_class = RecAlpacaConfig
    needs_encoder = None

    def train(self, data: str, out: str, *, encoder: str | None = None, model: ModelConfig,
              train: TrainConfig, config: RecAlpacaConfig, resume: bool = True, overwrite: bool = False) -> dict:
        """`data`: instruction data, comma-separated (`whyrec data instructions` folders or Alpaca
        JSON/JSONL files); `train` is not passed: RecAlpacaConfig carries the HF Trainer's settings."""
        from whyrec.methods.recalpaca.train import train_recalpaca

        sources = [p.strip() for p in data.split(",") if p.strip()]
        return train_recalpaca(sources if len(sources) > 1 else sources[0], out, model=model, cfg=config,
                               resume=resume, overwrite=overwrite)

    def check(self, folder: Path) -> None:
        not_wired(self.name, "check")

    def load(self, folder: Path, device: str = "auto"):
        not_wired(self.name, "load")


METHOD = RecAlpacaMethod()
