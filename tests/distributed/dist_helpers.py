"""Helpers for the multi-process tests: a tiny dataset and launchers for `whyrec` under torchrun.

Not a conftest.py: that name would shadow tests/conftest.py for `from conftest import ...`.
Test modules import the fixtures they use from here.
"""

import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from whyrec.cli import main

REPO = Path(__file__).resolve().parents[2]
WHYREC = str(Path(sys.executable).with_name("whyrec"))  # the console script of this environment
WORDS = "great sound warm tone solid build easy setup clear highs deep bass light case cheap strings".split()


def env() -> dict:
    """A child environment that cannot reach a hub and uses one thread per process (2-core CI)."""
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
            "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_cmd(args: list[str], nproc: int = 1) -> list[str]:
    """The `whyrec` command line, or torchrun's with `nproc` ranks (gloo on CPU)."""
    return [WHYREC, *args] if nproc == 1 else [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--nnodes", "1",
        "--master_addr", "127.0.0.1", "--master_port", str(free_port()), WHYREC, *args]


def kill_when(path: Path, args: list[str], nproc: int, timeout: float = 240) -> None:
    """Start the command and SIGKILL it (launcher and every rank) as soon as `path` exists."""
    proc = subprocess.Popen(launch_cmd(args, nproc), env=env(), cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + timeout
    while not path.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    sigkill_run(proc)
    assert path.exists(), f"{path} never appeared"


def sigkill_run(proc: subprocess.Popen) -> None:
    """SIGKILL a run and, under torchrun, every worker too: the elastic agent starts each worker in a
    session of its own, so killing the agent's process group would leave the workers training."""
    import psutil  # a dependency of accelerate

    workers = psutil.Process(proc.pid).children(recursive=True)
    proc.send_signal(signal.SIGKILL)
    for p in workers:
        p.send_signal(signal.SIGKILL)
    assert proc.wait(30) == -signal.SIGKILL
    assert not psutil.wait_procs(workers, timeout=30)[1], "a worker outlived SIGKILL"


def whyrec(args: list[str], nproc: int = 1, timeout: float = 240) -> subprocess.CompletedProcess:
    """Run the `whyrec` CLI in a fresh process, or `nproc` of them through torchrun (gloo on CPU)."""
    cmd = launch_cmd(args, nproc)
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env(), cwd=REPO)
    assert done.returncode == 0, f"{' '.join(cmd)}\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}"
    return done


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """40 users x 30 items, ~8 rated pairs per user with a title and a short explanation each."""
    root = tmp_path_factory.mktemp("dist-data")
    rng = random.Random(0)
    rows = ["user,item,rating,timestamp,title,explanation,split"]
    for u in range(40):
        for k, i in enumerate(rng.sample(range(30), 8)):
            split = "test" if k == 7 else "valid" if k == 6 else "train"
            text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 12)))
            rows.append(f"u{u},i{i},{rng.randint(1, 5)},{u * 100 + k},item {i},{text},{split}")
    (root / "pairs.csv").write_text("\n".join(rows) + "\n")
    assert main(["data", "prepare", "--source", "csv", "--path", str(root / "pairs.csv"),
                 "--out", str(root / "data")]) == 0
    return root / "data"


@pytest.fixture(scope="session")
def tiny_encoder(tiny_data) -> Path:
    out = tiny_data.parent / "encoder"
    assert main(["train", "encoder", "--data", str(tiny_data), "--out", str(out),
                 "--config", str(REPO / "configs/tiny/lightgcn.yaml")]) == 0
    return out


def xrec_args(data: Path, encoder: Path, out: Path, *extra: str) -> list[str]:
    """Tiny XRec without dropout or gate noise, so runs differ only in how batches are split."""
    return ["train", "explainer", "--method", "xrec", "--data", str(data), "--encoder", str(encoder),
            "--out", str(out), "--config", str(REPO / "configs/tiny/xrec.yaml"),
            "--xrec.dropout", "0.0", "--xrec.noisy_gate", "false", "--train.max_target_tokens", "64", *extra]
