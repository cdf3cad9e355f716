"""benchmarks/paired_vs_external.py: paired differences of benchmark rows against an external system."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from conftest import benchmark_script


@pytest.fixture(scope="module")
def script():
    return benchmark_script("paired_vs_external")


REFS = ["the user would buy the book because of its thrilling plot",
        "they like the warm characters and the cozy small town",
        "a gripping mystery with a clever detective and twists"]


def test_a_row_equal_to_the_references_beats_a_worse_external_on_every_pair(script):
    worse = ["a book", "a story", "some novel"]
    table = script.paired_table(REFS, worse, {"copy": list(REFS), "same": list(worse)})
    copy, same = table["copy"], table["same"]
    assert copy["rougeL_f"]["delta"] > 0 and copy["rougeL_f"]["low"] > 0  # the whole interval above zero
    assert copy["rougeL_f"]["row_mean"] == pytest.approx(100.0)
    assert copy["bleu4_sentence"]["low"] > 0
    assert same["rougeL_f"] == {**same["rougeL_f"], "delta": 0.0, "low": 0.0, "high": 0.0}  # identical texts
    assert "bertscore_f1" not in copy  # only with a scorer
    assert "| copy | +" in script.markdown(table, "ext", 3)


def test_cached_predictions_follow_the_pairs_order_and_refuse_missing_pairs(script, tmp_path):
    path = tmp_path / "row.jsonl"
    rows = [{"user": "u2", "item": "i2", "prediction": "two"}, {"user": "u1", "item": "i1", "prediction": "one"}]
    path.write_text("\n".join([json.dumps({"whyrec_rows": 1, "key": {}}), *map(json.dumps, rows)]) + "\n")
    pairs = pd.DataFrame({"user": ["u1", "u2"], "item": ["i1", "i2"]})
    assert script.cached_predictions(path, pairs) == ["one", "two"]
    with pytest.raises(SystemExit, match="lacks 1 of the 3 pairs"):
        script.cached_predictions(path, pd.concat([pairs, pd.DataFrame({"user": ["u3"], "item": ["i3"]})]))
