"""Year and rating claims (issue 20 item 1) on hand-made sentences against a tiny catalogue.

User "u" rated Raising Arizona 5, The Usual Suspects 4, It's a Wonderful Life 3 and Heat 4 in
train; the target of every sentence is Fargo (1996), which "u" has only in test.
"""

import pandas as pd
import pytest

from whyrec.data.dataset import RecDataset
from whyrec.eval.grounding import Catalogue, explanation_claims, grounding_report


@pytest.fixture
def ds() -> RecDataset:
    items = pd.DataFrame({
        "item": ["1", "2", "3", "4", "5", "6", "7", "8"],
        "title": ["Fargo (1996)", "Raising Arizona (1987)", "Usual Suspects, The (1995)", "Toy Story (1995)",
                  "It's a Wonderful Life (1946)", "Star Trek: First Contact (1996)", "Heat (1995)",
                  "Mary Poppins (1964)"],
        "genre": [["Crime"], ["Comedy"], ["Crime"], ["Animation"], ["Drama"], ["Sci-Fi"], ["Action"],
                  ["Musical"]],
        "year": [1996, 1987, 1995, 1995, 1946, 1996, 1995, 1964],
    })
    inter = pd.DataFrame({
        "user": ["u", "u", "u", "u", "u", "v", "w", "w"],
        "item": ["2", "3", "5", "7", "1", "4", "6", "8"],
        "rating": [5.0, 4.0, 3.0, 4.0, 3.0, 5.0, 1.0, 2.0],
        "split": ["train", "train", "train", "train", "test", "train", "train", "train"],
    })
    return RecDataset(inter, items, None)


@pytest.fixture
def cat(ds) -> Catalogue:
    return Catalogue(ds)


def numbers(cat, text, user="u", item="1"):
    """(kind, value, is_true) of the year and rating claims of `text`."""
    return [c for c in explanation_claims(cat, text, user, item) if c[0] in ("year", "rating")]


@pytest.mark.parametrize("text, expected", [
    # grounded references' wordings (whyrec.data.grounded)
    ("It was directed by Joel Coen, who also directed Raising Arizona (1987), which the user rated 5 out of 5.",
     [("year", "Raising Arizona (1987)", True), ("rating", "5 out of 5", True)]),
    ("Like Raising Arizona (1987), rated 5/5 by the user, this is a comedy film.",
     [("year", "Raising Arizona (1987)", True), ("rating", "5/5", True)]),
    ("It was released in 1996.", [("year", "released in 1996", True)]),
    ("Heat (1995) and The Usual Suspects (1995), both of which the user rated 4 out of 5.",
     [("year", "Heat (1995)", True), ("year", "The Usual Suspects (1995)", True), ("rating", "4 out of 5", True)]),
    # other wordings
    ("The user gave Heat 4 stars.", [("rating", "4 stars", True)]),  # one-word stem of the history
    ("The user rated it 3.", [("rating", "3", True)]),  # "it": It's a Wonderful Life, cited before
    ("Fargo is a 1996 American crime film.", [("year", "1996 American crime film", True)]),
    ("The user loved the 1946 film It's a Wonderful Life (1946).",
     [("year", "It's a Wonderful Life (1946)", True), ("year", "1946 film", True)]),
    ("The user enjoyed a 1987 comedy film.", [("year", "1987 comedy film", True)]),  # a train item's year
])
def test_true_claims(cat, text, expected):
    prefix = "The user rated It's a Wonderful Life highly. " if "rated it 3" in text else ""
    assert numbers(cat, prefix + text) == expected


@pytest.mark.parametrize("text, expected", [
    # issue 20's quickstart examples
    ("The user loved the 1946 film It's a Wonderful Life (1950).",
     [("year", "It's a Wonderful Life (1950)", False), ("year", "1946 film", True)]),
    ("This is a 1971 adventure film.", [("year", "1971 adventure film", False)]),
    ("It's rated as an 83 out of 10 by the user.", [("rating", "83 out of 10", False)]),
    ("The user enjoyed Star Trek: First Contact by a long shot, with a score of 7 out of 10 based on their "
     "preferences.", [("rating", "7 out of 10", False)]),
    # the target (unrated in train), a wrong train rating, a rating of an item the user never rated
    ("The user gave it 5 stars.", [("rating", "5 stars", False)]),
    ("The user rated Raising Arizona (1987) 4 out of 5.",
     [("year", "Raising Arizona (1987)", True), ("rating", "4 out of 5", False)]),
    ("The user enjoyed Mary Poppins (1964) by a wide margin, with 3 out of 5 stars.",
     [("year", "Mary Poppins (1964)", True), ("rating", "3 out of 5 stars", False)]),
    # scales absent from the data: 7 stars and 4.5 on integer 1-5 ratings, out of 10
    ("The user gave Heat 7 stars.", [("rating", "7 stars", False)]),
    ("The user gave Heat a 4.5-star rating.", [("rating", "4.5-star", False)]),
    ("The user rated Heat 8/10.", [("rating", "8/10", False)]),
    ("It was released in 1995.", [("year", "released in 1995", False)]),
    ("This 1987 film suits the user.", [("year", "1987 film", False)]),  # "this": the target only
    ("The Usual Suspects (2005) is in the user's history.", [("year", "The Usual Suspects (2005)", False)]),
    ("Fans of Bryan Singer's 1998 film The Usual Suspects will like it.", [("year", "1998 film", False)]),
    ("Julie Newmar (1995), which the user rated 83 out of 10, is similar.", [("rating", "83 out of 10", False)]),
])
def test_false_claims(cat, text, expected):
    assert numbers(cat, text) == expected


@pytest.mark.parametrize("text", [
    "Critics rate it 4 out of 5.",  # no user
    # a history title cut by the sentence splitter ("Everything! Julie"): a film it cannot identify
    "Julie Newmar (1995), which the user rated 4 out of 5, stars Robin Williams.",
    "IMDb users rate it 8.1 out of 10, and the user may like it.",  # others
    "8 out of 10 viewers preferred it, as the user did.",
    "The user will likely rate it 5 out of 5.",  # a prediction
    "The user would give it 4 stars.",
    "The user's favourites are mostly rated 4 or higher.",  # thresholds
    "The user rated it at least 4 stars.",
    "The user rated 12 films 5 stars.",  # a count
    "The user gives 5-star ratings to comedies.",
    "The user rated Heat and Raising Arizona 4 and 5 out of 5 respectively.",
    "The user watched it in 1995, and the 1990s were good for crime.",  # no film-worded year
    "The user liked the 1995 films.",  # plural
    "It won a prize at the 2018 Venice Film Festival and the 1997 film festival in Berlin.",
    "Fans of Danny Boyle's 1997 film A Life Less Ordinary will like it.",  # a film the catalogue lacks
    "Toy Story (2010) is a sequel.",  # later than the catalogue, not the user's: a remake, not a claim
    "The movie is rated as 4 out of 5 stars by the Rotten Camera, with a score of 3.",
])
def test_not_claims(cat, text):
    assert numbers(cat, text) == []


def test_report_counts_the_new_kinds(ds):
    texts = ["The user loved the 1946 film It's a Wonderful Life (1950).", "This is a 1971 adventure film.",
             "It's rated as an 83 out of 10 by the user.", "Heat (1995) was rated 4 stars by the user."]
    r = grounding_report(texts, ["u"] * 4, ["1"] * 4, ds)
    assert r["per_kind"]["year"] == {"checked": 4, "false": 2, "rate": 0.5}
    assert r["per_kind"]["rating"] == {"checked": 2, "false": 1, "rate": 0.5}
    assert {e["value"] for e in r["false_examples"] if e["kind"] in ("year", "rating")} == {
        "It's a Wonderful Life (1950)", "1971 adventure film", "83 out of 10"}


def test_no_rating_column_means_no_rating_claims():
    items = pd.DataFrame({"item": ["1"], "title": ["Fargo (1996)"]})
    inter = pd.DataFrame({"user": ["u"], "item": ["1"], "split": ["train"]})
    cat = Catalogue(RecDataset(inter, items, None))
    assert numbers(cat, "The user rated Fargo (1996) 83 out of 10.") == [("year", "Fargo (1996)", True)]
