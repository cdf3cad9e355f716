"""Grouped analysis by user activity (XRec §4.4): labels, per-group metrics, the PNG."""

import pytest

from whyrec.eval.groups import ZERO_SHOT, activity_groups, grouped_metrics, plot_groups
from whyrec.eval.text import pepler_text_metrics
from whyrec.utils import WhyrecError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def train_with_counts(counts: dict) -> list:
    return [user for user, n in counts.items() for _ in range(n)]


def test_quintiles_and_zero_shot_labels():
    # u1..u10 have 1..10 training interactions: ten users, five groups of two.
    train = train_with_counts({f"u{i}": i for i in range(1, 11)})
    evaluated = ["u10", "u1", "new", "u2", "u3", "u4", "u5", "u6", "u7", "u8", "u9", "u3"]
    assert activity_groups(train, evaluated) == [
        "G5 (densest)", "G1 (sparsest)", ZERO_SHOT, "G1 (sparsest)", "G2", "G2",
        "G3", "G3", "G4", "G4", "G5 (densest)", "G2",
    ]  # fmt: skip


def test_uneven_groups_give_the_extra_users_to_the_sparser_groups():
    train = train_with_counts({"a": 5, "b": 1, "c": 7, "d": 2, "e": 3, "f": 9, "g": 4})
    labels = activity_groups(train, list("abcdefg"), n_groups=3)
    # ranked b(1) d(2) e(3) | g(4) a(5) | c(7) f(9): sizes 3, 2, 2
    assert dict(zip("abcdefg", labels)) == {
        "b": "G1 (sparsest)", "d": "G1 (sparsest)", "e": "G1 (sparsest)",
        "g": "G2", "a": "G2", "c": "G3 (densest)", "f": "G3 (densest)",
    }  # fmt: skip


def test_ties_are_split_by_user_id_whatever_the_order():
    train = train_with_counts({"x": 2, "y": 2, "z": 2, "w": 2})
    forward = activity_groups(train, ["w", "x", "y", "z"], n_groups=2)
    backward = activity_groups(train, ["z", "y", "x", "w"], n_groups=2)
    assert forward == ["G1 (sparsest)", "G1 (sparsest)", "G2 (densest)", "G2 (densest)"]
    assert backward == forward[::-1]


def test_group_guards():
    with pytest.raises(WhyrecError, match="n_groups"):
        activity_groups(["a"], ["a"], n_groups=0)
    with pytest.warns(UserWarning, match="same type"):
        assert activity_groups([1, 2, 2], ["1", "2"]) == [ZERO_SHOT, ZERO_SHOT]


PREDS = [
    "the strings sound bright and warm",
    "great for beginners who want a cheap tuner",
    "a sturdy stand that holds any guitar",
    "the cable is quiet and well built",
    "the pedal adds a warm overdrive",
    "the strings sound bright and warm",
]
REFS = [
    "these strings have a bright warm tone",
    "a cheap tuner that beginners will like",
    "the stand is sturdy and fits my guitar",
    "a quiet cable with solid connectors",
    "warm overdrive with plenty of gain",
    "bright strings that stay in tune",
]


def test_grouped_metrics_equal_metrics_on_each_subset():
    groups = ["G2", ZERO_SHOT, "G1 (sparsest)", "G2", "G1 (sparsest)", "G2"]
    grouped = grouped_metrics(PREDS, REFS, groups, pepler_text_metrics)
    assert list(grouped) == ["G1 (sparsest)", "G2", ZERO_SHOT]
    for name, metrics in grouped.items():
        idx = [i for i, g in enumerate(groups) if g == name]
        expected = pepler_text_metrics([PREDS[i] for i in idx], [REFS[i] for i in idx])
        assert metrics == {"n": len(idx), **expected}
    assert grouped["G2"]["usr"] == pytest.approx(2 / 3)  # rows 0 and 5 are the same sentence


def test_grouped_metrics_refuse_unpaired_rows():
    with pytest.raises(WhyrecError, match="row by row"):
        grouped_metrics(PREDS, REFS, ["G1"] * 5, pepler_text_metrics)


def test_plot_writes_a_png_atomically(tmp_path):
    groups = [
        "G1 (sparsest)",
        "G1 (sparsest)",
        "G2 (densest)",
        "G2 (densest)",
        ZERO_SHOT,
        ZERO_SHOT,
    ]
    grouped = grouped_metrics(PREDS, REFS, groups, pepler_text_metrics)
    path = plot_groups(grouped, path=tmp_path / "plots" / "groups.png")
    assert path == tmp_path / "plots" / "groups.png"
    assert path.read_bytes()[:8] == PNG_MAGIC
    assert [p.name for p in path.parent.iterdir()] == ["groups.png"]  # no temp file left

    from matplotlib.image import imread

    height, width, _ = imread(path).shape
    assert width > height > 100  # three panels side by side


def test_plot_names_a_missing_metric(tmp_path):
    grouped = {"G1": {"n": 2, "bleu4": 1.0}}
    with pytest.raises(WhyrecError, match=r"\['meteor'\].*available: bleu4, n"):
        plot_groups(grouped, metrics=("bleu4", "meteor"), path=tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()
