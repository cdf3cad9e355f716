"""Small helpers the command modules share: JSON printing, comma lists, which method a run holds."""

from __future__ import annotations

import json
from pathlib import Path


def print_json(obj) -> None:
    print(json.dumps(obj, indent=2, default=str))


def split_specs(specs: str | None) -> list[str]:
    return [s.strip() for s in (specs or "").split(",") if s.strip()]


def run_method_name(run: str) -> str | None:
    """The `method` in RUN/config.json or RUN/explainer/config.json (checked reader), else None."""
    from whyrec.folders import read_config

    for cfg in (Path(run) / "config.json", Path(run) / "explainer" / "config.json"):
        if cfg.is_file():
            return read_config(cfg).get("method")
    return None


def run_method_object(run: str):
    """The registered method object of a run folder; a folder without a method name holds the
    registry's default method (runs written before folders recorded it); None if unregistered."""
    from whyrec.registry import DEFAULT_METHOD, METHODS

    name = run_method_name(run) or DEFAULT_METHOD
    return METHODS.get(name) if name in METHODS else None
