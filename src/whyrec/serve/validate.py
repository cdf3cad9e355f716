"""Refuse to serve an artifact folder that is incomplete, has stray files or inconsistent id maps.

A server answers for hours from whatever it loaded, so a half-copied folder, a leftover
`checkpoint/` from an interrupted training or id maps that do not match the embeddings must
fail at start with one clear line, not as wrong recommendations later.
"""

from __future__ import annotations

from pathlib import Path

# The generic file checks live in whyrec.folders (core, for every loader); re-exported so
# `from whyrec.serve.validate import check_run` keeps working.
from whyrec.folders import (  # noqa: F401
    FIX,
    SECTIONS,
    SKIPPED_DIRS,
    check_files,
    check_run,
    check_sections,
    check_table,
    check_weights,
    existing_folder,
    explainer_dir,
    read_config,
    read_json_file,
    weights_fit,
)
from whyrec.registry import METHODS, method_of
from whyrec.utils import WhyrecError

# Which methods exist and what each one's folder holds are the registry's and the methods' business
# (`whyrec.methods.<name>.check`); this module adds the part every servable folder shares.


def check_artifact(run: str | Path) -> Path:
    """Validate the servable folder under `run` (any registered method, via its `check`); return its
    path or raise WhyrecError."""
    path = explainer_dir(run)
    if not (path / "config.json").is_file():
        raise WhyrecError(f"{path} has no config.json; it is not an explainer folder")
    method = read_config(path / "config.json").get("method")
    if method not in METHODS:
        raise WhyrecError(f"{path} holds a {method or 'unknown'} run; `whyrec serve` serves folders of "
                          f"{', '.join(METHODS.names())} (from `whyrec train explainer`)")
    method_of(path).check(path)  # layout, config sections, readable files, id maps: before a model is built
    return path
