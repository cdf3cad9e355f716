"""CLI surface: help text, registry listing, shipped configs and argv normalisation."""

from pathlib import Path

import pytest
import yaml

from whyrec import cli
from whyrec.registry import ALL, Registry

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "configs").rglob("*.yaml"))
JSONS = sorted((ROOT / "configs").rglob("*.json"))


def test_import_is_cheap():
    import subprocess
    import sys

    code = "import sys, whyrec, whyrec.cli, whyrec.registry; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_shipped_config_parses(path, capsys):
    command = ["train", "encoder", "--data", "d", "--out", "o"] if "lightgcn" in path.name else \
        ["train", "explainer", "--data", "d", "--encoder", "e", "--out", "o"]
    assert cli.main(command + ["--config", str(path), "--print_config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    shipped = yaml.safe_load(path.read_text())
    for section, values in shipped.items():
        if isinstance(values, dict):
            for key, value in values.items():
                if not isinstance(value, dict):
                    assert printed[section][key] == value, (section, key)


@pytest.mark.parametrize("path", JSONS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_shipped_json_config_is_valid(path):
    """DeepSpeed ZeRO JSONs leave batch/precision to the Trainer ("auto"); FSDP settings build
    TrainingArguments; both go through the switch the Trainer-based methods use."""
    import json

    from transformers import TrainingArguments

    from whyrec.distributed import trainer_parallel_args

    cfg = json.loads(path.read_text())
    if path.name.startswith("ds_"):
        assert cfg["zero_optimization"]["stage"] == int(path.stem[-1])
        for key in ("train_batch_size", "train_micro_batch_size_per_gpu", "gradient_accumulation_steps"):
            assert cfg[key] == "auto", key  # so they always agree with the whyrec config
        assert trainer_parallel_args(str(path), None, False, False)["deepspeed"] == str(path)
    else:
        kw = trainer_parallel_args(None, str(path), False, True)
        assert kw["fsdp"] is True and kw["activation_checkpointing"] is True
        args = TrainingArguments(output_dir="/tmp/whyrec-fsdp-check", use_cpu=True, report_to="none",
                                 fsdp=kw["fsdp"], fsdp_config=kw["fsdp_config"])
        assert args.fsdp_config["transformer_layer_cls_to_wrap"] == cfg["transformer_layer_cls_to_wrap"]


def test_distributed_yamls_point_at_shipped_files():
    for path in sorted((ROOT / "configs" / "distributed").glob("*.yaml")):
        shipped = yaml.safe_load(path.read_text())
        for section in shipped.values():
            for key in ("deepspeed", "fsdp"):
                if isinstance(section, dict) and section.get(key):
                    assert (ROOT / section[key]).is_file(), (path.name, section[key])


def test_paper_gavamoe_uses_the_papers_optimisation():
    train = yaml.safe_load((ROOT / "configs/paper/gavamoe.yaml").read_text())["train"]
    assert (train["grad_accum_steps"], train["max_grad_norm"], train["gradient_checkpointing"]) == (16, 0.3, True)
    assert (train["lr_schedule"], train.get("warmup_steps", 0)) == ("linear", 0)  # HF Trainer defaults
    for name in ("gavamoe_llama31_8b_1gpu", "gavamoe_llama31_8b_8gpu"):
        shipped = yaml.safe_load((ROOT / f"configs/distributed/{name}.yaml").read_text())["train"]
        assert shipped["lr_schedule"] == "linear", name


def test_list_prints_kind_name(capsys):
    assert cli.main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [f"{kind} {name}" for kind, reg in ALL.items() for name in reg.names()]
    assert {"method xrec", "encoder lightgcn", "model smollm2-135m-instruct", "dataset ml-1m"} <= set(lines)


def test_every_registered_entry_resolves():
    for reg in ALL.values():
        for name in reg.names():
            obj = reg.get(name)  # a method is an object with the interface (test_method_interface.py)
            assert callable(obj.train if reg is ALL["method"] else obj), name


def test_registry_rejects_bad_names():
    reg = Registry("thing")
    reg.register("ok", "os:getcwd")
    with pytest.raises(ValueError, match="lowercase"):
        reg.register("Bad", "os:getcwd")
    with pytest.raises(ValueError, match="already"):
        reg.register("ok", "os:getcwd")
    with pytest.raises(KeyError, match="choose one of: ok"):
        reg.get("nope")


def test_help_lists_options(capsys):
    assert cli.main(["recommend", "--help"]) == 0
    out = capsys.readouterr().out
    for opt in ("--run", "--user", "--k", "--explain", "--generation.max_new_tokens"):
        assert opt in out


def test_help_shows_each_config_fields_docstring(capsys):
    assert cli.main(["train", "explainer", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps the lines
    assert "Adam learning rate (XRec: 1e-4)" in out and "shard each frozen decoder layer's weights" in out


def test_argument_errors_exit_2(capsys):
    assert cli.main(["recommend", "--user", "1"]) == 2  # --run missing
    assert "run" in capsys.readouterr().err


def test_normalise_argv():
    assert cli.normalise_argv(["recommend", "-k", "3", "--explain"]) == ["recommend", "--k", "3", "--explain=true"]
    assert cli.normalise_argv(["data", "prepare", "--user-col", "u"]) == ["data", "prepare", "--user_col", "u"]
    assert cli.normalise_argv(["recommend", "--explain", "false"]) == ["recommend", "--explain", "false"]
    assert cli.normalise_argv(["evaluate", "--max_pairs", "None"]) == ["evaluate", "--max_pairs", "null"]
    # negative values argparse would read as options: joined to their option
    assert cli.normalise_argv(["evaluate", "--generation.eos_bias", "-inf", "--x", "-1e3", "--y", "-2"]) == \
        ["evaluate", "--generation.eos_bias=-inf", "--x=-1e3", "--y=-2"]
    assert cli.normalise_argv(["evaluate", "--explain", "-inf"]) == ["evaluate", "--explain=true", "-inf"]
