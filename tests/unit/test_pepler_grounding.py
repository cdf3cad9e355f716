"""PEPLER's `whyrec evaluate` reports grounding like every other method's (issue 20): the false-claim
rates of its outputs and of the (whole) references, unless --grounding false."""

import json

import pandas as pd
import pytest
import serve_tiny as T

from whyrec.cli import main
from whyrec.data import schema as S
from whyrec.data.dataset import RecDataset


@pytest.fixture
def data(tmp_path):
    items = pd.DataFrame({S.ITEM: T.ITEMS, S.TITLE: [T.TITLES[i] for i in T.ITEMS],
                          "genre": [["Comedy"]] + [["Drama"] for _ in T.ITEMS[1:]]})
    rows = [{S.USER: u, S.ITEM: i, S.RATING: 4.0, S.SPLIT: S.TRAIN, S.EXPLANATION: "Good."}
            for u, seen in T.SEEN.items() for i in seen]
    # every test reference claims a catalogue genre its (drama) item does not have
    rows += [{S.USER: u, S.ITEM: T.ITEMS[-1], S.RATING: 4.0, S.SPLIT: S.TEST,
              S.EXPLANATION: "This is a comedy film with a long and winding plot that never ends."} for u in T.USERS]
    RecDataset(pd.DataFrame(rows), items, None, meta={"name": "tiny"}).save(tmp_path / "data")
    return tmp_path / "data"


def test_pepler_evaluate_reports_grounding_of_outputs_and_references(tmp_path_factory, tmp_path, data, capsys,
                                                                     monkeypatch):
    from whyrec.methods.pepler.model import PEPLER

    run = str(T.tiny_pepler(tmp_path_factory, "continuous"))
    # an untrained model's tokens carry no claim: every decoded output states the item's true genre
    monkeypatch.setattr(PEPLER, "decode", lambda self, ids: "This is a drama film.")
    capsys.readouterr()
    assert main(["evaluate", "--run", run, "--data", str(data), "--out", str(tmp_path / "ev"), "--device", "cpu"]) == 0
    shown = capsys.readouterr().out
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    n = len(T.USERS)
    assert metrics["grounding"]["explanations"] == n
    assert (metrics["grounding"]["checked_claims"], metrics["grounding"]["false_claims"]) == (n, 0)
    refs = metrics["grounding_references"]
    assert (refs["checked_claims"], refs["false_claims"]) == (n, n)
    assert {e["value"] for e in refs["false_examples"]} == {"comedy"}
    assert "## Grounding" in shown and "Hallucination rate (false claims): 0.0%" in shown
    assert f"References: 100.0% ({n} of {n} claims)" in shown

    assert main(["evaluate", "--run", run, "--data", str(data), "--out", str(tmp_path / "off"), "--device", "cpu",
                 "--grounding", "false"]) == 0
    off = json.loads((tmp_path / "off" / "metrics.json").read_text())
    assert "grounding" not in off and "grounding_references" not in off
