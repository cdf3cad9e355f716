"""Two torchrun processes (gloo) vs one for the training commands the other files leave out:
GaVaMoE stage 2 (whyrec's own loop) and RecAlpaca (the HF Trainer's DDP, no DeepSpeed).
"""

import json

import pytest
import torch
from dist_helpers import tiny_data, whyrec  # noqa: F401 (fixture)
from safetensors.torch import load_file
from test_ddp_encoders import VAE
from test_trainer_engines import CANDIDATES

from whyrec.cli import main

pytestmark = pytest.mark.distributed


def _json(path):
    return json.loads(path.read_text())


def _same_tensors(a_file, b_file, atol: float, rtol: float) -> dict:
    a, b = load_file(str(a_file)), load_file(str(b_file))
    assert a and a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(b[key], a[key], atol=atol, rtol=rtol, msg=key)
    return a


@pytest.mark.parametrize("fsdp", [False, True])
def test_gavamoe_stage2_two_ranks_match_one(tiny_data, tmp_path, fsdp):  # noqa: F811 (fixture imported above)
    """Cluster-gated MoE on the tiny Llama: global batch 4 over 2 ranks, 2 accumulated batches, clipped;
    with fsdp the frozen layer weights are sharded while the experts inside those layers stay whole."""
    vae = tmp_path / "vae"
    assert main(["cluster", "--data", str(tiny_data), "--out", str(vae), *VAE]) == 0
    args = ["train", "explainer", "--method", "gavamoe", "--data", str(tiny_data), "--encoder", str(vae),
            "--model.name_or_path", "tiny-random-llama", "--model.device", "cpu", "--model.dtype", "float32", "--gavamoe.n_experts", "2",
            "--gavamoe.top_k", "1", "--gavamoe.upcycle", "false", "--gavamoe.lora.dropout", "0.0", "--train.max_steps", "4",
            "--train.batch_size", "4", "--train.grad_accum_steps", "2", "--train.max_grad_norm", "0.5",
            "--train.lr", "0.01", "--train.max_target_tokens", "32"]
    assert main([*args, "--out", str(tmp_path / "one")]) == 0
    whyrec([*args, "--out", str(tmp_path / "two"), "--train.fsdp", str(fsdp).lower()], nproc=2)
    la, lb = _json(tmp_path / "one" / "training_log.json"), _json(tmp_path / "two" / "training_log.json")
    assert la["steps"] == lb["steps"] == 4 and (la["world_size"], lb["world_size"]) == (1, 2)
    assert lb["fsdp_sharded_layers"] == (2 if fsdp else 0)
    assert lb["losses"] == pytest.approx(la["losses"], rel=1e-4)
    weights = sorted(p.name for p in (tmp_path / "one").glob("*.safetensors"))
    assert weights == sorted(p.name for p in (tmp_path / "two").glob("*.safetensors"))
    trained = {}
    for name in weights:
        trained |= _same_tensors(tmp_path / "one" / name, tmp_path / "two" / name, atol=2e-5, rtol=1e-4)
    assert any("router" in k or "gate" in k for k in trained), sorted(trained)[:10]


def _recalpaca(data, out, micro: int) -> list[str]:
    # global batch 4: one process accumulates 2 micro-batches of 2; two ranks take one of 2 each
    return ["train", "explainer", "--method", "recalpaca", "--data", str(data), "--out", str(out),
            "--model.name_or_path", "tiny-random-llama", "--model.device", "cpu",
            "--recalpaca.max_steps", "4", "--recalpaca.batch_size", "4", "--recalpaca.micro_batch_size", str(micro),
            "--recalpaca.lr", "0.01", "--recalpaca.warmup_steps", "0", "--recalpaca.logging_steps", "1",
            "--recalpaca.save_steps", "2", "--recalpaca.lora.dropout", "0.0"]


def test_recalpaca_trainer_ddp_two_ranks_match_one(tmp_path):
    """Plain torchrun, no DeepSpeed: the Trainer's DDP gives the one-process LoRA, losses and checkpoints."""
    records = [{"instruction": "Recommend one movie.", "input": f"Liked: film {i}",
                "output": f"1. {CANDIDATES[i % 4]} - a dark comedy."} for i in range(8)]
    (tmp_path / "train.json").write_text(json.dumps(records))
    one, two = tmp_path / "one", tmp_path / "two"
    assert main(_recalpaca(tmp_path / "train.json", one, micro=2)) == 0
    whyrec(_recalpaca(tmp_path / "train.json", two, micro=2), nproc=2)
    la, lb = _json(one / "train_log.json"), _json(two / "train_log.json")
    losses = [v for _, v in la["losses"]]
    assert la["steps"] == lb["steps"] == 4 and losses[-1] < losses[0]
    assert [v for _, v in lb["losses"]] == pytest.approx(losses, rel=1e-5)
    lora = _same_tensors(one / "adapter_model.safetensors", two / "adapter_model.safetensors", 1e-5, 1e-4)
    assert any("lora_B" in k for k in lora) and all(float(v.abs().sum()) > 0 for k, v in lora.items() if "lora_B" in k)
    ckpts = sorted(p.name for p in (one / "checkpoints").iterdir())
    assert ckpts and ckpts == sorted(p.name for p in (two / "checkpoints").iterdir())
