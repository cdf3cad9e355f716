"""XRec's registered method object (`whyrec.registry.METHODS["xrec"]`); torch-free at import."""

from __future__ import annotations

from pathlib import Path

from whyrec.config import ModelConfig, TrainConfig
from whyrec.config_methods import XRecConfig
from whyrec.methods.base import not_wired, require_encoder


class XRecMethod:
    name = "xrec"
    config_class = XRecConfig
    needs_encoder = "a LightGCN folder from `whyrec train encoder`"

    def train(self, data: str, out: str, *, encoder: str | None = None, model: ModelConfig,
              train: TrainConfig, config: XRecConfig, resume: bool = True, overwrite: bool = False) -> dict:
        require_encoder(encoder, f"--method {self.name} needs --encoder (a folder from `whyrec train encoder`)")
        from whyrec.methods.xrec.train import train_explainer

        return train_explainer(data, encoder, out, method=self.name, model=model, xrec=config, train=train,
                               resume=resume, overwrite=overwrite)

    def check(self, folder: Path) -> None:
        not_wired(self.name, "check")

    def load(self, folder: Path, device: str = "auto"):
        not_wired(self.name, "load")


METHOD = XRecMethod()
