"""XRec's serve-strength folder check (`METHOD.check`): what `save_explainer` and `save_lightgcn` write."""

from __future__ import annotations

from pathlib import Path

from whyrec.methods.base import check_ids, check_layout
from whyrec.utils import WhyrecError

LAYOUT = (("config.json", "adapter_model.safetensors", "items.parquet", "users.parquet"),
          ("README.md", "run_config.json", "training_log.json"), ("encoder",))
# config.json sections loading rebuilds: key -> dataclass name in whyrec.config, or a plain type
SECTIONS = {"model": "ModelConfig", "xrec": "XRecConfig", "encoder_dim": int}


def check(path: Path) -> None:
    import pandas as pd

    check_layout(path, LAYOUT, SECTIONS)
    users, items = check_ids(path / "encoder", "user_emb", "item_emb")
    known_items = set(pd.read_parquet(path / "items.parquet", columns=["item"])["item"].astype(str))
    known_users = set(pd.read_parquet(path / "users.parquet", columns=["user"])["user"].astype(str))
    for kind, ids, table in (("item", items, known_items), ("user", users, known_users)):
        stray = [i for i in ids if i not in table]
        if table and stray:  # an empty table (no profiles in the data) is legal: prompts fall back to ids
            raise WhyrecError(f"{len(stray)} {kind} ids of encoder/{kind}2idx.json (e.g. {stray[0]!r}) are not in "
                              f"{path / (kind + 's.parquet')}; the encoder was trained on other data")
