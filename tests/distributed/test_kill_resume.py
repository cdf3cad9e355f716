"""SIGKILL mid-run, rerun the same command: the final weights equal an uninterrupted run's."""

import json

import pytest
import torch
from dist_helpers import REPO, kill_when, tiny_data, tiny_encoder, whyrec  # noqa: F401 (fixtures)
from safetensors.torch import load_file

pytestmark = pytest.mark.distributed

STEPS = 24


def _args(data, encoder, out):
    # dropout and gate noise stay on: the resumed run must also replay the random streams
    return ["train", "explainer", "--method", "xrec", "--data", str(data), "--encoder", str(encoder),
            "--out", str(out), "--config", str(REPO / "configs/tiny/xrec.yaml"), "--train.max_steps", str(STEPS),
            "--train.checkpoint_every", "3", "--train.grad_accum_steps", "2", "--train.max_target_tokens", "32"]


@pytest.mark.parametrize("nproc", [1, 2])
def test_sigkill_then_rerun_matches_uninterrupted(tiny_data, tiny_encoder, tmp_path, nproc):  # noqa: F811 (fixtures)
    """One process, or torchrun with 2 gloo ranks, where the agent and both workers are killed."""
    ref, killed = tmp_path / "ref", tmp_path / "killed"
    whyrec(_args(tiny_data, tiny_encoder, ref), nproc=nproc)

    state = killed / "checkpoint" / "trainer_state.json"
    kill_when(state, _args(tiny_data, tiny_encoder, killed), nproc)  # mid-step, every rank at once
    step = json.loads(state.read_text())["step"]
    assert 0 < step < STEPS and not (killed / "adapter_model.safetensors").exists()

    whyrec(_args(tiny_data, tiny_encoder, killed), nproc=nproc)  # the same command resumes from the checkpoint
    a, b = load_file(str(ref / "adapter_model.safetensors")), load_file(str(killed / "adapter_model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(b[key], a[key], atol=1e-6, rtol=0, msg=key)
    la, lb = (json.loads((d / "training_log.json").read_text()) for d in (ref, killed))
    assert lb["steps"] == STEPS and lb["losses"] == la["losses"]
    assert not (killed / "checkpoint").exists()
