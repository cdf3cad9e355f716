"""Fingerprints of what produced an output, so a cache or a resume is only reused when it matches.

A fingerprint is a plain JSON-able dict (config fields, data digests, pair lists, model
revisions). `digest` gives a short stable id of it; `differences` names the dotted fields
that differ between two fingerprints, for an error message a user can act on.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any


def plain(obj: Any) -> Any:
    """`obj` as JSON types: dataclasses become dicts, tuples lists, paths and others strings."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        obj = dataclasses.asdict(obj)
    if isinstance(obj, dict):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    return str(obj)


def digest(obj: Any, length: int = 16) -> str:
    """Short hex id of `obj`'s canonical JSON (key order does not matter)."""
    text = json.dumps(plain(obj), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


def differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted names of the fields whose values differ, e.g. ['train.lr (0.01 -> 0.5)']."""
    old, new = plain(old), plain(new)
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(old) | set(new)):
            name = f"{prefix}.{key}" if prefix else key
            if key not in old:
                out.append(f"{name} (new)")
            elif key not in new:
                out.append(f"{name} (removed)")
            else:
                out.extend(differences(old[key], new[key], name))
        return out
    if old != new:
        return [f"{prefix or 'value'} ({_short(old)} -> {_short(new)})"]
    return []


def _short(value: Any, limit: int = 40) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 3] + "..."
