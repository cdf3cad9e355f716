"""Helpers for the reliability corpus (not named conftest: tests/conftest.py owns that module name): run bad input through the real CLI, check what is left.

Every case asserts the same contract: exit code 2, exactly one `whyrec: error:` line on
stderr (no traceback), and folders that existed before the command are byte-identical after.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Result:
    rc: int
    out: str
    err: str

    def assert_one_line_error(self, *needles: str) -> str:
        """Exit 2 and a single `whyrec: error:` line containing every needle (case-insensitive)."""
        lines = [line for line in self.err.splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith("whyrec: error:")]
        assert self.rc == 2, f"exit {self.rc}, stderr:\n{self.err}"
        assert "Traceback" not in self.err, self.err
        assert len(errors) == 1, f"expected one error line, got:\n{self.err}"
        for needle in needles:
            assert needle.lower() in errors[0].lower(), f"{needle!r} not in {errors[0]!r}"
        return errors[0]


def whyrec_inprocess(args: list[str], capsys) -> Result:
    """Run `whyrec ARGS` through `whyrec.cli.main` in this process (fast; no traceback escapes)."""
    from whyrec.cli import main

    capsys.readouterr()
    rc = main([str(a) for a in args])
    cap = capsys.readouterr()
    return Result(rc, cap.out, cap.err)


def whyrec_subprocess(args: list[str], cwd: Path | None = None, timeout: float = 600,
                      env: dict | None = None, preexec_fn=None) -> Result:
    """Run `python -m whyrec.cli ARGS` in a fresh process (the real entry point, real exit code)."""
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", **(env or {})}
    proc = subprocess.run([sys.executable, "-m", "whyrec.cli", *map(str, args)], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout, preexec_fn=preexec_fn)
    return Result(proc.returncode, proc.stdout, proc.stderr)


def snapshot(folder: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under `folder` (plus directories as markers)."""
    folder = Path(folder)
    if not folder.exists():
        return {}
    if folder.is_file():
        return {".": hashlib.sha256(folder.read_bytes()).hexdigest()}
    snap = {}
    for p in sorted(folder.rglob("*")):
        rel = str(p.relative_to(folder))
        snap[rel] = "<dir>" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return snap
