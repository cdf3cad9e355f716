"""PEPLER's registered method object (`whyrec.registry.METHODS["pepler"]`); torch-free at import."""

from __future__ import annotations

from pathlib import Path

from whyrec.config import ModelConfig, TrainConfig
from whyrec.config_methods import PEPLERConfig
from whyrec.methods.base import served_options


class PEPLERMethod:
    name = "pepler"
    config_class = PEPLERConfig
    needs_encoder = None  # learns its own ID embeddings

    def train(self, data: str, out: str, *, encoder: str | None = None, model: ModelConfig,
              train: TrainConfig, config: PEPLERConfig, resume: bool = True, overwrite: bool = False) -> dict:
        from whyrec.methods.pepler.train import train_pepler

        return train_pepler(data, out, model=model, pepler=config, train=train, resume=resume, overwrite=overwrite)

    def check(self, folder: Path) -> None:
        from whyrec.methods.pepler.check import check

        check(Path(folder))

    def load(self, folder: Path, device: str = "auto", **options):
        """The served model (PEPLERModel) of a folder `check` accepted; options: generation."""
        generation = served_options(self.name, options)
        from whyrec.folders import weights_fit
        from whyrec.methods.pepler.served import PEPLERModel

        with weights_fit(Path(folder)):  # headers were checked; tensors of the wrong shape only show when loading
            return PEPLERModel(Path(folder), device=device, generation=generation)

    def evaluate(self, folder: str, data: str, out: str, *, split: str, max_pairs: int | None, smooth: bool,
                 device: str, **_generic) -> dict:
        """PEPLER's own evaluation (its metric suite with feature and rating metrics on the first
        `max_pairs` pairs); the generic options (generation, BERTScore, judge, grounding) do not apply."""
        from whyrec.methods.pepler.evaluate import evaluate_pepler

        return evaluate_pepler(folder, data, split=split, max_pairs=max_pairs, out=out, smooth=smooth, device=device)


METHOD = PEPLERMethod()
