"""`whyrec benchmark explain --ablations` (issue 20, item 2): every row with a trained folder (methods
trained into out/methods/<row> and --runs) is ablated on the benchmark's pairs; the tables land in
comparison.md, the results in comparison.json under `ablations`; an unknown kind stops at once."""

from __future__ import annotations

import json

import numpy as np
import pytest
import serve_tiny as T
from toy_method import ToyMethod, toy_dataset

import whyrec.eval.probes as probes
from whyrec.benchmark_ablate import ablation_kinds
from whyrec.cli import main
from whyrec.methods.cf_ablation import KINDS
from whyrec.registry import METHODS
from whyrec.utils import WhyrecError


class _BagOfWords:
    """Stands in for the packaged MiniLM of user identification (the real one: test_personalisation)."""

    def __init__(self, *args, **kwargs):
        pass

    def __call__(self, texts):
        out = np.zeros((len(texts), 64))
        for row, text in enumerate(texts):
            for word in str(text).lower().split():
                out[row, sum(map(ord, word)) % 64] += 1
        return out


@pytest.fixture(autouse=True)
def _embedder(monkeypatch):
    monkeypatch.setattr(probes, "MiniLMEmbedder", _BagOfWords)


def _bench(out, data, *args):
    return main(["benchmark", "explain", "--data", str(data), "--out", str(out), "--groups", "false",
                 "--max_pairs", "4", "--device", "cpu", "--generation.max_new_tokens", "3", *map(str, args)])


def test_ablation_kinds():
    assert ablation_kinds("all") == KINDS and ablation_kinds(()) == () and ablation_kinds(None) == ()
    assert ablation_kinds("no-cf, shuffle-users,no-cf") == ("no-cf", "shuffle-users")
    with pytest.raises(WhyrecError, match=r"unknown ablation 'shuffle'; choose from shuffle-users, .*no-profiles"):
        ablation_kinds(["shuffle"])


def test_ablations_of_a_run_go_into_the_comparison(tmp_path_factory, tmp_path):
    root = T.tiny_run(tmp_path_factory)
    out = tmp_path / "bench"
    assert _bench(out, root / "data", "--methods", "none", "--runs", f"tiny={root / 'explainer'}",
                  "--ablations", "no-cf,no-profiles") == 0
    comparison = json.loads((out / "comparison.json").read_text())
    result = comparison["ablations"]["tiny"]
    assert result["method"] == "xrec" and result["n"] == comparison["n_pairs"] == 4
    assert result["kinds"] == ["no-cf", "no-profiles"] and set(result["deltas"]) == {"no-cf", "no-profiles"}
    saved = json.loads((out / "ablations" / "tiny" / "ablations" / "ablations.json").read_text())
    assert saved["deltas"] == result["deltas"]
    table = (out / "comparison.md").read_text()
    assert "## Ablations" in table and "### tiny" in table
    assert table.index("| tiny |") < table.index("## Ablations") < table.index("| no-cf |") < table.index("| no-profiles |")
    # the full method is the benchmark row itself (its predictions handed over, not generated again)
    assert not (out / "ablations" / "tiny" / "ablations" / "full.jsonl").exists()
    row, full = comparison["rows"]["tiny"]["metrics"], result["systems"]["full"]["metrics"]
    assert full["pepler"] == row["pepler"] and full["standard"] == row["standard"]


@pytest.fixture(scope="module")
def toy_data(tmp_path_factory):
    return toy_dataset(tmp_path_factory.mktemp("toy-ablations"))


def test_a_trained_row_without_cf_input_is_reported_skipped(toy_data, tmp_path):
    with METHODS.temporary("toy", ToyMethod(), "popularity with template explanations (tests only)"):
        assert _bench(tmp_path / "b", toy_data, "--methods", "toy", "--ablations", "all") == 0
    result = json.loads((tmp_path / "b" / "comparison.json").read_text())["ablations"]["toy"]
    assert result["skipped"] == {k: "no CF input to ablate" for k in KINDS} and result["deltas"] == {}
    assert "| no-cf | no CF input to ablate" in (tmp_path / "b" / "comparison.md").read_text()


def test_an_unknown_ablation_stops_before_training(toy_data, tmp_path, capsys):
    with METHODS.temporary("toy", ToyMethod(), "popularity with template explanations (tests only)"):
        capsys.readouterr()
        assert _bench(tmp_path / "b", toy_data, "--methods", "toy", "--ablations", "no-cf,shuffle") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "unknown ablation 'shuffle'; choose from shuffle-users" in err
    assert not (tmp_path / "b" / "methods").exists()
