"""RecExplainer's registered method object (`whyrec.registry.METHODS["recexplainer"]`); torch-free at import."""

from __future__ import annotations

from pathlib import Path

from whyrec.config import ModelConfig, TrainConfig
from whyrec.config_methods import RecExplainerConfig
from whyrec.methods.base import require_encoder, served_options


class RecExplainerMethod:
    name = "recexplainer"
    config_class = RecExplainerConfig
    needs_encoder = "a target model from `whyrec train encoder --encoder sasrec|mf`"
    studies = ("alignment", "faithfulness")  # `whyrec evaluate --task` studies that need this method's folders

    def train(self, data: str, out: str, *, encoder: str | None = None, model: ModelConfig,
              train: TrainConfig, config: RecExplainerConfig, resume: bool = True, overwrite: bool = False) -> dict:
        """`data` is not read (the target model's folder names its data) and `train` is not passed:
        RecExplainerConfig carries the HF Trainer's settings (as `whyrec train explainer` did)."""
        require_encoder(encoder, "--method recexplainer needs --encoder (a target model from "
                                 "`whyrec train encoder --encoder sasrec|mf`)")
        from whyrec.methods.recexplainer.train import train_recexplainer

        return train_recexplainer(encoder, out, model=model, cfg=config, resume=resume, overwrite=overwrite)

    def check(self, folder: Path) -> None:
        from whyrec.methods.recexplainer.check import check

        check(Path(folder))

    def load(self, folder: Path, device: str = "auto", **options):
        """The served model (RecExplainerModel) of a folder `check` accepted; options: generation."""
        generation = served_options(self.name, options)
        from whyrec.folders import weights_fit
        from whyrec.methods.recexplainer.served import RecExplainerModel

        with weights_fit(Path(folder)):  # headers were checked; tensors of the wrong shape only show when loading
            return RecExplainerModel(Path(folder), device=device, generation=generation)


METHOD = RecExplainerMethod()
