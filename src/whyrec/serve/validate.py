"""Refuse to serve an artifact folder that is incomplete, has stray files or inconsistent id maps.

A server answers for hours from whatever it loaded, so a half-copied folder, a leftover
`checkpoint/` from an interrupted training or id maps that do not match the embeddings must
fail at start with one clear line, not as wrong recommendations later.
"""

from __future__ import annotations

import json
from pathlib import Path

from whyrec.utils import WhyrecError

# What `save_explainer` and `save_lightgcn` write (explainer.py, encoders/artifact.py).
REQUIRED = ("config.json", "adapter_model.safetensors", "items.parquet", "users.parquet")
OPTIONAL = ("README.md", "run_config.json", "training_log.json")
ENCODER_REQUIRED = ("config.json", "model.safetensors", "user2idx.json", "item2idx.json")
ENCODER_OPTIONAL = ("README.md", "run_config.json", "metrics.json")


def explainer_dir(run: str | Path) -> Path:
    """The explainer folder of a run folder (`RUN/explainer`) or the folder itself."""
    path = Path(run)
    if not path.is_dir():
        raise WhyrecError(f"--run {path}: no such folder; pass a run folder or an explainer folder")
    return path / "explainer" if (path / "explainer").is_dir() else path


def _check_listing(folder: Path, required: tuple, optional: tuple, subdirs: tuple = ()) -> None:
    names = {p.name for p in folder.iterdir()}
    missing = [f for f in required if f not in names]
    extra = sorted(names - set(required) - set(optional) - set(subdirs))
    if missing:
        raise WhyrecError(f"{folder} is missing {', '.join(missing)}; re-run `whyrec train explainer` "
                          "or copy the whole folder")
    if extra:
        raise WhyrecError(f"{folder} has unexpected files {', '.join(extra)} (an interrupted training or copy?); "
                          f"a servable folder holds only {', '.join(required + optional + subdirs)}")


def _id_map(path: Path, n_rows: int, kind: str) -> dict:
    try:
        mapping = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise WhyrecError(f"{path} is not valid JSON ({e}); re-train the encoder") from None
    if not isinstance(mapping, dict) or sorted(mapping.values()) != list(range(n_rows)):
        raise WhyrecError(f"{path} does not map {kind} ids onto rows 0..{n_rows - 1} of the embeddings "
                          f"({len(mapping) if isinstance(mapping, dict) else 0} ids); the id map and "
                          "model.safetensors come from different trainings")
    return mapping


def check_artifact(run: str | Path) -> Path:
    """Validate the explainer folder under `run`; return its path or raise WhyrecError."""
    import pandas as pd
    from safetensors import safe_open

    path = explainer_dir(run)
    if not (path / "config.json").is_file():
        raise WhyrecError(f"{path} has no config.json; it is not an explainer folder")
    method = json.loads((path / "config.json").read_text()).get("method")
    if method not in ("xrec",) or not (path / "encoder").is_dir():
        raise WhyrecError(f"{path} holds a {method or 'unknown'} run; `whyrec serve` serves explainer folders "
                          "with a collaborative encoder (method xrec)")
    _check_listing(path, REQUIRED, OPTIONAL, ("encoder",))
    _check_listing(path / "encoder", ENCODER_REQUIRED, ENCODER_OPTIONAL)
    with safe_open(str(path / "encoder" / "model.safetensors"), "pt") as f:
        rows = {k: f.get_slice(k).get_shape()[0] for k in ("user_emb", "item_emb")}
    users = _id_map(path / "encoder" / "user2idx.json", rows["user_emb"], "user")
    items = _id_map(path / "encoder" / "item2idx.json", rows["item_emb"], "item")
    known_items = set(pd.read_parquet(path / "items.parquet", columns=["item"])["item"].astype(str))
    known_users = set(pd.read_parquet(path / "users.parquet", columns=["user"])["user"].astype(str))
    for kind, ids, table in (("item", items, known_items), ("user", users, known_users)):
        stray = [i for i in ids if i not in table]
        if table and stray:  # an empty table (no profiles in the data) is legal: prompts fall back to ids
            raise WhyrecError(f"{len(stray)} {kind} ids of encoder/{kind}2idx.json (e.g. {stray[0]!r}) are not in "
                              f"{path / (kind + 's.parquet')}; the encoder was trained on other data")
    return path
