"""Grounded MovieLens explanations and profiles state only facts true of the TRAIN data."""

import re
from collections import Counter

import pandas as pd
import pytest
from conftest import require_distribution

from whyrec.data import schema as S
from whyrec.data.dataset import RecDataset
from whyrec.data.grounded import MAX_WORDS, add_grounded_explanations, explain_interactions
from whyrec.data.metadata import split_names
from whyrec.data.movielens import genre_word
from whyrec.data.profiles import USER_PROFILE_MAX_WORDS, add_profiles
from whyrec.data.splits import ensure_split
from whyrec.utils import WhyrecError

MIN_RATING = 4


@pytest.fixture(scope="module")
def ml100k():
    require_distribution("recbole", "recbole/dataset_example/ml-100k/ml-100k.inter")
    require_distribution("bokeh-sampledata", "bokeh_sampledata/_data/movies.db")
    from whyrec.data.movielens import load_ml100k

    ds = ensure_split(load_ml100k(max_users=120, seed=1), "random", seed=7)
    return add_profiles(ds, min_rating=MIN_RATING)


@pytest.fixture(scope="module")
def explained(ml100k):
    return explain_interactions(ml100k, seed=0, min_rating=MIN_RATING)


def _alternation(words):
    words = sorted({w for w in words if w}, key=len, reverse=True)  # longest first
    return re.compile("|".join(re.escape(w) for w in words))


def _facts(ds):
    rows = ds.items.set_index(S.ITEM)
    return {
        "title": rows[S.TITLE].to_dict(),
        "genres": {k: {genre_word(g) for g in split_names(v)} for k, v in rows["genre"].items()},
        "directors": {k: set(split_names(v)) for k, v in rows["director"].items()},
        "cast": {k: set(split_names(v)) for k, v in rows["cast"].items()},
    }


def test_every_claim_is_true_of_the_train_data(ml100k, explained):
    ds, f, explanations = ml100k, _facts(ml100k), explained
    train = ds.split(S.TRAIN)
    liked = train[train[S.RATING] >= MIN_RATING].groupby(S.USER)[S.ITEM].agg(set).to_dict()
    title_ids = {}
    for item, title in f["title"].items():
        title_ids.setdefault(title, set()).add(item)
    titles_re = _alternation(title_ids)
    people_re = _alternation(set().union(*f["directors"].values(), *f["cast"].values()))
    genres_re = re.compile(r"\b(" + "|".join(re.escape(genre_word(g)) for g in (
        "Action Adventure Animation Children's Comedy Crime Documentary Drama Fantasy Film-Noir Horror "
        "Musical Mystery Romance Sci-Fi Thriller War Western").split()) + r")\b")
    kinds = Counter()
    for (user, item), ex in zip(zip(ds.interactions[S.USER], ds.interactions[S.ITEM], strict=True), explanations, strict=True):
        kinds[ex.kind] += 1
        text, target = ex.text, f["title"][item]
        assert len(text.split()) <= MAX_WORDS, text
        assert target not in text, text  # never cites the pair itself
        user_liked = liked.get(user, set()) - {item}
        for e in ex.evidence:  # cited movies: rated >= MIN_RATING by this user in TRAIN
            assert e in user_liked and f["title"][e] != target, (text, e)
        mentioned = set(titles_re.findall(text))
        assert mentioned == {f["title"][e] for e in ex.evidence}, text
        rest = titles_re.sub(" ", text)
        people = set(people_re.findall(rest))
        assert people <= f["directors"][item] | f["cast"][item], text  # named people are the item's
        if ex.kind in ("director", "cast"):
            key = "directors" if ex.kind == "director" else "cast"
            name = ex.shared[0]
            assert name in people and name in f[key][item], text
            assert all(name in f[key][e] for e in ex.evidence), text  # really shared
        genres = set(genres_re.findall(people_re.sub(" ", rest)))
        assert genres <= f["genres"][item] | set(ex.user_genres), text
        if ex.kind == "genre":
            assert ex.shared and set(ex.shared) <= f["genres"][item], text
            assert all(set(ex.shared) <= f["genres"][e] for e in ex.evidence), text  # really shared
        if ex.kind == "taste":  # only when no liked movie overlaps at all
            assert not any(f["genres"][e] & f["genres"][item] for e in user_liked
                           if f["title"][e] != target), text
    assert set(kinds) >= {"director", "cast", "genre"}


def test_texts_are_seeded_and_varied(ml100k, explained):
    a = [e.text for e in explained]
    again = RecDataset(ml100k.interactions.copy(), ml100k.items, ml100k.users)  # same data, new objects
    assert a == [e.text for e in explain_interactions(again, seed=0)]
    b = [e.text for e in explain_interactions(ml100k, seed=1)]
    assert sum(x != y for x, y in zip(a, b, strict=True)) > len(a) // 4
    openings = Counter(" ".join(t.split()[:2]) for t in a)
    assert len(openings) >= 10 and openings.most_common(1)[0][1] < len(a) / 3


def test_survives_a_parquet_round_trip(ml100k, tmp_path):
    sample = RecDataset(ml100k.interactions.head(400).copy(), ml100k.items, ml100k.users)
    loaded = RecDataset.load(sample.save(tmp_path / "ds"))  # list columns come back as arrays
    assert [e.text for e in explain_interactions(loaded)] == [e.text for e in explain_interactions(sample)]
    out = add_grounded_explanations(loaded)
    assert out.interactions[S.EXPLANATION].str.len().min() > 20


def test_profiles_use_train_only_and_stay_short(ml100k):
    ds = ml100k
    titles = ds.item_text()
    held_out = ds.interactions[ds.interactions[S.SPLIT] != S.TRAIN]
    train_titles = ds.split(S.TRAIN).groupby(S.USER)[S.ITEM].agg(lambda s: {titles[i] for i in s}).to_dict()
    profiles = ds.user_text()
    assert all(len(p.split()) <= USER_PROFILE_MAX_WORDS for p in profiles.values())
    for user, item in zip(held_out[S.USER], held_out[S.ITEM], strict=True):
        if titles[item] not in train_titles.get(user, set()):
            assert titles[item] not in profiles[user]
    first = ds.users.iloc[0]
    assert profiles[first[S.USER]].startswith({"M": "Male", "F": "Female"}[first["gender"]])


def _tiny():
    """Hand-made: u1 liked A (5) and B (4) in train; C and D are held out."""
    items = pd.DataFrame({
        S.ITEM: ["A", "B", "C", "D", "E"],
        S.TITLE: ["Alpha (1990)", "Beta (1991)", "Gamma (1992)", "Delta (1993)", "Eps (1994)"],
        "genre": [["Drama"], ["Comedy"], ["Drama", "War"], ["Horror"], ["Comedy"]],
        "director": [["Ann Lee"], ["Bo Park"], ["Ann Lee"], [], []],
        "cast": [["Cy Dunn"], ["Cy Dunn"], [], [], []],
        "year": [1990, 1991, 1992, 1993, 1994],
    })
    inter = pd.DataFrame({S.USER: ["u1"] * 5 + ["u2"], S.ITEM: ["A", "B", "C", "D", "E", "A"],
                          S.RATING: [5.0, 4.0, 5.0, 2.0, 1.0, 3.0],
                          S.SPLIT: ["train", "train", "test", "valid", "train", "train"]})
    return RecDataset(inter, items, None)


def test_tiny_worked_example():
    ds = _tiny()
    ex = dict(zip(zip(ds.interactions[S.USER], ds.interactions[S.ITEM], strict=True), explain_interactions(ds), strict=True))
    c = ex[("u1", "C")]  # held out; shares director Ann Lee with liked A
    assert (c.kind, c.evidence, c.shared) == ("director", ("A",), ("Ann Lee",))
    assert "Alpha (1990)" in c.text and "Ann Lee" in c.text and "Gamma" not in c.text
    a = ex[("u1", "A")]  # a train pair may not cite itself; B shares cast member Cy Dunn
    assert (a.kind, a.evidence, a.shared) == ("cast", ("B",), ("Cy Dunn",))
    d = ex[("u1", "D")]  # horror: nothing shared, so a true statement of genres
    assert d.kind == "taste" and set(d.user_genres) == {"drama", "comedy"}
    assert "horror" in d.text and "drama" in d.text
    u2 = ex[("u2", "A")]  # u2 liked nothing and has no other train movie
    assert u2.kind == "taste" and "no other ratings on record" in u2.text


def test_needs_a_split():
    ds = _tiny()
    ds.interactions = ds.interactions.drop(columns=[S.SPLIT])
    with pytest.raises(WhyrecError, match="ensure_split"):
        explain_interactions(ds)
    with pytest.raises(WhyrecError, match="ensure_split"):
        add_profiles(ds)
