"""Grounding on hand-made true and false sentences against a tiny in-test catalogue."""

import pandas as pd
import pytest

from whyrec.data.dataset import RecDataset
from whyrec.eval.grounding import grounding_report
from whyrec.utils import WhyrecError


@pytest.fixture
def movies() -> RecDataset:
    items = pd.DataFrame({
        "item": ["1", "2", "3", "4"],
        "title": ["Fargo (1996)", "Raising Arizona (1987)", "Usual Suspects, The (1995)", "Toy Story (1995)"],
        "genre": [["Crime", "Thriller"], ["Comedy"], ["Crime", "Mystery"], ["Animation", "Children's"]],
        "director": [["Joel Coen"], ["Joel Coen"], ["Bryan Singer"], ["John Lasseter"]],
        "cast": [["Frances McDormand"], ["Nicolas Cage"], ["Kevin Spacey"], ["Tom Hanks"]],
    })
    inter = pd.DataFrame({"user": ["u", "u", "v"], "item": ["2", "3", "4"],
                          "rating": [5.0, 4.0, 5.0], "split": ["train", "train", "train"]})
    return RecDataset(inter, items, None)


def report(ds, texts, user="u", item="1"):
    return grounding_report(texts, [user] * len(texts), [item] * len(texts), ds)


def test_true_claims_are_not_counted_false(movies):
    texts = [
        "It was directed by Joel Coen, who also directed Raising Arizona (1987), which the user rated 5 out of 5.",
        "Like The Usual Suspects (1995), a film the user rated highly, this is a crime film.",
        "Frances McDormand is in the cast.",
        "The user's movies on record are most often comedies.",  # comedy: a train item's genre
    ]
    r = report(movies, texts)
    assert (r["checked_claims"], r["false_claims"], r["hallucination_rate"]) == (9, 0, 0.0)
    # titles 2, genres 2 (crime x1 in text 2, comedies), people 2 (Joel Coen, Frances McDormand),
    # years 2 (the titles' "(YYYY)"), ratings 1 ("5 out of 5" for Raising Arizona)
    assert r["per_kind"]["year"]["checked"] == 2 and r["per_kind"]["rating"]["checked"] == 1
    assert r["per_kind"]["title"]["checked"] == 2 and r["per_kind"]["genre"]["checked"] == 2
    assert r["per_kind"]["person"]["checked"] == 2 and r["explanations_with_false_claim"] == 0


def test_false_claims_are_found(movies):
    texts = [
        "The user loved Toy Story (1995), and this is a thriller film.",  # title false, genre true
        "This is a comedy film starring Tom Hanks.",  # genre false, person false
        "It was directed by Nicolas Cage.",  # cast of no cited item and not a director
        "This is not a comedy film.",  # negated genre: not a claim
    ]
    r = report(movies, texts)
    assert r["per_kind"]["title"] == {"checked": 1, "false": 1, "rate": 1.0}
    assert r["per_kind"]["genre"] == {"checked": 2, "false": 1, "rate": 0.5}
    assert r["per_kind"]["person"] == {"checked": 2, "false": 2, "rate": 1.0}
    assert r["per_kind"]["year"] == {"checked": 1, "false": 0, "rate": 0.0}  # Toy Story (1995)
    assert r["checked_claims"] == 6 and r["false_claims"] == 4
    assert r["hallucination_rate"] == pytest.approx(4 / 6)
    assert r["explanations_with_false_claim"] == 3 and r["explanations_with_claims"] == 3
    assert {e["value"] for e in r["false_examples"]} == {"Toy Story (1995)", "comedy", "Tom Hanks", "Nicolas Cage"}


def test_director_role_and_cited_history(movies):
    # Nicolas Cage acted in Raising Arizona, which the user rated: true as cast, false as director.
    ok = report(movies, ["Nicolas Cage stars in Raising Arizona (1987), which the user rated 5/5."])
    bad = report(movies, ["Raising Arizona (1987), rated 5/5 by the user, was directed by Nicolas Cage."])
    assert (ok["checked_claims"], ok["false_claims"]) == (4, 0)  # person, title, year, rating 5/5
    assert bad["per_kind"]["person"] == {"checked": 1, "false": 1, "rate": 1.0}


def test_titles_outside_user_sentences_and_stems(movies):
    r = report(movies, ["Fargo is set in Minnesota.", "The user rated Usual Suspects highly."])
    assert r["per_kind"]["title"]["checked"] == 1 and r["false_claims"] == 0  # "Fargo": 1 word, no year
    assert report(movies, ["nothing checkable here"])["hallucination_rate"] is None


def test_review_features():
    inter = pd.DataFrame({"user": ["a", "b", "c"], "item": ["x", "x", "y"], "rating": [5.0, 4.0, 2.0],
                          "split": ["train", "train", "test"], "feature": ["sound", "price", "strap"],
                          "review": ["great sound", "fair price, the strap is solid", "bad strap"]})
    ds = RecDataset(inter, None, None)
    r = grounding_report(["The sound and the strap are great.", "Nice strap."], ["c", "c"], ["x", "y"], ds)
    # item x: sound (feature), strap (in a train review) -> true; item y has no train review.
    assert r["per_kind"]["feature"] == {"checked": 3, "false": 1, "rate": pytest.approx(1 / 3)}


def test_length_mismatch_is_an_error(movies):
    with pytest.raises(WhyrecError, match="one user and item per explanation"):
        grounding_report(["a"], ["u", "v"], ["1"], movies)


def test_sentences_do_not_split_after_abbreviations():
    from whyrec.eval.grounding import split_sentences

    assert split_sentences("The People vs. Larry Flynt (1996) is a drama. Dr. J. Doe liked it.") == [
        "The People vs. Larry Flynt (1996) is a drama.", "Dr. J. Doe liked it."]
