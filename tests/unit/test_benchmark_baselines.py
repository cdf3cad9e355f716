"""The benchmark's reference points: retrieval baseline, mispaired floor, bootstrap intervals,
grounding column (issue 20 items 3-4)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from whyrec.benchmark_baselines import (
    _cf_vectors,
    floor_and_intervals,
    nearest_pairs,
    retrieval_generator,
)
from whyrec.data import schema as S
from whyrec.data.dataset import RecDataset
from whyrec.eval.bootstrap import bootstrap_intervals, derangement, pair_stats, weighted_metrics
from whyrec.eval.text import pepler_text_metrics

TRAIN_TEXTS = {("u1", "iA"): "its bright strings ring clear", ("u2", "iB"): "the kit has punchy drums",
               ("u3", "iC"): "the keys feel heavy and real", ("u4", "iX"): "the amp is loud and warm"}


def _tiny_dataset() -> RecDataset:
    rows = [{S.USER: u, S.ITEM: i, S.RATING: 4.0, S.SPLIT: S.TRAIN, S.EXPLANATION: t} for (u, i), t in TRAIN_TEXTS.items()]
    rows.append({S.USER: "u1", S.ITEM: "iX", S.RATING: 5.0, S.SPLIT: S.TEST, S.EXPLANATION: "a loud amp for guitar"})
    rows.append({S.USER: "u4", S.ITEM: "iC", S.RATING: 3.0, S.SPLIT: S.TEST, S.EXPLANATION: "heavy keys but real"})
    items = pd.DataFrame({S.ITEM: ["iA", "iB", "iC", "iX", "iY"], S.TITLE: ["Strat", "Drum Kit", "Piano", "Amp", "Pedal"],
                          S.PROFILE: ["electric guitar strings", "drum kit sticks", "piano keys hammers",
                                      "guitar amp speaker", "guitar pedal for strings"]})
    users = pd.DataFrame({S.USER: ["u1", "u2", "u3", "u4"], S.PROFILE: ["", "", "", ""]})
    return RecDataset(pd.DataFrame(rows), items, users)


def test_profile_retrieval_picks_the_most_similar_training_pair():
    ds = _tiny_dataset()
    generate = retrieval_generator(ds, encoder=None)
    pairs = pd.DataFrame({S.USER: ["u9", "u3"], S.ITEM: ["iY", "iC"]})
    # (u9, iY): "guitar pedal for strings" shares two words with iA, one with iX; (u3, iC) is a training pair itself:
    # its own text is never retrieved, even though its profile is the exact match.
    got = generate(pairs)
    assert got[0] == TRAIN_TEXTS[("u1", "iA")]
    assert got[1] != TRAIN_TEXTS[("u3", "iC")] and got[1] in TRAIN_TEXTS.values()


def test_cf_retrieval_uses_concatenated_user_and_item_embeddings():
    enc = SimpleNamespace(user_emb=torch.tensor([[1.0, 0.0], [0.0, 1.0]]), item_emb=torch.tensor([[1.0, 0.0], [0.0, 1.0]]),
                          user2idx={"a": 0, "b": 1}, item2idx={"x": 0, "y": 1})
    cand = pd.DataFrame({S.USER: ["a", "b", "a"], S.ITEM: ["y", "x", "x"]})
    query = pd.DataFrame({S.USER: ["a", "cold"], S.ITEM: ["x", "y"]})
    vectors = _cf_vectors(enc, query)
    assert vectors.tolist() == [[1, 0, 1, 0], [0, 0, 0, 1]]  # an unknown user is zeros: matched on its item
    ids_q, ids_c = [("a", "x"), ("cold", "y")], list(zip(cand[S.USER], cand[S.ITEM]))
    # (a, x) is itself candidate 2 (identical vector): never chosen; candidates 0 and 1 tie, the first wins.
    assert nearest_pairs(vectors, _cf_vectors(enc, cand), ids_q, ids_c) == [0, 0]
    assert nearest_pairs(np.ones((1, 2)), np.ones((1, 2)), [("a", "x")], [("a", "x")]) == [-1]


def test_derangement_has_no_fixed_point_and_is_seeded():
    for n in (2, 3, 10, 101):
        perm = derangement(n, seed=n)
        assert sorted(perm) == list(range(n)) and all(p != k for k, p in enumerate(perm))
    assert derangement(50, seed=1) == derangement(50, seed=1) != derangement(50, seed=2)


def _texts(n: int, seed: int = 0) -> tuple[list[str], list[str]]:
    rng = np.random.default_rng(seed)
    words = "the tone is warm and clear strings feel cheap but fine sturdy stand for price".split()
    refs = [" ".join(rng.choice(words, size=12)) for _ in range(n)]
    preds = [" ".join(r.split()[:8] + list(rng.choice(words, size=2))) for r in refs]  # shorter: brevity < 1
    return preds, refs


def test_mispaired_score_of_a_perfect_predictor_drops():
    _, refs = _texts(40)
    out = floor_and_intervals(refs, refs, seed=0, smooth=False)
    assert out["mispaired"]["bleu4"] < 50 and out["mispaired"]["rougeL_f"] < 60  # paired: both 100


def test_bootstrap_identity_resample_equals_the_full_metric():
    preds, refs = _texts(30)
    preds[3] = preds[4]  # a duplicate, so USR is below 1
    full = pepler_text_metrics(preds, refs)
    got = weighted_metrics(pair_stats(preds, refs), np.ones((1, len(preds))))
    assert got["bleu4"][0] == pytest.approx(full["bleu4"], abs=1e-9)
    assert got["rougeL_f"][0] == pytest.approx(full["rougeL_f"], abs=1e-9)
    assert got["usr"][0] == pytest.approx(full["usr"], abs=1e-12) and full["usr"] < 1
    smoothed = weighted_metrics(pair_stats(preds, refs), np.ones((1, len(preds))), smooth=True)
    assert smoothed["bleu4"][0] == pytest.approx(pepler_text_metrics(preds, refs, smooth=True)["bleu4"], abs=1e-9)


def test_bootstrap_interval_contains_the_estimate_and_narrows_with_more_pairs():
    widths = []
    for n in (20, 320):
        preds, refs = _texts(n, seed=n)
        full = pepler_text_metrics(preds, refs)
        ci = bootstrap_intervals(pair_stats(preds, refs, bertscore_f1=np.linspace(0.5, 0.9, n)), resamples=400)
        for key in ("bleu4", "rougeL_f"):
            assert ci[key][0] <= full[key] <= ci[key][1]
        assert ci["bertscore_f1"][0] < 0.7 < ci["bertscore_f1"][1]
        widths.append(ci["rougeL_f"][1] - ci["rougeL_f"][0])
    assert widths[1] < widths[0] / 2


def test_bertscore_floor_and_intervals_use_the_scorer_per_pair():
    class Scorer:  # F1 = 1 when a prediction meets its own reference, else 0.2
        def score(self, preds, refs):
            f1 = [1.0 if p == r else 0.2 for p, r in zip(preds, refs)]
            return torch.tensor([[f, f, f] for f in f1])

        def settings(self):
            return {"model": "fake"}

    _, refs = _texts(10)
    out = floor_and_intervals(refs, refs, seed=0, smooth=False, scorer=Scorer())
    assert out["bertscore"]["bertscore_f1"] == 1.0 and out["bertscore"]["model"] == "fake"
    assert out["mispaired"]["bertscore_f1"] == pytest.approx(0.2)
    assert out["intervals"]["bertscore_f1"] == [1.0, 1.0]


def test_benchmark_explain_writes_the_baselines(tmp_path):
    from whyrec.benchmark import benchmark_explain, explanation_methods

    assert "retrieval" in explanation_methods()
    ds = _tiny_dataset()
    ds.items["genre"] = ["Rock", "Jazz", "Classical", "Rock", "Rock"]
    ds.save(tmp_path / "data")
    oracle = tmp_path / "oracle.jsonl"
    oracle.write_text("".join(json.dumps({"prediction": t}) + "\n" for t in ["a loud amp for guitar", "heavy keys but real"]))
    out = tmp_path / "bench"
    result = benchmark_explain(str(tmp_path / "data"), str(out), methods=("retrieval",), external=(f"oracle={oracle}",),
                               groups=False, seed=0)
    rows = json.loads((out / "comparison.json").read_text())["rows"]
    assert set(rows) == {"oracle", "retrieval (profile nearest pair)"} == set(result["rows"])
    oracle_m = rows["oracle"]["metrics"]
    assert oracle_m["pepler"]["rougeL_f"] == pytest.approx(100.0)
    assert oracle_m["mispaired"]["rougeL_f"] < 100.0
    assert set(oracle_m["intervals"]) == {"bleu4", "rougeL_f", "usr"}
    assert {"checked_claims", "hallucination_rate"} <= set(oracle_m["grounding"])
    assert "references_grounding" in result
    preds = [json.loads(line)["prediction"] for line in (out / "predictions" / "retrieval.jsonl").read_text().splitlines()[1:]]
    assert preds == [TRAIN_TEXTS[("u4", "iX")], TRAIN_TEXTS[("u3", "iC")]]  # same item, other user: the nearest pair
    table = (out / "comparison.md").read_text()
    assert "| oracle | 100.00 | " in table and "100.00 [100.00, 100.00]" in table
    assert table.count("| ↳ mispaired |") == 2 and "pairing-specific content" in table
    assert "false claims % (n checkable)" in table and "| references (the data's own texts) |" in table
