"""Generated rows cached in a JSONL file that names what produced them, appended as they come.

The first line is a header `{"whyrec_rows": 1, "key": {...}}`: everything that decides the
rows (data digest, the exact inputs, model revision, configs). Each further line is one row
that carries its own id fields (e.g. user and item), so rows are matched to inputs by id,
never by position. Inputs are generated in fixed chunks (positions [0, n), [n, 2n), ...) and
each chunk's rows are appended, flushed and fsynced together, so a killed run keeps every
finished chunk and a rerun generates only the chunks that are missing. Because a chunk is
always the same inputs in the same batch, a resumed file holds the same rows as an
uninterrupted one. A producer that gains from seeing more inputs at once (continuous batching
refills a finished row's slot from the inputs it was given) can take up to `chunks_per_call`
consecutive missing chunks per call; their rows are still written chunk by chunk, and a kill loses
at most that call. A header with another key means other inputs or another producer: the
file is started again (one stderr line names what changed), its rows are never reused.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Hashable, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from whyrec.fingerprint import differences, plain
from whyrec.utils import atomic_path

FORMAT = 1
ChunkMaker = Callable[[int, int], list[dict]]
"""(start, stop) -> the rows for inputs[start:stop], each with the id fields and the payload."""


def cached_rows(path: str | os.PathLike, key: Any, ids: Sequence[tuple[Hashable, ...]], id_fields: Sequence[str],
                chunk_size: int, make_chunk: ChunkMaker, label: str | None = None,
                progress: bool = False, chunks_per_call: int = 1) -> list[dict]:
    """The row of every input (in input order), generating only the chunks `path` lacks; one
    `make_chunk` call covers a run of up to `chunks_per_call` consecutive missing chunks."""
    path, key = Path(path), plain(key)
    chunk_size = max(1, chunk_size)
    label = label or str(path)
    stored, n_lines, note = _read(path, key, id_fields)
    if note:
        print(f"whyrec: {label}: {note}; generating it again", file=sys.stderr)
    chunks = [(s, min(s + chunk_size, len(ids))) for s in range(0, len(ids), chunk_size)]
    done = [c for c in chunks if all(i in stored for i in ids[c[0]:c[1]])]
    rows = {i: stored[i] for s, e in done for i in ids[s:e]}
    kept = [_line(stored[i]) for s, e in done for i in ids[s:e]]
    if n_lines != len(kept):
        # New key, no file, a torn or foreign line, rows of an unfinished chunk: keep whole chunks only.
        _rewrite(path, key, kept)
    todo = [c for c in chunks if c not in done]
    from tqdm.auto import tqdm

    bar = tqdm(total=len(todo), desc=label, unit="chunk", disable=not progress or len(todo) < 2)
    with open(path, "a", encoding="utf-8") if todo else nullcontext() as f, bar:  # nothing to do: file untouched
        for group in _runs(todo, max(1, chunks_per_call)):
            start, stop = group[0][0], group[-1][1]
            made = make_chunk(start, stop)
            if len(made) != stop - start:
                raise AssertionError(f"{label}: {len(made)} rows for {stop - start} inputs")
            for want, row in zip(ids[start:stop], made):
                got = tuple(row[f] for f in id_fields)
                if got != tuple(want):
                    raise AssertionError(f"{label}: row for {got} where {tuple(want)} was asked")
                rows[want] = row
            for s, e in group:  # whole chunks, as a reader keeps them
                f.write("".join(_line(r) + "\n" for r in made[s - start:e - start]))
            f.flush()
            os.fsync(f.fileno())
            bar.update(len(group))
    return [rows[i] for i in ids]


def _runs(chunks: list[tuple[int, int]], most: int) -> list[list[tuple[int, int]]]:
    """`chunks` (in order) split into runs of at most `most` chunks that follow each other."""
    runs: list[list[tuple[int, int]]] = []
    for c in chunks:
        if runs and len(runs[-1]) < most and runs[-1][-1][1] == c[0]:
            runs[-1].append(c)
        else:
            runs.append([c])
    return runs


def _read(path: Path, key: Any, id_fields: Sequence[str]) -> tuple[dict, int, str | None]:
    """(rows by id, how many row lines the file has if all are whole rows else -1, why the file
    cannot be used) for the rows under `key`."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}, -1, None
    except (OSError, UnicodeDecodeError) as e:
        return {}, -1, f"it is unreadable ({type(e).__name__})"
    lines = text.split("\n")
    complete, torn = lines[:-1], lines[-1]  # text after the last newline is a write a kill cut short
    header = _json(complete[0]) if complete else None
    if not isinstance(header, dict) or header.get("whyrec_rows") != FORMAT or "key" not in header:
        return {}, -1, "it does not say what produced it (an earlier whyrec, or another file)"
    diffs = differences(header["key"], key)
    if diffs:
        shown = ", ".join(diffs[:4]) + (f" and {len(diffs) - 4} more" if len(diffs) > 4 else "")
        return {}, -1, f"it was made for other inputs or by another producer ({shown})"
    stored, whole = {}, not torn
    for line in complete[1:]:
        row = _json(line)
        if isinstance(row, dict) and all(f in row for f in id_fields):
            stored[tuple(row[f] for f in id_fields)] = row
        else:
            whole = False
    return stored, len(complete) - 1 if whole else -1, None


def _json(line: str) -> Any:
    try:
        return json.loads(line)
    except ValueError:
        return None


def _line(row: dict) -> str:
    return json.dumps(row, ensure_ascii=False)


def _rewrite(path: Path, key: Any, lines: list[str]) -> None:
    header = json.dumps({"whyrec_rows": FORMAT, "key": key}, ensure_ascii=False)
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write("".join(line + "\n" for line in [header, *lines]))
            f.flush()
            os.fsync(f.fileno())
