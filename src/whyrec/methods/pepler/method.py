"""PEPLER's registered method object (`whyrec.registry.METHODS["pepler"]`); torch-free at import."""

from __future__ import annotations

from pathlib import Path

from whyrec.config import ModelConfig, TrainConfig
from whyrec.config_methods import PEPLERConfig
from whyrec.methods.base import (
    apply_train,
    check_generation,
    check_train,
    served_options,
    train_values,
)


class PEPLERMethod:
    name = "pepler"
    config_class = PEPLERConfig
    needs_encoder = None  # learns its own ID embeddings
    # TrainConfig fields its epoch loop honours: lr and batch_size in place of --pepler.lr/batch_size
    # (`with_train`), max_steps as a cap on the steps of each epoch; the rest are refused (`check_train`).
    train_fields = frozenset({"lr", "batch_size", "seed", "max_steps", "max_minutes", "max_train_examples"})
    train_instead = {
        "epochs": "use --pepler.epochs and --pepler.epochs_phase2, the most epochs of each phase; "
                  "early stopping ends it sooner",
        "max_target_tokens": "use --pepler.words, the explanation tokens kept and generated",
        "checkpoint_every": "it writes a checkpoint after every epoch",
        "min_rating": "it trains on every train explanation, as PEPLER did",
        **dict.fromkeys(("grad_accum_steps", "max_grad_norm", "gradient_checkpointing", "bf16", "fsdp", "compile",
                         "lr_schedule", "warmup_steps"),
                        "its own AdamW epoch loop has no such switch; its options: --pepler.*"),
    }

    # GenerationConfig fields it honours: batch_size (pairs decoded together); it decodes its own
    # `words` tokens greedily, so any other --generation.* set is refused (`check_generation`).
    generation_fields = frozenset({"batch_size"})
    generation_instead = {
        **dict.fromkeys(("max_new_tokens", "min_new_tokens", "do_sample", "temperature", "top_p", "num_beams",
                         "repetition_penalty", "no_repeat_ngram_size", "eos_bias", "drop_finished"),
                        "it decodes --pepler.words tokens greedily, as PEPLER does; words is set when training"),
        "batch_size": "its evaluation decodes in batches of its --pepler.batch_size",  # refused by `evaluate` only
    }

    def with_train(self, config: PEPLERConfig, train: TrainConfig | None) -> PEPLERConfig:
        """`config` with --train.lr / --train.batch_size as its lr / batch_size where they are set
        (when given, `methods.base.fields_set`); PEPLERConfig's own values are the defaults otherwise."""
        return apply_train(self.name, config, train_values(train, {"lr": "lr", "batch_size": "batch_size"}))

    def train(self, data: str, out: str, *, encoder: str | None = None, model: ModelConfig,
              train: TrainConfig, config: PEPLERConfig, resume: bool = True, overwrite: bool = False) -> dict:
        check_train(self, train)
        config = self.with_train(config, train)
        from whyrec.methods.pepler.train import train_pepler

        return train_pepler(data, out, model=model, pepler=config, train=train, resume=resume, overwrite=overwrite)

    def check(self, folder: Path) -> None:
        from whyrec.methods.pepler.check import check

        check(Path(folder))

    def load(self, folder: Path, device: str = "auto", **options):
        """The served model (PEPLERModel) of a folder `check` accepted; options: generation."""
        generation = served_options(self.name, options)
        check_generation(self, generation)
        from whyrec.folders import weights_fit
        from whyrec.methods.pepler.served import PEPLERModel

        with weights_fit(Path(folder)):  # headers were checked; tensors of the wrong shape only show when loading
            return PEPLERModel(Path(folder), device=device, generation=generation)

    def evaluate(self, folder: str, data: str, out: str, *, split: str, max_pairs: int | None, smooth: bool,
                 device: str, grounding: bool = True, bertscore: bool = False, judge=None,
                 bertscore_model: str | None = None, bertscore_layers: int | None = None, **_generic) -> dict:
        """PEPLER's own evaluation (its metric suite with feature and rating metrics on the first
        `max_pairs` pairs) and, as every method's evaluation reports them, BERTScore (--bertscore), the
        judge's GPTScore (--judge.*) and, with `grounding` (on unless --grounding false), the false-claim
        rates of its outputs and the references. A --generation.* field set is refused (it decodes in
        batches of its own --pepler.batch_size)."""
        check_generation(self, _generic.get("generation"), honoured=frozenset())
        from whyrec.methods.pepler.evaluate import evaluate_pepler

        return evaluate_pepler(folder, data, split=split, max_pairs=max_pairs, out=out, smooth=smooth, device=device,
                               grounding=grounding, bertscore=bertscore, judge=judge,
                               bertscore_model=bertscore_model, bertscore_layers=bertscore_layers)

    # ---- benchmark hooks (whyrec.benchmark asks these; no method names outside this package)
    benchmark_encoder = None  # PEPLER learns its own ID embeddings
    benchmark_uses_generation = False  # it decodes its own `words` greedily; --generation does not apply

    def benchmark_variants(self, config: PEPLERConfig) -> dict:
        """One row per prompt variant: continuous (ID soft prompt), discrete (feature words), reg."""
        from dataclasses import replace

        from whyrec.config_methods import VARIANTS

        return {f"{self.name}-{v}": replace(config, variant=v) for v in VARIANTS}

    def unavailable(self, ds, config: PEPLERConfig) -> str | None:
        from whyrec.data import schema as S

        inter = ds.interactions
        if config.variant == "discrete" and (S.FEATURE not in inter or inter[S.FEATURE].fillna("").eq("").all()):
            return "no feature words (prepare raw reviews with --extract_features)"
        if config.variant == "reg" and not ds.has_ratings:
            return "no ratings"
        return None

    def benchmark_generator(self, folder: Path, gen, device: str):
        """(PEPLER's own batch size, loader of a pairs -> texts function) for a trained folder."""
        from whyrec.folders import read_config

        def load():
            from whyrec.methods.pepler.artifact import load_pepler_run
            from whyrec.methods.pepler.train import make_examples

            module, cfg = load_pepler_run(folder, device)

            def generate(pairs) -> list[str]:
                ex = make_examples(module, pairs, cfg["user2idx"], cfg["item2idx"], cfg["features"])
                users, items, prompts, _, _ = ex.rows(list(range(len(pairs))))
                return [module.decode(ids) for ids in module.generate_ids(users, items, prompts)]

            return generate

        return int(read_config(Path(folder) / "config.json").get("pepler", {}).get("batch_size") or 128), load

    def benchmark_extra_metrics(self, folder: Path, pairs, device: str) -> dict | None:
        """RMSE/MAE of a `reg` folder's rating head on the pairs; None (nothing loaded) otherwise."""
        from whyrec.folders import read_config

        if read_config(Path(folder) / "config.json").get("pepler", {}).get("variant") != "reg":
            return None
        from whyrec.methods.pepler.evaluate import pepler_rating_metrics

        return {"rating": pepler_rating_metrics(folder, pairs, device)}


METHOD = PEPLERMethod()
