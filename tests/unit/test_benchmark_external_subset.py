"""`--external NAME=PRED:REF` whose references cover only part of the benchmark's pairs (issue 20
item 4): the row is scored on the pairs it covers, every other row is rescored on exactly those
pairs, and the count is stated; full coverage changes nothing; no overlap is a one-line error."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from toy_method import ToyConfig, ToyMethod

from whyrec.benchmark import benchmark_explain, select_pairs
from whyrec.benchmark_inputs import external_predictions
from whyrec.data import schema as S
from whyrec.data.dataset import RecDataset
from whyrec.eval.bootstrap import bootstrap_intervals, derangement, pair_stats
from whyrec.eval.grounding import grounding_report
from whyrec.eval.text import pepler_text_metrics
from whyrec.registry import METHODS
from whyrec.utils import WhyrecError

TRAIN = {("u1", "iA"): "its bright strings ring clear", ("u2", "iB"): "the kit has punchy drums",
         ("u3", "iC"): "the keys feel heavy and real", ("u4", "iX"): "the amp is loud and warm",
         ("u2", "iY"): "a pedal that makes strings sing", ("u3", "iA"): "strings that stay in tune"}
TEST = {("u1", "iX"): "a loud amp for guitar", ("u4", "iC"): "heavy keys but real",
        ("u1", "iB"): "punchy drums for a small room", ("u4", "iY"): "the pedal is a rock classic"}
TITLES = {"iA": "Strat", "iB": "Drum Kit", "iC": "Piano", "iX": "Amp", "iY": "Pedal"}
HALF = ("u4", "iC"), ("u4", "iY")  # the pairs the partial external file has references for


def _dataset(root) -> str:
    rows = [{S.USER: u, S.ITEM: i, S.RATING: 4.0, S.SPLIT: S.TRAIN, S.EXPLANATION: t} for (u, i), t in TRAIN.items()]
    rows += [{S.USER: u, S.ITEM: i, S.RATING: 3.0, S.SPLIT: S.TEST, S.EXPLANATION: t} for (u, i), t in TEST.items()]
    items = pd.DataFrame({S.ITEM: list(TITLES), S.TITLE: list(TITLES.values()),
                          S.PROFILE: ["electric guitar strings", "drum kit sticks", "piano keys hammers",
                                      "guitar amp speaker", "guitar pedal for strings"],
                          "genre": ["Rock", "Jazz", "Classical", "Rock", "Rock"]})
    users = pd.DataFrame({S.USER: ["u1", "u2", "u3", "u4"], S.PROFILE: [""] * 4})
    RecDataset(pd.DataFrame(rows), items, users).save(root / "data")
    return str(root / "data")


def _write(path, key: str, texts: list[str]) -> str:
    path.write_text("".join(json.dumps({key: t}) + "\n" for t in texts))
    return str(path)


def _external(root, name: str, pairs: list[tuple[str, str]]) -> str:
    """NAME=PRED:REF for `pairs`, listed in reverse with a reference that is in no benchmark pair."""
    pairs = [*reversed(pairs), ("u9", "iZ")]
    refs = [TEST.get(p, "a reference of another split") for p in pairs]
    preds = [f"{name} says {TITLES.get(p[1], 'it')} is a jazz film" for p in pairs]
    return f"{name}={_write(root / f'{name}.pred.jsonl', 'prediction', preds)}:{_write(root / f'{name}.ref.jsonl', 'reference', refs)}"


def _predictions(out, stem: str) -> list[str]:
    return [json.loads(line)["prediction"] for line in (out / "predictions" / f"{stem}.jsonl").read_text().splitlines()[1:]]


@pytest.fixture(scope="module")
def toy():
    with METHODS.temporary("toy", ToyMethod(), "popularity with template explanations (tests only)") as method:
        yield method


def _run(root, out: str, external: tuple[str, ...], given):
    return benchmark_explain(str(root / "data"), str(root / out), methods=("toy", "retrieval"),
                             runs=(f"given={given}",), external=external, bertscore=True, groups=True, seed=0)


def test_partial_external_is_scored_beside_every_row_rescored_on_its_pairs(toy, tmp_path):
    data = _dataset(tmp_path)
    given = tmp_path / "given"
    ToyMethod().train(data, str(given), model=None, train=None, config=ToyConfig(template="{title} rocks"))
    full, half = _external(tmp_path, "full", list(TEST)), _external(tmp_path, "half", list(HALF))

    result = _run(tmp_path, "bench", (half, full), given)
    pairs = select_pairs(RecDataset.load(data), "test", 200, 0)
    ids = list(zip(pairs[S.USER], pairs[S.ITEM]))
    at = sorted(ids.index(p) for p in HALF)
    assert len(ids) == 4 and len(at) == 2

    assert list(result["rows"]) == ["full", "given", "toy", "retrieval (profile nearest pair)"]  # no "half"
    assert "half" not in result["by_activity"]
    (sub,) = result["subsets"]
    assert (sub["n_pairs"], sub["of_pairs"], sub["pair_indices"]) == (2, 4, at)
    assert sub["external"] == {"half": str(tmp_path / "half.ref.jsonl")}
    assert list(sub["rows"]) == ["half", *result["rows"]]

    out = tmp_path / "bench"
    texts = {"half": None, "full": [f"full says {TITLES[i]} is a jazz film" for _, i in ids], "given": _predictions(out, "given"),
             "toy": _predictions(out, "toy"), "retrieval (profile nearest pair)": _predictions(out, "retrieval")}
    texts["half"] = [t.replace("full", "half") for t in texts["full"]]
    from whyrec.eval.bertscore import BertScorer

    scorer, ds = BertScorer(device="cpu"), RecDataset.load(data)
    refs, users, items = [pairs[S.EXPLANATION][k] for k in at], [ids[k][0] for k in at], [ids[k][1] for k in at]
    for name, row in sub["rows"].items():
        preds = [texts[name][k] for k in at]
        m = row["metrics"]
        assert m["pepler"] == pytest.approx(pepler_text_metrics(preds, refs))
        shuffled = [refs[j] for j in derangement(2, 0)]
        assert m["mispaired"]["bleu4"] == pytest.approx(pepler_text_metrics(preds, shuffled)["bleu4"])
        f1 = scorer.score(preds, refs)[:, 2].double()
        assert m["bertscore"]["bertscore_f1"] == pytest.approx(float(f1.mean()))
        expected = bootstrap_intervals(pair_stats(preds, refs, f1.numpy()), seed=0)
        assert set(m["intervals"]) == set(expected) == {"bleu4", "rougeL_f", "usr", "bertscore_f1"}
        assert all(m["intervals"][k] == pytest.approx(expected[k]) for k in expected)
        grounding = grounding_report(preds, users, items, ds)
        assert [m["grounding"][k] for k in ("checked_claims", "false_claims")] == \
            [grounding[k] for k in ("checked_claims", "false_claims")]
        if name != "half":  # the same trained rows: their cost is the main table's
            assert {k: row[k] for k in ("train", "generate_s_per_pair")} == \
                {k: result["rows"][name][k] for k in ("train", "generate_s_per_pair")}
    assert sub["rows"]["half"]["metrics"]["grounding"]["false_claims"] == 2  # Piano and Pedal are not jazz
    assert result["rows"]["full"]["metrics"]["grounding"]["false_claims"] == 3  # the Drum Kit is
    assert sub["references_grounding"]["checked_claims"] == grounding_report(refs, users, items, ds)["checked_claims"]
    # the main rows are still scored on all 4 pairs
    assert result["rows"]["toy"]["metrics"]["pepler"] == pytest.approx(pepler_text_metrics(texts["toy"], pairs[S.EXPLANATION].tolist()))

    table = (out / "comparison.md").read_text()
    assert "### On the 2 pairs half covers" in table
    assert f"half is scored on 2 of 4 pairs whose references are in {tmp_path / 'half.ref.jsonl'}" in table
    assert table.count("| half |") == 1 and table.count("| toy |") == 2 and table.count("| ↳ mispaired |") == 9

    # without the partial file: the same main table, and no subsets at all
    alone = _run(tmp_path, "bench-full", (full,), given)
    assert "subsets" not in alone and "### On the" not in (tmp_path / "bench-full" / "comparison.md").read_text()
    assert {n: r["metrics"] for n, r in alone["rows"].items()} == {n: r["metrics"] for n, r in result["rows"].items()}
    assert alone["by_activity"] == result["by_activity"]


def test_full_coverage_matches_pairing_in_order(tmp_path):
    """A REF file holding every benchmark reference gives exactly the in-order predictions."""
    pairs = pd.DataFrame({S.USER: ["u1", "u2", "u3"], S.ITEM: ["a", "b", "c"], S.EXPLANATION: ["r1", "r2", "r3"]})
    pred = _write(tmp_path / "p.jsonl", "prediction", ["p3", "p1", "px", "p2"])
    ref = _write(tmp_path / "r.jsonl", "reference", ["r3", "r1", "rx", "r2"])
    ext = external_predictions(f"x={pred}:{ref}", pairs)
    assert (ext.predictions, ext.pairs) == (["p1", "p2", "p3"], (0, 1, 2))
    in_order = external_predictions(f"x={_write(tmp_path / 'o.jsonl', 'prediction', ['p1', 'p2', 'p3'])}", pairs)
    assert (in_order.predictions, in_order.pairs) == (ext.predictions, ext.pairs)
    half = external_predictions(f"x={_write(tmp_path / 'h.jsonl', 'prediction', ['p3'])}:"
                                f"{_write(tmp_path / 'hr.jsonl', 'reference', ['r3'])}", pairs)
    assert (half.predictions, half.pairs, half.references) == (["p3"], (2,), str(tmp_path / "hr.jsonl"))


def test_no_overlap_is_a_one_line_error(tmp_path):
    data = _dataset(tmp_path)
    pred = _write(tmp_path / "p.jsonl", "prediction", ["one", "two"])
    ref = _write(tmp_path / "r.jsonl", "reference", ["not a benchmark reference", "nor this"])
    with pytest.raises(WhyrecError) as err:
        benchmark_explain(data, str(tmp_path / "bench"), methods=("retrieval",), external=(f"yelp={pred}:{ref}",))
    assert str(err.value).startswith(f"--external yelp: none of the 4 benchmark references is in {ref}; give the")
    assert "\n" not in str(err.value)
    assert not (tmp_path / "bench").exists()  # refused before the output folder is made

