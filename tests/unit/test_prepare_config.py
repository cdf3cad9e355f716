"""PrepareConfig: the one validated config of `whyrec data prepare` / `prepare_dataset`.

It refuses bad values before anything is read or written, the CLI's flat options are exactly its
fields, and folders keep the run record and fingerprint of the loose-argument version."""

import dataclasses
import inspect
import json
import math
import typing

import pandas as pd
import pytest

from whyrec import cli
from whyrec.cli_data import data_prepare
from whyrec.config_checks import ConfigError
from whyrec.config_data import COLUMNS, RAW_REVIEWS, SOURCES, SPLITS, PrepareConfig
from whyrec.data.prepare import prepare_dataset
from whyrec.utils import WhyrecError

TABLE = {"source": "csv", "path": "t.csv"}

REFUSED = [  # (fields, the field named, words of the message)
    ({"source": "movielens"}, "source", "unknown source 'movielens'; choose one of: ml-100k, ml-1m, xrec"),
    ({"source": "csv"}, "path", "source csv reads a file or folder: pass --path"),
    ({"source": "ml-100k", "max_items": 10}, "max_items", "--max_items applies to raw reviews: --source amazon-json"),
    ({**TABLE, "extract_features": True}, "extract_features", "--extract_features needs raw review text"),
    ({**TABLE, "on_error": "ignore"}, "on_error", "--on_error 'ignore': choose raise or skip"),
    ({**TABLE, "split": "temporal"}, "split", "unknown split 'temporal'; choose one of: random, leave_last_out"),
    ({**TABLE, "seed": -1}, "seed", "seed must be >= 0 (got -1)"),
    ({**TABLE, "seed": 1.5}, "seed", "seed must be an integer (got 1.5)"),
    ({**TABLE, "max_users": 0}, "max_users", "max_users must be >= 1 or null (got 0)"),
    ({**TABLE, "max_users": 2.5}, "max_users", "max_users must be an integer or null (got 2.5)"),
    ({"source": "amazon-json", "path": "r.json", "max_items": 0}, "max_items", "max_items must be >= 1"),
    ({**TABLE, "feature_min_count": 0}, "feature_min_count", "feature_min_count must be >= 1 (got 0)"),
    ({**TABLE, "k_core": -2}, "k_core", "k_core must be >= 0 (got -2)"),
    ({**TABLE, "text_test_size": 0}, "text_test_size", "text_test_size must be >= 1 or null (got 0)"),
    ({**TABLE, "min_rating": math.nan}, "min_rating", "min_rating must be a finite number"),
    ({**TABLE, "review_min_rating": math.inf}, "review_min_rating", "review_min_rating must be a finite number"),
    ({**TABLE, "user_col": " "}, "user_col", "user_col must be a non-empty string"),
    ({**TABLE, "rating_col": ""}, "rating_col", "rating_col must be a non-empty string"),
    ({**TABLE, "explanations": "no"}, "explanations", "explanations must be true or false (got 'no')"),
]


@pytest.mark.parametrize("fields, field, words", REFUSED, ids=[f"{r[1]}-{i}" for i, r in enumerate(REFUSED)])
def test_refuses_bad_values_naming_the_field(fields, field, words):
    with pytest.raises(ConfigError) as err:
        PrepareConfig(**fields)
    assert err.value.field == field and err.value.config is PrepareConfig
    assert words in str(err.value) and "\n" not in str(err.value)
    assert isinstance(err.value, WhyrecError)  # the CLI prints it as one line, exit 2


def test_accepts_every_source_and_its_documented_limits():
    for source in SOURCES:
        PrepareConfig(source=source, path=None if source.startswith("ml-") else "x")
    config = PrepareConfig(source="amazon-json", path="r.json", max_items=2000, max_users=4000, k_core=0,
                           extract_features=True, review_min_rating=4, on_error="skip", split="leave_last_out",
                           seed=0, text_test_size=600, rating_col="stars")
    assert config.columns() == {"user_col": "user", "item_col": "item", "rating_col": "stars",
                                "timestamp_col": None, "review_col": None, "explanation_col": None,
                                "title_col": None}
    assert tuple(config.columns()) == COLUMNS


def test_constants_agree_with_the_data_layer():
    from whyrec.data.splits import HOWS
    from whyrec.registry import DATASETS

    assert SPLITS == HOWS  # repeated in config_data, which may not import data
    assert set(RAW_REVIEWS) <= set(DATASETS.names())  # prepare hands these to the registered loader


def test_cli_options_are_the_fields_with_the_same_types_and_defaults():
    params = inspect.signature(data_prepare).parameters
    hints = typing.get_type_hints(data_prepare)
    field_hints = typing.get_type_hints(PrepareConfig)
    fields = {f.name: f for f in dataclasses.fields(PrepareConfig)}
    assert set(params) - {"out", "overwrite"} == set(fields)
    for name, f in fields.items():
        assert hints[name] == field_hints[name], name
        default = inspect.Parameter.empty if f.default is dataclasses.MISSING else f.default
        assert params[name].default == default, name


def test_cli_refuses_in_one_line_before_touching_out(tmp_path, capsys):
    out = tmp_path / "o"
    rc = cli.main(["data", "prepare", "--source", "csv", "--path", "t.csv", "--out", str(out), "--max_users", "0"])
    err = capsys.readouterr().err
    assert rc == 2 and err == "whyrec: error: max_users must be >= 1 or null (got 0)\n"
    assert not out.exists()
    rc = cli.main(["data", "prepare", "--source", "ml-100k", "--out", str(out), "--max_items", "5"])
    assert rc == 2 and capsys.readouterr().err.startswith("whyrec: error: --max_items applies to raw reviews")


def _table(tmp_path):
    path = tmp_path / "t.csv"
    pd.DataFrame({"u": ["a", "a", "a", "b", "b", "b"], "i": ["x", "y", "z", "x", "y", "z"],
                  "r": [5, 3, 4, 1, 2, 5], "t": [1, 2, 3, 4, 5, 6]}).to_csv(path, index=False)
    return path


def test_folder_record_and_fingerprint_match_the_loose_argument_version(tmp_path, capsys):
    path = _table(tmp_path)
    config = PrepareConfig(source="csv", path=str(path), split="leave_last_out", seed=1, user_col="u",
                           item_col="i", rating_col="r", timestamp_col="t")
    new = prepare_dataset(config, str(tmp_path / "a"))
    run = json.loads((tmp_path / "a" / "run_config.json").read_text())["config"]
    # the record of the loose-argument prepare_dataset: its arguments in order, without overwrite
    assert list(run) == ["source", "out", "path", "split", "seed", "max_users", "explanations", "user_col",
                         "item_col", "rating_col", "timestamp_col", "review_col", "explanation_col", "title_col",
                         "min_rating", "extract_features", "feature_min_count", "k_core", "review_min_rating",
                         "on_error", "text_test_size", "max_items", "timings_s"]
    fingerprint = json.loads((tmp_path / "a" / ".whyrec.json").read_text())["fingerprint"]
    assert fingerprint == {**{k: v for k, v in run.items() if k not in ("out", "timings_s")},
                           "path": str(path.resolve())}
    # the earlier call form builds the same config: same summary, and the CLI's rerun reuses the folder
    old = prepare_dataset("csv", str(tmp_path / "b"), path=str(path), split="leave_last_out", seed=1,
                          user_col="u", item_col="i", rating_col="r", timestamp_col="t")
    assert old == new
    rc = cli.main(["data", "prepare", "--source", "csv", "--path", str(path), "--out", str(tmp_path / "a"),
                   "--split", "leave_last_out", "--seed", "1", "--user_col", "u", "--item_col", "i",
                   "--rating_col", "r", "--timestamp_col", "t"])
    assert rc == 0, capsys.readouterr().err
    assert json.loads(capsys.readouterr().out) == new


def test_prepare_dataset_call_forms(tmp_path):
    config = PrepareConfig(source="ml-100k")
    with pytest.raises(TypeError, match="set them on the config"):
        prepare_dataset(config, str(tmp_path), max_users=3)
    with pytest.raises(TypeError, match="needs out"):
        prepare_dataset(config)
    with pytest.raises(TypeError, match="needs a PrepareConfig"):
        prepare_dataset(out=str(tmp_path), max_users=3)
    with pytest.raises(ConfigError, match="pass --path"):  # keyword form of earlier versions, still checked
        prepare_dataset(source="xrec", out=str(tmp_path / "x"))
    assert not (tmp_path / "x").exists()
