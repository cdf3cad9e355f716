"""What `whyrec benchmark explain` keys its cached results by, and how it (re)trains subfolders.

Everything the benchmark keeps in its folder is reused only when what produced it is
unchanged: the dataset (a digest of its files), the exact pairs (user, item, reference, in
order), the base model (config and weights identity), the method's configs and the trained
folder the predictions came from. Anything else is recomputed, with one stderr line naming
what changed.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from whyrec.data import schema as S
from whyrec.fingerprint import differences, digest, plain
from whyrec.identity import tree_identity
from whyrec.outputs import fingerprint_of
from whyrec.utils import write_json

Generator = Callable[[pd.DataFrame], list[str]]
"""Explanations for a chunk of the pairs, in its order."""


def cached_predictions(path: Path, key: dict, pairs: pd.DataFrame, chunk_size: int,
                       load: Callable[[], Generator], label: str) -> tuple[list[str], float]:
    """(prediction per pair, generation seconds) from `path`'s rows under `key`, generating the
    missing chunks with the generator `load()` builds (only called if something is missing)."""
    from whyrec.row_cache import cached_rows

    ids = list(zip(pairs[S.USER].astype(str), pairs[S.ITEM].astype(str)))
    loaded: list[Generator] = []

    def make_chunk(start: int, stop: int) -> list[dict]:
        if not loaded:
            loaded.append(load())
        begin = time.perf_counter()
        texts = loaded[0](pairs.iloc[start:stop])
        share = (time.perf_counter() - begin) / max(1, stop - start)
        # a dict carries extra fields for the row (the candidates a grounded choice was made among)
        return [{"user": u, "item": i, **(t if isinstance(t, dict) else {}),
                 "prediction": str(t["prediction"] if isinstance(t, dict) else t), "seconds": round(share, 5)}
                for (u, i), t in zip(ids[start:stop], texts)]

    rows = cached_rows(path, key, ids, ("user", "item"), chunk_size, make_chunk, label=label, progress=True)
    return [r["prediction"] for r in rows], sum(float(r.get("seconds", 0.0)) for r in rows)


def settings(cfg) -> dict:
    """A config as plain JSON without the fields that cannot change a result."""
    return fingerprint_of(cfg)


def generation_settings(gen) -> dict:
    """`settings` of a GenerationConfig: a decoding field added later enters the key only once it is
    set away from its no-op default, so predictions cached before it existed stay valid."""
    from whyrec.config import generation_fingerprint

    return fingerprint_of(generation_fingerprint(gen))


def data_key(data: str | os.PathLike) -> str:
    return tree_identity(data)


def pairs_key(pairs: pd.DataFrame) -> dict:
    """The exact evaluation rows: (user, item, reference) in order."""
    rows = zip(pairs[S.USER].astype(str), pairs[S.ITEM].astype(str), pairs[S.EXPLANATION].astype(str))
    return {"n": len(pairs), "digest": digest([list(r) for r in rows])}


def note(label: str, what: str) -> None:
    """One stderr line: which cached result is not reused, and why."""
    print(f"whyrec: {label}: {what}", file=sys.stderr)


def changed(old, new) -> str:
    diffs = differences(old, new)
    return ", ".join(diffs[:4]) + (f" and {len(diffs) - 4} more" if len(diffs) > 4 else "")


def key_file(final: Path) -> Path:
    """Where the key of a trained subfolder is kept: beside it, so the folder itself stays exactly
    what its training command wrote (serve accepts only those files)."""
    return final.with_name(f".{final.name}.key.json")


def trained_folder(final: Path, key: dict, train: Callable[[str], dict | None], label: str) -> dict | None:
    """Reuse `final` if it was trained under `key`; else train into a sibling keyed by `key` (so a
    killed training resumes there) and swap it in. Returns the training log."""
    key = plain(key)
    old = _read_key(final)
    if old == key and (final / "config.json").is_file():
        return read_log(final)
    if final.exists():
        why = changed(old, key) if old is not None else "no record of what it was trained on (an earlier whyrec)"
        note(label, f"{final} was trained with another config or data ({why}); training it again")
    work = final.with_name(f".{final.name}.training-{digest(key, 12)}")
    log = train(str(work))
    # The old key goes first: a kill between these steps leaves no key (retrain), never a wrong one.
    key_file(final).unlink(missing_ok=True)
    _swap(work, final)
    write_json(key_file(final), key)
    for stale in final.parent.glob(f".{final.name}.training-*"):  # other keys' unfinished trainings
        shutil.rmtree(stale, ignore_errors=True)
    return log if log is not None else read_log(final)


def _read_key(final: Path):
    try:
        return json.loads(key_file(final).read_text())
    except (OSError, ValueError):
        return None


def _swap(work: Path, final: Path) -> None:
    old = final.with_name(f".{final.name}.old-{uuid.uuid4().hex[:8]}")
    if final.exists():
        os.rename(final, old)
    os.rename(work, final)
    shutil.rmtree(old, ignore_errors=True)


def read_log(folder: Path) -> dict | None:
    for name in ("training_log.json", "train_log.json"):
        if (folder / name).exists():
            return json.loads((folder / name).read_text())
    return None
