"""More caches keyed to what produced them (issue 17 §7): RecAlpaca generations and the teacher's
stage files (the quickstart's stage folders are in test_cache_keys_quickstart.py).

Each is run unchanged (nothing generated again), with its producer changed (generated again, or
refused naming the field, never mixed), and interrupted (only the missing rows are made).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
from cli_contract import snapshot

from whyrec.data import schema as S
from whyrec.data.dataset import RecDataset
from whyrec.fingerprint import digest
from whyrec.outputs import OutputConflict

# ---------------------------------------------------------------- RecAlpaca generations


class FakeRecAlpaca:
    """Answers name the prompt's input and the decoding settings, so a stale answer is visible."""

    def __init__(self, tag: str, fail_on_call: int | None = None, batches_per_call: int = 1):
        self.tag, self.fail_on_call, self.calls, self.prompts = tag, fail_on_call, 0, []
        self.batches_per_call, self.sizes = batches_per_call, []

    def generate(self, prompts, gen, **kw):
        max_new_tokens, batch_size, repetition_penalty = gen.max_new_tokens, gen.batch_size, gen.repetition_penalty
        self.calls += 1
        if self.calls == self.fail_on_call:
            raise KeyboardInterrupt  # a kill in the middle of the run
        assert len(prompts) <= batch_size * self.batches_per_call
        self.sizes.append(len(prompts))
        self.prompts += [inp for _, inp in prompts]
        return [f"1. \"Fargo\" ({self.tag}, {max_new_tokens}, {repetition_penalty}, {inp})" for _, inp in prompts]


def _test_json(tmp_path: Path, n: int = 5, changed: int | None = None) -> Path:
    records = [{"instruction": "Recommend five movies.",
                "input": f"user {i}{' edited' if i == changed else ''} likely to like: [Fargo, Brazil, Scream]",
                "testGT": ["Fargo"]} for i in range(n)]
    path = tmp_path / "test.json"
    path.write_text(json.dumps(records))
    return path


@pytest.fixture
def recalpaca(tmp_path, monkeypatch):
    """(run folder, test json, evaluate(**kw) -> the fake model used or None, generations path)."""
    from whyrec.methods.recalpaca import model as recalpaca_infer

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"method": "recalpaca"}))
    (run / "adapter_model.safetensors").write_bytes(b"weights v1")
    test_json = _test_json(tmp_path)
    out = tmp_path / "eval"
    used: list[FakeRecAlpaca] = []

    def evaluate(tag: str = "v1", fail_on_call: int | None = None, batches_per_call: int = 1, **kw) -> FakeRecAlpaca:
        # One batch per generate call unless asked: these tests are about the file's batches; the
        # continuous path's grouping of several missing batches per call has its own tests below.
        monkeypatch.setattr(recalpaca_infer, "CONTINUOUS_BATCHES", batches_per_call)
        model = FakeRecAlpaca(tag, fail_on_call, batches_per_call)
        monkeypatch.setattr(recalpaca_infer, "load_recalpaca", lambda *a, **k: used.append(model) or model)
        test = kw.pop("test_json", test_json)
        gen = replace(recalpaca_infer.GENERATION, **{"batch_size": 2, "max_new_tokens": 32, **kw})
        recalpaca_infer.evaluate_recalpaca(str(run), test, out, gen=gen)
        return model

    return run, test_json, evaluate, out / "generations.jsonl", used


def _generations(path: Path) -> list[str]:
    """The cached answers in user order (a resumed file holds its batches in the order made)."""
    lines = path.read_text().splitlines()
    assert json.loads(lines[0])["whyrec_rows"] == 1  # the key line
    rows = sorted((json.loads(line) for line in lines[1:]), key=lambda r: r["user"])
    return [r["generation"] for r in rows]


def test_recalpaca_unchanged_rerun_generates_nothing(recalpaca):
    run, test_json, evaluate, gen, used = recalpaca
    first = evaluate()
    assert first.calls == 3 and len(first.prompts) == 5  # 5 users in batches of 2
    before = gen.read_bytes()
    second = evaluate()
    assert second.calls == 0 and len(used) == 1  # the model is not even loaded
    assert gen.read_bytes() == before


@pytest.mark.parametrize("change", ["max_new_tokens", "repetition_penalty", "batch_size", "no_repeat_ngram_size",
                                    "retrained"])
def test_recalpaca_changed_producer_generates_again(recalpaca, change, capsys):
    run, test_json, evaluate, gen, used = recalpaca
    evaluate()
    kw = {"max_new_tokens": 16} if change == "max_new_tokens" else \
         {"repetition_penalty": 1.1} if change == "repetition_penalty" else \
         {"no_repeat_ngram_size": 3} if change == "no_repeat_ngram_size" else \
         {"batch_size": 3} if change == "batch_size" else {}
    if change == "retrained":  # same path, new adapter weights
        (run / "adapter_model.safetensors").write_bytes(b"weights v2")
    again = evaluate(tag="v2", **kw)
    assert len(again.prompts) == 5
    assert all("(v2," in g for g in _generations(gen)) and len(_generations(gen)) == 5
    assert "other inputs or by another producer" in capsys.readouterr().err
    metrics = json.loads((gen.parent / "metrics.json").read_text())
    assert metrics["n_users"] == 5


def test_recalpaca_changed_prompt_regenerates_only_its_batch(recalpaca, tmp_path):
    run, test_json, evaluate, gen, used = recalpaca
    evaluate()
    again = evaluate(tag="v2", test_json=_test_json(tmp_path, changed=3))
    assert again.prompts == ["user 2 likely to like: [Fargo, Brazil, Scream]",
                             "user 3 edited likely to like: [Fargo, Brazil, Scream]"]  # batch [2, 4)
    texts = _generations(gen)
    assert [("(v2," in t) for t in texts] == [False, False, True, True, False]
    assert "user 3 edited" in texts[3]


def test_recalpaca_interrupted_run_resumes_missing_rows(recalpaca):
    run, test_json, evaluate, gen, used = recalpaca
    with pytest.raises(KeyboardInterrupt):
        evaluate(fail_on_call=2)  # killed while generating the second batch
    assert len(_generations(gen)) == 2
    with gen.open("a") as f:
        f.write('{"user": 2, "prompt": "torn')  # and a torn line from a kill mid-write
    resumed = evaluate(tag="v1")
    assert resumed.prompts == [f"user {i} likely to like: [Fargo, Brazil, Scream]" for i in (2, 3, 4)]
    assert [json.loads(line)["user"] for line in gen.read_text().splitlines()[1:]] == [0, 1, 2, 3, 4]
    assert all(t.startswith('1. "Fargo" (v1, 32, 1.0, user ') for t in _generations(gen))


def test_recalpaca_continuous_calls_take_several_missing_batches(recalpaca):
    """Continuous decoding refills rows only from the prompts of its call, so one call takes up to
    CONTINUOUS_BATCHES consecutive missing batches; the file still holds whole batches."""
    run, test_json, evaluate, gen, used = recalpaca
    first = evaluate(batches_per_call=2)
    assert first.sizes == [4, 1]  # batches [0, 2) + [2, 4), then [4, 5)
    assert len(_generations(gen)) == 5
    assert evaluate(batches_per_call=2).calls == 0


def test_recalpaca_grouped_calls_regenerate_only_missing_batches(recalpaca, tmp_path):
    run, test_json, evaluate, gen, used = recalpaca
    evaluate(batches_per_call=2)
    changed = _test_json(tmp_path, changed=0)
    records = json.loads(changed.read_text())
    records[4]["input"] = "user 4 edited likely to like: [Fargo]"
    changed.write_text(json.dumps(records))
    again = evaluate(tag="v2", batches_per_call=8, test_json=changed)
    assert again.sizes == [2, 1]  # batch [0, 2) and batch [4, 5): not consecutive, two calls
    assert [("(v2," in t) for t in _generations(gen)] == [True, True, False, False, True]


def test_recalpaca_interrupted_grouped_call_loses_only_that_call(recalpaca):
    run, test_json, evaluate, gen, used = recalpaca
    with pytest.raises(KeyboardInterrupt):
        evaluate(fail_on_call=2, batches_per_call=2)  # killed in the call for batch [4, 5)
    assert len(_generations(gen)) == 4
    resumed = evaluate(batches_per_call=2)
    assert resumed.sizes == [1] and len(_generations(gen)) == 5


# ---------------------------------------------------------------- teacher profiles


class EchoTeacher:
    """A chat client whose answer is a function of the prompt and its own settings."""

    backend_id = "openai:http://127.0.0.1:1/v1"

    def __init__(self, temperature: float = 0.0, model: str = "teacher"):
        self.model, self.temperature, self.sent = model, temperature, []

    def cache_params(self, max_tokens=None):
        return {"temperature": self.temperature, "max_tokens": max_tokens}

    def iter_complete(self, batch, max_tokens=None):
        for i, messages in enumerate(batch):
            self.sent.append(messages[-1]["content"])
            yield i, f"answer {digest(messages, 8)} t={self.temperature}"


class LocalEchoTeacher(EchoTeacher):
    backend_id = "local"

    def __init__(self, folder: Path):
        super().__init__(model=str(folder))
        self.folder = folder

    def weights_identity(self):
        from whyrec.identity import model_identity

        return model_identity(str(self.folder))


def _reviews() -> RecDataset:
    rows = [("u1", "i1", 5, "great tone", "train"), ("u1", "i2", 4, "bright", "train"),
            ("u2", "i1", 4, "solid build", "train"), ("u2", "i3", 3, "thin", "train"),
            ("u1", "i3", 5, "nice strings", "test"), ("u3", "i2", 4, "warm sound", "valid")]
    inter = pd.DataFrame(rows, columns=[S.USER, S.ITEM, S.RATING, S.REVIEW, S.SPLIT])
    items = pd.DataFrame({S.ITEM: ["i1", "i2", "i3"], S.TITLE: ["Capo", "Tuner", "Strings"],
                          S.DESCRIPTION: ["a capo", "a tuner", "steel strings"]})
    return RecDataset(inter, items, None)


def _profiles(out: Path, client, **kw) -> RecDataset:
    from whyrec.teacher_profiles import write_profiles

    return write_profiles(_reviews(), out, client, progress=False, **kw)


def test_teacher_unchanged_rerun_sends_nothing(tmp_path):
    _profiles(tmp_path / "out", EchoTeacher())
    again = EchoTeacher()
    result = _profiles(tmp_path / "out", again)
    assert again.sent == [] and result.meta["teacher"]["stages"]["explanation"]["reused"] == 6


@pytest.mark.parametrize("change, field", [("temperature", "teacher.params.temperature"),
                                           ("model", "teacher.model"), ("max_tokens", "max_tokens")])
def test_teacher_changed_setting_is_refused_not_mixed(tmp_path, change, field):
    out = tmp_path / "out"
    _profiles(out, EchoTeacher())
    before = snapshot(out)
    client = EchoTeacher(temperature=0.7) if change == "temperature" else \
        EchoTeacher(model="bigger") if change == "model" else EchoTeacher()
    with pytest.raises(OutputConflict) as refused:
        _profiles(out, client, **({"max_tokens": 64} if change == "max_tokens" else {}))
    assert any(d.startswith(field + " ") for d in refused.value.differences) and client.sent == []
    assert snapshot(out) == before


def test_teacher_local_model_retrained_in_place_is_refused(tmp_path):
    from whyrec.config import ModelConfig
    from whyrec.llm.client import LocalHFClient
    from whyrec.teacher_profiles import teacher_identity

    weights = tmp_path / "teacher-model"
    weights.mkdir()
    (weights / "model.safetensors").write_bytes(b"v1")
    out = tmp_path / "out"
    _profiles(out, LocalEchoTeacher(weights))
    real = teacher_identity(LocalHFClient(ModelConfig(str(weights), device="cpu")), 128)  # loads nothing
    (weights / "model.safetensors").write_bytes(b"v2")
    assert teacher_identity(LocalHFClient(ModelConfig(str(weights), device="cpu")), 128) != real
    before = snapshot(out)
    with pytest.raises(OutputConflict) as refused:
        _profiles(out, LocalEchoTeacher(weights))
    assert any(d.startswith("teacher.weights") for d in refused.value.differences)
    assert snapshot(out) == before


def test_teacher_changed_caps_reask_changed_prompts_only(tmp_path):
    """A user's prompt quotes the item profiles written so far: raising max_items changes it, so
    its old answer must not be reused; the result equals a fresh run with the final caps."""
    first = EchoTeacher()
    _profiles(tmp_path / "out", first, max_items=1)
    grown = EchoTeacher()
    resumed = _profiles(tmp_path / "out", grown, max_items=None)
    fresh = _profiles(tmp_path / "fresh", EchoTeacher(), max_items=None)
    stages = resumed.meta["teacher"]["stages"]
    assert stages["item_profile"]["reused"] == 1 and stages["item_profile"]["written"] == 2
    assert stages["user_profile"]["written"] >= 1 and stages["explanation"]["written"] == 0
    for frame in ("items", "users", "texts"):
        assert getattr(resumed, frame).equals(getattr(fresh, frame)), frame


def test_teacher_torn_last_line_is_cut_and_resumed(tmp_path):
    from whyrec.teacher_profiles import read_done

    out = tmp_path / "out"
    _profiles(out, EchoTeacher())
    ref = {name: (out / name).read_text() for name in ("items.jsonl", "users.jsonl", "explanations.jsonl")}
    lines = ref["explanations.jsonl"].splitlines(keepends=True)
    (out / "explanations.jsonl").write_text("".join(lines[:-1]) + lines[-1][:15])
    again = EchoTeacher()
    _profiles(out, again)
    assert len(again.sent) == 1
    assert (out / "explanations.jsonl").read_text() == ref["explanations.jsonl"]
    assert len(read_done(out / "explanations.jsonl")) == 6
