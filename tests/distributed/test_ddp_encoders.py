"""Two torchrun processes (gloo) vs one: GaVaMoE's VAE-GMM, the SASRec target and RecExplainer (HF Trainer).

Same seed and global batch, no dropout: the two-process folder must equal the one-process one
within float rounding, and only rank 0 may write (traced through trace_calls.py).
"""

import json
from collections import Counter

import pytest
import torch
from dist_helpers import tiny_data, whyrec  # noqa: F401 (fixture)
from safetensors.torch import load_file
from trace_calls import calls, traced_whyrec

from whyrec.cli import main

pytestmark = pytest.mark.distributed

# Uneven shards on purpose: 240 training pairs in batches of 50 / 63 (25 + 25, 32 + 31 per rank).
VAE = ["--vae.n_clusters", "2", "--vae.latent_dim", "4", "--vae.embedding_dim", "8", "--vae.n_layers", "1",
       "--vae.n_heads", "2", "--vae.ff_dim", "16", "--vae.decoder_dims", "[16]", "--vae.dropout", "0.0",
       "--vae.pretrain_epochs", "3", "--vae.pretrain_lr", "0.01", "--vae.pretrain_batch_size", "50",
       "--vae.elbo_epochs", "3", "--vae.lr", "0.005", "--vae.batch_size", "63", "--vae.recon_weight", "16.0",
       "--vae.plot_points_per_cluster", "20", "--vae.seed", "0", "--device", "cpu"]
# 6 training items per user, windows of 4: one window with 4 targets and one with 1 per user, 80 in
# batches of 25, so the ranks' shards hold different numbers of target tokens (CE is per token).
SASREC = ["--encoder", "sasrec", "--sasrec.dim", "16", "--sasrec.max_seq_len", "4", "--sasrec.n_heads", "2",
          "--sasrec.ffn_dim", "16", "--sasrec.hidden_dropout", "0.0", "--sasrec.attn_dropout", "0.0",
          "--sasrec.lr", "0.01", "--sasrec.batch_size", "25", "--sasrec.epochs", "3", "--sasrec.patience", "10",
          "--sasrec.grad_clip", "0.5", "--sasrec.seed", "0", "--device", "cpu"]


def _close(a: dict, b: dict, atol: float, rtol: float) -> None:
    assert a.keys() == b.keys()
    for key in a:
        x, y = a[key], b[key]
        if key.endswith("in_proj_bias"):  # drop the key bias: softmax ignores it, so its gradient is
            x, y = (torch.cat([t[: len(t) // 3], t[2 * len(t) // 3:]]) for t in (x, y))  # rounding noise Adam amplifies
        torch.testing.assert_close(y, x, atol=atol, rtol=rtol, msg=key)


def _json(path):
    return json.loads(path.read_text())


def _only_rank0(log, expected: dict[str, int]) -> None:
    seen = calls(log)
    assert {c["rank"] for c in seen} == {0}, seen
    counts = Counter(c["call"].split(":")[1] for c in seen)
    assert {k: counts[k] for k in expected} == expected


def _same_target(one, two, atol: float, rtol: float) -> None:
    """Two target folders: weights within tolerance, 3 falling epoch losses equal, same test metrics."""
    _close(load_file(str(one / "model.safetensors")), load_file(str(two / "model.safetensors")), atol, rtol)
    ma, mb = _json(one / "metrics.json"), _json(two / "metrics.json")
    losses = [h["loss"] for h in ma["history"]]
    assert len(losses) == 3 and losses[-1] < losses[0]
    assert [h["loss"] for h in mb["history"]] == pytest.approx(losses, rel=1e-5)
    assert mb["test"] == pytest.approx(ma["test"], abs=1e-6)


@pytest.fixture(scope="module")
def sasrec_one(tiny_data, tmp_path_factory):  # noqa: F811 (fixture imported above)
    out = tmp_path_factory.mktemp("sasrec") / "one"
    assert main(["train", "encoder", "--data", str(tiny_data), "--out", str(out), *SASREC]) == 0
    return out


def test_vae_gmm_two_ranks_match_one(tiny_data, tmp_path):  # noqa: F811 (fixture imported above)
    one, two, log = tmp_path / "one", tmp_path / "two", tmp_path / "calls.jsonl"
    assert main(["cluster", "--data", str(tiny_data), "--out", str(one), *VAE]) == 0
    traced = [f"whyrec.encoders.vae_train:{f}" for f in ("fit_gmm", "_save_checkpoint", "save_vae_gmm",
                                                         "plot_latent", "write_json")]
    traced_whyrec(log, traced, ["cluster", "--data", str(tiny_data), "--out", str(two), *VAE])
    _only_rank0(log, {"fit_gmm": 1, "_save_checkpoint": 3 + 1 + 3, "save_vae_gmm": 1, "plot_latent": 1,
                      "write_json": 1})
    _close(load_file(str(one / "model.safetensors")), load_file(str(two / "model.safetensors")), 1e-5, 1e-4)
    ma, mb = _json(one / "metrics.json"), _json(two / "metrics.json")
    for phase, keys in (("pretrain", ("ce",)), ("elbo", ("loss", "ce", "kl"))):
        assert len(ma["history"][phase]) == 3
        for ra, rb in zip(ma["history"][phase], mb["history"][phase], strict=True):
            assert [rb[k] for k in keys] == pytest.approx([ra[k] for k in keys], rel=1e-4)
    assert ma["history"]["pretrain"][-1]["ce"] < ma["history"]["pretrain"][0]["ce"]  # it trained
    assert mb["gmm_init"]["weights"] == pytest.approx(ma["gmm_init"]["weights"], abs=1e-5)
    assert mb["valid"]["rmse"] == pytest.approx(ma["valid"]["rmse"], rel=1e-4)
    assert (_json(one / "run_config.json")["config"]["world_size"], _json(two / "run_config.json")["config"]["world_size"]) == (1, 2)


def test_sasrec_two_ranks_match_one(tiny_data, sasrec_one, tmp_path):  # noqa: F811 (fixture imported above)
    """Token-weighted CE over uneven shards, clipping on the all-reduced gradient, rank-0 validation."""
    two, log = tmp_path / "two", tmp_path / "calls.jsonl"
    traced = [f"whyrec.encoders.target_train:{f}" for f in ("_save_checkpoint", "save_target", "write_json")]
    traced_whyrec(log, traced, ["train", "encoder", "--data", str(tiny_data), "--out", str(two), *SASREC])
    _only_rank0(log, {"_save_checkpoint": 3, "save_target": 1})
    _same_target(sasrec_one, two, atol=2e-5, rtol=1e-4)
    assert _json(two / "run_config.json")["config"]["world_size"] == 2


def _recexplainer(target, out, accum: int) -> list[str]:
    # global batch 2: one process accumulates 2 micro-batches of 1, two processes take 1 each; the
    # Trainer averages per-example mean losses either way (RecExplainer.forward takes no loss kwargs)
    return ["train", "explainer", "--method", "recexplainer", "--encoder", str(target), "--data", str(target),
            "--out", str(out), "--model.name_or_path", "tiny-random-llama", "--model.device", "cpu",
            "--recexplainer.lora.dropout", "0.0", "--recexplainer.connector_hidden", "16",
            "--recexplainer.max_examples", "8", "--recexplainer.topk", "10", "--recexplainer.max_length", "512",
            "--recexplainer.micro_batch_size", "1", "--recexplainer.grad_accum", str(accum),
            "--recexplainer.max_steps", "3", "--recexplainer.lr", "0.005", "--recexplainer.warmup_ratio", "0.0",
            "--recexplainer.logging_steps", "1", "--recexplainer.save_steps", "100"]


def test_recexplainer_trainer_two_ranks_match_one(sasrec_one, tmp_path):
    """The HF Trainer's own DDP under torchrun: the same LoRA + connectors, written once by rank 0."""
    one, two, log = tmp_path / "one", tmp_path / "two", tmp_path / "calls.jsonl"
    assert main(_recexplainer(sasrec_one, one, accum=2)) == 0
    traced = ["whyrec.methods.recexplainer.train:save_recexplainer", "safetensors.torch:save_file"]
    traced_whyrec(log, traced, _recexplainer(sasrec_one, two, accum=1))
    seen = calls(log)
    assert {c["rank"] for c in seen} == {0}, seen
    assert sum(c["call"].endswith("save_recexplainer") for c in seen) == 1
    lora_b = [v for k, v in load_file(str(one / "adapter_model.safetensors")).items() if "lora_B" in k]
    assert lora_b and all(float(v.abs().sum()) > 0 for v in lora_b)  # LoRA B starts at 0: it trained
    for name in ("adapter_model.safetensors", "connectors.safetensors"):
        _close(load_file(str(one / name)), load_file(str(two / name)), 2e-5, 1e-4)
    la, lb = _json(one / "train_log.json"), _json(two / "train_log.json")
    assert la["steps"] == lb["steps"] == 3
    assert [v for _, v in lb["losses"]] == pytest.approx([v for _, v in la["losses"]], rel=1e-4)


# 240 training pairs in batches of 70: shards of 35 and a last batch of 30 (15 + 15).
MF = ["--encoder", "mf", "--mf.dim", "8", "--mf.n_negatives", "5", "--mf.batch_size", "70", "--mf.epochs", "3",
      "--mf.patience", "10", "--mf.lr", "0.01", "--device", "cpu"]


def test_mf_two_ranks_match_one(tiny_data, tmp_path):  # noqa: F811 (fixture imported above)
    """Pair-weighted sampled softmax with the negatives drawn for the whole global batch."""
    one, two = tmp_path / "one", tmp_path / "two"
    assert main(["train", "encoder", "--data", str(tiny_data), "--out", str(one), *MF]) == 0
    whyrec(["train", "encoder", "--data", str(tiny_data), "--out", str(two), *MF], nproc=2)
    _same_target(one, two, atol=1e-6, rtol=1e-5)
