"""PEPLER's registered method object (`whyrec.registry.METHODS["pepler"]`); torch-free at import."""

from __future__ import annotations

from pathlib import Path

from whyrec.config import ModelConfig, TrainConfig
from whyrec.config_methods import PEPLERConfig
from whyrec.methods.base import not_wired


class PEPLERMethod:
    name = "pepler"
    config_class = PEPLERConfig
    needs_encoder = None  # learns its own ID embeddings

    def train(self, data: str, out: str, *, encoder: str | None = None, model: ModelConfig,
              train: TrainConfig, config: PEPLERConfig, resume: bool = True, overwrite: bool = False) -> dict:
        from whyrec.methods.pepler.train import train_pepler

        return train_pepler(data, out, model=model, pepler=config, train=train, resume=resume, overwrite=overwrite)

    def check(self, folder: Path) -> None:
        not_wired(self.name, "check")

    def load(self, folder: Path, device: str = "auto"):
        not_wired(self.name, "load")


METHOD = PEPLERMethod()
