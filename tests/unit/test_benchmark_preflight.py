"""`whyrec benchmark explain` with CF ablations on a PEPLER row: PEPLER decodes its own words and
refuses the benchmark's --generation fields, so its ablations load it without them (a head-to-head
stage once trained PEPLER for minutes, then stopped on --generation.max_new_tokens); a row that uses
--generation is still refused before anything trains."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from whyrec.config import GenerationConfig, ModelConfig, TrainConfig
from whyrec.config_methods import PEPLERConfig
from whyrec.data import schema as S
from whyrec.data.dataset import RecDataset
from whyrec.utils import WhyrecError

TINY = ModelConfig("tiny-random-llama", device="cpu")


def _tiny_dataset() -> RecDataset:
    splits = [S.TRAIN] * 12 + [S.VALID] * 2 + [S.TEST] * 3
    rows = [{S.USER: f"u{k % 3}", S.ITEM: f"i{k % 5}", S.RATING: 4.0, S.SPLIT: split,
             S.EXPLANATION: f"the sound is warm {k}"} for k, split in enumerate(splits)]
    return RecDataset(pd.DataFrame(rows), pd.DataFrame({S.ITEM: [f"i{k}" for k in range(5)]}),
                      pd.DataFrame({S.USER: [f"u{k}" for k in range(3)]}))


def test_pepler_rows_are_ablated_under_the_benchmarks_generation_settings(tmp_path):
    from whyrec.benchmark import benchmark_explain

    _tiny_dataset().save(tmp_path / "data")
    out = tmp_path / "bench"
    benchmark_explain(str(tmp_path / "data"), str(out), methods=("pepler-continuous",), model=TINY,
                      pepler=PEPLERConfig(epochs=1, epochs_phase2=1, words=4, batch_size=4),
                      train=TrainConfig(max_steps=1), generation=GenerationConfig(max_new_tokens=80),
                      ablations="shuffle-users", groups=False, seed=0, device="cpu")
    ablations = json.loads((out / "comparison.json").read_text())["ablations"]["pepler-continuous"]
    assert set(ablations["systems"]) == {"full", "shuffle-users"} and ablations["n"] == 3


def test_a_generation_field_a_row_refuses_stops_the_benchmark_before_any_training(tmp_path, monkeypatch):
    from whyrec.benchmark import benchmark_explain
    from whyrec.registry import METHODS

    _tiny_dataset().save(tmp_path / "data")
    monkeypatch.setattr(METHODS.get("xrec"), "generation_fields", frozenset({"batch_size"}), raising=False)
    out = tmp_path / "bench"
    with pytest.raises(WhyrecError, match=r"--method xrec does not use --generation\.max_new_tokens"):
        benchmark_explain(str(tmp_path / "data"), str(out), methods=("xrec",), model=TINY,
                          generation=GenerationConfig(max_new_tokens=80), groups=False, seed=0, device="cpu")
    assert not out.exists()  # nothing was trained or written
