"""The layer contract in pyproject.toml ([tool.importlinter]) holds, and it does catch a wrong-way import.

`lint-imports` reads the contract from pyproject.toml; it runs here so `make test` (plain pytest)
fails on an import that goes up a layer, module-level or inside a function alike.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(importlib.util.find_spec("importlinter") is None,
                                reason="import-linter is not installed (pip install -e '.[dev]')")

# importlinter has no `python -m` entry point; this is what its `lint-imports` script runs.
LINT_IMPORTS = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"


def lint_imports(src: Path, pyproject: Path) -> subprocess.CompletedProcess:
    """`lint-imports` on the `whyrec` package under `src` (not the installed one), without a cache."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    return subprocess.run([sys.executable, "-c", LINT_IMPORTS, "--no-cache", "--no-logo", str(pyproject)],
                          cwd=pyproject.parent, env=env, capture_output=True, text=True, timeout=120)


def test_layer_contract_holds():
    result = lint_imports(ROOT / "src", ROOT / "pyproject.toml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout and "BROKEN" not in result.stdout


@pytest.mark.parametrize("module, line, broken", [
    # core importing data, at module level
    ("config.py", "from whyrec.data import schema\n", "whyrec.config -> whyrec.data.schema"),
    # llm importing an adapter inside a function: function-local imports count as much
    ("llm/tokens.py", "def _late():\n    from whyrec.adapters import qkv_injection\n",
     "whyrec.llm.tokens -> whyrec.adapters.qkv_injection"),
])
def test_wrong_way_import_is_caught(tmp_path, module, line, broken):
    shutil.copytree(ROOT / "src" / "whyrec", tmp_path / "src" / "whyrec",
                    ignore=shutil.ignore_patterns("__pycache__", "static", "resources"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    with open(tmp_path / "src" / "whyrec" / module, "a") as f:
        f.write("\n\n" + line)
    result = lint_imports(tmp_path / "src", tmp_path / "pyproject.toml")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "whyrec layers BROKEN" in result.stdout
    assert broken in result.stdout


def test_contracts_have_no_exceptions():
    """Every wrong-way import was fixed, not listed: no contract carries ignore_imports."""
    import tomllib

    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    assert len(contracts) == 2 and not [c["name"] for c in contracts if c.get("ignore_imports")]
