"""RecExplainer's registered method object (`whyrec.registry.METHODS["recexplainer"]`); torch-free at import."""

from __future__ import annotations

from pathlib import Path

from whyrec.config import ModelConfig, TrainConfig
from whyrec.config_methods import RecExplainerConfig
from whyrec.methods.base import (
    apply_train,
    check_train,
    require_encoder,
    require_fsdp_settings,
    served_options,
    train_values,
)


class RecExplainerMethod:
    name = "recexplainer"
    config_class = RecExplainerConfig
    needs_encoder = "a target model from `whyrec train encoder --encoder sasrec|mf`"
    studies = ("alignment", "faithfulness")  # `whyrec evaluate --task` studies that need this method's folders
    # TrainConfig field -> the RecExplainerConfig field (an HF Trainer setting) it sets (`with_train`);
    # batch_size is per forward pass and process, as micro_batch_size is.
    TRAINER = {"lr": "lr", "batch_size": "micro_batch_size", "grad_accum_steps": "grad_accum", "epochs": "epochs",
               "max_steps": "max_steps", "max_minutes": "max_minutes", "checkpoint_every": "save_steps",
               "max_train_examples": "max_examples", "gradient_checkpointing": "gradient_checkpointing",
               "bf16": "bf16", "seed": "seed"}
    train_fields = frozenset({*TRAINER, "fsdp"})  # fsdp: with --recexplainer.fsdp (its settings file)
    train_instead = {
        "max_target_tokens": "use --recexplainer.max_length, the tokens kept per example",
        "min_rating": "its alignment tasks come from the target model, not from rated pairs",
        "max_grad_norm": "its HF Trainer clips the gradient norm at 1.0, the Trainer's default",
        "compile": "its HF Trainer does not compile the model; its options: --recexplainer.*",
        "lr_schedule": "its HF Trainer decays the learning rate linearly after --recexplainer.warmup_ratio of the steps",
        "warmup_steps": "use --recexplainer.warmup_ratio, the warm-up as a share of the planned steps",
    }

    def with_train(self, config: RecExplainerConfig, train: TrainConfig | None) -> RecExplainerConfig:
        """`config` with the --train.* options given (`methods.base.fields_set`) in place of their
        RecExplainerConfig fields (`TRAINER`); RecExplainerConfig's own values are the defaults otherwise."""
        require_fsdp_settings(self.name, train, config.fsdp)
        return apply_train(self.name, config, train_values(train, self.TRAINER))

    def train(self, data: str, out: str, *, encoder: str | None = None, model: ModelConfig,
              train: TrainConfig, config: RecExplainerConfig, resume: bool = True, overwrite: bool = False) -> dict:
        """`data` is not read (the target model's folder names its data); `train` reaches the HF
        Trainer through `config` (`with_train`), fields it cannot honour are refused."""
        require_encoder(encoder, "--method recexplainer needs --encoder (a target model from "
                                 "`whyrec train encoder --encoder sasrec|mf`)")
        check_train(self, train)
        config = self.with_train(config, train)
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

    # ---- benchmark hooks (whyrec.benchmark asks these; no method names outside this package)
    benchmark_encoder = "target"  # the recommender it is aligned to: the benchmark trains an MF one when not given

    def benchmark_variants(self, config: RecExplainerConfig) -> dict:
        return {self.name: config}

    def unavailable(self, ds, config: RecExplainerConfig) -> str | None:
        from whyrec.data import schema as S

        stamps = ds.interactions.get(S.TIMESTAMP)
        if stamps is None or stamps.isna().any():
            return "no timestamps: its target model and prompts order each user's history by time"
        return None


METHOD = RecExplainerMethod()
