"""PEPLER's FMR / FCR / DIV: a hand-computed example and a straight O(N²) port as oracle."""

import math
import random
import re

import pandas as pd
import pytest

from whyrec.data.dataset import RecDataset
from whyrec.eval.features import (
    detect_features,
    feature_diversity,
    feature_metrics,
    feature_set_from_records,
)
from whyrec.eval.text import postprocess
from whyrec.utils import WhyrecError

FEATURES = {"room", "staff", "location", "breakfast", "front desk"}


def raises(message):
    return pytest.raises(WhyrecError, match=re.escape(message))


# ---------------------------------------------------------------- reference: PEPLER's loops
def reference_metrics(predictions, gt_features, feature_set):
    """A line-by-line port of the definitions in METHODS §2.4, all pairs for DIV."""
    batch = []
    for text in predictions:
        found = []
        for token in postprocess(text).split():
            if token in feature_set:
                found.append(token)
        batch.append(set(found))
    matched = 0
    for found, feature in zip(batch, gt_features):
        if feature in found:
            matched += 1
    covered = set()
    for found in batch:
        covered = covered | found
    total = 0
    for i, x in enumerate(batch):
        for j in range(i + 1, len(batch)):
            total += len(x & batch[j])
    n = len(batch)
    return {"fmr": matched / n, "fcr": len(covered) / len(feature_set),
            "div": total / (n * (n - 1) / 2)}


# ---------------------------------------------------------------- worked example
def test_worked_example():
    predictions = [
        "The room was clean, and the staff friendly.",  # F = {room, staff}
        "Great location!",  # F = {location}
        "The room's view.",  # "room 's" after postprocessing: F = {room}
        "Nice front desk. Room ok",  # multi-word feature and "Room" never match: F = {}
    ]
    gt = ["staff", "room", "room", "front desk"]
    assert detect_features([postprocess(p).split() for p in predictions], FEATURES) == [
        {"room", "staff"}, {"location"}, {"room"}, set()]
    # FMR: records 1 and 3 contain their feature -> 2/4. FCR: {room, staff, location} -> 3/5.
    # DIV: of the 6 pairs only (1, 3) share a feature (room) -> 1/6.
    assert feature_metrics(predictions, gt, FEATURES) == pytest.approx(
        {"fmr": 0.5, "fcr": 0.6, "div": 1 / 6}, abs=1e-15)
    assert reference_metrics(predictions, gt, FEATURES) == feature_metrics(predictions, gt, FEATURES)


def test_div_counts_each_shared_feature_once_per_pair():
    # three records share "room", two also share "staff": C(3,2) + C(2,2) = 4 shared, 3 pairs
    assert feature_diversity([{"room", "staff"}, {"room", "staff"}, {"room"}]) == 4 / 3
    assert feature_diversity([set(), set()]) == 0.0
    assert math.isnan(feature_diversity([{"room"}]))  # no pairs


# ---------------------------------------------------------------- equivalence with O(N²)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_quadratic_reference_on_random_data(seed):
    rng = random.Random(seed)
    vocab = [f"w{i}" for i in range(40)]
    feature_set = set(vocab[:15]) | {"two words"}
    predictions = [" ".join(rng.choices(vocab + [",", "."], k=rng.randint(0, 12))) for _ in range(400)]
    gt = [rng.choice(sorted(feature_set)) for _ in predictions]
    fast = feature_metrics(predictions, gt, feature_set)
    assert fast == reference_metrics(predictions, gt, feature_set)  # bit-identical, not approx
    assert 0 < fast["fmr"] < 1 and fast["div"] > 0


# ---------------------------------------------------------------- inputs
def test_bad_inputs():
    with raises("predictions has 1 rows but gt_features has 2"):
        feature_metrics(["room"], ["room", "staff"], FEATURES)
    with raises("no predictions"):
        feature_metrics([], [], FEATURES)
    with raises("feature_set is empty"):
        feature_metrics(["room"], ["room"], set())
    with raises("predictions row 1 is NoneType"):
        feature_metrics(["room", None], ["room", "room"], FEATURES)


def test_feature_set_from_records():
    pepler = [{"template": ("room", "clean", "the room was clean", 1)},
              {"template": ("front desk", "slow", "slow front desk", -1)}]
    assert feature_set_from_records(pepler) == {"room", "front desk"}
    assert feature_set_from_records([{"feature": "staff"}, {"feature": None}]) == {"staff"}
    frame = pd.DataFrame({"user": ["u", "u", "v"], "item": ["a", "b", "a"],
                          "feature": ["room", "", None], "split": ["train", "test", "valid"]})
    assert feature_set_from_records(frame) == {"room"}
    assert feature_set_from_records(RecDataset(frame, None, None)) == {"room"}
    with raises("no 'feature' column (have: user, item)"):
        feature_set_from_records(frame[["user", "item"]])
    with raises("record has neither 'template' nor 'feature' (has: text)"):
        feature_set_from_records([{"text": "hi"}])
