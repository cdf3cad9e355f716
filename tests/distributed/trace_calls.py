"""Run the `whyrec` CLI with some functions traced: each call appends {"rank", "call", "args"} to a log.

    python trace_calls.py LOG module:function[,module:function...] <whyrec arguments>

The multi-process tests launch this under torchrun to see which rank wrote what (rank 0 only)
and how often (the GMM is fitted once). Not a test module: pytest does not collect it.
"""

import functools
import importlib
import json
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _trace(log: str, name: str) -> None:
    module_name, attr = name.split(":")
    module = importlib.import_module(module_name)
    real = getattr(module, attr)

    @functools.wraps(real)
    def traced(*args, **kwargs):
        paths = [str(a) for a in args if isinstance(a, (str, os.PathLike))]
        with open(log, "a") as f:  # one short O_APPEND write per call: lines of two ranks do not mix
            f.write(json.dumps({"rank": int(os.environ.get("RANK", "0")), "call": name, "args": paths}) + "\n")
        return real(*args, **kwargs)

    setattr(module, attr, traced)


def calls(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.is_file() else []


def traced_whyrec(log: Path, functions: list[str], args: list[str], nproc: int = 2, timeout: float = 240):
    """`whyrec args` on `nproc` torchrun processes (gloo on CPU) with `functions` traced into `log`."""
    import subprocess

    from dist_helpers import env, free_port

    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--nnodes", "1",
           "--master_addr", "127.0.0.1", "--master_port", str(free_port()), __file__, str(log), ",".join(functions),
           *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env(), cwd=REPO)
    assert done.returncode == 0, f"{' '.join(cmd)}\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}"
    return done


if __name__ == "__main__":
    for fn in sys.argv[2].split(","):
        _trace(sys.argv[1], fn)
    from whyrec.cli import main

    sys.exit(main(sys.argv[3:]))
