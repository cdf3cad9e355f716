"""RecExplainer's registered method object (`whyrec.registry.METHODS["recexplainer"]`); torch-free at import."""

from __future__ import annotations

from pathlib import Path

from whyrec.config import ModelConfig, TrainConfig
from whyrec.config_methods import RecExplainerConfig
from whyrec.methods.base import not_wired, require_encoder


class RecExplainerMethod:
    name = "recexplainer"
    config_class = RecExplainerConfig
    needs_encoder = "a target model from `whyrec train encoder --encoder sasrec|mf`"

    def train(self, data: str, out: str, *, encoder: str | None = None, model: ModelConfig,
              train: TrainConfig, config: RecExplainerConfig, resume: bool = True, overwrite: bool = False) -> dict:
        """`data` is not read (the target model's folder names its data) and `train` is not passed:
        RecExplainerConfig carries the HF Trainer's settings (as `whyrec train explainer` did)."""
        require_encoder(encoder, "--method recexplainer needs --encoder (a target model from "
                                 "`whyrec train encoder --encoder sasrec|mf`)")
        from whyrec.methods.recexplainer.train import train_recexplainer

        return train_recexplainer(encoder, out, model=model, cfg=config, resume=resume, overwrite=overwrite)

    def check(self, folder: Path) -> None:
        not_wired(self.name, "check")

    def load(self, folder: Path, device: str = "auto"):
        not_wired(self.name, "load")


METHOD = RecExplainerMethod()
