"""What the API asks of a served model: the generic pieces live in `whyrec.methods.catalog`
(re-exported here for serve/app.py and tests), the cold-start cache key is serve's own.

Each method's adapter is `whyrec.methods.<name>.served`; `load.load_served` asks the registry
for the folder's method object (`registry.method_of`) and its `load` builds the adapter.
"""

from __future__ import annotations

import hashlib

from whyrec.methods.catalog import (
    Catalog,
    Pair,
    ServedModel,
    Unsupported,
    dataset_label,
    revision,
    top_unseen,
)

__all__ = ["Catalog", "Pair", "ServedModel", "Unsupported", "cold_key", "dataset_label", "revision", "top_unseen"]


def cold_key(liked: list[str]) -> str:
    """Stable cache key of a cold-start user: the set of liked items."""
    return "cold:" + hashlib.sha256("\x1f".join(sorted(set(liked))).encode()).hexdigest()[:16]
