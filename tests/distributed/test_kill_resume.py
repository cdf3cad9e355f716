"""SIGKILL mid-run, rerun the same command: the final weights equal an uninterrupted run's."""

import json
import subprocess
import sys
import time

import pytest
import torch
from dist_helpers import REPO, WHYREC, env, free_port, sigkill_run, tiny_data, tiny_encoder, whyrec  # noqa: F401 (fixtures)
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
    """One process, or torchrun with 2 gloo ranks whose whole process group (agent and workers) is killed."""
    ref, killed = tmp_path / "ref", tmp_path / "killed"
    whyrec(_args(tiny_data, tiny_encoder, ref), nproc=nproc)

    launch = [WHYREC] if nproc == 1 else [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node",
                                          str(nproc), "--master_addr", "127.0.0.1", "--master_port",
                                          str(free_port()), WHYREC]
    proc = subprocess.Popen([*launch, *_args(tiny_data, tiny_encoder, killed)], env=env(), cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    state = killed / "checkpoint" / "trainer_state.json"
    deadline = time.time() + 180
    while not state.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    sigkill_run(proc)  # the launcher and every rank at once, mid-step
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
