"""XRec's registered method object (`whyrec.registry.METHODS["xrec"]`); torch-free at import."""

from __future__ import annotations

from pathlib import Path

from whyrec.config import ModelConfig, TrainConfig
from whyrec.config_methods import XRecConfig
from whyrec.methods.base import TRAIN_FIELDS, check_train, require_encoder, served_options


class XRecMethod:
    name = "xrec"
    config_class = XRecConfig
    needs_encoder = "a LightGCN folder from `whyrec train encoder`"
    train_fields = TRAIN_FIELDS  # whyrec.llm.trainer.train_loop takes the whole TrainConfig

    def train(self, data: str, out: str, *, encoder: str | None = None, model: ModelConfig,
              train: TrainConfig, config: XRecConfig, resume: bool = True, overwrite: bool = False) -> dict:
        require_encoder(encoder, f"--method {self.name} needs --encoder (a folder from `whyrec train encoder`)")
        check_train(self, train)
        from whyrec.methods.xrec.train import train_explainer

        return train_explainer(data, encoder, out, method=self.name, model=model, xrec=config, train=train,
                               resume=resume, overwrite=overwrite)

    def check(self, folder: Path) -> None:
        from whyrec.methods.xrec.check import check

        check(Path(folder))

    def load(self, folder: Path, device: str = "auto", **options):
        """The served model (XRecModel) of a folder `check` accepted; options: generation."""
        generation = served_options(self.name, options)
        from whyrec.folders import weights_fit
        from whyrec.methods.xrec.served import XRecModel

        with weights_fit(Path(folder)):  # headers were checked; tensors of the wrong shape only show when loading
            return XRecModel(Path(folder), device=device, generation=generation)

    # ---- benchmark hooks (whyrec.benchmark asks these; no method names outside this package)
    benchmark_encoder = "lightgcn"  # the encoder kind the benchmark trains for it

    def benchmark_variants(self, config: XRecConfig) -> dict:
        """Benchmark rows: XRec's adapters on the frozen backbone, and with LoRA on it too."""
        from dataclasses import replace

        return {self.name: replace(config, lora=replace(config.lora, enabled=False)),
                f"{self.name}-lora": replace(config, lora=replace(config.lora, enabled=True))}

    def unavailable(self, ds, config: XRecConfig) -> str | None:
        return None

    def benchmark_generator(self, folder: Path, gen, device: str):
        """(chunk size, loader of a pairs -> texts function) for a trained folder."""
        def load():
            from whyrec.methods.xrec.artifact import load_explainer

            explainer = load_explainer(str(folder), device=device)
            return lambda pairs: explainer.explain(pairs["user"].tolist(), pairs["item"].tolist(), gen, progress=False)

        from whyrec.llm.continuous_rows import rows_per_call

        return rows_per_call(gen), load  # a cached chunk of several batches: rows refill across them


METHOD = XRecMethod()
