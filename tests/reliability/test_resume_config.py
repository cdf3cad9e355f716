"""A run is resumed only with the config it started with: a changed setting is refused, naming it.

The issue's case end to end through the CLI (XRec killed after its checkpoints, rerun with
`--train.lr 0.5`), LightGCN likewise, and every method's training entry point wired to the
same guard (a checkpointed, interrupted folder refuses another learning rate and resumes with
the same settings; device, time limits and a larger step/epoch budget are not differences).
"""

import json
from pathlib import Path

import pytest
from cli_contract import REPO, snapshot, whyrec_inprocess

from whyrec.outputs import MARKER, OutputConflict, read_marker

TINY_XREC = ["--config", str(REPO / "configs/tiny/xrec.yaml")]
TINY_LIGHTGCN = ["--config", str(REPO / "configs/tiny/lightgcn.yaml")]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    from importlib.metadata import PackageNotFoundError, distribution

    from whyrec.cli import main

    try:
        ml = Path(distribution("recbole").locate_file("recbole/dataset_example/ml-100k/ml-100k.inter"))
    except PackageNotFoundError:
        pytest.skip("recbole not installed (pip install --no-deps recbole): it ships MovieLens-100K")
    if not ml.exists():
        pytest.skip(f"{ml} missing from the installed recbole")
    out = tmp_path_factory.mktemp("resume") / "data"
    assert main(["data", "prepare", "--source", "ml-100k", "--out", str(out), "--max_users", "60", "--seed", "1"]) == 0
    return out


@pytest.fixture(scope="module")
def encoder(data) -> Path:
    from whyrec.cli import main

    out = data.parent / "encoder"
    assert main(["train", "encoder", "--data", str(data), "--out", str(out), *TINY_LIGHTGCN]) == 0
    return out


def test_xrec_resumed_with_another_lr_is_refused_and_resumes_with_the_same(data, encoder, tmp_path, capsys,
                                                                          monkeypatch, unchanged):
    import whyrec.methods.xrec.train as E

    out = tmp_path / "explainer"
    train = ["train", "explainer", "--method", "xrec", "--data", data, "--encoder", encoder, "--out", out, *TINY_XREC]

    def killed(*args, **kwargs):  # every step trained and checkpointed, then the process dies
        raise KeyboardInterrupt

    monkeypatch.setattr(E, "save_explainer", killed)
    assert whyrec_inprocess(train, capsys).rc == 130
    state = json.loads((out / "checkpoint" / "trainer_state.json").read_text())
    assert state["step"] == 6 and read_marker(out)["state"] == "in-progress"
    monkeypatch.undo()

    with unchanged(out):  # the issue: it continued with lr 0.01 while config.json said 0.5
        whyrec_inprocess([*train, "--train.lr", "0.5"], capsys).assert_one_line_error(
            "train.lr (0.01 -> 0.5)", "--overwrite")
    resumed = whyrec_inprocess(train, capsys)
    assert resumed.rc == 0, resumed.err
    log = json.loads((out / "training_log.json").read_text())
    assert log["steps"] == 6 and log["losses"] == state["losses"]  # continued from the checkpoint, no step redone
    assert read_marker(out)["state"] == "complete" and not (out / "checkpoint").exists()

    # Harmless settings are no difference; a finished run cannot be extended (its checkpoint is gone).
    assert whyrec_inprocess([*train, "--train.max_minutes", "5", "--model.device", "cpu"], capsys).rc == 0
    with unchanged(out):
        whyrec_inprocess([*train, "--train.max_steps", "8"], capsys).assert_one_line_error(
            "finished", "train.max_steps (6 -> 8)", "--overwrite")
    assert whyrec_inprocess([*train, "--train.lr", "0.5", "--overwrite"], capsys).rc == 0
    assert json.loads((out / "config.json").read_text())["train"]["lr"] == 0.5
    assert read_marker(out)["fingerprint"]["train"]["lr"] == 0.5


def test_lightgcn_resumed_with_another_lr_is_refused_and_a_longer_budget_continues(data, tmp_path, capsys,
                                                                                  monkeypatch, unchanged):
    import whyrec.encoders.train as T

    out = tmp_path / "encoder"
    train = ["train", "encoder", "--data", data, "--out", out, *TINY_LIGHTGCN]

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(T, "_finish", killed)
    assert whyrec_inprocess(train, capsys).rc == 130
    assert (out / "checkpoint" / "checkpoint.safetensors").is_file()
    monkeypatch.undo()
    with unchanged(out):
        whyrec_inprocess([*train, "--lightgcn.lr", "0.5"], capsys).assert_one_line_error(
            "lightgcn.lr (0.001 -> 0.5)", "--overwrite")
        whyrec_inprocess([*train, "--lightgcn.dim", "8"], capsys).assert_one_line_error("lightgcn.dim (16 -> 8)")
    extended = whyrec_inprocess([*train, "--lightgcn.epochs", "8"], capsys)
    assert extended.rc == 0, extended.err
    assert json.loads((out / "metrics.json").read_text())["fingerprint"]["config"]["epochs"] == 8


# ---------------------------------------------------------------- every method's entry point
def _methods(data: Path, other: Path, instructions: Path) -> dict:
    """name -> (train(out, **setting) calling the real entry point, module and inner function the
    entry point runs inside its guard, field named on a learning-rate change, budget change)."""
    from whyrec.config import LightGCNConfig as LightGCN
    from whyrec.config import (
        MFConfig,
        PEPLERConfig,
        RecExplainerConfig,
        SASRecConfig,
        TrainConfig,
        VaeGmmConfig,
    )
    from whyrec.encoders.target_train import train_target
    from whyrec.encoders.train import train_encoder
    from whyrec.encoders.vae_train import train_vae_gmm
    from whyrec.methods.gavamoe.train import train_gavamoe
    from whyrec.methods.pepler.train import train_pepler
    from whyrec.methods.recalpaca.config import RecAlpacaConfig
    from whyrec.methods.recalpaca.train import train_recalpaca
    from whyrec.methods.recexplainer.train import train_recexplainer
    from whyrec.methods.xrec.train import train_explainer

    examples = [{"task": "iid2title", "mode": "hybrid", "messages": []}]
    return {
        "lightgcn": (lambda out, lr=0.01, **b: train_encoder(str(data), out, config=LightGCN(lr=lr, **b)),
                     "whyrec.encoders.train", "_train", "lightgcn.lr", {"epochs": 999}),
        "sasrec": (lambda out, lr=0.01, **b: train_target(str(data), out, "sasrec", SASRecConfig(lr=lr, **b)),
                   "whyrec.encoders.target_train", "_train", "sasrec.lr", {"epochs": 999, "patience": 99}),
        "mf": (lambda out, lr=0.01, **b: train_target(str(data), out, "mf", MFConfig(lr=lr, **b)),
               "whyrec.encoders.target_train", "_train", "mf.lr", {"epochs": 999}),
        "vae-gmm": (lambda out, lr=0.01, **b: train_vae_gmm(str(data), out, VaeGmmConfig(lr=lr, **b)),
                    "whyrec.encoders.vae_train", "_train", "vae.lr", {"elbo_epochs": 99}),
        "xrec": (lambda out, lr=0.01, **b: train_explainer(str(data), str(other), out, train=TrainConfig(lr=lr, **b)),
                 "whyrec.methods.xrec.train", "_train_explainer", "train.lr", {"max_steps": 99, "max_minutes": 3}),
        "gavamoe": (lambda out, lr=0.01, **b: train_gavamoe(str(data), str(other), out, train=TrainConfig(lr=lr, **b)),
                    "whyrec.methods.gavamoe.train", "_train_gavamoe", "train.lr", {"epochs": 3.0}),
        "pepler": (lambda out, lr=0.01, **b: train_pepler(str(data), out, pepler=PEPLERConfig(lr=lr, **b)),
                   "whyrec.methods.pepler.train", "_train_pepler", "pepler.lr", {"epochs": 7}),
        "recexplainer": (lambda out, lr=0.01, **b: train_recexplainer(str(other), out, cfg=RecExplainerConfig(
            lr=lr, **b), examples=examples), "whyrec.methods.recexplainer.train", "_train", "recexplainer.lr",
                         {"max_steps": 99, "save_steps": 5}),
        "recalpaca": (lambda out, lr=0.01, **b: train_recalpaca(str(instructions), out, cfg=RecAlpacaConfig(lr=lr, **b)),
                      "whyrec.methods.recalpaca.train", "_train", "recalpaca.lr", {"max_steps": 99, "logging_steps": 3}),
    }


METHODS = ("lightgcn", "sasrec", "mf", "vae-gmm", "xrec", "gavamoe", "pepler", "recexplainer", "recalpaca")


@pytest.mark.parametrize("method", METHODS)
def test_every_method_refuses_to_resume_with_another_config(method, data, tmp_path, monkeypatch):
    import importlib

    other = tmp_path / "other"  # encoder / VAE / target: only its content digest is read here
    other.mkdir()
    (other / "config.json").write_text("{}")
    instructions = tmp_path / "instructions.json"
    instructions.write_text(json.dumps([{"instruction": "Recommend.", "input": "", "output": "Fargo"}]))
    train, module, inner, field, budget = _methods(data, other, instructions)[method]
    out = tmp_path / "run"
    calls = []

    def interrupted(*args, **kwargs):  # the run wrote a checkpoint, then was killed
        (out / "checkpoint").mkdir()
        (out / "checkpoint" / "state.json").write_text("{}")
        raise KeyboardInterrupt

    def resumed(*args, **kwargs):
        calls.append(args)
        return {"resumed": True}

    monkeypatch.setattr(importlib.import_module(module), inner, interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(str(out))
    assert (out / MARKER).is_file()
    before = snapshot(out)
    monkeypatch.setattr(importlib.import_module(module), inner, resumed)
    with pytest.raises(OutputConflict) as refused:
        train(str(out), lr=0.5)
    assert f"{field} (0.01 -> 0.5)" in str(refused.value) and refused.value.differences == [f"{field} (0.01 -> 0.5)"]
    assert snapshot(out) == before and calls == []
    assert train(str(out), **budget) == {"resumed": True}  # harmless fields and a new budget: resumed
    assert len(calls) == 1
