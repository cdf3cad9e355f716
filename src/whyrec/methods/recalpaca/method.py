"""RecAlpaca's registered method object (`whyrec.registry.METHODS["recalpaca"]`); torch-free at import."""

from __future__ import annotations

from pathlib import Path

from whyrec.config import ModelConfig, TrainConfig
from whyrec.methods.base import served_options
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
        from whyrec.methods.recalpaca.check import check

        check(Path(folder))

    def load(self, folder: Path, device: str = "auto", **options):
        """The served model (RecAlpacaModel) of a folder `check` accepted; options: generation (default:
        greedy, 400 new tokens, room for k titles with reasons) and instructions (the `whyrec data
        instructions` folder to build prompts from; default: the first one the run was trained on)."""
        generation = served_options(self.name, options, also=("instructions",))
        from whyrec.folders import weights_fit
        from whyrec.methods.recalpaca.served import RecAlpacaModel

        with weights_fit(Path(folder)):  # headers were checked; tensors of the wrong shape only show when loading
            return RecAlpacaModel(Path(folder), device=device, generation=generation,
                                  instructions=options.get("instructions"))


METHOD = RecAlpacaMethod()
