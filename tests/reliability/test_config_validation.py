"""Every config dataclass refuses values its code cannot use, when it is built.

Through the real CLI a refused value is one `whyrec: error:` line naming the option
(`--train.lr`) and the bound, exit 2, and the command never starts (no output folder).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from cli_contract import REPO, whyrec_inprocess

from whyrec import cli
from whyrec.config import (
    ConfigError,
    GaVaMoEConfig,
    GenerationConfig,
    LightGCNConfig,
    LoraConfig,
    MFConfig,
    ModelConfig,
    PEPLERConfig,
    RecExplainerConfig,
    SASRecConfig,
    TrainConfig,
    VaeGmmConfig,
    XRecConfig,
)
from whyrec.eval.judge import JudgeConfig
from whyrec.methods.recalpaca.config import RecAlpacaConfig
from whyrec.utils import WhyrecError

ALL = (LightGCNConfig, ModelConfig, LoraConfig, XRecConfig, TrainConfig, GenerationConfig, PEPLERConfig,
       VaeGmmConfig, GaVaMoEConfig, SASRecConfig, MFConfig, RecExplainerConfig, RecAlpacaConfig, JudgeConfig)


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_defaults_are_valid(cls):
    cfg = cls()
    assert dataclasses.is_dataclass(cfg)


# (class, field, bad value, words the message must hold)
BAD = [
    (LightGCNConfig, "epochs", 0, ">= 1"), (LightGCNConfig, "lr", -1.0, "> 0"),
    (LightGCNConfig, "batch_size", 0, ">= 1"), (LightGCNConfig, "dim", 0, ">= 1"),
    (LightGCNConfig, "layer_combine", "max", "sum, mean"), (LightGCNConfig, "eval_every", 0, ">= 1"),
    (LightGCNConfig, "patience", 0, ">= 1"), (LightGCNConfig, "min_rating", float("nan"), "finite"),
    (ModelConfig, "dtype", "float8", "bfloat16"), (ModelConfig, "device", "gpu", "cuda:N"),
    (ModelConfig, "name_or_path", " ", "non-empty"),
    (LoraConfig, "r", 0, ">= 1"), (LoraConfig, "dropout", 1.0, "[0, 1)"), (LoraConfig, "alpha", 0, "> 0"),
    (LoraConfig, "target_modules", [], "at least one"),
    (XRecConfig, "n_exps", 0, ">= 1"), (XRecConfig, "dropout", -0.1, "[0, 1)"),
    (XRecConfig, "max_prompt_words", 0, ">= 1"),
    (TrainConfig, "lr", -1.0, "> 0"), (TrainConfig, "lr", float("inf"), "> 0"),
    (TrainConfig, "batch_size", 0, ">= 1"), (TrainConfig, "max_steps", 0, ">= 1 or null"),
    (TrainConfig, "epochs", 0.0, "> 0"), (TrainConfig, "max_minutes", -1.0, ">= 0 or null"),
    (TrainConfig, "checkpoint_every", 0, ">= 1"), (TrainConfig, "grad_accum_steps", 0, ">= 1"),
    (TrainConfig, "max_grad_norm", 0.0, "> 0 or null"), (TrainConfig, "max_train_examples", 0, ">= 1 or null"),
    (TrainConfig, "max_target_tokens", 0, ">= 1"), (TrainConfig, "seed", -1, ">= 0"),
    (GenerationConfig, "temperature", 0.0, "> 0"), (GenerationConfig, "top_p", 0.0, "(0, 1]"),
    (GenerationConfig, "top_p", 1.5, "(0, 1]"), (GenerationConfig, "max_new_tokens", 0, ">= 1"),
    (GenerationConfig, "batch_size", 0, ">= 1"), (GenerationConfig, "repetition_penalty", 0.0, "> 0"),
    (PEPLERConfig, "variant", "soft", "continuous"), (PEPLERConfig, "rating_head", "svd", "mlp"),
    (PEPLERConfig, "words", 0, ">= 1"), (PEPLERConfig, "lr", 0.0, "> 0 or null"),
    (PEPLERConfig, "epochs_phase2", -1, ">= 0"), (PEPLERConfig, "patience", 0, ">= 1"),
    (VaeGmmConfig, "n_clusters", 0, ">= 1"), (VaeGmmConfig, "n_heads", 5, "divide embedding_dim"),
    (VaeGmmConfig, "dropout", 1.0, "[0, 1)"), (VaeGmmConfig, "elbo_epochs", -1, ">= 0"),
    (VaeGmmConfig, "lr_gamma", 0.0, "> 0"), (VaeGmmConfig, "decoder_dims", (512, 0), "widths >= 1"),
    (GaVaMoEConfig, "n_experts", 0, ">= 1"), (GaVaMoEConfig, "top_k", 13, "<= n_experts"),
    (GaVaMoEConfig, "moe_layers", [-1], "indices >= 0"), (GaVaMoEConfig, "ffn_width", 0, ">= 1 or null"),
    (SASRecConfig, "n_heads", 3, "divide dim"), (SASRecConfig, "attn_dropout", 1.0, "[0, 1)"),
    (SASRecConfig, "max_seq_len", 0, ">= 1"), (SASRecConfig, "grad_clip", 0.0, "> 0"),
    (MFConfig, "n_negatives", 0, ">= 1"), (MFConfig, "weight_decay", -1.0, ">= 0"),
    (RecExplainerConfig, "mode", "both", "hybrid"), (RecExplainerConfig, "warmup_ratio", 1.0, "[0, 1)"),
    (RecExplainerConfig, "grad_accum", 0, ">= 1"), (RecExplainerConfig, "tasks", ["iid2title", "x"], "uid2hist"),
    (RecExplainerConfig, "max_steps", 0, ">= 1 or null"),
    (RecAlpacaConfig, "micro_batch_size", 0, ">= 1"), (RecAlpacaConfig, "batch_size", 12, "multiple"),
    (RecAlpacaConfig, "cutoff_len", 0, ">= 1"), (RecAlpacaConfig, "lr", -1e-4, "> 0"),
    (JudgeConfig, "backend", "anthropic", "openai"), (JudgeConfig, "temperature", -0.5, ">= 0"),
    (JudgeConfig, "concurrency", 0, ">= 1"), (JudgeConfig, "timeout", 0.0, "> 0"),
    (JudgeConfig, "dtype", "int8", "float16"),
]


@pytest.mark.parametrize(("cls", "name", "value", "bound"), BAD,
                         ids=[f"{c.__name__}.{n}={v!r}" for c, n, v, _ in BAD])
def test_bad_field_is_refused_naming_field_and_bound(cls, name, value, bound):
    with pytest.raises(ConfigError) as caught:
        cls(**{name: value})
    err = caught.value
    assert isinstance(err, ValueError) and isinstance(err, WhyrecError)
    assert err.config is cls and err.field == name
    message = str(err)
    assert name in message and bound in message and "\n" not in message
    assert repr(value) in message or message.startswith("unknown") or name == "top_k"


def test_message_format():
    with pytest.raises(ConfigError, match=r"^lr must be > 0 \(got -1\.0\)$"):
        TrainConfig(lr=-1.0)
    with pytest.raises(ConfigError, match=r"^max_steps must be >= 1 or null \(got 0\)$"):
        TrainConfig(max_steps=0)


@pytest.mark.parametrize(("cls", "values"), [
    (TrainConfig, {"max_minutes": 0}),  # stop with a checkpoint after the first step (tests rely on it)
    (TrainConfig, {"max_steps": None, "max_grad_norm": None, "min_rating": -2.0}),
    (PEPLERConfig, {"epochs_phase2": 0, "lr": None}),  # documented: the LM stays frozen
    (RecAlpacaConfig, {"val_set_size": 0, "warmup_steps": 0}),  # documented: no eval
    (JudgeConfig, {"temperature": 0.0, "no_repeat_ngram_size": 0, "max_retries": 0}),  # reproducible / off
    (LightGCNConfig, {"n_layers": 0, "weight_decay": 0.0}),  # 0 layers: plain embeddings
    (VaeGmmConfig, {"pretrain_epochs": 0, "decoder_dims": ()}),  # no pretraining; linear decoder
    (ModelConfig, {"device": "cuda:1", "dtype": "bfloat16"}),
    (GaVaMoEConfig, {"n_experts": 2, "top_k": 2, "moe_layers": [0, 3]}),
    (RecExplainerConfig, {"warmup_ratio": 0.0, "lora": {"enabled": True, "r": 4}}),
])
def test_documented_edge_values_stay_valid(cls, values):
    cls(**values)


def _instantiate(path: Path) -> dict:
    """Build every config of the command a shipped YAML is for, as the CLI does."""
    from jsonargparse import ActionConfigFile, ArgumentParser

    command = cli.train_encoder if "lightgcn" in path.name else cli.train_explainer
    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--config", action=ActionConfigFile)
    parser.add_function_arguments(command)
    cfg = parser.parse_args(["--data", "d", "--out", "o", "--config", str(path)])
    return parser.instantiate(cfg)


@pytest.mark.parametrize("path", sorted((REPO / "configs").rglob("*.yaml")),
                         ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_shipped_yaml_builds_valid_configs(path):
    built = _instantiate(path)
    assert any(dataclasses.is_dataclass(v) for v in built.values())


# ---------------------------------------------------------------- through the CLI
CLI_CASES = [
    (["train", "encoder", "--lightgcn.epochs", "0"], "--lightgcn.epochs", ">= 1"),
    (["train", "encoder", "--lightgcn.batch_size", "0"], "--lightgcn.batch_size", ">= 1"),
    (["train", "encoder", "--lightgcn.lr", "-0.01"], "--lightgcn.lr", "> 0"),
    (["train", "encoder", "--encoder", "sasrec", "--sasrec.n_heads", "3"], "--sasrec.n_heads", "divide dim"),
    (["train", "explainer", "--train.batch_size", "0"], "--train.batch_size", ">= 1"),
    (["train", "explainer", "--train.lr", "-1"], "--train.lr", "> 0"),
    (["train", "explainer", "--train.max_steps", "0"], "--train.max_steps", ">= 1"),
    (["train", "explainer", "--train.epochs", "0"], "--train.epochs", "> 0"),
    (["train", "explainer", "--xrec.lora.dropout", "1.5"], "--xrec.lora.dropout", "[0, 1)"),
    (["train", "explainer", "--model.dtype", "float8"], "--model.dtype", "bfloat16"),
    (["train", "explainer", "--recalpaca.micro_batch_size", "0"], "--recalpaca.micro_batch_size", ">= 1"),
    (["train", "explainer", "--pepler.variant", "soft"], "--pepler.variant", "continuous"),
    (["cluster", "--vae.n_clusters", "0"], "--vae.n_clusters", ">= 1"),
]


@pytest.mark.parametrize(("args", "option", "bound"), CLI_CASES, ids=[c[1] for c in CLI_CASES])
def test_cli_names_the_option_and_the_bound(tmp_path, capsys, args, option, bound):
    out = tmp_path / "out"
    res = whyrec_inprocess([*args, "--data", tmp_path / "no-data", "--out", out], capsys)
    res.assert_one_line_error(option, bound, args[-1])  # the option, the bound and the value given
    assert not out.exists()  # refused before the command started


@pytest.mark.parametrize(("args", "option", "bound"), [
    (["evaluate", "--generation.temperature", "-1"], "--generation.temperature", "> 0"),
    (["evaluate", "--generation.top_p", "0"], "--generation.top_p", "(0, 1]"),
    # judge is `JudgeConfig | None`: jsonargparse wraps the ConfigError in a Union error (its __cause__)
    (["evaluate", "--judge.backend", "gpt"], "--judge.backend", "openai"),
    (["explain", "--run", "r", "--user", "u", "--item", "i", "--generation.max_new_tokens", "0"],
     "--generation.max_new_tokens", ">= 1"),
])
def test_cli_generation_and_judge_options(tmp_path, capsys, args, option, bound):
    out = tmp_path / "out"
    extra = ["--out", out] if args[0] == "evaluate" else []
    res = whyrec_inprocess([*args, *extra], capsys)
    res.assert_one_line_error(option, bound)
    assert not out.exists()


def test_cli_bad_value_in_a_config_file(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("train:\n  lr: 0.001\n  batch_size: 0\n")
    res = whyrec_inprocess(["train", "explainer", "--data", "d", "--out", tmp_path / "o", "--config", path], capsys)
    res.assert_one_line_error("train.batch_size", ">= 1", "(got 0)")
