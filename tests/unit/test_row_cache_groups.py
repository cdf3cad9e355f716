"""`row_cache.cached_rows(..., chunks_per_call=N)`: one producer call covers up to N consecutive
missing chunks (a continuous decoder refills rows across them), the file still holds whole chunks."""

from __future__ import annotations

import json

import pytest

from whyrec.row_cache import cached_rows

IDS = [(f"u{i}",) for i in range(10)]


def producer(calls: list, fail_at: int | None = None, tag: str = "a"):
    def make(start: int, stop: int) -> list[dict]:
        calls.append((start, stop))
        if len(calls) == fail_at:
            raise KeyboardInterrupt
        return [{"user": IDS[k][0], "text": f"{tag}{k}"} for k in range(start, stop)]
    return make


def test_consecutive_missing_chunks_share_a_call(tmp_path):
    calls: list = []
    rows = cached_rows(tmp_path / "r.jsonl", {"k": 1}, IDS, ("user",), 3, producer(calls), chunks_per_call=2)
    assert calls == [(0, 6), (6, 10)]  # chunks [0,3)+[3,6), then [6,9)+[9,10)
    assert [r["text"] for r in rows] == [f"a{k}" for k in range(10)]
    again: list = []
    assert cached_rows(tmp_path / "r.jsonl", {"k": 1}, IDS, ("user",), 3, producer(again), chunks_per_call=2) == rows
    assert again == []


def test_a_call_never_spans_a_cached_chunk(tmp_path):
    path = tmp_path / "r.jsonl"
    cached_rows(path, {"k": 1}, IDS, ("user",), 3, producer([]), chunks_per_call=1)
    lines = path.read_text().splitlines()
    kept = [line for line in lines[1:] if json.loads(line)["user"] not in {"u1", "u7"}]
    path.write_text("\n".join([lines[0], *kept]) + "\n")  # chunks [0,3) and [6,9) lose a row each
    calls: list = []
    rows = cached_rows(path, {"k": 1}, IDS, ("user",), 3, producer(calls, tag="b"), chunks_per_call=8)
    assert calls == [(0, 3), (6, 9)]
    assert [r["text"][0] for r in rows] == list("bbbaaabbba")


def test_a_kill_loses_only_the_running_call(tmp_path):
    path = tmp_path / "r.jsonl"
    with pytest.raises(KeyboardInterrupt):
        cached_rows(path, {"k": 1}, IDS, ("user",), 2, producer([], fail_at=2), chunks_per_call=2)
    assert len(path.read_text().splitlines()) == 1 + 4  # the key line and the first call's two chunks
    calls: list = []
    cached_rows(path, {"k": 1}, IDS, ("user",), 2, producer(calls), chunks_per_call=2)
    assert calls == [(4, 8), (8, 10)]


def test_a_call_that_returns_too_few_rows_is_an_error(tmp_path):
    def short(start: int, stop: int) -> list[dict]:
        return [{"user": IDS[start][0], "text": "x"}]

    with pytest.raises(AssertionError, match="1 rows for 4 inputs"):
        cached_rows(tmp_path / "r.jsonl", {"k": 1}, IDS, ("user",), 2, short, chunks_per_call=2)
