"""Any method's trained folder as one Python object, and the generic evaluation of its explanations.

The folder's own method object (`whyrec.registry.method_of`) checks and loads it, so a run of
XRec, GaVaMoE, PEPLER, RecExplainer, RecAlpaca or a method registered by a user behaves the same
here, in `whyrec recommend/explain/evaluate` and behind `whyrec serve`:

    run = load_run("runs/quickstart")
    run.recommend("196", k=5, explain=True)
    run.explain("196", "242")
"""

from __future__ import annotations

from pathlib import Path

from whyrec.config import GenerationConfig, generation_fingerprint


def load_model(path: str | Path, device: str = "auto", generation: GenerationConfig | None = None, **options):
    """The served model of any registered method's trained folder (or a run folder holding explainer/),
    checked and loaded by its method object: `.recommend(user, k)`, `.explain([Pair])`, `.info()`, `.catalog`.

    generation None: the method's own default decoding (e.g. RecAlpaca's long answer lists); `options`
    are the method's own load options (RecAlpaca: instructions=FOLDER); an unknown one is a WhyrecError."""
    from whyrec.folders import explainer_dir
    from whyrec.methods.base import check_generation
    from whyrec.registry import method_of

    folder = explainer_dir(path)
    method = method_of(folder)
    if generation is not None and generation.candidates > 1:  # chosen by Run, never by a method's decoder
        from whyrec.utils import WhyrecError

        raise WhyrecError(f"--generation.candidates {generation.candidates} is applied by whyrec.runs.Run "
                          "(load_run, whyrec explain/recommend/evaluate); load_model decodes one candidate")
    check_generation(method, generation)  # a --generation.* field the method's decoder ignores, before loading
    method.check(folder)  # a damaged folder is one clear error, not a traceback from deep in torch
    return method.load(folder, device=device, generation=generation, **options)


class Run:
    """A trained folder of any method: recommend items, explain pairs, describe itself.

    `generation` given to a call replaces the decoding settings for that call only; without it the
    settings given at load time (or the method's defaults) are used. PEPLER decodes its own way.

    `generation.candidates` > 1 (grounding-aware decoding, `_grounded` below) checks the
    candidates against `data`: the dataset folder set on the run, else the one it was trained on
    (its run_config.json); `last_choices` then holds what was chosen and dropped for each pair.
    Methods that decode only greedily (PEPLER, RecExplainer, RecAlpaca) refuse it in one line.
    """

    data: str | None = None
    """Dataset folder whose facts check candidates (None: the folder the run was trained on)."""

    def __init__(self, path: str | Path, device: str = "auto", generation: GenerationConfig | None = None,
                 **options):
        self.path = Path(path)
        self._candidates = generation.candidates if generation is not None else 1
        self._select = generation.select if generation is not None else "first"
        self.model = load_model(path, device=device, generation=_one_candidate(generation), **options)
        self.catalog = self.model.catalog
        self._default_gen = getattr(self.model, "gen", None)
        self._catalogue = None  # whyrec.eval.grounding.Catalogue, built on the first grounded call
        self._agreement_scorer = None  # whyrec.eval.bertscore.BertScorer, loaded on the first select="bertscore"
        self.last_choices = None
        if self._candidates > 1:
            _check_candidates(self, self._candidates)

    def info(self) -> dict:
        """What the run is: method, backbone, dataset, sizes, decoding (the same dict as GET /info)."""
        return self.model.info()

    def title(self, item: str) -> str:
        return self.catalog.title(str(item))

    def _check(self, user: str | None = None, item: str | None = None) -> None:
        from whyrec.utils import WhyrecError

        if user is not None and not self.catalog.has_user(user):
            raise WhyrecError(f"unknown user id {user!r}; the run in {self.path} knows {len(self.catalog.users)} "
                              "users (see `whyrec serve` GET /users or run.catalog.users)")
        if item is not None and not self.catalog.has_item(item):
            raise WhyrecError(f"unknown item id {item!r}; the run in {self.path} knows {len(self.catalog.items)} items")

    def _decoding(self, generation: GenerationConfig | None) -> tuple[int, str]:
        """Set the model's decoding for one call; the number of candidates to choose among and how
        (`GenerationConfig.select`)."""
        if self._default_gen is not None or generation is not None:
            self.model.gen = _one_candidate(generation) or self._default_gen
        candidates = generation.candidates if generation is not None else self._candidates
        if candidates > 1:
            _check_candidates(self, candidates)
        return candidates, generation.select if generation is not None else self._select

    def explain(self, user: str, item: str, generation: GenerationConfig | None = None) -> str:
        """Why `user` would enjoy `item`, as this run's method explains it."""
        return self.explain_many([user], [item], generation)[0]

    def explain_many(self, users: list[str], items: list[str], generation: GenerationConfig | None = None) -> list[str]:
        """One explanation per (user, item) pair, generated in batches."""
        from whyrec.methods.catalog import Pair

        users, items = [str(u) for u in users], [str(i) for i in items]
        for user in dict.fromkeys(users):
            self._check(user=user)
        for item in dict.fromkeys(items):
            self._check(item=item)
        candidates, select = self._decoding(generation)
        if hasattr(self.model, "progress"):  # a long job shows progress, also in a log file
            self.model.progress = len(users) > 8
        if candidates > 1:
            return _grounded(self, users, items, candidates, select)
        return self._generate([Pair(u, i) for u, i in zip(users, items)])

    def _generate(self, pairs: list) -> list[str]:
        from whyrec.methods.catalog import Unsupported
        from whyrec.utils import WhyrecError

        texts = self.model.explain(pairs)
        refused = next((t for t in texts if isinstance(t, Unsupported)), None)
        if refused is not None:
            raise WhyrecError(str(refused))
        return texts

    def recommend(self, user: str, k: int = 5, explain: bool = False,
                  generation: GenerationConfig | None = None, exclude: str = "all") -> list[dict]:
        """The method's top-k items for `user`, each a dict with item, title, score and, with `explain`
        (or when the method gives reasons anyway, as RecAlpaca does), explanation.

        exclude: "all" leaves out every item the user interacted with (training and the valid/test
        splits the run's folder or dataset folder lists); "train" only the training items, as
        ranking evaluation does (`whyrec recommend --include_held_out`)."""
        from whyrec.methods.catalog import recommend_for
        from whyrec.utils import WhyrecError

        if k < 1:
            raise WhyrecError(f"k must be at least 1 (got {k})")
        user = str(user)
        self._check(user=user)
        self._decoding(generation)
        recs = recommend_for(self.model, user, k, exclude)
        todo = [r for r in recs if r.get("explanation") is None]
        if explain and todo:
            for rec, text in zip(todo, self.explain_many([user] * len(todo), [r["item"] for r in todo], generation)):
                rec["explanation"] = text
        return recs


# ---------------------------------------------------------------- grounding-aware decoding


def _one_candidate(gen: GenerationConfig | None) -> GenerationConfig | None:
    """`gen` as a method's decoder gets it: candidates are chosen here, never by the method."""
    from dataclasses import replace

    return gen if gen is None or gen.candidates == 1 else replace(gen, candidates=1, select="first")


def _refuse(n: int, why: str):
    from whyrec.utils import WhyrecError

    return WhyrecError(f"--generation.candidates {n} samples extra candidates to check, but {why}; "
                       "leave candidates at 1")


def _check_candidates(run: Run, n: int) -> None:
    """Refuse candidates > 1 for a run whose method cannot sample (one line, before any decoding).
    Methods that decode plain greedy (RecExplainer, RecAlpaca) refuse at the first sampled pass:
    their decoder says so (`whyrec.llm.generate.plain_greedy`); beams are not offered instead, as
    their served decoders return one sequence per pair."""
    from whyrec.folders import explainer_dir
    from whyrec.methods.base import check_generation
    from whyrec.registry import method_of
    from whyrec.utils import WhyrecError

    if run._default_gen is None:
        raise _refuse(n, f"the method of {run.path} has no decoding settings to sample with")
    method = method_of(explainer_dir(run.path))
    try:
        check_generation(method, GenerationConfig(do_sample=True))
    except WhyrecError:
        raise _refuse(n, f"--method {method.name} does not sample (it decodes its own way)") from None


def _run_catalogue(run: Run):
    """The grounding checker's catalogue of the run's dataset (`Run.data`, else the one it was trained on)."""
    from whyrec.data.dataset import RecDataset
    from whyrec.eval.grounding import Catalogue
    from whyrec.folders import explainer_dir
    from whyrec.methods.catalog import recorded_data
    from whyrec.utils import WhyrecError

    if run._catalogue is None:
        data = run.data or recorded_data(explainer_dir(run.path))
        if not data or not (Path(data) / "interactions.parquet").is_file():
            where = f"its dataset folder {data} is gone" if data else "it records no dataset folder"
            raise WhyrecError(f"--generation.candidates checks candidates against the run's dataset, but {run.path}: "
                              f"{where}; set Run.data (evaluate: --data) or leave candidates at 1")
        run._catalogue = Catalogue(RecDataset.load(data))
    return run._catalogue


def _grounded(run: Run, users: list[str], items: list[str], n: int, select: str = "first") -> list[str]:
    """Each pair's explanation chosen among the output of its decoding settings and n-1 sampled ones
    (ties broken as `select` says), false sentences dropped (`whyrec.eval.grounded_choice`); a one-line notice on stderr when any was
    flagged. Sampled candidate k of every pair comes from one batched pass whose rows draw from their
    own generators (`whyrec.llm.row_sampling`, stream k), so a pair gets the same candidates in any
    batch. Samples come first, so a method that refuses them fails before the greedy pass."""
    import sys
    from dataclasses import replace

    import torch

    from whyrec.eval.grounded_choice import choose, summary
    from whyrec.llm.row_sampling import seeded_rows
    from whyrec.methods.catalog import Pair
    from whyrec.utils import WhyrecError

    cat = _run_catalogue(run)
    single = run.model.gen
    pairs = [Pair(u, i) for u, i in zip(users, items)]
    candidates: list[list[str]] = [[] for _ in users]
    # do_sample stays on so a method that only decodes greedily refuses as it always has; the row
    # sampler forces each draw, so the decoder's own draw from the global RNG cannot change it.
    run.model.gen = replace(single, do_sample=True, num_beams=1)
    try:
        for k in range(1, n):
            with torch.random.fork_rng(), seeded_rows(k):
                try:
                    texts = run._generate(pairs)
                except WhyrecError as err:
                    raise _refuse(n, str(err).rstrip(".")) from None
            for kept, text in zip(candidates, texts):
                kept.append(text)
    finally:
        run.model.gen = single
    for texts, first in zip(candidates, run._generate(pairs)):
        texts.insert(0, first)
    agreement = _bertscore_agreement(run, candidates) if select == "bertscore" else [None] * len(candidates)
    choices = [choose(cat, c, u, i, select, a) for c, u, i, a in zip(candidates, users, items, agreement)]
    run.last_choices = choices
    notice = summary(choices)
    if notice:
        print(f"whyrec: {notice} (Run.last_choices lists them)", file=sys.stderr)
    return [c.text for c in choices]


def _bertscore_agreement(run: Run, candidates: list[list[str]]) -> list[list[float]]:
    """Each candidate's mean BERTScore F1 against its pair's other candidates (`select="bertscore"`);
    the encoder is loaded once per run."""
    from whyrec.eval.bertscore import BertScorer

    if run._agreement_scorer is None:
        run._agreement_scorer = BertScorer(progress=False)
    return run._agreement_scorer.agreement(candidates)


def load_run(path: str | Path, device: str = "auto", generation: GenerationConfig | None = None, **options) -> Run:
    """Load any method's trained folder (a run folder with explainer/, or the method's folder itself);
    `options`: the method's own load options (see `load_model`)."""
    return Run(path, device=device, generation=generation, **options)


def explain_pair(path: str | Path, user: str, item: str, generation: GenerationConfig | None = None,
                 device: str = "auto") -> str:
    """Why `user` would enjoy `item`, as the method in `path` explains it (any registered method)."""
    return load_run(path, device=device, generation=generation).explain(user, item)


def _by_activity(ds, users: list[str], preds: list[str], refs: list[str], out: str) -> dict:
    """PEPLER metrics per user-activity quintile (+ zero-shot users), with a PNG plot (XRec §4.4)."""
    from whyrec.data import schema as S
    from whyrec.eval.groups import activity_groups, grouped_metrics, plot_groups
    from whyrec.eval.text import pepler_text_metrics

    train_users = ds.interactions.loc[ds.interactions[S.SPLIT] == S.TRAIN, S.USER].astype(str).tolist()
    groups = activity_groups(train_users, users, n_groups=min(5, max(1, len(set(users)))))
    grouped = grouped_metrics(preds, refs, groups, pepler_text_metrics)
    plot_groups(grouped, path=Path(out) / "metrics_by_activity.png")
    return grouped


def evaluate_run(run: str, data: str | None, out: str, split: str = "test", max_pairs: int | None = 200,
                 generation: GenerationConfig | None = None, device: str = "auto", smooth: bool = False,
                 bertscore: bool = False, judge=None, grounding: bool = True, overwrite: bool = False,
                 loaded: Run | None = None, bertscore_model: str | None = None,
                 bertscore_layers: int | None = None) -> dict:
    """Generate explanations for a split's pairs with any method's run and score them against the references.

    `loaded`: `run` already loaded (`load_run(run)`), so a caller that just used it does not load it twice.
    `grounding`: the false-claim rate of the outputs and of the references (`whyrec.eval.grounding`).
    `out` is guarded like every output folder (whyrec.outputs): a folder holding another
    evaluation is refused unless `overwrite`, and metrics.json is written last.
    """
    from whyrec.fingerprint import plain
    from whyrec.identity import run_identity
    from whyrec.outputs import fingerprint_of, folder_digest, output_folder
    from whyrec.utils import WhyrecError

    if data is None:
        raise WhyrecError("--run needs --data (the dataset folder whose explanations are the references)")
    generation = generation or GenerationConfig()
    fingerprint = {"run": run_identity(run), "data": folder_digest(data), "split": split, "max_pairs": max_pairs,
                   "generation": fingerprint_of(generation_fingerprint(generation)), "smooth": smooth, "bertscore": bertscore,
                   "judge": plain(judge), "grounding": grounding}
    if bertscore_model is not None or bertscore_layers is not None:  # keys absent by default: older folders still match
        fingerprint.update(bertscore_model=bertscore_model, bertscore_layers=bertscore_layers)
    with output_folder(out, "evaluation", fingerprint, overwrite=overwrite, resumable=False) as work:
        return _evaluate_run(run, data, work, split, max_pairs, generation, device, smooth, bertscore, judge,
                             grounding, loaded, (bertscore_model, bertscore_layers))


def _evaluate_run(run, data, out_dir: Path, split, max_pairs, generation, device, smooth, bertscore, judge,
                  grounding, loaded: Run | None = None, bertscore_encoder: tuple = (None, None)) -> dict:
    import pandas as pd

    from whyrec.data import schema as S
    from whyrec.data.dataset import RecDataset
    from whyrec.eval.report import evaluate_texts, markdown_report, metric_versions
    from whyrec.utils import WhyrecError, write_json, write_text

    ds = RecDataset.load(data)
    records = ds.explanation_records(split)
    loaded = loaded or load_run(run, device=device)
    if loaded.data != data:  # candidates are checked against the references' dataset
        loaded.data, loaded._catalogue = data, None
    catalog = loaded.catalog
    known = records[S.USER].astype(str).map(catalog.has_user) & records[S.ITEM].astype(str).map(catalog.has_item)
    records = records[known.astype(bool)]
    if max_pairs and len(records) > max_pairs:
        records = records.sample(max_pairs, random_state=0)
    if len(records) == 0:
        raise WhyrecError(f"no '{split}' explanations in {data} whose user and item the run knows")
    users, items = records[S.USER].astype(str).tolist(), records[S.ITEM].astype(str).tolist()
    preds = loaded.explain_many(users, items, generation)
    refs = records[S.EXPLANATION].astype(str).tolist()
    if judge is not None:
        from whyrec.llm.judge_client import LLMJudge

        judge = LLMJudge(judge)  # eval scores with a judge object; building its LLM client is llm's job
    metrics = evaluate_texts(preds, refs, smooth=smooth, bertscore=bertscore, bertscore_model=bertscore_encoder[0],
                             bertscore_layers=bertscore_encoder[1], judge=judge)
    metrics["groups"] = _by_activity(ds, users, preds, refs, str(out_dir))
    if grounding:
        from whyrec.eval.grounding import grounding_report

        metrics["grounding"] = grounding_report(preds, users, items, ds)
        metrics["grounding_references"] = grounding_report(refs, users, items, ds)
    metrics["metric_versions"] = metric_versions(metrics, smooth)
    # metrics.json last: its presence means the whole evaluation was written
    frame = pd.DataFrame({"user": users, "item": items, "prediction": preds, "reference": refs})
    frame.to_json(out_dir / "predictions.jsonl", orient="records", lines=True, force_ascii=False)
    write_text(out_dir / "report.md", markdown_report(metrics, f"Explanations of {run} on {split}"))
    write_json(out_dir / "metrics.json", metrics)
    return metrics
