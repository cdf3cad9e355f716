"""Every cache is keyed by what produced it: a change recomputes, an unchanged rerun reuses.

Issue 17 §7: `whyrec benchmark explain` reused OUT/predictions/<method>.jsonl for other pairs
(seed-0 predictions scored against seed-1 references, exit 0), and lost every row of an
interrupted generation. Here the benchmark (through the real CLI) is run twice: once unchanged
(nothing generated again) and once with the producer changed (generated again); the chat, serve
and prompt-reduction caches are in test_cache_keys_serve.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from cli_contract import whyrec_inprocess
from tiny_runs import ITEMS, USERS, save_tiny_model, tiny_pepler

WORDS = "warm tone clear strings sturdy stand cheap pedal bright sound quiet case light neck".split()


def _explanation(k: int) -> str:
    return " ".join(WORDS[(k * 3 + j) % len(WORDS)] for j in range(6))


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """6 users x 10 items, an explanation on every interaction, 14 test pairs."""
    from whyrec.data.dataset import RecDataset

    rows = []
    for u, user in enumerate(USERS):
        for j in range(7):
            item = ITEMS[(u + j) % len(ITEMS)]
            split = "train" if j < 3 else "valid" if j == 3 else "test"
            if split == "test" and j == 6 and u % 3 == 0:
                continue
            rows.append({"user": user, "item": item, "rating": float(1 + (u + j) % 5), "timestamp": u * 10 + j,
                         "split": split, "explanation": _explanation(u * 7 + j)})
    items = pd.DataFrame({"item": ITEMS, "title": [f"Guitar {chr(65 + k)}" for k in range(len(ITEMS))]})
    folder = tmp_path_factory.mktemp("cache-keys") / "data"
    RecDataset(pd.DataFrame(rows), items, pd.DataFrame({"user": USERS})).save(folder)
    return folder


def _bench(data: Path, out: Path, *extra: str, methods: str = "zero-shot") -> list[str]:
    return ["benchmark", "explain", "--data", data, "--out", out, "--methods", methods,
            "--model.name_or_path", "tiny-random-llama", "--model.device", "cpu", "--device", "cpu",
            "--generation.max_new_tokens", "4", "--generation.batch_size", "3", "--groups", "false", *extra]


def _rows(path: Path) -> list[dict]:
    """The prediction rows of a cache file without their timings (which differ run to run)."""
    lines = path.read_text().splitlines()
    assert json.loads(lines[0])["whyrec_rows"] == 1
    return [{k: v for k, v in json.loads(line).items() if k != "seconds"} for line in lines[1:]]


def _metrics(out: Path) -> dict:
    return {name: row["metrics"]["pepler"] for name, row in json.loads((out / "comparison.json").read_text())["rows"].items()}


@pytest.fixture
def generate_calls(monkeypatch):
    """Counts the tiny model's batched generate calls; `fail_at` makes call n raise KeyboardInterrupt."""
    from whyrec.llm.client import LocalHFClient

    state = {"calls": 0, "fail_at": None}
    real = LocalHFClient._generate

    def counted(self, chunk, max_new_tokens):
        state["calls"] += 1
        if state["fail_at"] == state["calls"]:
            raise KeyboardInterrupt
        return real(self, chunk, max_new_tokens)

    monkeypatch.setattr(LocalHFClient, "_generate", counted)
    return state


def _oracle(calls: list[int]):
    """A stand-in method that answers each pair with the first half of its own reference, so the
    scores depend on which prediction is scored against which reference."""
    def factory(ds, model, gen, noun):
        def generate(pairs):
            calls.append(len(pairs))
            return [" ".join(r.split()[:3]) for r in pairs["explanation"]]
        return generate
    return factory


# ---------------------------------------------------------------- benchmark predictions
def test_rerun_with_other_pairs_regenerates_and_scores_like_a_fresh_folder(data, tmp_path, capsys, monkeypatch):
    import whyrec.benchmark as B

    calls: list[int] = []
    monkeypatch.setattr(B, "zero_shot", _oracle(calls))
    out, fresh = tmp_path / "bench", tmp_path / "fresh"
    assert whyrec_inprocess(_bench(data, out, "--seed", "0", "--max_pairs", "6"), capsys).rc == 0
    first = _metrics(out)
    again = whyrec_inprocess(_bench(data, out, "--seed", "1", "--max_pairs", "5"), capsys)
    assert again.rc == 0, again.err
    notes = [line for line in again.err.splitlines() if line.startswith("whyrec: predictions/zero-shot.jsonl")]
    assert len(notes) == 1 and "pairs.n (6 -> 5)" in notes[0] and "generating it again" in notes[0], again.err
    assert whyrec_inprocess(_bench(data, fresh, "--seed", "1", "--max_pairs", "5"), capsys).rc == 0
    assert _metrics(out) == _metrics(fresh) != first
    # Every stored row names its pair, and the pairs are the seed-1 sample, in its order.
    from whyrec.benchmark import select_pairs
    from whyrec.data.dataset import RecDataset

    pairs = select_pairs(RecDataset.load(data), "test", 5, 1)
    rows = _rows(out / "predictions" / "zero-shot.jsonl")
    assert [(r["user"], r["item"]) for r in rows] == list(zip(pairs["user"], pairs["item"]))
    assert rows == _rows(fresh / "predictions" / "zero-shot.jsonl")
    assert calls == [3, 3, 3, 2, 3, 2]  # 6 pairs in chunks of 3, then 5 pairs twice (rerun, fresh folder)


def test_unchanged_rerun_generates_nothing_and_a_changed_setting_regenerates(data, tmp_path, capsys, generate_calls):
    out = tmp_path / "bench"
    assert whyrec_inprocess(_bench(data, out, "--max_pairs", "7"), capsys).rc == 0
    assert generate_calls["calls"] == 3  # 7 pairs in chunks of 3
    cache = out / "predictions" / "zero-shot.jsonl"
    before = cache.read_bytes()
    rerun = whyrec_inprocess(_bench(data, out, "--max_pairs", "7"), capsys)
    assert rerun.rc == 0 and generate_calls["calls"] == 3 and cache.read_bytes() == before
    assert "generating it again" not in rerun.err
    changed = whyrec_inprocess(_bench(data, out, "--max_pairs", "7", "--generation.max_new_tokens", "5"), capsys)
    assert changed.rc == 0 and generate_calls["calls"] == 6
    assert "generation.max_new_tokens (4 -> 5)" in changed.err
    assert json.loads(cache.read_text().splitlines()[0])["key"]["generation"]["max_new_tokens"] == 5


def test_interrupted_generation_resumes_with_only_the_missing_chunks(data, tmp_path, capsys, generate_calls):
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert whyrec_inprocess(_bench(data, whole, "--max_pairs", "11"), capsys).rc == 0
    assert generate_calls["calls"] == 4  # 11 pairs: chunks of 3, 3, 3, 2
    generate_calls.update(calls=0, fail_at=3)
    stopped = whyrec_inprocess(_bench(data, cut, "--max_pairs", "11"), capsys)
    assert stopped.rc == 130 and "re-run the same command to resume" in stopped.err
    cache = cut / "predictions" / "zero-shot.jsonl"
    assert len(_rows(cache)) == 6  # the two finished chunks were appended before the interruption
    with open(cache, "a") as f:  # and a kill tore the next write
        f.write('{"user": "u9", "item": "i1", "predic')
    generate_calls.update(calls=0, fail_at=None)
    resumed = whyrec_inprocess(_bench(data, cut, "--max_pairs", "11"), capsys)
    assert resumed.rc == 0, resumed.err
    assert generate_calls["calls"] == 2  # only chunks 3 and 4
    assert _rows(cache) == _rows(whole / "predictions" / "zero-shot.jsonl")
    assert _metrics(cut) == _metrics(whole)


def test_changed_data_or_model_weights_regenerate(data, tmp_path, capsys, generate_calls):
    import shutil

    model_dir = tmp_path / "model"
    save_tiny_model(model_dir, seed=0)
    mine = tmp_path / "data"
    shutil.copytree(data, mine)
    out = tmp_path / "bench"
    args = [*_bench(mine, out, "--max_pairs", "4"), "--model.name_or_path", str(model_dir)]
    assert whyrec_inprocess(args, capsys).rc == 0 and generate_calls["calls"] == 2
    assert whyrec_inprocess(args, capsys).rc == 0 and generate_calls["calls"] == 2
    save_tiny_model(model_dir, seed=1)  # the same path, other weights
    rerun = whyrec_inprocess(args, capsys)
    assert rerun.rc == 0 and generate_calls["calls"] == 4 and "model.weights.files" in rerun.err
    items = pd.read_parquet(mine / "items.parquet")
    items["title"] = items["title"] + " (2nd edition)"  # what the zero-shot prompt shows
    items.to_parquet(mine / "items.parquet", index=False)
    rerun = whyrec_inprocess(args, capsys)
    assert rerun.rc == 0 and generate_calls["calls"] == 6 and "data (" in rerun.err



def test_a_given_run_folder_retrained_in_place_regenerates(data, tmp_path, capsys, monkeypatch):
    import whyrec.methods.pepler.artifact as A

    loads: list[Path] = []  # every load of the PEPLER folder (its method object's benchmark generator loads it)
    real = A.load_pepler_run
    monkeypatch.setattr(A, "load_pepler_run", lambda folder, device="auto": loads.append(folder) or real(folder, device))
    run, out = tiny_pepler(tmp_path / "pepler", seed=0), tmp_path / "bench"
    args = _bench(data, out, "--max_pairs", "5", "--runs", f"mine={run}", methods="none")
    assert whyrec_inprocess(args, capsys).rc == 0 and len(loads) == 1
    cache = out / "predictions" / "mine.jsonl"
    first = _rows(cache)
    assert whyrec_inprocess(args, capsys).rc == 0 and len(loads) == 1  # unchanged: not even loaded
    tiny_pepler(run, seed=1)
    rerun = whyrec_inprocess(args, capsys)
    assert rerun.rc == 0 and len(loads) == 2 and "folder.files" in rerun.err
    assert [(r["user"], r["item"]) for r in _rows(cache)] == [(r["user"], r["item"]) for r in first]
    # PEPLER decodes its own `words`: --generation does not key its predictions.
    assert whyrec_inprocess([*args, "--generation.max_new_tokens", "9"], capsys).rc == 0 and len(loads) == 2


# ---------------------------------------------------------------- folders trained by the benchmark
def test_a_method_the_benchmark_trains_is_retrained_when_its_config_changes(data, tmp_path, capsys, monkeypatch):
    import whyrec.methods.pepler.train as P

    trained: list[str] = []
    real = P.train_pepler
    monkeypatch.setattr(P, "train_pepler", lambda data, out, **kw: trained.append(out) or real(data, out, **kw))
    out = tmp_path / "bench"
    args = _bench(data, out, "--max_pairs", "4", "--pepler.epochs", "1", "--pepler.epochs_phase2", "1",
                  "--train.max_steps", "2", methods="pepler-continuous")
    assert whyrec_inprocess([*args, "--pepler.words", "4"], capsys).rc == 0 and len(trained) == 1
    folder = out / "methods" / "pepler-continuous"
    assert json.loads((folder / "config.json").read_text())["pepler"]["words"] == 4
    assert whyrec_inprocess([*args, "--pepler.words", "4"], capsys).rc == 0 and len(trained) == 1
    changed = whyrec_inprocess([*args, "--pepler.words", "3"], capsys)
    assert changed.rc == 0, changed.err
    assert len(trained) == 2 and "config.words (4 -> 3)" in changed.err and "training it again" in changed.err
    assert json.loads((folder / "config.json").read_text())["pepler"]["words"] == 3
    assert "trained.config.words (4 -> 3)" in changed.err  # and its predictions are generated again
    leftovers = [p.name for p in folder.parent.iterdir() if p.name != ".pepler-continuous.key.json"]
    assert leftovers == ["pepler-continuous"]  # the new folder was swapped in whole


def test_trained_folder_resumes_a_killed_training_and_keeps_the_old_folder_until_the_swap(tmp_path, capsys):
    from whyrec.benchmark_cache import key_file, trained_folder

    final, calls = tmp_path / "methods" / "m", []

    def train(lr: float, fail: bool = False):
        def run(work: str) -> dict:
            calls.append(work)
            Path(work).mkdir(parents=True, exist_ok=True)
            (Path(work) / "config.json").write_text(json.dumps({"lr": lr}))
            if fail:
                raise KeyboardInterrupt
            (Path(work) / "training_log.json").write_text(json.dumps({"steps": 2}))
            return {"steps": 2}
        return run

    assert trained_folder(final, {"lr": 1}, train(1), "m") == {"steps": 2}
    assert json.loads(key_file(final).read_text()) == {"lr": 1} and sorted(p.name for p in final.iterdir()) == [
        "config.json", "training_log.json"]  # the folder holds only what its training wrote
    assert trained_folder(final, {"lr": 1}, train(1), "m") == {"steps": 2} and len(calls) == 1  # reused
    with pytest.raises(KeyboardInterrupt):
        trained_folder(final, {"lr": 2}, train(2, fail=True), "m")
    assert json.loads((final / "config.json").read_text()) == {"lr": 1}  # the old folder is untouched
    assert trained_folder(final, {"lr": 2}, train(2), "m") == {"steps": 2}
    assert calls[-1] == calls[-2] != calls[0]  # the killed training resumed in its own keyed folder
    assert json.loads((final / "config.json").read_text()) == {"lr": 2}
    assert sorted(p.name for p in final.parent.iterdir()) == [".m.key.json", "m"]
    assert "lr (1 -> 2)" in capsys.readouterr().err


# ---------------------------------------------------------------- the row cache itself
def test_rows_are_matched_by_their_ids_and_a_file_without_a_key_is_not_trusted(tmp_path, capsys):
    from whyrec.row_cache import cached_rows

    ids = [("u1", "i1"), ("u2", "i2"), ("u3", "i3")]
    made: list[tuple[int, int]] = []
    asked = [ids]

    def make(start, stop):
        made.append((start, stop))
        return [{"user": u, "item": i, "text": f"{u}/{i}"} for u, i in asked[0][start:stop]]

    path = tmp_path / "rows.jsonl"
    # An earlier whyrec's file: no header, rows in another order.
    path.write_text("".join(json.dumps({"prediction": "stale"}) + "\n" for _ in ids))
    rows = cached_rows(path, {"k": 1}, ids, ("user", "item"), 2, make)
    assert [r["text"] for r in rows] == ["u1/i1", "u2/i2", "u3/i3"] and made == [(0, 2), (2, 3)]
    assert "does not say what produced it" in capsys.readouterr().err
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0], lines[3], lines[2], lines[1]]) + "\n")  # rows shuffled
    rows = cached_rows(path, {"k": 1}, ids, ("user", "item"), 2, make)
    assert [r["text"] for r in rows] == ["u1/i1", "u2/i2", "u3/i3"] and len(made) == 2
    asked[0] = ids[::-1]
    rows = cached_rows(path, {"k": 2}, ids[::-1], ("user", "item"), 2, make)
    assert [r["text"] for r in rows] == ["u3/i3", "u2/i2", "u1/i1"] and len(made) == 4
    assert "k (1 -> 2)" in capsys.readouterr().err
