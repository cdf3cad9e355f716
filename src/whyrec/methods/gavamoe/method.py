"""GaVaMoE's registered method object (`whyrec.registry.METHODS["gavamoe"]`); torch-free at import."""

from __future__ import annotations

from pathlib import Path

from whyrec.config import ModelConfig, TrainConfig
from whyrec.config_methods import GaVaMoEConfig
from whyrec.methods.base import TRAIN_FIELDS, check_train, require_encoder, served_options


class GaVaMoEMethod:
    name = "gavamoe"
    config_class = GaVaMoEConfig
    needs_encoder = "a VAE folder from `whyrec cluster`"
    train_fields = TRAIN_FIELDS  # whyrec.llm.trainer.train_loop takes the whole TrainConfig

    def train(self, data: str, out: str, *, encoder: str | None = None, model: ModelConfig,
              train: TrainConfig, config: GaVaMoEConfig, resume: bool = True, overwrite: bool = False) -> dict:
        require_encoder(encoder, "--method gavamoe needs --encoder (a VAE folder from `whyrec cluster`)")
        check_train(self, train)
        from whyrec.methods.gavamoe.train import train_gavamoe

        return train_gavamoe(data, encoder, out, model=model, cfg=config, train=train, resume=resume,
                             overwrite=overwrite)

    def check(self, folder: Path) -> None:
        from whyrec.methods.gavamoe.check import check

        check(Path(folder))

    def load(self, folder: Path, device: str = "auto", **options):
        """The served model (GaVaMoEModel) of a folder `check` accepted; options: generation."""
        generation = served_options(self.name, options)
        from whyrec.folders import weights_fit
        from whyrec.methods.gavamoe.served import GaVaMoEModel

        with weights_fit(Path(folder)):  # headers were checked; tensors of the wrong shape only show when loading
            return GaVaMoEModel(Path(folder), device=device, generation=generation)

    # ---- benchmark hooks (whyrec.benchmark asks these; no method names outside this package)
    benchmark_encoder = "vae_gmm"  # stage 1, trained by the benchmark when not given

    def benchmark_variants(self, config: GaVaMoEConfig) -> dict:
        return {self.name: config}

    def benchmark_generator(self, folder: Path, gen, device: str):
        """(chunk size, loader of a pairs -> texts function) for a trained folder."""
        def load():
            from whyrec.methods.gavamoe.artifact import load_gavamoe

            explainer = load_gavamoe(str(folder), device)
            return lambda pairs: explainer.explain(pairs["user"].tolist(), pairs["item"].tolist(), gen, progress=False)

        from whyrec.llm.continuous_rows import rows_per_call

        return rows_per_call(gen), load  # a cached chunk of several batches: rows refill across them


METHOD = GaVaMoEMethod()
