"""The documentation site builds with `mkdocs build --strict`, and the README's links into docs/ resolve.

`make install-dev` installs the `docs` extra, so `make test` (and CI) runs the build; without mkdocs
the build test skips and says how to install it. The README is read on GitHub, where its links point
at the Markdown files under docs/ directly, so those files must exist.
"""

import importlib.util
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import unquote

import pytest

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
# Markdown links and images: [text](target) / ![alt](target); the target ends at whitespace or ")".
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def _local_targets(markdown: str) -> list[str]:
    targets = []
    for target in LINK.findall(markdown):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue  # http(s)://, mailto:, in-page anchors
        targets.append(unquote(target.split("#", 1)[0]))
    return targets


def test_readme_links_into_docs_point_at_existing_files():
    targets = _local_targets(README.read_text(encoding="utf-8"))
    docs_links = [t for t in targets if t.startswith("docs/")]
    assert docs_links, "README.md should link into docs/"
    missing = sorted({t for t in targets if not (REPO / t).exists()})
    assert not missing, f"README.md links to files that do not exist: {missing}"


def test_readme_keeps_the_two_setup_commands():
    text = README.read_text(encoding="utf-8")
    assert "make quickstart" in text and "make test" in text


@pytest.mark.skipif(importlib.util.find_spec("mkdocs") is None,
                    reason="mkdocs is not installed: pip install -e '.[docs]' (make install-dev installs it)")
def test_docs_site_builds_strict(tmp_path):
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}  # material's banner about MkDocs 2.0 is not a build warning
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(REPO / "mkdocs.yml"),
         "--site-dir", str(site)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    elapsed = time.monotonic() - start
    log = (proc.stdout + proc.stderr)[-4000:]
    assert proc.returncode == 0, f"mkdocs build --strict failed (broken link, anchor or docstring?):\n{log}"
    assert elapsed < 120, f"docs build took {elapsed:.0f} s"
    # Every page in the nav was written, and the API reference really rendered docstrings.
    for page in ("index.html", "getting-started/index.html", "benchmarks/index.html", "safety/index.html",
                 "changelog/index.html", "methods/xrec/index.html", "reference/api/index.html"):
        assert (site / page).is_file(), f"{page} missing from the built site"
    api = (site / "reference/api/index.html").read_text(encoding="utf-8")
    assert "load_run" in api and "recommend" in api
