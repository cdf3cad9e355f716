"""Raw Yelp and TripAdvisor reviews -> RecDataset: filters, metadata, bad input, prepare."""

import gzip
import json
import re

import pandas as pd
import pytest

from whyrec.data import schema as S
from whyrec.data.dataset import FILES, RecDataset
from whyrec.data.prepare import prepare_dataset
from whyrec.data.reviews_json import SUMMARY
from whyrec.data.tripadvisor import load_tripadvisor_json
from whyrec.data.yelp import BUSINESS_FILE, REVIEW_FILE, load_yelp_json
from whyrec.registry import DATASETS
from whyrec.utils import WhyrecError

NO_DROPS = {"malformed_lines": 0, "below_min_rating": 0, "empty_review": 0, "duplicate_pair": 0,
            "not_sampled": 0, "k_core": 0}


def raises(message):
    return pytest.raises(WhyrecError, match=re.escape(message))


def write(path, lines):
    path.parent.mkdir(parents=True, exist_ok=True)
    data = "\n".join(lines).encode()
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def pairs(ds):
    return list(zip(ds.interactions[S.USER], ds.interactions[S.ITEM]))


# ---------------------------------------------------------------- Yelp
def yelp(user, business, stars=5, text="Great tacos, friendly staff.", date="2016-03-09 00:44:25"):
    return json.dumps({"review_id": f"{user}-{business}", "user_id": user, "business_id": business,
                       "stars": stars, "useful": 0, "funny": 0, "cool": 1, "text": text, "date": date})


YELP = [
    yelp("u1", "b1"),
    yelp("u1", "b2", stars=4.0, date="2012-05-01"),  # the date-only layout of old releases
    yelp("u2", "b1", stars=3),
    yelp("u2", "b2", stars=2),
    yelp("u3", "b1"),  # u3 has one review: the first k-core round drops it
    yelp("u4", "b3"),  # b3 has one review (u2's is empty): dropped in round 1 ...
    yelp("u4", "b2", stars=4),  # ... which leaves u4 with one review: dropped in round 2
    "",
    yelp("u1", "b1", stars=1, text="came back, worse"),  # repeated pair: the first line stays
    yelp("u2", "b3", text="  "),  # empty review
]
BUSINESSES = [
    json.dumps({"business_id": "b1", "name": "Taco Spot", "city": "Phoenix", "state": "AZ",
                "stars": 4.5, "categories": "Mexican, Restaurants"}),
    json.dumps({"business_id": "b2", "name": "Bean There", "city": "Tempe", "state": "AZ",
                "categories": ["Coffee & Tea", "Cafes"]}),  # a list, as in releases before 2018
    json.dumps({"business_id": "bq", "name": "Not reviewed"}),
]


@pytest.mark.parametrize("name", [REVIEW_FILE, REVIEW_FILE + ".gz"])
def test_yelp_k_core_and_fields(tmp_path, name):
    ds = load_yelp_json(write(tmp_path / name, YELP), k_core=2, progress=False)
    assert pairs(ds) == [("u1", "b1"), ("u1", "b2"), ("u2", "b1"), ("u2", "b2")]
    assert (ds.n_users, ds.n_items) == (2, 2) and ds.interactions[S.RATING].tolist() == [5, 4, 3, 2]
    assert ds.interactions[S.TIMESTAMP].tolist() == [1457484265, 1335830400, 1457484265, 1457484265]
    assert ds.interactions[S.REVIEW].iloc[0] == "Great tacos, friendly staff." and SUMMARY not in ds.interactions
    assert ds.items[S.TITLE].tolist() == ["b1", "b2"]  # no business file: the title is the id
    assert ds.meta["source"] == "yelp-json" and ds.meta["lines"] == 9 and ds.meta["dropped"] == {
        **NO_DROPS, "empty_review": 1, "duplicate_pair": 1, "k_core": 3}


def test_yelp_min_rating_and_sample(tmp_path):
    path = write(tmp_path / REVIEW_FILE, YELP)
    ds = load_yelp_json(path, k_core=1, min_rating=4, progress=False)
    assert (len(ds.interactions), ds.n_users, ds.n_items) == (5, 3, 3)
    assert ds.meta["dropped"] == {**NO_DROPS, "below_min_rating": 3, "empty_review": 1, "duplicate_pair": 0}
    with raises("no reviews left after filtering"):
        load_yelp_json(path, k_core=2, min_rating=4, progress=False)
    sampled = load_yelp_json(path, k_core=1, max_users=2, seed=0, progress=False)
    assert sampled.n_users == 2 and sampled.meta["dropped"]["not_sampled"] > 0


def test_yelp_business_file(tmp_path):
    write(tmp_path / REVIEW_FILE, YELP)
    write(tmp_path / BUSINESS_FILE, BUSINESSES)
    ds = load_yelp_json(tmp_path, k_core=1, progress=False)  # the folder: both files by their names
    items = ds.items.set_index(S.ITEM)
    assert items[S.TITLE].to_dict() == {"b1": "Taco Spot", "b2": "Bean There", "b3": "b3"}
    assert items.loc["b1", S.DESCRIPTION] == "Mexican, Restaurants; Phoenix, AZ"
    assert items.loc["b2", "categories"] == "Coffee & Tea, Cafes" and pd.isna(items.loc["b3", "city"])
    assert ds.meta["metadata"] == BUSINESS_FILE
    other = write(tmp_path / "elsewhere" / "biz.json.gz", BUSINESSES[:1])
    ds = load_yelp_json(tmp_path / REVIEW_FILE, business_path=other, k_core=1, progress=False)
    assert ds.items.set_index(S.ITEM)[S.TITLE].to_dict() == {"b1": "Taco Spot", "b2": "b2", "b3": "b3"}


@pytest.mark.parametrize("name", [REVIEW_FILE, REVIEW_FILE + ".gz"])
def test_yelp_corrupt_lines(tmp_path, name):
    missing = json.dumps({"review_id": "r", "user_id": "u1", "stars": 5, "text": "t"})
    path = write(tmp_path / name, YELP[:2] + [missing, '{"user_id": "u9", "busin'] + YELP[2:])
    with raises(f"{name} line 3 has no 'business_id' field (has: review_id, user_id, stars, text); "
                "fix it, or pass --on_error skip"):
        load_yelp_json(path, progress=False)
    ds = load_yelp_json(path, k_core=2, on_error="skip", progress=False)
    assert ds.meta["dropped"]["malformed_lines"] == 2 and len(ds.interactions) == 4
    assert ds.meta["lines"] == 11


def test_yelp_wrong_file(tmp_path):
    with raises(f"no review lines with user_id, business_id, stars (is it {REVIEW_FILE}"):
        load_yelp_json(write(tmp_path / "b.json", BUSINESSES), on_error="skip", progress=False)
    with raises(f"{REVIEW_FILE} not found"):
        load_yelp_json((tmp_path / "empty").mkdir() or tmp_path / "empty", progress=False)
    with raises("unknown on_error 'ignore'"):
        load_yelp_json(write(tmp_path / REVIEW_FILE, YELP), on_error="ignore", progress=False)


# ---------------------------------------------------------------- TripAdvisor
def review(author, overall, text="Clean rooms and a helpful front desk.", date="Dec 21, 2008"):
    return {"ReviewID": f"UR{author}", "Author": author, "Title": f"{author}'s stay", "Content": text,
            "Date": date, "Ratings": {"Service": "4", "Cleanliness": "5", "Overall": overall}}


def hotel(hotel_id, name, reviews):
    info = {"Name": name, "HotelURL": "/Hotel_Review", "Price": "$100"}
    return json.dumps({"HotelInfo": {**info, "HotelID": hotel_id} if hotel_id else info, "Reviews": reviews})


def hotel_folder(root):
    write(root / "h1.json", [hotel("h1", "Hotel One", [
        review("alice", "5.0"), review("bob", "4.0", date="March 29, 2012"), review("carol", "2.0")])])
    write(root / "more" / "h2.json.gz", [hotel("h2", "Harbour Inn", [  # gzipped, in a subfolder
        review("alice", "4.0"), review("bob", "3.0"), review("alice", "1.0", text="again")])])
    write(root / "300.json", [hotel(None, None, [review("carol", "5.0")])])  # id from the file name
    write(root / "notes.txt", ["not a hotel file: ignored"])
    return root


def test_tripadvisor_folder(tmp_path):
    ds = load_tripadvisor_json(hotel_folder(tmp_path / "json"), k_core=2, progress=False)
    assert pairs(ds) == [("alice", "h1"), ("bob", "h1"), ("alice", "h2"), ("bob", "h2")]
    assert (ds.n_users, ds.n_items) == (2, 2) and ds.interactions[S.RATING].tolist() == [5, 4, 4, 3]
    assert ds.interactions[S.TIMESTAMP].tolist() == [1229817600, 1332979200, 1229817600, 1229817600]
    assert ds.interactions[SUMMARY].iloc[0] == "alice's stay"
    assert ds.items[S.TITLE].tolist() == ["Hotel One", "Harbour Inn"]
    assert ds.meta["lines"] == 7 and ds.meta["dropped"] == {**NO_DROPS, "duplicate_pair": 1, "k_core": 2}
    ds = load_tripadvisor_json(tmp_path / "json", k_core=1, min_rating=4, progress=False)
    assert (len(ds.interactions), ds.n_users, ds.n_items) == (4, 3, 3)
    assert ds.items.set_index(S.ITEM)[S.TITLE].to_dict() == {"300": "300", "h1": "Hotel One", "h2": "Harbour Inn"}


def test_tripadvisor_corrupt_files_and_reviews(tmp_path):
    root = hotel_folder(tmp_path / "json")
    write(root / "broken.json", ['{"HotelInfo": {"HotelID": "h9"}, "Revi'])
    with raises("broken.json is not valid JSON"):
        load_tripadvisor_json(root, progress=False)
    ds = load_tripadvisor_json(root, k_core=2, on_error="skip", progress=False)
    assert ds.meta["dropped"]["malformed_lines"] == 1 and len(ds.interactions) == 4
    (root / "broken.json").unlink()
    no_rating = {k: v for k, v in review("dave", "5.0").items() if k != "Ratings"}
    write(root / "h4.json", [hotel("h4", "Four", [review("erin", "3.0"), no_rating])])
    with raises("h4.json review 2 has no 'Ratings.Overall' field (nor 'Overall', 'rating'; has: ReviewID, "
                "Author, Title, Content, Date, HotelID); fix it, or pass --on_error skip"):
        load_tripadvisor_json(root, progress=False)
    ds = load_tripadvisor_json(root, k_core=1, on_error="skip", progress=False)
    assert ds.meta["dropped"]["malformed_lines"] == 1 and ("erin", "h4") in pairs(ds)
    with raises("no *.json hotel files"):
        load_tripadvisor_json((tmp_path / "none").mkdir() or tmp_path / "none", progress=False)


@pytest.mark.parametrize("name", ["reviews.jsonl", "reviews.jsonl.gz"])
def test_tripadvisor_json_lines(tmp_path, name):
    lines = [json.dumps({"hotel_id": "h1", "author": "alice", "rating": 5, "text": "Quiet.", "date": "2009-01-02"}),
             json.dumps({"hotel_id": "h2", "author": "alice", "rating": "4.0", "text": "Near the beach."}),
             json.dumps({**review("bob", "3.0"), "HotelID": "h1"}),  # a hotel file's review plus its hotel
             json.dumps({"hotel_id": "h1", "rating": 4, "text": "No author."}),
             "not json"]
    path = write(tmp_path / name, lines)
    with raises(f"{name} line 4 has no 'Author' field (nor 'author'; has: hotel_id, rating, text)"):
        load_tripadvisor_json(path, progress=False)
    ds = load_tripadvisor_json(path, k_core=1, on_error="skip", progress=False)
    assert pairs(ds) == [("alice", "h1"), ("alice", "h2"), ("bob", "h1")]
    assert ds.interactions[S.RATING].tolist() == [5, 4, 3] and ds.meta["dropped"]["malformed_lines"] == 2
    assert ds.interactions[S.TIMESTAMP].fillna(-1).tolist() == [1230854400, -1, 1229817600]
    assert ds.interactions[SUMMARY].tolist() == ["", "", "bob's stay"] and ds.items[S.TITLE].tolist() == ["h1", "h2"]


# ---------------------------------------------------------------- registry and prepare
def test_registered():
    assert DATASETS.get("yelp-json") is load_yelp_json
    assert DATASETS.get("tripadvisor-json") is load_tripadvisor_json


def test_prepare_yelp_round_trip(tmp_path):
    # A 6 x 6 grid survives prepare's default 5-core; the business file beside it gives titles.
    words = ["tacos", "coffee", "service", "patio", "salsa", "prices"]
    lines = [yelp(f"u{u}", f"b{b}", stars=1 + (u + b) % 5, text=f"The {words[b]} was great and the staff was friendly.")
             for u in range(6) for b in range(6)]
    path = write(tmp_path / "yelp" / REVIEW_FILE, lines)
    write(tmp_path / "yelp" / BUSINESS_FILE, BUSINESSES)
    out = tmp_path / "out"
    summary = prepare_dataset(source="yelp-json", path=str(path), out=str(out), seed=0)
    assert summary["users"] == 6 and summary["items"] == 6 and summary["interactions"] == 36
    assert sum(summary["splits"].values()) == 36
    assert all((out / f).is_file() for f in FILES) and (out / "run_config.json").is_file()
    ds = RecDataset.load(out)
    assert ds.meta["source"] == "yelp-json" and ds.meta["prepare"]["source"] == "yelp-json"
    assert ds.item_text()["b1"] == "Taco Spot" and ds.interactions[S.REVIEW].str.len().min() > 0


def test_prepare_feature_extraction_sources(tmp_path):
    with raises("--extract_features needs raw review text: --source amazon-json or yelp-json or tripadvisor-json"):
        prepare_dataset(source="csv", path="x.csv", out=str(tmp_path / "o"), extract_features=True)
    root = tmp_path / "json"
    for h in range(5):
        write(root / f"h{h}.json", [hotel(f"h{h}", f"Hotel {h}", [
            review(f"a{a}", "5.0", text="The room was clean and the staff was friendly.") for a in range(5)])])
    prepare_dataset(source="tripadvisor-json", path=str(root), out=str(tmp_path / "o"), seed=0,
                    extract_features=True, feature_min_count=1)
    assert (tmp_path / "o" / "pepler" / "reviews.pickle").is_file()
    assert RecDataset.load(tmp_path / "o").interactions[S.FEATURE].notna().all()


def test_cli_prepare_skips_corrupt_lines_with_on_error(tmp_path):
    from whyrec.cli import main

    good = [{"review_id": f"r{u}{b}", "user_id": f"u{u}", "business_id": f"b{b}", "stars": 4,
             "text": "great tacos", "date": "2016-03-09 00:44:25"} for u in range(3) for b in range(3)]
    path = tmp_path / "reviews.json"
    path.write_text("\n".join(json.dumps(r) for r in good[:4]) + "\n{broken\n"
                    + "\n".join(json.dumps(r) for r in good[4:]) + "\n")
    args = ["data", "prepare", "--source", "yelp-json", "--path", str(path), "--k-core", "3"]
    assert main([*args, "--out", str(tmp_path / "strict")]) == 2  # default: raise with a one-line error
    assert not (tmp_path / "strict" / "dataset.json").exists()
    assert main([*args, "--out", str(tmp_path / "lenient"), "--on-error", "skip"]) == 0
    assert len(RecDataset.load(tmp_path / "lenient").interactions) == 9
