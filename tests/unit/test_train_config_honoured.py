"""One TrainConfig for every method: each registered method honours a `--train.*` field or refuses
it with one line naming what to use instead (`whyrec.methods.base.check_train`); never ignores it."""

from __future__ import annotations

import dataclasses
import random

import pandas as pd
import pytest

from whyrec.cli import main
from whyrec.config import ModelConfig, PEPLERConfig, RecExplainerConfig, TrainConfig, mark_given
from whyrec.methods.base import check_train, train_set
from whyrec.methods.recalpaca.config import RecAlpacaConfig
from whyrec.registry import METHODS
from whyrec.utils import WhyrecError

# One value away from the default per TrainConfig field (batch_size 3: RecExplainer's own default is 4).
NON_DEFAULT = {"lr": 5e-4, "batch_size": 3, "batch_tokens": 512, "epochs": 2.0, "max_steps": 5, "max_minutes": 1.0,
               "max_target_tokens": 32, "checkpoint_every": 10, "max_train_examples": 10, "min_rating": 4.0,
               "grad_accum_steps": 2, "max_grad_norm": 0.5, "gradient_checkpointing": True, "bf16": True,
               "fsdp": True, "compile": True, "seed": 7, "lr_schedule": "linear", "warmup_steps": 3}
ALL = frozenset(NON_DEFAULT)
# What each method honours; a change here is a decision (and a line in docs/methods/<name>.md).
HONOURED = {
    "xrec": ALL, "gavamoe": ALL,  # whyrec.llm.trainer.train_loop takes the whole TrainConfig
    "pepler": {"lr", "batch_size", "seed", "max_steps", "max_minutes", "max_train_examples"},
    "recexplainer": ALL - {"max_target_tokens", "min_rating", "max_grad_norm", "compile", "batch_tokens",
                           "lr_schedule", "warmup_steps"},
    "recalpaca": ALL - {"max_target_tokens", "max_train_examples", "min_rating", "max_grad_norm", "compile",
                        "batch_tokens", "lr_schedule"},
}
# Honoured fields that do not go through `with_train` into the method's config but reach its trainer
# in the TrainConfig itself (PEPLER's train_pepler reads these four).
PASSED_WHOLE = {"xrec": ALL, "gavamoe": ALL, "pepler": {"seed", "max_steps", "max_minutes", "max_train_examples"},
                "recexplainer": set(), "recalpaca": set()}
FSDP_FILE = "configs/distributed/fsdp.json"


def test_every_train_field_has_a_non_default_value():
    default = TrainConfig()
    assert set(NON_DEFAULT) == {f.name for f in dataclasses.fields(TrainConfig)}
    for name, value in NON_DEFAULT.items():
        assert getattr(default, name) != value and train_set(TrainConfig(**{name: value})) == [name]


@pytest.mark.parametrize("name", sorted(HONOURED))
def test_builtin_methods_declare_what_they_honour(name):
    assert METHODS.get(name).train_fields == HONOURED[name]
    assert set(METHODS.names()) >= set(HONOURED)


@pytest.mark.parametrize("field", sorted(NON_DEFAULT))
@pytest.mark.parametrize("name", sorted(HONOURED))
def test_each_field_is_honoured_or_refused(name, field):
    method, train = METHODS.get(name), TrainConfig(**{field: NON_DEFAULT[field]})
    if field not in method.train_fields:
        with pytest.raises(WhyrecError) as info:
            check_train(method, train)
        message = str(info.value)
        assert message.startswith(f"--method {name} does not use --train.{field} (")
        assert message.endswith("; leave it at its default") and "\n" not in message
        assert len(message) > len(f"--method {name} does not use --train.{field} (); leave it at its default") + 10
        return
    check_train(method, train)
    config = method.config_class()
    if field == "fsdp" and hasattr(method, "with_train"):  # HF Trainer methods: FSDP needs its settings file
        config = dataclasses.replace(config, fsdp=FSDP_FILE)
    resolved = method.with_train(config, train) if hasattr(method, "with_train") else config
    if field in PASSED_WHOLE[name]:
        assert resolved == config  # the trainer reads it from `train`
    elif field != "fsdp":  # the value lands in the method's own config, which its trainer reads
        assert resolved != config
        if (name, field) == ("recalpaca", "grad_accum_steps"):  # examples per step = micro batch x accumulation
            assert resolved.batch_size == resolved.micro_batch_size * NON_DEFAULT[field]
        else:
            assert NON_DEFAULT[field] in [getattr(resolved, f.name) for f in dataclasses.fields(resolved)]


@pytest.mark.parametrize("name", sorted(HONOURED))
def test_default_train_config_changes_nothing(name):
    """Default invocations (and the benchmark's TrainConfig(max_minutes=10)) reach the trainers as before."""
    method = METHODS.get(name)
    check_train(method, TrainConfig())
    check_train(method, None)
    if hasattr(method, "with_train"):
        config = method.config_class()
        assert method.with_train(config, TrainConfig()) is config and method.with_train(config, None) is config
        if name == "pepler":  # the benchmark trains PEPLER's variants with this
            assert method.with_train(config, TrainConfig(max_minutes=10)) is config


def test_benchmark_train_config_is_accepted_by_the_methods_it_trains():
    for name in ("xrec", "gavamoe", "pepler"):
        check_train(METHODS.get(name), TrainConfig(max_minutes=10))


def test_message_names_every_refused_field():
    with pytest.raises(WhyrecError) as info:
        check_train(METHODS.get("pepler"), TrainConfig(compile=True, bf16=True, epochs=3))
    assert str(info.value) == ("--method pepler does not use --train.epochs (use --pepler.epochs and "
                               "--pepler.epochs_phase2, the most epochs of each phase; early stopping ends it "
                               "sooner), nor --train.bf16, nor --train.compile; leave it at its default")


def test_a_method_without_train_fields_honours_none():
    class Bare:
        name = "bare"

    check_train(Bare(), TrainConfig())
    with pytest.raises(WhyrecError, match=r"^--method bare does not use --train.lr \(its own options: --bare.\*\)"):
        check_train(Bare(), TrainConfig(lr=1e-3))


# ---------------------------------------------------------------- one source of truth


def test_pepler_takes_train_lr_and_batch_size():
    method = METHODS.get("pepler")
    cfg = method.with_train(PEPLERConfig(variant="discrete"), TrainConfig(lr=5e-4, batch_size=16))
    assert (cfg.lr, cfg.phase1_lr, cfg.batch_size) == (5e-4, 5e-4, 16)
    assert method.with_train(PEPLERConfig(lr=5e-4), TrainConfig(lr=5e-4)).lr == 5e-4  # the same value twice
    with pytest.raises(WhyrecError) as info:
        method.with_train(PEPLERConfig(lr=1e-3), TrainConfig(lr=5e-4))
    assert str(info.value) == "--train.lr 0.0005 and --pepler.lr 0.001 disagree; give only one of them"
    with pytest.raises(WhyrecError, match="--train.batch_size 16 and --pepler.batch_size 64 disagree"):
        method.with_train(PEPLERConfig(batch_size=64), TrainConfig(batch_size=16))


def test_recalpaca_batch_is_batch_size_times_accumulation():
    method = METHODS.get("recalpaca")
    cfg = method.with_train(RecAlpacaConfig(), TrainConfig(batch_size=4, grad_accum_steps=2))
    assert (cfg.micro_batch_size, cfg.batch_size) == (4, 8)
    assert method.with_train(RecAlpacaConfig(), TrainConfig(grad_accum_steps=3)).batch_size == 8 * 3
    with pytest.raises(WhyrecError) as info:
        method.with_train(RecAlpacaConfig(batch_size=64), TrainConfig(batch_size=4, grad_accum_steps=2))
    assert str(info.value) == ("--train.batch_size 4 and --train.grad_accum_steps 2 and --recalpaca.batch_size 64 "
                               "disagree; give only one of them")


@pytest.mark.parametrize("name", ["recexplainer", "recalpaca"])
def test_trainer_fsdp_needs_its_settings_file(name):
    method = METHODS.get(name)
    with pytest.raises(WhyrecError) as info:
        method.with_train(method.config_class(), TrainConfig(fsdp=True))
    assert str(info.value) == (f"--method {name} shards through the HF Trainer's FSDP, which needs a settings "
                               f"file: give --{name}.fsdp {FSDP_FILE} (it turns FSDP on)")
    config = dataclasses.replace(method.config_class(), fsdp=FSDP_FILE)
    assert method.with_train(config, TrainConfig(fsdp=True)) is config


def test_train_values_reach_the_hf_trainer_arguments(tmp_path):
    from whyrec.methods.recalpaca.train import _training_args as alpaca_args
    from whyrec.methods.recexplainer.train import _training_args as explainer_args

    train = TrainConfig(lr=3e-4, batch_size=2, grad_accum_steps=3, epochs=2.0, max_steps=7, checkpoint_every=5,
                        seed=9)
    rx = explainer_args(METHODS.get("recexplainer").with_train(RecExplainerConfig(), train), tmp_path)
    ra = alpaca_args(METHODS.get("recalpaca").with_train(RecAlpacaConfig(), train), tmp_path, False)
    for args in (rx, ra):
        assert (args.learning_rate, args.per_device_train_batch_size, args.gradient_accumulation_steps,
                args.num_train_epochs, args.max_steps, args.save_steps, args.seed) == (3e-4, 2, 3, 2.0, 7, 5, 9)


# ---------------------------------------------------------------- through the real training code


@pytest.fixture(scope="module")
def reviews(tmp_path_factory):
    from whyrec.data import schema as S
    from whyrec.data.dataset import RecDataset

    rng = random.Random(0)
    rows = [{S.USER: f"u{u}", S.ITEM: f"i{i}", S.RATING: 4.0, S.EXPLANATION: f"the sound is {rng.choice(['ok', 'fine'])}",
             S.SPLIT: S.VALID if (u + i) % 5 == 0 else S.TRAIN} for u in range(8) for i in rng.sample(range(10), 5)]
    path = tmp_path_factory.mktemp("reviews") / "data"
    RecDataset(pd.DataFrame(rows), None, None, meta={"name": "synthetic"}).save(path)
    return str(path)


def test_pepler_lr_and_batch_size_reach_its_optimizer_and_loader(reviews, tmp_path, monkeypatch):
    import whyrec.methods.pepler.train as T

    seen, run_epoch = [], T.run_epoch

    def spy(module, data, optimizer, batch_size, generator, max_steps=None):
        seen.append((optimizer.param_groups[0]["lr"], batch_size, max_steps))
        return run_epoch(module, data, optimizer, batch_size, generator, max_steps)

    monkeypatch.setattr(T, "run_epoch", spy)
    log = METHODS.get("pepler").train(reviews, str(tmp_path / "run"), model=ModelConfig("tiny-random-llama", device="cpu"),
                                      train=TrainConfig(lr=2e-3, batch_size=5, max_steps=2, seed=3),
                                      config=PEPLERConfig(variant="reg", epochs=1, words=4))
    assert log["complete"] and seen == [(2e-3, 5, 2)]


def test_refused_field_stops_the_cli_before_training(reviews, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "explainer", "--method", "pepler", "--data", reviews, "--out", str(out),
                 "--train.compile", "true"])
    assert code == 2 and not out.exists()
    assert ("--method pepler does not use --train.compile (its own AdamW epoch loop has no such switch; "
            "its options: --pepler.*)") in capsys.readouterr().err


# ---------------------------------------------------------------- given at the default value


DEFAULT_TRAIN = TrainConfig()


def _built(argv):
    """The TrainConfig a `whyrec`-style command line builds (the CLI's parser and instantiators)."""
    from jsonargparse import CLI

    from whyrec.cli_errors import config_instantiators, parser_class

    def run(train: TrainConfig = DEFAULT_TRAIN, n: int = 0):
        return train

    commands = {"run": run}
    return CLI(commands, args=argv, as_positional=False, parser_class=parser_class(),
               instantiators=config_instantiators(argv, commands))


def test_the_cli_marks_what_the_command_line_gives_even_at_the_default(tmp_path):
    assert train_set(_built(["run", "--train.batch_size", "8", "--train.lr=1e-3"])) == ["lr", "batch_size"]
    assert train_set(_built(["run", "--n", "3"])) == []  # nothing given
    assert train_set(_built(["run", "--train", "{batch_size: 8, epochs: 1.0}"])) == ["batch_size", "epochs"]
    config = tmp_path / "c.yaml"
    config.write_text("run:\n  train:\n    seed: 0\n")
    assert train_set(_built(["--config", str(config), "run"])) == ["seed"]
    # a config rebuilt in code (replace) carries no mark: only fields away from the defaults count
    assert train_set(dataclasses.replace(_built(["run", "--train.batch_size", "8"]))) == []


def test_a_field_given_at_its_default_is_honoured_or_refused():
    given = TrainConfig()
    mark_given(given, {"batch_size", "epochs"})
    with pytest.raises(WhyrecError, match=r"^--method pepler does not use --train.epochs "):
        check_train(METHODS.get("pepler"), given)  # PEPLER runs its own epochs: never silently
    mark_given(given, {"batch_size"})
    assert METHODS.get("pepler").with_train(PEPLERConfig(), given).batch_size == 8  # not its own 128
    own = PEPLERConfig()
    mark_given(own, {"batch_size"})  # --pepler.batch_size 128, its default, beside --train.batch_size 8
    with pytest.raises(WhyrecError, match="--train.batch_size 8 and --pepler.batch_size 128 disagree"):
        METHODS.get("pepler").with_train(own, given)


def test_benchmark_asks_what_was_given_not_its_budget():
    from whyrec.benchmark import BUDGET
    from whyrec.methods.base import train_asked

    cli = TrainConfig(max_minutes=None)
    mark_given(cli, {"max_minutes", "batch_size"})
    assert train_set(train_asked(cli, BUDGET)) == ["batch_size", "max_minutes"]
    assert train_set(train_asked(TrainConfig(max_minutes=10), BUDGET)) == []


def test_train_epochs_at_its_default_stops_the_cli_before_pepler_trains(reviews, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "explainer", "--method", "pepler", "--data", reviews, "--out", str(out),
                 "--train.epochs", "1"])
    assert code == 2 and not out.exists()
    assert "--method pepler does not use --train.epochs (use --pepler.epochs" in capsys.readouterr().err


def test_train_batch_size_at_its_default_reaches_pepler_from_the_cli(reviews, tmp_path, monkeypatch):
    import whyrec.methods.pepler.train as T

    seen, run_epoch = [], T.run_epoch

    def spy(module, data, optimizer, batch_size, generator, max_steps=None):
        seen.append(batch_size)
        return run_epoch(module, data, optimizer, batch_size, generator, max_steps)

    monkeypatch.setattr(T, "run_epoch", spy)
    assert main(["train", "explainer", "--method", "pepler", "--data", reviews, "--out", str(tmp_path / "run"),
                 "--model.name_or_path", "tiny-random-llama", "--model.device", "cpu", "--pepler.variant", "reg",
                 "--pepler.epochs", "1", "--pepler.words", "4", "--train.batch_size", "8",
                 "--train.max_steps", "1"]) == 0
    assert seen == [8]  # TrainConfig's default, given: not PEPLER's own 128


def test_a_given_default_enters_the_benchmark_cache_key_only_where_it_changes_training():
    from whyrec.methods.base import given_train_key

    pepler, given = METHODS.get("pepler"), TrainConfig(max_minutes=None)
    mark_given(given, {"max_minutes"})  # PEPLER honours it from the TrainConfig itself: no change
    assert given_train_key(pepler, PEPLERConfig(), given) == {}
    mark_given(given, {"max_minutes", "batch_size"})  # batch 8 instead of its own 128: another training
    assert given_train_key(pepler, PEPLERConfig(), given) == {"train_given": ["batch_size", "max_minutes"]}
    assert given_train_key(pepler, PEPLERConfig(batch_size=8), given) == {}  # --pepler.batch_size 8 said so already
    assert given_train_key(METHODS.get("xrec"), None, given) == {}  # no own defaults: the TrainConfig is its key
