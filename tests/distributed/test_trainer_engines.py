"""DeepSpeed ZeRO-2 / ZeRO-3 through the HF Trainer on CPU: 2 torchrun processes (gloo) vs 1 process.

RecAlpaca on the tiny random Llama (LoRA dropout 0), global batch 4: one process accumulates 2
micro-batches of 2, two ZeRO ranks take one each with the shipped ZeRO JSON. Same losses and LoRA
weights (ZeRO-3 gathers its partitioned weights for the save), and the saved adapter reloads.
RecExplainer (hybrid: connectors) under ZeRO-2 vs one process. FSDP is not run: accelerate turns
it on only for GPU devices, so on CPU the Trainer would silently train with DDP (it warns).
"""

import importlib.util
import json
import logging

import pytest
import torch
from dist_helpers import REPO, kill_when, tiny_data, whyrec  # noqa: F401 (fixture)
from safetensors.torch import load_file
from test_ddp_encoders import _recexplainer, sasrec_one  # noqa: F401 (fixture)

from whyrec.cli import main
from whyrec.llm.hf_resume import last_complete_checkpoint

pytestmark = pytest.mark.distributed

needs_deepspeed = pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None,
                                     reason="deepspeed is not installed (pip install -e '.[deepspeed]')")
CANDIDATES = ["Fargo", "Brazil", "Star Wars", "Scream"]


@pytest.fixture(scope="module")
def engine_runs(tmp_path_factory):
    """Runs by engine (None: one process, no engine), each made once, on first use."""
    root = tmp_path_factory.mktemp("engines")
    records = [{"instruction": "Recommend one movie.", "input": f"Liked: film {i}",
                "output": f"1. {CANDIDATES[i % 4]} - a dark comedy."} for i in range(8)]
    (root / "train.json").write_text(json.dumps(records))
    done = {}

    def run(engine: str | None):
        if engine not in done:
            out = root / (engine or "one")
            extra = ["--recalpaca.deepspeed", str(REPO / f"configs/distributed/ds_{engine}.json")] if engine else []
            args = ["train", "explainer", "--method", "recalpaca", "--data", str(root / "train.json"), "--out", str(out),
                    "--model.name_or_path", "tiny-random-llama", "--model.device", "cpu",
                    "--recalpaca.max_steps", "4", "--recalpaca.batch_size", "4", "--recalpaca.micro_batch_size", "2",
                    "--recalpaca.lr", "0.01", "--recalpaca.warmup_steps", "0", "--recalpaca.logging_steps", "1",
                    "--recalpaca.save_steps", "100", "--recalpaca.lora.dropout", "0.0", *extra]
            if engine:
                whyrec(args, nproc=2)
            else:
                assert main(args) == 0
            done[engine] = out
        return done[engine]

    return run


@needs_deepspeed
@pytest.mark.parametrize("engine", ["zero2", "zero3"])
def test_deepspeed_zero_two_ranks_match_one(engine_runs, engine):
    from whyrec.methods.recalpaca.model import load_recalpaca

    ref, run = engine_runs(None), engine_runs(engine)
    la, lb = (json.loads((d / "train_log.json").read_text()) for d in (ref, run))
    losses = [v for _, v in la["losses"]]
    assert lb["steps"] == la["steps"] == 4 and losses[-1] < losses[0]  # it trained
    assert [v for _, v in lb["losses"]] == pytest.approx(losses, rel=1e-5)
    a, b = (load_file(str(d / "adapter_model.safetensors")) for d in (ref, run))
    assert a.keys() == b.keys() and any("lora_B" in k for k in a)
    assert all(float(v.abs().sum()) > 0 for k, v in b.items() if "lora_B" in k)  # not empty ZeRO-3 shards
    for key in a:
        torch.testing.assert_close(b[key], a[key], atol=1e-5, rtol=1e-4, msg=key)
    model = load_recalpaca(run, device="cpu").model
    loaded = {k: v for k, v in model.state_dict().items() if "lora_B" in k}
    assert loaded and all(float(v.abs().sum()) > 0 for v in loaded.values())


@needs_deepspeed
@pytest.mark.parametrize("engine", ["zero2", "zero3"])
def test_recexplainer_zero_two_ranks_match_one(sasrec_one, tmp_path, engine):  # noqa: F811 (fixture imported above)
    """Micro-batch 1 per rank: a rank whose example has no <item> still reduces the item connector
    (before, gloo failed with "Received data size doesn't match expected size")."""
    one, two = tmp_path / "one", tmp_path / "two"
    assert main(_recexplainer(sasrec_one, one, accum=2)) == 0
    whyrec([*_recexplainer(sasrec_one, two, accum=1),
            "--recexplainer.deepspeed", str(REPO / f"configs/distributed/ds_{engine}.json")], nproc=2)
    la, lb = (json.loads((d / "train_log.json").read_text()) for d in (one, two))
    assert la["steps"] == lb["steps"] == 3
    assert [v for _, v in lb["losses"]] == pytest.approx([v for _, v in la["losses"]], rel=1e-4)
    a, b = (load_file(str(d / "adapter_model.safetensors")) for d in (one, two))
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(b[key], a[key], atol=2e-5, rtol=1e-4, msg=key)
    # A connector no rank used in a step has no gradient in one process (AdamW skips it) but a zero
    # one in DeepSpeed's flat buffers (Adam still moves it by its momentum): close, not equal.
    a, b = (load_file(str(d / "connectors.safetensors")) for d in (one, two))
    assert a.keys() == b.keys() and all(torch.isfinite(v).all() for v in b.values())
    for key in a:
        torch.testing.assert_close(b[key], a[key], atol=5e-3, rtol=0, msg=key)
    # the step-3 checkpoint holds real weights, not rank 0's ZeRO-3 shards (the Trainer's gathered state dict)
    a, b = (load_file(str(d / "checkpoints" / "checkpoint-3" / "trainable.safetensors")) for d in (one, two))
    assert a.keys() == b.keys() and all(b[k].shape == a[k].shape for k in a)
    for key in a:
        torch.testing.assert_close(b[key], a[key], atol=5e-3, rtol=0, msg=key)


@needs_deepspeed
def test_recexplainer_zero3_sigkill_then_rerun_matches_uninterrupted(sasrec_one, tmp_path):  # noqa: F811
    """ZeRO-3 on 2 ranks, the whole torchrun group killed after a mid-run checkpoint: the same command
    resumes from DeepSpeed's partitioned optimizer state and ends with the uninterrupted run's weights."""
    steps = 10  # 4 steps per epoch: the plan ends mid-epoch, where the Trainer alone overshoots on resume
    extra = ["--recexplainer.deepspeed", str(REPO / "configs/distributed/ds_zero3.json"), "--recexplainer.max_steps",
             str(steps), "--recexplainer.save_steps", "2", "--recexplainer.save_total_limit", "3"]
    ref, killed = tmp_path / "ref", tmp_path / "killed"
    whyrec([*_recexplainer(sasrec_one, ref, accum=1), *extra], nproc=2)
    kill_when(killed / "checkpoints" / "checkpoint-2" / "trainer_state.json",
              [*_recexplainer(sasrec_one, killed, accum=1), *extra], nproc=2)  # agent and both workers
    newest = last_complete_checkpoint(killed / "checkpoints")
    assert newest is not None and int(newest.name.split("-")[1]) < steps  # killed mid-run
    assert not (killed / "adapter_model.safetensors").exists()
    assert list(newest.glob("global_step*"))  # DeepSpeed's own partitioned shards

    whyrec([*_recexplainer(sasrec_one, killed, accum=1), *extra], nproc=2)
    la, lb = (json.loads((d / "train_log.json").read_text()) for d in (ref, killed))
    assert la["steps"] == lb["steps"] == steps and la["resumed_from"] is None and lb["resumed_from"] == newest.name
    assert lb["train_loss"] == pytest.approx(la["train_loss"], abs=1e-5)  # the whole run's, resumed or not
    for name in ("adapter_model.safetensors", "connectors.safetensors"):
        a, b = (load_file(str(d / name)) for d in (ref, killed))
        assert a.keys() == b.keys()
        for key in a:
            torch.testing.assert_close(b[key], a[key], atol=1e-6, rtol=1e-5, msg=f"{name}:{key}")
    lora_b = [v for k, v in load_file(str(killed / "adapter_model.safetensors")).items() if "lora_B" in k]
    assert lora_b and all(float(v.abs().sum()) > 0 for v in lora_b)  # gathered weights, not empty shards


def test_fsdp_on_cpu_warns_that_it_runs_ddp(caplog, monkeypatch):
    from whyrec.distributed import trainer_parallel_args

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with caplog.at_level(logging.WARNING, logger="whyrec.distributed"):
        kw = trainer_parallel_args(None, str(REPO / "configs/distributed/fsdp.json"), False, False)
    assert kw["fsdp"] is True
    assert "plain DDP" in caplog.text


def test_deepspeed_auto_buckets_filled_from_hidden_size():
    """RecExplainer's module has no `.config`: the Trainer could not fill these "auto" entries."""
    from whyrec.distributed import trainer_parallel_args

    kw = trainer_parallel_args(str(REPO / "configs/distributed/ds_zero3.json"), None, False, False, hidden_size=32)
    zero = kw["deepspeed"]["zero_optimization"]
    assert (zero["reduce_bucket_size"], zero["stage3_prefetch_bucket_size"],
            zero["stage3_param_persistence_threshold"]) == (1024, 921, 320)
    assert kw["deepspeed"]["train_batch_size"] == "auto"  # batch entries still follow the whyrec config
