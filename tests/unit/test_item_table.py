"""`whyrec data prepare --source csv --items FILE`: a separate item table (MovieLens's movies.csv)
joined on the item id for titles and item metadata; one-line errors for its mistakes (issue 21)."""

import json

import pandas as pd
import pytest

from whyrec import cli
from whyrec.config import ConfigError
from whyrec.config_data import PrepareConfig
from whyrec.data.tabular import load_table
from whyrec.utils import WhyrecError

RATINGS = "userId,movieId,rating,timestamp,title\n" + "".join(
    f"{u},{m},4,{n},{t}\n" for n, (u, m, t) in enumerate(
        [(1, 10, ""), (1, 20, ""), (1, 30, ""), (2, 10, ""), (2, 20, ""), (2, 40, "Forty (from ratings)"),
         (3, 30, ""), (3, 40, "Forty (from ratings)"), (3, 10, "")]))
MOVIES = ("movieId,title,genres\n10,Toy Story (1995),Animation|Comedy\n20,Heat (1995),Action|Crime\n"
          "30,Casino (1995),Drama\n99,Never Rated (2000),Drama\n")


@pytest.fixture
def files(tmp_path):
    (tmp_path / "ratings.csv").write_text(RATINGS)
    (tmp_path / "movies.csv").write_text(MOVIES)
    return tmp_path


def test_item_file_gives_titles_and_metadata(files):
    ds = load_table(files / "ratings.csv", user_col="userId", item_col="movieId", items=files / "movies.csv")
    items = ds.items.set_index("item")
    assert sorted(items.index) == ["10", "20", "30", "40"]  # the interacted items; 99 was never rated
    assert items.loc["10", "title"] == "Toy Story (1995)" and items.loc["20", "genres"] == "Action|Crime"
    assert items.loc["40", "title"] == "Forty (from ratings)"  # not in movies.csv: the ratings' title
    assert pd.isna(items.loc["40", "genres"]) and ds.meta["items_file"] == "movies.csv"
    assert "movieId" not in items.columns  # the id column became `item`


def test_item_file_columns_by_name(files):
    (files / "films.tsv").write_text("id\tname\tyear\n10\tToy Story\t1995\n30\tCasino\t1995\n")
    ds = load_table(files / "ratings.csv", user_col="userId", item_col="movieId", items=files / "films.tsv",
                    item_id_col="id", item_title_col="name")
    items = ds.items.set_index("item")
    assert items.loc["30", "title"] == "Casino" and items.loc["10", "year"] == "1995"
    assert "name" not in items.columns and "id" not in items.columns


def test_item_file_mistakes_are_one_clear_error(files):
    args = dict(user_col="userId", item_col="movieId")
    with pytest.raises(WhyrecError, match=r"--items .*nope.csv not found"):
        load_table(files / "ratings.csv", items=files / "nope.csv", **args)
    with pytest.raises(WhyrecError, match=r"movies.csv: column\(s\) 'name' \(--item_title_col\) not found; "
                                          r"available: movieId, title, genres"):
        load_table(files / "ratings.csv", items=files / "movies.csv", item_title_col="name", **args)
    with pytest.raises(WhyrecError, match=r"'item' \(--item_id_col\) not found"):
        load_table(files / "ratings.csv", user_col="userId", item_col="movieId", items=files / "movies.csv",
                   item_id_col="item")
    (files / "other.csv").write_text("movieId,title\nA1,Alpha\nB2,Beta\n")
    with pytest.raises(WhyrecError, match=r"no id of column 'movieId' \(--item_id_col\) matches.*'A1' there, '10' here"):
        load_table(files / "ratings.csv", items=files / "other.csv", **args)


def test_item_options_are_checked_with_the_config():
    with pytest.raises(ConfigError, match="pass --items FILE"):
        PrepareConfig(source="csv", path="r.csv", item_title_col="title")
    with pytest.raises(ConfigError, match="--items joins an item file to a table"):
        PrepareConfig(source="ml-100k", items="movies.csv")
    with pytest.raises(ConfigError, match="item_id_col must be a non-empty string"):
        PrepareConfig(source="csv", path="r.csv", items="m.csv", item_id_col=" ")
    assert "items" not in PrepareConfig(source="csv", path="r.csv").columns()  # without --items: as before
    assert PrepareConfig(source="csv", path="r.csv", items="m.csv").columns()["items"] == "m.csv"


def test_cli_prepare_joins_the_item_file(files, capsys):
    out = files / "ds"
    rc = cli.main(["data", "prepare", "--source", "csv", "--path", str(files / "ratings.csv"), "--user_col", "userId",
                   "--item_col", "movieId", "--items", str(files / "movies.csv"), "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    items = pd.read_parquet(out / "items.parquet").set_index("item")
    assert items.loc["20", "title"] == "Heat (1995)" and items.loc["30", "genres"] == "Drama"
    assert json.loads((out / "run_config.json").read_text())["config"]["items"] == str(files / "movies.csv")
    capsys.readouterr()
    rc = cli.main(["data", "prepare", "--source", "csv", "--path", str(files / "ratings.csv"), "--user_col", "userId",
                   "--item_col", "movieId", "--items", str(files / "gone.csv"), "--out", str(files / "ds2")])
    err = capsys.readouterr().err.splitlines()
    assert rc != 0 and err[-1].startswith("whyrec: error: --items") and err[-1].endswith("gone.csv not found")
    assert not (files / "ds2").exists()
