"""RecAlpaca's registered method object (`whyrec.registry.METHODS["recalpaca"]`); torch-free at import."""

from __future__ import annotations

from pathlib import Path

from whyrec.config import ModelConfig, TrainConfig
from whyrec.methods.base import (
    apply_train,
    check_train,
    require_fsdp_settings,
    served_options,
    train_values,
)
from whyrec.methods.recalpaca.config import RecAlpacaConfig


class RecAlpacaMethod:
    name = "recalpaca"
    config_class = RecAlpacaConfig
    needs_encoder = None
    # TrainConfig field -> the RecAlpacaConfig field (an HF Trainer setting) it sets (`with_train`);
    # batch_size and grad_accum_steps set micro_batch_size and batch_size (= their product).
    TRAINER = {"lr": "lr", "epochs": "epochs", "max_steps": "max_steps", "max_minutes": "max_minutes",
               "checkpoint_every": "save_steps", "gradient_checkpointing": "gradient_checkpointing",
               "bf16": "bf16", "seed": "seed", "warmup_steps": "warmup_steps"}
    train_fields = frozenset({*TRAINER, "batch_size", "grad_accum_steps", "fsdp"})  # fsdp: with --recalpaca.fsdp
    train_instead = {
        "max_target_tokens": "use --recalpaca.cutoff_len, the tokens kept per example, prompt and response",
        "max_train_examples": "it trains on every instruction record in --data",
        "min_rating": "its instruction records carry no rating to filter on",
        "max_grad_norm": "its HF Trainer clips the gradient norm at 1.0, the Trainer's default",
        "compile": "its HF Trainer does not compile the model; its options: --recalpaca.*",
        "lr_schedule": "its HF Trainer decays the learning rate linearly after --train.warmup_steps",
    }

    def with_train(self, config: RecAlpacaConfig, train: TrainConfig | None) -> RecAlpacaConfig:
        """`config` with the --train.* options given (`methods.base.fields_set`) in place of their
        RecAlpacaConfig fields; RecAlpacaConfig's own values are the defaults otherwise."""
        require_fsdp_settings(self.name, train, config.fsdp)
        values = train_values(train, {**self.TRAINER, "batch_size": "micro_batch_size"})
        batch = train_values(train, {"batch_size": "batch_size", "grad_accum_steps": "grad_accum_steps"})
        if batch:  # the examples per optimizer step: batch_size x grad_accum_steps, as for XRec
            micro = values["micro_batch_size"][1] if "micro_batch_size" in values else config.micro_batch_size
            values["batch_size"] = (" and ".join(option for option, _ in batch.values()),
                                    micro * (train.grad_accum_steps if train is not None else 1))
        return apply_train(self.name, config, values)

    def train(self, data: str, out: str, *, encoder: str | None = None, model: ModelConfig,
              train: TrainConfig, config: RecAlpacaConfig, resume: bool = True, overwrite: bool = False) -> dict:
        """`data`: instruction data, comma-separated (`whyrec data instructions` folders or Alpaca
        JSON/JSONL files); `train` reaches the HF Trainer through `config` (`with_train`), fields it
        cannot honour are refused."""
        check_train(self, train)
        config = self.with_train(config, train)
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
