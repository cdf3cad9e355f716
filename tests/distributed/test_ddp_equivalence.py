"""Two CPU processes under torchrun (gloo) reproduce the single-process run on the same global batch."""

import json

import pytest
import torch
from dist_helpers import REPO, tiny_data, tiny_encoder, whyrec, xrec_args  # noqa: F401 (fixtures)
from safetensors.torch import load_file

from whyrec.cli import main

pytestmark = pytest.mark.distributed


def _weights(folder, name):
    return load_file(str(folder / name))


def test_lightgcn_two_ranks_match_one(tiny_data, tmp_path):  # noqa: F811 (fixtures imported above)
    args = ["train", "encoder", "--data", str(tiny_data), "--config", str(REPO / "configs/tiny/lightgcn.yaml"),
            "--lightgcn.batch_size", "64", "--lightgcn.epochs", "3", "--lightgcn.patience", "10"]
    assert main([*args, "--out", str(tmp_path / "one")]) == 0
    two = whyrec([*args, "--out", str(tmp_path / "two")], nproc=2)
    a, b = _weights(tmp_path / "one", "model.safetensors"), _weights(tmp_path / "two", "model.safetensors")
    for key in ("user_ego", "item_ego", "user_emb", "item_emb"):
        torch.testing.assert_close(b[key], a[key], atol=1e-5, rtol=1e-4, msg=key)
    ma, mb = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("one", "two"))
    losses = [h["loss"] for h in ma["history"]]
    assert len(losses) == 3 and losses[-1] < losses[0]  # it trained
    assert [h["loss"] for h in mb["history"]] == pytest.approx(losses, rel=1e-5)
    assert mb["valid"] == pytest.approx(ma["valid"], abs=1e-6)
    assert _world(tmp_path / "one") == 1 and _world(tmp_path / "two") == 2
    assert two.returncode == 0


def _world(folder) -> int:
    return json.loads((folder / "run_config.json").read_text())["config"]["world_size"]


# fsdp: the frozen decoder layers sharded over the 2 ranks; 7 examples in batches of 3 give a batch
# of 1, where rank 1 has nothing and must still run (a zero-weight pass) for the layers' all-gathers.
SHARDING = {"ddp": (), "fsdp": ("--train.fsdp", "true"),
            "fsdp+checkpointing": ("--train.fsdp", "true", "--train.gradient_checkpointing", "true")}


@pytest.mark.parametrize("sharding", list(SHARDING))
def test_xrec_two_ranks_match_one(tiny_data, tiny_encoder, tmp_path, sharding):  # noqa: F811 (fixtures imported above)
    """Global batch over 2 ranks, 2 accumulated batches per step, clipped: the single-process result."""
    extra = ("--train.max_steps", "4", "--train.grad_accum_steps", "2", "--train.max_grad_norm", "0.5")
    if sharding != "ddp":
        extra += ("--train.max_train_examples", "7", "--train.batch_size", "3")
    assert main(xrec_args(tiny_data, tiny_encoder, tmp_path / "one", *extra)) == 0
    whyrec(xrec_args(tiny_data, tiny_encoder, tmp_path / "two", *extra, *SHARDING[sharding]), nproc=2)
    a = _weights(tmp_path / "one", "adapter_model.safetensors")
    b = _weights(tmp_path / "two", "adapter_model.safetensors")
    assert a.keys() == b.keys() and any(k.startswith("user_adapter.") for k in a)
    for key in a:
        torch.testing.assert_close(b[key], a[key], atol=2e-5, rtol=1e-4, msg=key)
    la, lb = (json.loads((tmp_path / d / "training_log.json").read_text()) for d in ("one", "two"))
    assert la["steps"] == lb["steps"] == 4
    assert lb["losses"] == pytest.approx(la["losses"], rel=1e-4)
    assert (la["world_size"], lb["world_size"]) == (1, 2)
    assert (la["fsdp_sharded_layers"], lb["fsdp_sharded_layers"]) == (0, 0 if sharding == "ddp" else 2)
    assert not (tmp_path / "two" / "checkpoint").exists()


@pytest.mark.parametrize("variant", ["continuous", "reg"])
def test_pepler_two_ranks_match_one(tiny_data, tmp_path, variant):  # noqa: F811 (fixtures imported above)
    """PEPLER's own loop on 2 ranks (global batch 16, uneven last batch) equals 1 process: both phases of
    `continuous`, and `reg`'s rescaled rating MSE."""
    args = ["train", "explainer", "--method", "pepler", "--data", str(tiny_data), "--model.name_or_path",
            "tiny-random-llama", "--model.device", "cpu", "--pepler.variant", variant, "--pepler.epochs", "2",
            "--pepler.epochs_phase2", "1", "--pepler.batch_size", "16", "--pepler.words", "8"]
    assert main([*args, "--out", str(tmp_path / "one")]) == 0
    whyrec([*args, "--out", str(tmp_path / "two")], nproc=2)
    files = sorted(p.name for p in (tmp_path / "one").glob("*.safetensors"))
    assert files and files == sorted(p.name for p in (tmp_path / "two").glob("*.safetensors"))
    for name in files:
        a, b = _weights(tmp_path / "one", name), _weights(tmp_path / "two", name)
        assert a.keys() == b.keys()
        for key in a:
            torch.testing.assert_close(b[key], a[key], atol=2e-5, rtol=1e-4, msg=f"{name}:{key}")
    la, lb = (json.loads((tmp_path / d / "training_log.json").read_text()) for d in ("one", "two"))
    assert la["history"] and [h["train_loss"] for h in lb["history"]] == pytest.approx(
        [h["train_loss"] for h in la["history"]], rel=1e-4)
    assert _world(tmp_path / "one") == 1 and _world(tmp_path / "two") == 2
