"""The quickstart's stage folders are keyed to what made them (issue 17 §7): a rerun with another
config is refused or rebuilt whole, a local model retrained in place is refused, a half-written
evaluation is redone, and each stage's time is printed."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from cli_contract import snapshot

from whyrec.outputs import OutputConflict


class _Stages:
    """Stand-ins for the quickstart's five stages (the real ones need ml-100k and minutes): each
    writes its folder, records which settings made it and counts its calls."""

    def __init__(self, monkeypatch, fail_eval: bool = False):
        import whyrec.data.prepare
        import whyrec.encoders.train
        import whyrec.methods.xrec.train
        import whyrec.runs

        self.calls: dict[str, int] = {}
        self.fail_eval = fail_eval
        monkeypatch.setattr(whyrec.data.prepare, "prepare_dataset", self.prepare)
        monkeypatch.setattr(whyrec.data.dataset.RecDataset, "load", staticmethod(lambda folder: _FakeData()))
        monkeypatch.setattr(whyrec.encoders.train, "train_encoder", self.encoder)
        monkeypatch.setattr(whyrec.methods.xrec.train, "train_explainer", self.explainer)
        monkeypatch.setattr(whyrec.runs, "load_run", lambda folder, device="auto": _FakeRun())
        monkeypatch.setattr(whyrec.runs, "evaluate_run", self.evaluate)

    def _count(self, stage: str, out: str, made_by: dict) -> None:
        self.calls[stage] = self.calls.get(stage, 0) + 1
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "made_by.json").write_text(json.dumps(made_by, sort_keys=True))

    def prepare(self, config, out, overwrite=False):
        self._count("data", out, {"max_users": config.max_users})
        (Path(out) / "dataset.json").write_text("{}")

    def encoder(self, data, out, config, device):
        self._count("encoder", out, {"epochs": config.epochs})
        return {"test": {"recall@20": 0.1, "ndcg@20": 0.05}}

    def explainer(self, data, encoder, out, model, xrec, train):
        self._count("explainer", out, {"max_steps": train.max_steps})
        return {"first_loss": 2.0, "last_loss": 1.0, "steps": train.max_steps}

    def evaluate(self, run, data, out, max_pairs, generation, device, loaded=None):
        self._count("eval", out, {"max_pairs": max_pairs})
        (Path(out) / "metrics.json").write_text(json.dumps(_TEXT_METRICS))  # written first, as api does
        if self.fail_eval:
            raise KeyboardInterrupt  # killed before report.md and predictions.jsonl
        (Path(out) / "predictions.jsonl").write_text("{}\n")
        return _TEXT_METRICS


_TEXT_METRICS = {"pepler": {"bleu1": 10.0, "bleu4": 1.0, "rougeL_f": 20.0, "usr": 0.5}, "n": 4}


class _FakeData:
    n_users, n_items, interactions = 2, 3, [1, 2]

    def split(self, name):
        return pd.DataFrame({"user": ["1", "2"]})


class _FakeRun:
    class catalog:  # noqa: N801 - stands in for the attribute
        @staticmethod
        def profile(user):
            return ""

    def recommend(self, user, k):
        return [{"item": "7", "title": "Fargo", "score": 1.0}]

    def explain_many(self, users, items, generation):
        return ["dark" for _ in users]


def _quickstart(out: Path, steps: int = 2, **kw) -> dict:
    from whyrec.config import TrainConfig
    from whyrec.quickstart import run_quickstart

    return run_quickstart(str(out), n_users=1, k=1, eval_pairs=4, train=TrainConfig(max_steps=steps), device="cpu",
                          **kw)


def _made_by(out: Path) -> dict:
    return {p.parent.name: json.loads(p.read_text()) for p in sorted(out.rglob("made_by.json"))}


def test_quickstart_rerun_with_another_config_is_refused_or_rebuilt_whole(tmp_path, monkeypatch):
    stages = _Stages(monkeypatch)
    out = tmp_path / "qs"
    _quickstart(out)
    _quickstart(out)  # unchanged: the evaluation is reused
    assert stages.calls["eval"] == 1 and stages.calls["data"] == 1
    before = snapshot(out)
    with pytest.raises(OutputConflict) as refused:
        _quickstart(out, steps=3)
    assert [d.split()[0] for d in refused.value.differences] == ["train.max_steps"]
    assert snapshot(out) == before
    _quickstart(out, steps=3, overwrite=True)  # rebuilt aside: no stage of the first config survives
    assert stages.calls == {"data": 2, "encoder": 3, "explainer": 3, "eval": 2}
    assert _made_by(out)["explainer"] == {"max_steps": 3}


def test_quickstart_local_model_retrained_in_place_is_refused(tmp_path, monkeypatch):
    from whyrec.config import ModelConfig

    _Stages(monkeypatch)
    weights = tmp_path / "base"
    weights.mkdir()
    (weights / "model.safetensors").write_bytes(b"v1")
    out = tmp_path / "qs"
    _quickstart(out, model=ModelConfig(str(weights)))
    (weights / "model.safetensors").write_bytes(b"v2")
    before = snapshot(out)
    with pytest.raises(OutputConflict) as refused:
        _quickstart(out, model=ModelConfig(str(weights)))
    assert [d.split()[0] for d in refused.value.differences] == ["weights.files"]
    assert snapshot(out) == before


def test_quickstart_half_written_evaluation_is_redone(tmp_path, monkeypatch):
    from whyrec.outputs import read_marker

    out = tmp_path / "qs"
    _Stages(monkeypatch, fail_eval=True)
    with pytest.raises(KeyboardInterrupt):
        _quickstart(out)
    # metrics.json exists, but the evaluation's marker says it never finished ...
    assert (out / "eval" / "metrics.json").is_file() and read_marker(out / "eval")["state"] == "in-progress"
    stages = _Stages(monkeypatch)
    _quickstart(out)
    # ... so the rerun evaluates again (into a fresh folder) instead of reporting a half-written one.
    assert stages.calls["eval"] == 1 and (out / "eval" / "predictions.jsonl").is_file()
    assert read_marker(out / "eval")["state"] == "complete"


def test_quickstart_prints_each_stage_time(tmp_path, monkeypatch, capsys):
    _Stages(monkeypatch)
    summary = _quickstart(tmp_path / "qs")
    assert list(summary["stage_seconds"]) == ["1/5", "2/5", "3/5", "4/5", "5/5"]
    assert all(0 <= s < 60 for s in summary["stage_seconds"].values())
    out = capsys.readouterr().out
    assert [line.split()[1] for line in out.splitlines() if line.strip().startswith("(stage ")] == \
        ["1/5", "2/5", "3/5", "4/5", "5/5"]


def test_quickstart_evaluation_decoded_otherwise_is_redone_and_one_from_before_new_fields_is_kept(tmp_path, monkeypatch,
                                                                                                    capsys):
    from whyrec.outputs import MARKER, read_marker

    out = tmp_path / "qs"
    stages = _Stages(monkeypatch)
    _quickstart(out)
    marker_file = out / "eval" / MARKER
    marker = read_marker(out / "eval")
    del marker["fingerprint"]["generation"]["eos_bias"]  # as written before GenerationConfig had the field
    marker_file.write_text(json.dumps(marker))
    _quickstart(out)
    assert stages.calls["eval"] == 1  # the same decoding: reused
    marker["fingerprint"]["generation"]["candidates"] = 1  # an earlier version decoded greedily
    marker_file.write_text(json.dumps(marker))
    _quickstart(out)
    assert stages.calls["eval"] == 2 and "decoded with other settings: evaluating again" in capsys.readouterr().out
    assert read_marker(out / "eval")["fingerprint"]["generation"]["candidates"] == 2
    _quickstart(out)
    assert stages.calls["eval"] == 2
