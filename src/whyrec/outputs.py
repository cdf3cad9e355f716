"""Output folders that are never overwritten or mixed silently.

Every command that writes a folder enters `output_folder(out, kind, fingerprint)` at its
library entry point and writes only into the path it yields. The folder carries a marker,
`.whyrec.json` (kind, fingerprint of what produced it, whyrec version, state):

    out missing or empty              -> created and written
    marker of this kind, same print   -> reused: finished stages skip, checkpoints resume
    marker with another kind/print    -> refused, naming the fields that differ
    non-empty, no marker              -> refused (another tool's folder, or one written by an
                                         earlier whyrec: what produced it cannot be verified)
    out is a file / cannot be created -> refused, one line

`overwrite=True` builds the new folder as a sibling `.NAME.partial-<id>` and swaps it in by
renames only when the block succeeds: the old folder is never modified file by file, and a
failed or killed overwrite leaves it as it was. (The swap is two renames; a kill between them
leaves the old folder beside the new one as `.NAME.old-<id>`.)

A fingerprint is a JSON-able dict of what affects the result (config fields, data digests,
base model), built with `fingerprint_of` and `folder_digest`; it is stored whole so a refusal
can name `train.lr (0.01 -> 0.5)`. Under torchrun rank 0 decides and every rank gets its path.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from whyrec._version import __version__
from whyrec.fingerprint import differences, digest, plain
from whyrec.utils import WhyrecError, write_json

MARKER = ".whyrec.json"
# Fields that never change a result: where it runs, how often it logs or checkpoints, wall-time limits.
HARMLESS_FIELDS = ("device", "max_minutes", "checkpoint_every", "save_steps", "save_total_limit",
                   "logging_steps", "resume", "num_threads", "progress", "overwrite", "compile")
# Training budgets: a run may be continued with a larger one where that equals a fresh run with it.
BUDGET_FIELDS = ("max_steps", "epochs")
# Fields added after folders existed, with the value that reproduces the behaviour before them: a
# fingerprint leaves such a field out while it holds that value, so older folders still resume.
LATE_FIELDS = {"item_facts": False, "batch_tokens": None, "group_by_length": False, "lr_schedule": "constant",
               "warmup_steps": 0}
# Not part of a folder's content digest: run records that differ between identical runs.
UNDIGESTED = (MARKER, "run_config.json", "README.md", "training_log.json", "train_log.json")
UNDIGESTED_DIRS = ("checkpoint", "checkpoints")


class OutputConflict(WhyrecError):
    """`out` holds something this command must not overwrite; `.differences` names what differs."""

    def __init__(self, message: str, differences: list[str] | None = None):
        super().__init__(message)
        self.differences = differences or []


def _same(value: Any, late_default: Any) -> bool:
    """Equal and of the same type (False is not 0; a parsed "constant" is the literal's equal)."""
    return type(value) is type(late_default) and value == late_default


def fingerprint_of(obj: Any, ignore: Iterable[str] = HARMLESS_FIELDS) -> Any:
    """`obj` as plain JSON types without the keys named in `ignore`, at any depth."""
    drop = set(ignore)

    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items()
                    if k not in drop and not (k in LATE_FIELDS and _same(v, LATE_FIELDS[k]))}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    return strip(plain(obj))


def folder_digest(path: str | os.PathLike) -> str:
    """Short content digest of a file or folder (names and bytes; run records and checkpoints
    left out), to fingerprint the data or encoder a run was trained on."""
    path = Path(path)
    h = hashlib.sha256()
    if path.is_file():
        files = [(path.name, path)]
    elif path.is_dir():
        files = []
        for root, dirs, names in os.walk(path):
            dirs[:] = sorted(d for d in dirs if d not in UNDIGESTED_DIRS and not d.startswith("."))
            files += [(str(Path(root, n).relative_to(path)), Path(root, n)) for n in sorted(names)
                      if n not in UNDIGESTED and not n.startswith(".")]
    else:
        raise WhyrecError(f"{path} does not exist; pass an existing file or folder")
    for rel, file in files:
        h.update(rel.encode() + b"\0")
        with open(file, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        h.update(b"\0")
    return h.hexdigest()[:16]


def check_finished(out: str | os.PathLike, kind: str, recorded: Any, wanted: Any) -> None:
    """A finished run is reused only with the settings it finished with (e.g. its budget): its
    checkpoints are gone, so it cannot be continued; raise naming what differs."""
    diffs = differences(recorded, wanted)
    if diffs:
        raise OutputConflict(f"--out {destination(out)} holds a finished {kind} ({', '.join(diffs[:5])}); a finished "
                             "run cannot be continued: pass --overwrite to retrain it, or choose another --out", diffs)


def destination(work: str | os.PathLike) -> Path:
    """Where a folder yielded by `output_folder` ends up: its own path, or for an overwrite's
    `.NAME.partial-<id>` the NAME it replaces (for paths recorded inside the folder)."""
    work = Path(work)
    name, sep, rest = work.name.rpartition(".partial-")
    if sep and name.startswith(".") and len(rest) == 8:
        return work.with_name(name[1:])
    return work


def frames_digest(*frames: Any) -> str:
    """Short content digest of pandas DataFrames (columns and values), e.g. data loaded in memory."""
    import pandas as pd

    h = hashlib.sha256()
    for frame in frames:
        if frame is not None:
            h.update(json.dumps([str(c) for c in frame.columns]).encode())
            h.update(pd.util.hash_pandas_object(frame.astype(str), index=False).to_numpy().tobytes())
    return h.hexdigest()[:16]


def read_marker(folder: str | os.PathLike) -> dict | None:
    """The folder's marker (kind, fingerprint, state, whyrec_version, ...) or None if it has none."""
    try:
        marker = json.loads((Path(folder) / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) else None


@contextmanager
def output_folder(out: str | os.PathLike, kind: str, fingerprint: Any, overwrite: bool = False,
                  resumable: bool = True) -> Iterator[Path]:
    """Check `out` for `kind` + `fingerprint` and yield the folder to write into (see module doc).

    `resumable=False` is for commands that always rebuild everything (data prepare, evaluate): a
    folder they made with the same fingerprint is then rebuilt aside and swapped in like an
    overwrite, so nothing of the earlier run can survive in it. On success the marker says
    `complete` (and an overwrite is swapped in); on an exception a folder this call created and
    left empty is removed again, so a typo blocks nothing. A folder an enclosing `output_folder`
    of this process is writing is yielded as it is: the outer command guards it.
    """
    out = Path(out)
    if out.resolve() in _ACTIVE:
        yield out
        return
    fingerprint = plain(fingerprint)
    main = _is_main()
    decided: dict[str, Any] = {}
    work = Path(_from_rank0(lambda: _prepare(out, kind, fingerprint, overwrite, resumable, decided),
                            fallback=_partial(out) if overwrite else out))
    _ACTIVE.add(work.resolve())
    try:
        yield work
    except BaseException:
        if main:
            _abandon(work, out, decided.get("created", False), decided.get("previous"))
        raise
    finally:
        _ACTIVE.discard(work.resolve())
    _barrier()
    if main:
        _write_marker(work, kind, fingerprint, "complete")
        if work != out:
            _swap(work, out)
    _barrier()


_ACTIVE: set[Path] = set()  # folders an output_folder block of this process is writing


# ---------------------------------------------------------------- decisions (rank 0)
def _prepare(out: Path, kind: str, fingerprint: Any, overwrite: bool, resumable: bool, decided: dict) -> Path:
    if out.is_file() or (out.exists() and not out.is_dir()):
        raise OutputConflict(f"--out {out} is an existing file; pass a folder path (a new or empty folder)")
    existing = _listing(out)
    if existing == [MARKER] and (read_marker(out) or {}).get("state") != "complete":
        existing = []  # a run that failed before writing anything: nothing to protect
    if existing and not overwrite:
        _check_reusable(out, existing, kind, fingerprint)
        overwrite = not resumable
    decided["created"] = not out.exists()
    decided["previous"] = read_marker(out) if not overwrite else None
    if overwrite:
        _remove_stale_partials(out)
        work = _partial(out)
        _create(work, out)
    else:
        _create(out, out)
        work = out
    _write_marker(work, kind, fingerprint, "in-progress")
    return work


def _partial(out: Path) -> Path:
    """The sibling an overwrite is built in; the same on every process of one torchrun launch
    (they share the launcher as parent), so ranks that write checkpoint shards agree on it."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        launch = f"{os.getppid()}:{os.environ.get('MASTER_ADDR')}:{os.environ.get('MASTER_PORT')}"
        tag = hashlib.sha256(launch.encode()).hexdigest()[:8]
    else:
        tag = uuid.uuid4().hex[:8]
    return out.with_name(f".{out.name}.partial-{tag}")


def _listing(out: Path) -> list[str]:
    try:
        return sorted(os.listdir(out)) if out.is_dir() else []
    except PermissionError:
        raise WhyrecError(f"--out {out}: permission denied reading the folder; choose a folder you can write") from None


def _create(folder: Path, out: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        reason = e.strerror or type(e).__name__
        raise WhyrecError(f"cannot create --out {out} ({reason}); choose a folder you can write") from None


def _check_reusable(out: Path, names: list[str], kind: str, fingerprint: Any) -> None:
    how = "pass --overwrite to replace it, or choose another --out"
    marker = read_marker(out)
    if marker is None:
        if "run_config.json" in names:
            raise OutputConflict(f"--out {out} holds results of an earlier whyrec version (no {MARKER}), so what "
                                 f"produced them cannot be checked; {how}")
        shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
        raise OutputConflict(f"--out {out} is not empty ({shown}) and was not written by whyrec; {how}")
    if marker.get("kind") != kind:
        found = marker.get("kind", "unknown")
        raise OutputConflict(f"--out {out} holds {_a(found)} {found} folder, not {_a(kind)} {kind}; {how}")
    diffs = differences(marker.get("fingerprint"), fingerprint)
    if diffs:
        state = "an unfinished" if marker.get("state") != "complete" else _a(kind)
        shown = ", ".join(diffs[:5]) + (f" and {len(diffs) - 5} more" if len(diffs) > 5 else "")
        raise OutputConflict(f"--out {out} holds {state} {kind} made with another config: {shown}; "
                             f"re-run with the same settings to reuse or resume it, {how}", diffs)


def _a(noun: str) -> str:
    return "an" if noun[:1].lower() in "aeiou" else "a"


def _write_marker(folder: Path, kind: str, fingerprint: Any, state: str) -> None:
    marker = {"kind": kind, "state": state, "fingerprint": fingerprint, "fingerprint_digest": digest(fingerprint),
              "whyrec_version": __version__, "updated": _now(), "pid": os.getpid(), "host": socket.gethostname()}
    try:
        write_json(folder / MARKER, marker)
    except OSError as e:
        reason = e.strerror or type(e).__name__
        raise WhyrecError(f"cannot write to --out {folder} ({reason}); choose a folder you can write") from None


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


# ---------------------------------------------------------------- endings
def _abandon(work: Path, out: Path, created: bool, previous: dict | None) -> None:
    """After a failure: drop an overwrite's partial folder; undo a marker nothing was written beside
    (and the folder, if this call created it). Anything else stays, to resume."""
    if work != out:
        shutil.rmtree(work, ignore_errors=True)
        return
    try:
        if previous is not None and previous.get("state") == "complete":
            write_json(work / MARKER, previous)  # a rerun that failed: the earlier result's record stands
            return
        if os.listdir(work) == [MARKER]:
            os.unlink(work / MARKER)
            if created:
                work.rmdir()
    except OSError:
        pass


def _swap(work: Path, out: Path) -> None:
    old = out.with_name(f".{out.name}.old-{uuid.uuid4().hex[:8]}")
    try:
        if out.exists():
            os.rename(out, old)
        os.rename(work, out)
    except OSError as e:
        raise WhyrecError(f"could not move the new {out.name} into place ({e.strerror}); it is in {work}") from None
    shutil.rmtree(old, ignore_errors=True)


def _remove_stale_partials(out: Path) -> None:
    """Partial folders of overwrites that were killed (their process is gone) are garbage."""
    host = socket.gethostname()
    for partial in out.parent.glob(f".{out.name}.partial-*"):
        marker = read_marker(partial)
        if marker and marker.get("host") == host and not _alive(int(marker.get("pid", 0))):
            shutil.rmtree(partial, ignore_errors=True)


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# ---------------------------------------------------------------- torchrun
def _world() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def _group() -> bool:
    """A torch process group is up (whyrec's own loops); the HF Trainer starts its own later."""
    if _world() <= 1:
        return False
    import torch.distributed as dist

    return dist.is_initialized()


def _is_main() -> bool:
    if _world() <= 1:
        return True
    if _group():
        from whyrec.distributed import is_main

        return is_main()
    return os.environ.get("RANK", "0") == "0"


def _barrier() -> None:
    if _group():
        from whyrec.distributed import barrier

        barrier()


def _from_rank0(decide, fallback: Path) -> str:
    """Rank 0 runs `decide`; every rank gets its path or raises its error. Without a process group
    (yet) the other ranks take `fallback`; an error on rank 0 ends the launch."""
    if _world() <= 1:
        return str(decide())
    if not _group():
        return str(decide()) if _is_main() else str(fallback)
    from whyrec.distributed import from_rank0, is_main

    result: tuple[str, str] = ("", "")
    if is_main():
        try:
            result = ("ok", str(decide()))
        except WhyrecError as e:
            result = ("error", str(e))
    result = from_rank0(result)
    if result[0] == "error":
        raise WhyrecError(result[1])
    return result[1]
