"""The quickstart's sample recommendations are a cached stage: a second run prints them without
loading the language model; a retrained explainer makes new ones."""

import json

from test_cache_keys_quickstart import _FakeRun, _quickstart, _Stages

import whyrec.runs


def test_samples_are_reused_until_the_explainer_changes(tmp_path, monkeypatch, capsys):
    _Stages(monkeypatch)
    loads = []
    monkeypatch.setattr(whyrec.runs, "load_run", lambda folder, device="auto": loads.append(folder) or _FakeRun())
    out = tmp_path / "qs"
    _quickstart(out)
    assert len(loads) == 1 and "1. Fargo  (score 1.00)" in capsys.readouterr().out
    _quickstart(out)
    assert len(loads) == 1 and "1. Fargo  (score 1.00)" in capsys.readouterr().out  # from samples.json
    samples = next(out.rglob("samples.json"))
    assert json.loads(samples.read_text())["samples"][0][2][0]["explanation"] == "dark"
    for made_by in out.rglob("made_by.json"):
        if made_by.parent.name == "explainer":
            (made_by.parent / "adapter.safetensors").write_text("retrained")  # another explainer
    _quickstart(out)
    assert len(loads) == 2
