"""Feature–opinion extraction: known answers, vocabulary, templates and the precision fixture."""

import json
from pathlib import Path

import pandas as pd
import pytest

from whyrec.data.dataset import RecDataset
from whyrec.data.features import (
    add_templates,
    build_feature_vocabulary,
    extract_quadruples,
    split_sentences,
)
from whyrec.data.pepler import load_pepler, write_pepler
from whyrec.utils import WhyrecError

FIXTURE = Path(__file__).resolve().parents[1] / "assets" / "feature_precision_100.jsonl"
# The fixture's sample: vocabulary = build_feature_vocabulary(every reviewText of
# reviews_Musical_Instruments_5.json.gz, min_count=5); reviews visited in the order of
# random.Random(2024).shuffle(range(n)); from each review with a quadruple, rng.choice of
# them; repeated sentences skipped; the first 100 kept and judged by hand: correct means the
# feature is an aspect of the reviewed product (or the product itself), the adjective is an
# opinion on it in that sentence and the sign is right.
MEASURED_PRECISION = 0.76  # the number reported for the hand-checked sample


def pairs(text: str) -> list[tuple[str, str, int]]:
    return [(f, a, s) for f, a, _, s in extract_quadruples(text)]


@pytest.mark.parametrize("text, expected", [
    ("The sound is great.", [("sound", "great", 1)]),
    ("The tone is not very good.", [("tone", "good", -1)]),
    ("These are not bad strings.", [("strings", "bad", 1)]),
    ("Great price and the cable isn't flimsy.", [("price", "great", 1), ("cable", "flimsy", 1)]),
    ("The tuner never seemed accurate.", [("tuner", "accurate", -1)]),
    ("Good sound quality.", [("quality", "good", 1)]),
    ("The strings sound great.", [("strings", "great", 1)]),
    ("It is great.", []),  # a pronoun is no feature
    ("Great product, great job!", []),  # generic nouns are stop words
    ("My other bag lacks the pockets but not the nice storage pockets.", [("storage", "nice", 1)]),
    ("The knobs feel flimsy, but the finish is beautiful.", [("knobs", "flimsy", -1), ("finish", "beautiful", 1)]),
])
def test_known_answers(text, expected):
    assert pairs(text) == expected


def test_sentences_and_quadruple_fields():
    text = "The strap is comfortable.I love it!  The buckle was flimsy"
    assert split_sentences(text) == ["The strap is comfortable.", "I love it!", "The buckle was flimsy"]
    assert extract_quadruples(text) == [("strap", "comfortable", "The strap is comfortable.", 1),
                                        ("buckle", "flimsy", "The buckle was flimsy", -1)]
    assert extract_quadruples(text, vocabulary={"buckle"}) == [extract_quadruples(text)[1]]


def test_vocabulary_counts_reviews_not_mentions():
    texts = ["Great tone. Great tone!", "The tone is warm.", "Nice strap."]
    assert build_feature_vocabulary(texts, min_count=2) == {"tone": 2}
    assert build_feature_vocabulary(texts, min_count=1) == {"tone": 2, "strap": 1}
    with pytest.raises(WhyrecError, match="min_count"):
        build_feature_vocabulary(texts, min_count=0)


def tiny_reviews() -> RecDataset:
    inter = pd.DataFrame({
        "user": ["a", "b", "c", "d"], "item": ["x", "x", "y", "y"], "rating": [5.0, 2.0, 4.0, 3.0],
        "review": ["Great tone. The tone is warm and the strap is comfortable.", "The tone was harsh.",
                   "Nice strap, great tone.", "Arrived on time."]})
    return RecDataset(inter, None, None, meta={"source": "test"})


def test_add_templates_fills_columns_and_drops_records(tmp_path):
    ds = add_templates(tiny_reviews(), min_count=2, seed=0)
    inter = ds.interactions
    assert inter["user"].tolist() == ["a", "b", "c"]  # d has no feature-opinion pair
    assert ds.meta["templates"]["dropped_no_template"] == 1 and ds.meta["templates"]["records_in"] == 4
    assert set(inter["feature"]) <= {"tone", "strap"}
    assert inter.loc[1, ["feature", "opinion", "explanation"]].tolist() == ["tone", "harsh", "The tone was harsh."]
    assert inter["sentiment"].tolist()[1] == -1
    for review, sentence in zip(inter["review"], inter["explanation"]):
        assert sentence in review
    again = add_templates(tiny_reviews(), min_count=2, seed=0).interactions
    pd.testing.assert_frame_equal(inter, again)  # the seed fixes the choice
    back = load_pepler(write_pepler(ds, tmp_path / "pepler", n_folds=1), fold=1).interactions
    assert back["feature"].tolist() == inter["feature"].tolist()
    assert back["sentiment"].tolist() == inter["sentiment"].tolist()


def test_add_templates_needs_review_text():
    ds = RecDataset(pd.DataFrame({"user": ["a"], "item": ["x"]}), None, None)
    with pytest.raises(WhyrecError, match="review"):
        add_templates(ds)


def test_precision_fixture():
    rows = [json.loads(line) for line in FIXTURE.read_text().splitlines()]
    assert len(rows) == 100
    assert all(set(r) == {"sentence", "feature", "adj", "sentiment", "correct", "note"} for r in rows)
    assert all(r["sentiment"] in (1, -1) and isinstance(r["correct"], bool) for r in rows)
    assert all(r["note"] for r in rows if not r["correct"])  # every error says why
    assert sum(r["correct"] for r in rows) / len(rows) == MEASURED_PRECISION
    # The judged quadruples are what the extractor produces today.
    assert all((r["feature"], r["adj"], r["sentence"], r["sentiment"]) in extract_quadruples(r["sentence"])
               for r in rows)
