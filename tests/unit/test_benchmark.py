"""Pieces of `whyrec benchmark explain` that need no model."""

import json

import pandas as pd
import pytest

from whyrec.benchmark import external_predictions, unavailable
from whyrec.utils import WhyrecError


def _pairs():
    return pd.DataFrame({"user": ["u1", "u2"], "item": ["i1", "i2"], "explanation": ["ref a", "ref b"]})


def test_external_predictions_relinked_by_reference_text(tmp_path):
    preds, refs = tmp_path / "pred.jsonl", tmp_path / "ref.jsonl"
    # The other system's files list the references in another order, with an extra row.
    preds.write_text("".join(json.dumps({"prediction": p}) + "\n" for p in ["says b", "says x", "says a"]))
    refs.write_text("".join(json.dumps({"reference": r}) + "\n" for r in ["ref b", "ref x", "ref a"]))
    ext = external_predictions(f"other={preds}:{refs}", _pairs())
    assert (ext.name, ext.predictions, ext.pairs) == ("other", ["says a", "says b"], (0, 1))
    with pytest.raises(WhyrecError, match="2 predictions for 2 pairs|3 predictions for 2 pairs"):
        external_predictions(f"other={preds}", _pairs())
    with pytest.raises(WhyrecError, match="write NAME=PREDICTIONS_FILE"):
        external_predictions(str(preds), _pairs())
    refs.write_text(json.dumps({"reference": "ref a"}) + "\n")
    preds.write_text(json.dumps({"prediction": "says a"}) + "\n")
    # part of the references: scored on the pairs it covers (issue 20 item 4), not refused
    ext = external_predictions(f"other={preds}:{refs}", _pairs())
    assert (ext.predictions, ext.pairs) == (["says a"], (0,))


def test_unavailable_methods_name_the_reason():
    from whyrec.data.dataset import RecDataset

    inter = pd.DataFrame({"user": ["u"], "item": ["i"], "rating": [None], "feature": [""]})
    Data = RecDataset(inter, pd.DataFrame({"item": ["i"]}), None, meta={"name": "no ratings"})

    assert unavailable("pepler-discrete", Data).startswith("no feature words")
    assert unavailable("pepler-reg", Data) == "no ratings"
    assert unavailable("xrec", Data) is None
    assert unavailable("gavamoe", Data) is None  # its VAE learns from the interactions alone
    assert unavailable("recexplainer", Data).startswith("no timestamps")  # its target orders histories by time
    dated = RecDataset(inter.assign(timestamp=[5]), pd.DataFrame({"item": ["i"]}), None, meta={"name": "dated"})
    assert unavailable("recexplainer", dated) is None
    with pytest.raises(WhyrecError, match="unknown benchmark method 'gpt'"):
        unavailable("gpt", Data)


def test_activity_breakdown_scores_every_system_on_the_same_groups(tmp_path):
    from types import SimpleNamespace

    from whyrec.benchmark import activity_breakdown
    from whyrec.data import schema as S

    # u1 has 1 training interaction, u2 has 3, u3 none (zero-shot).
    inter = pd.DataFrame({S.USER: ["u1", "u2", "u2", "u2", "u3"], S.ITEM: list("abcde"),
                          S.SPLIT: [S.TRAIN] * 4 + [S.TEST]})
    pairs = pd.DataFrame({S.USER: ["u1", "u2", "u3"], S.ITEM: ["x", "y", "z"]})
    refs = ["the tone is warm and clear", "strings feel cheap but fine", "a sturdy stand for the price"]
    preds = {"copy": list(refs), "sparse-miss": ["nothing alike here at all", refs[1], refs[2]]}
    grouped = activity_breakdown(SimpleNamespace(interactions=inter), pairs, preds, refs, tmp_path)
    assert list(grouped["copy"]) == ["G1 (sparsest)", "G2 (densest)", "zero-shot"]
    assert grouped["copy"]["G1 (sparsest)"]["bleu1"] == pytest.approx(100.0)
    assert grouped["sparse-miss"]["G1 (sparsest)"]["bleu1"] == 0.0
    assert grouped["sparse-miss"]["G2 (densest)"]["bleu1"] == pytest.approx(100.0)
    table = (tmp_path / "by_activity.md").read_text()
    assert "| sparse-miss | BLEU-4 | 0.000 |" in table and "G1 (sparsest) (n=1)" in table
    assert (tmp_path / "by_activity.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_training_losses_print_to_four_significant_digits():
    from whyrec.benchmark_tables import comparison_table

    pepler = {"bleu1": 2.0, "bleu4": 1.0, "rouge1_f": 30.0, "rouge2_f": 10.0, "rougeL_f": 25.0, "usr": 1.0}
    train = {"steps": 300, "first_loss": 1.579123456789, "last_loss": 0.55381234567, "elapsed_s": 750.0}
    result = {"data": "d", "split": "test", "n_pairs": 6, "seed": 0, "skipped": {},
              "rows": {"trained": {"metrics": {"pepler": pepler}, "train": train, "generate_s_per_pair": 0.4},
                       "untrained": {"metrics": {"pepler": pepler}, "train": {"steps": 3}, "generate_s_per_pair": None}}}
    table = comparison_table(result)
    assert "| 300 (1.579→0.5538) | 12.5 | 0.40 |" in table and "| 3 (?→?) | – | – |" in table
