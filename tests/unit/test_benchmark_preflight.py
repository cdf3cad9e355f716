"""`whyrec benchmark explain` refuses options a row would refuse before it trains anything: a
head-to-head stage once trained PEPLER for minutes and then stopped on --generation.max_new_tokens."""

from __future__ import annotations

import pandas as pd
import pytest

from whyrec.config import GenerationConfig
from whyrec.data import schema as S
from whyrec.data.dataset import RecDataset
from whyrec.utils import WhyrecError


def _tiny_dataset() -> RecDataset:
    rows = [{S.USER: f"u{k % 3}", S.ITEM: f"i{k % 4}", S.RATING: 4.0, S.SPLIT: split, S.EXPLANATION: f"text {k}"}
            for k, split in enumerate([S.TRAIN] * 6 + [S.VALID, S.TEST])]
    return RecDataset(pd.DataFrame(rows), pd.DataFrame({S.ITEM: [f"i{k}" for k in range(4)]}),
                      pd.DataFrame({S.USER: [f"u{k}" for k in range(3)]}))


def test_a_generation_field_pepler_refuses_stops_the_benchmark_before_any_training(tmp_path):
    from whyrec.benchmark import benchmark_explain

    _tiny_dataset().save(tmp_path / "data")
    out = tmp_path / "bench"
    with pytest.raises(WhyrecError, match=r"--method pepler does not use --generation\.max_new_tokens \(it decodes"):
        benchmark_explain(str(tmp_path / "data"), str(out), methods=("pepler-continuous",),
                          generation=GenerationConfig(max_new_tokens=80), groups=False, seed=0)
    assert not out.exists()  # nothing was trained or written
