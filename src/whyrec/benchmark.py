"""`whyrec benchmark explain`: every explanation method on the same pairs, one comparison table.

Each row is scored on exactly the same (user, item, reference) records: a seeded sample of a
split's explanation records, drawn once. Methods that a dataset cannot support (PEPLER's
discrete prompt without feature words, the rating head without ratings) are listed as skipped
with the reason rather than silently dropped.

Predictions are cached per row in `out/predictions/<method>.jsonl`: each row names its user and
item (with `--generation.candidates` > 1 also every candidate and which was emitted), rows are appended (and fsynced) chunk by chunk as they are generated, so an interrupted
benchmark resumes where it stopped. Every cached result is keyed by what produced it (data
digest, the exact pairs, model config and weights, method configs, the trained folder; see
`whyrec.benchmark_cache`): when any of them differs it is recomputed, never scored against
other pairs. Methods, the LightGCN encoder and the VAE are trained into out/methods/<method>,
out/encoder and out/vae, and retrained (then swapped in) when their config or data change.
Every row also gets its mispaired floor, bootstrap intervals and false-claim rate, and the
retrieval baseline runs beside the methods (`whyrec.benchmark_baselines`); `ablations` adds
the CF ablations of every row with a trained folder (`whyrec.benchmark_ablate`).
An `--external` file covering only some pairs gets a table of its own with every other row
rescored on those pairs (comparison.json `subsets`, keys in `whyrec.benchmark_inputs`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import pandas as pd

from whyrec.benchmark_ablate import ablate_rows, ablation_kinds, ablation_section
from whyrec.benchmark_baselines import (
    RETRIEVAL,
    floor_and_intervals,
    grounding_summary,
    grounding_supported,
    retrieval_generator,
    retrieval_row_name,
    retrieval_unavailable,
)
from whyrec.benchmark_cache import (
    Generator,
    cached_predictions,
    data_key,
    generation_settings,
    pairs_key,
    read_log,
    settings,
    trained_folder,
)
from whyrec.benchmark_encoders import encoder_trainers
from whyrec.benchmark_inputs import External, external_predictions, run_spec
from whyrec.benchmark_tables import activity_breakdown, comparison_table, train_summary
from whyrec.config import (
    GaVaMoEConfig,
    GenerationConfig,
    LightGCNConfig,
    ModelConfig,
    PEPLERConfig,
    TrainConfig,
    VaeGmmConfig,
    XRecConfig,
)
from whyrec.config_encoders import MFConfig
from whyrec.config_methods import RecExplainerConfig
from whyrec.data import schema as S
from whyrec.identity import model_key, run_identity, tree_identity
from whyrec.methods.base import (
    check_generation,
    check_train,
    given_train_key,
    train_asked,
    uses_generation,
)
from whyrec.registry import method_of
from whyrec.utils import WhyrecError, write_json, write_run_info, write_text

ZERO_SHOT = "zero-shot"  # the backbone alone: a baseline row, not a method
BUDGET = TrainConfig(max_minutes=10)  # every trained row's default budget
ZERO_SHOT_SYSTEM = "Explain why the user would enjoy the {noun} within 50 words."


def select_pairs(ds, split: str, max_pairs: int | None, seed: int) -> pd.DataFrame:
    """The shared evaluation records: a seeded sample of `split`'s explanation records."""
    records = ds.explanation_records(split).reset_index(drop=True)
    if len(records) == 0:
        raise WhyrecError(f"no '{split}' explanation records to benchmark on; check --split")
    if max_pairs is not None and len(records) > max_pairs:
        records = records.sample(max_pairs, random_state=seed).reset_index(drop=True)
    return records


def benchmark_systems(configs: dict | None = None) -> dict[str, tuple]:
    """Row name -> (method object, its config) for every registered method that offers benchmark
    variants (XRec with and without LoRA, each PEPLER prompt, GaVaMoE); `configs` maps a method's
    name to the config its variants start from (default: its config class's defaults)."""
    from whyrec.registry import METHODS

    rows: dict[str, tuple] = {}
    for name in METHODS.names():
        method = METHODS.get(name)
        variants = getattr(method, "benchmark_variants", None)
        if variants is not None:
            base = (configs or {}).get(name) or method.config_class()
            rows.update({row: (method, cfg) for row, cfg in variants(base).items()})
    return rows


def explanation_methods() -> tuple[str, ...]:
    """Every benchmark row `--methods all` runs: the registered methods' variants, zero-shot and
    the retrieval baseline (no LLM: the training explanation of the nearest training pair)."""
    return (*benchmark_systems(), ZERO_SHOT, RETRIEVAL)


def unavailable(method: str, ds, systems: dict | None = None) -> str | None:
    """Why benchmark row `method` cannot run on `ds`, or None when it can."""
    if method == ZERO_SHOT:
        return None
    if method == RETRIEVAL:
        return retrieval_unavailable(ds)
    systems = systems if systems is not None else benchmark_systems()
    if method not in systems:
        raise WhyrecError(f"unknown benchmark method {method!r}; choose from: {', '.join(explanation_methods())}")
    obj, cfg = systems[method]
    check = getattr(obj, "unavailable", None)  # optional: a method that runs on any dataset has none
    return check(ds, cfg) if check is not None else None


def zero_shot(ds, model: ModelConfig, gen: GenerationConfig, noun: str) -> Generator:
    """The backbone alone, prompted with the same title and profiles XRec's prompt carries."""
    from whyrec.llm.client import LocalHFClient, complete_many

    def text(frame, key, col):
        if frame is None or col not in frame:
            return {}
        return dict(zip(frame[key].astype(str), frame[col].fillna("").astype(str)))

    titles, item_prof, user_prof = text(ds.items, S.ITEM, S.TITLE), text(ds.items, S.ITEM, S.PROFILE), text(ds.users, S.USER, S.PROFILE)
    client = LocalHFClient.for_generation(model, gen)  # every --generation.* field it can honour
    client._load()  # here, so that loading is not counted as generation time

    def generate(pairs: pd.DataFrame) -> list[str]:
        convs = []
        for u, i in zip(pairs[S.USER].astype(str), pairs[S.ITEM].astype(str)):
            user = (f"{noun} name: {titles.get(i, i)} user profile: {user_prof.get(u, '')} "
                    f"{noun} profile: {item_prof.get(i, '')}")
            convs.append([{"role": "system", "content": zero_shot_prompt(noun)}, {"role": "user", "content": user}])
        return complete_many(client, convs, cache=None, progress=False, max_tokens=gen.max_new_tokens)

    return generate


# --generation.* fields the zero-shot row ignored until it decoded through LocalHFClient.for_generation
_ZERO_SHOT_NEWLY_HONOURED = ("min_new_tokens", "do_sample", "num_beams", "no_repeat_ngram_size")


def zero_shot_prompt(noun: str) -> str:
    return ZERO_SHOT_SYSTEM.format(noun=noun)


def folder_generator(folder: Path, gen: GenerationConfig, device: str,
                     data: str | None = None) -> tuple[int, Callable[[], Generator]]:
    """(chunk size, loader of the generator) for any trained folder: the method's own `benchmark_generator`
    if it has one and candidates == 1, else its served model, whose `Run` chooses among candidates."""
    method = method_of(folder)
    generator = getattr(method, "benchmark_generator", None)
    if generator is not None and gen.candidates == 1:
        return generator(folder, gen, device)
    return gen.batch_size, lambda: _served_generator(folder, gen, device, data)


def _served_generator(folder: Path, gen: GenerationConfig, device: str, data: str | None = None) -> Generator:
    from whyrec.runs import load_run

    run = load_run(folder, device=device, generation=gen)
    run.data = data or run.data

    def generate(pairs: pd.DataFrame) -> list:
        texts = run.explain_many(pairs[S.USER].astype(str).tolist(), pairs[S.ITEM].astype(str).tolist())
        if run.last_choices is None:
            return texts
        # every candidate is kept beside the emitted text, so another selection can be studied offline
        return [{"prediction": t, "candidate": c.candidate, "candidates": c.candidates}
                for t, c in zip(texts, run.last_choices)]

    return generate


def benchmark_explain(data: str, out: str, methods: tuple[str, ...] | list[str] | None = None,
                      encoder: str | None = None, runs: tuple[str, ...] | list[str] = (),
                      external: tuple[str, ...] | list[str] = (), model: ModelConfig | None = None,
                      xrec: XRecConfig | None = None, pepler: PEPLERConfig | None = None,
                      train: TrainConfig | None = None, lightgcn: LightGCNConfig | None = None,
                      generation: GenerationConfig | None = None, split: str = "test", max_pairs: int | None = 200,
                      seed: int = 0, smooth: bool = False, bertscore: bool = False, device: str = "auto",
                      vae: str | None = None, vae_config: VaeGmmConfig | None = None,
                      gavamoe: GaVaMoEConfig | None = None, groups: bool = True, overwrite: bool = False,
                      ablations: str | tuple[str, ...] | list[str] = (), recexplainer: RecExplainerConfig | None = None,
                      target: str | None = None, mf: MFConfig | None = None) -> dict:
    """Train (or reuse) every method, generate for the same pairs, score, write the comparison.

    `runs` adds already-trained explainer/PEPLER folders as `NAME=FOLDER`; `external` adds
    other systems' prediction files as `NAME=PRED[:REF]`. XRec uses `encoder` (LightGCN), GaVaMoE
    `vae` (stage 1) and RecExplainer `target` (its SASRec/MF target); each is trained into `out` when
    not given (`whyrec.benchmark_encoders`; the target an MF model with `mf`). Writes
    out/comparison.{md,json}; with `groups`, also every system's metrics by user activity
    (out/by_activity.{md,png}). `out` is reused across runs (its caches are keyed, see the
    module doc); a folder another command made is refused unless `overwrite`. `ablations` (kinds of
    `whyrec.methods.cf_ablation`, or "all") ablates every row with a folder (`whyrec.benchmark_ablate`).
    """
    from whyrec.data.dataset import RecDataset
    from whyrec.outputs import output_folder

    model, xrec, pepler = model or ModelConfig(), xrec or XRecConfig(), pepler or PEPLERConfig()
    train, generation = train or BUDGET, generation or GenerationConfig(max_new_tokens=80)
    ds = RecDataset.load(data)
    pairs = select_pairs(ds, split, max_pairs, seed)
    systems = benchmark_systems({"xrec": xrec, "pepler": pepler, "gavamoe": gavamoe, "recexplainer": recexplainer})
    methods = explanation_methods() if methods is None else methods
    skipped = {m: why for m in methods if (why := unavailable(m, ds, systems))}
    asked, kinds = train_asked(train, BUDGET), ablation_kinds(ablations)  # both refused before any training
    if ZERO_SHOT in methods and ZERO_SHOT not in skipped:
        from whyrec.llm.client import LocalHFClient
        LocalHFClient.check_generation(generation)  # e.g. --generation.candidates: refused before any training
    for method in (m for m in methods if m not in skipped and m not in (ZERO_SHOT, RETRIEVAL)):
        check_train(obj := systems[method][0], asked)  # a field some row refuses stops before any training
        check_generation(obj, generation if uses_generation(obj) else None)  # PEPLER decodes its own way
    run_folders, externals = [run_spec(spec) for spec in runs], [external_predictions(s, pairs) for s in external]
    with output_folder(out, "benchmark explain", {}, overwrite=overwrite) as out_dir:
        bench = _Bench(out_dir, data, ds, pairs, generation, device, smooth, bertscore, seed)
        for ext in externals:
            bench.external(ext)
        for name, folder in run_folders:
            bench.folder(name, folder, read_log(folder), None)
        trained_encoders = {"lightgcn": encoder, "vae_gmm": vae, "target": target}  # given, or trained here once
        trainers = encoder_trainers(out_dir, data, bench.data_id, device, lightgcn or LightGCNConfig(),
                                    vae_config or VaeGmmConfig(), mf or MFConfig())
        for method in (m for m in methods if m not in skipped and m != RETRIEVAL):
            if method == ZERO_SHOT:
                producer = {"model": model_key(model), "generation": generation_settings(generation),
                            "prompt": zero_shot_prompt(xrec.item_noun)}
                if any(getattr(generation, f) != getattr(GenerationConfig(), f) for f in _ZERO_SHOT_NEWLY_HONOURED):
                    producer["honours"] = "every generation field"  # rows cached before were decoded without them
                preds, secs = bench.predictions(ZERO_SHOT, ZERO_SHOT, producer, generation.batch_size,
                                                lambda: zero_shot(ds, model, generation, xrec.item_noun))
                bench.score(f"{ZERO_SHOT} {model.name_or_path}", preds, None, secs)
                continue
            obj, cfg = systems[method]
            kind = getattr(obj, "benchmark_encoder", None)
            if kind is not None and trained_encoders.get(kind) is None:
                trained_encoders[kind] = trainers[kind]()
            bench.method(method, obj, trained_encoders.get(kind) if kind else None, model, cfg, train)
        if RETRIEVAL in methods and RETRIEVAL not in skipped:  # last: it uses the encoder XRec's row trained
            bench.retrieval(ds, trained_encoders["lightgcn"])
        rows = {n: (f, out_dir / "ablations" / _slug(n), bench.texts[n]) for n, f in bench.folders.items()}
        ablated = ablate_rows(rows, pairs, kinds, generation, device, seed, bertscore, data) if kinds else {}
        return bench.finish(ds, skipped, seed, groups, ablated, {
            "data": data, "methods": list(methods), "runs": list(runs), "external": list(external),
            "model": asdict(model), "train": asdict(train), "generation": asdict(generation),
            "split": split, "max_pairs": max_pairs, "seed": seed, "ablations": list(kinds)})


class _Bench:
    """One benchmark run: the shared pairs, the keyed caches under `out_dir`, the scored rows."""

    def __init__(self, out_dir: Path, data: str, ds, pairs: pd.DataFrame, generation: GenerationConfig,
                 device: str, smooth: bool, bertscore: bool, seed: int = 0):
        from whyrec.eval.features import feature_set_from_records

        self.out_dir, self.data, self.pairs, self.generation, self.device = out_dir, data, pairs, generation, device
        self.ds, self.smooth, self.bertscore, self.seed, self._scorer = ds, smooth, bertscore, seed, None
        self.grounding = grounding_supported(ds)
        self.data_id = data_key(data)
        self.base = {"data": self.data_id, "pairs": pairs_key(pairs)}
        self.refs = pairs[S.EXPLANATION].astype(str).tolist()
        self.rows: dict[str, dict] = {}
        self.folders: dict[str, Path] = {}  # rows with a trained folder: what --ablations ablates
        self.texts: dict[str, list[str]] = {}
        self.subsets: dict[tuple[int, ...], dict[str, External]] = {}  # pairs -> the external rows covering only them
        self.feature_set = feature_set_from_records(ds) if S.FEATURE in ds.interactions else set()

    def metrics(self, preds: list[str], at: list[int] | None = None) -> dict:
        """Every metric of `preds`, the predictions for the benchmark pairs (or for those at `at` only)."""
        from whyrec.eval.features import feature_metrics
        from whyrec.eval.report import evaluate_texts

        pairs = self.pairs if at is None else self.pairs.iloc[at].reset_index(drop=True)
        refs = pairs[S.EXPLANATION].astype(str).tolist()
        metrics = evaluate_texts(preds, refs, smooth=self.smooth)
        # BERTScore, the mispaired floor and the bootstrap intervals share one loaded scorer
        metrics.update(floor_and_intervals(preds, refs, self.seed, self.smooth, self.scorer()))
        if self.grounding:
            metrics["grounding"] = grounding_summary(self.ds, preds, pairs)
        gt_features = pairs[S.FEATURE].fillna("").astype(str).tolist() if S.FEATURE in pairs else []
        if self.feature_set and gt_features:  # review data with PEPLER templates: FMR/FCR/DIV as well
            metrics["features"] = feature_metrics(preds, gt_features, self.feature_set)
        return metrics

    def score(self, name: str, preds: list[str], train_log: dict | None, secs: float | None) -> None:
        self.rows[name] = {"metrics": self.metrics(preds), "train": train_summary(train_log), "generate_s_per_pair":
                           None if secs is None else round(secs / max(1, len(preds)), 3)}
        self.texts[name] = preds

    def external(self, ext: External) -> None:
        """A main-table row when `ext` covers every pair; else scored in `finish`, beside the others rescored."""
        if len(ext.pairs) == len(self.pairs):
            return self.score(ext.name, ext.predictions, None, None)
        self.subsets.setdefault(ext.pairs, {})[ext.name] = ext

    def subset(self, covered: tuple[int, ...], externals: dict[str, External]) -> dict:
        """The `subsets` entry of `covered`: its external rows and every main-table row rescored on it."""
        at, pairs = list(covered), self.pairs.iloc[list(covered)].reset_index(drop=True)
        rows = {n: {"metrics": self.metrics(e.predictions, at), "train": None, "generate_s_per_pair": None}
                for n, e in externals.items()}
        for name, row in self.rows.items():
            metrics = self.metrics([self.texts[name][k] for k in at], at)
            rows[name] = {**row, "metrics": metrics | self.extra_metrics(name, pairs)}
        out = {"n_pairs": len(at), "of_pairs": len(self.pairs), "pair_indices": at,
               "external": {n: e.references for n, e in externals.items()}, "rows": rows}
        if self.grounding:
            out["references_grounding"] = grounding_summary(self.ds, pairs[S.EXPLANATION].astype(str).tolist(), pairs)
        return out

    def extra_metrics(self, name: str, pairs: pd.DataFrame) -> dict:
        """A folder row's method-specific metrics on `pairs` (PEPLER-reg: RMSE/MAE); {} for other rows."""
        extra = getattr(method_of(self.folders[name]), "benchmark_extra_metrics", None) if name in self.folders else None
        return (extra and extra(self.folders[name], pairs, self.device)) or {}

    def scorer(self):
        if self.bertscore and self._scorer is None:
            from whyrec.eval.bertscore import BertScorer

            self._scorer = BertScorer(device=self.device)
        return self._scorer

    def retrieval(self, ds, encoder: str | None) -> None:
        """The no-LLM baseline row, cached like a method's predictions (keyed by its encoder)."""
        producer = {"baseline": "retrieval", "encoder": tree_identity(encoder) if encoder else None}
        preds, secs = self.predictions(RETRIEVAL, RETRIEVAL, producer, max(1, len(self.pairs)),
                                       lambda: retrieval_generator(ds, encoder))
        self.score(retrieval_row_name(encoder), preds, None, secs)

    def predictions(self, name: str, file_stem: str, producer: dict, chunk: int,
                    load: Callable[[], Generator]) -> tuple[list[str], float]:
        path = self.out_dir / "predictions" / f"{_slug(file_stem)}.jsonl"
        key = {**self.base, "system": name, **producer, "chunk": chunk}
        return cached_predictions(path, key, self.pairs, chunk, load, label=f"predictions/{path.name}")

    def folder(self, name: str, folder: Path, train_log: dict | None, trained: dict | None) -> None:
        """Generate (or reuse) and score a trained explainer or PEPLER folder's predictions."""
        method = method_of(folder)
        chunk, load = folder_generator(folder, self.generation, self.device, self.data)
        producer = {"folder": run_identity(folder), **({"trained": trained} if trained else {})}
        if uses_generation(method):
            producer["generation"] = generation_settings(self.generation)
        preds, secs = self.predictions(name, name, producer, chunk, load)
        self.score(name, preds, train_log, secs)
        self.folders[name] = folder
        self.rows[name]["metrics"].update(self.extra_metrics(name, self.pairs))

    def method(self, method: str, obj, encoder: str | None, model: ModelConfig, cfg, train: TrainConfig) -> None:
        key = {"data": self.data_id, "method": method, "model": model_key(model), "config": settings(cfg),
               "train": settings(train), **({"encoder": tree_identity(encoder)} if encoder else {}),
               **given_train_key(obj, cfg, train)}
        final = self.out_dir / "methods" / method
        log = trained_folder(final, key, lambda work: obj.train(self.data, work, encoder=encoder, model=model,
                                                                train=train, config=cfg),
                             label=f"methods/{method}")
        self.folder(method, final, log, key)

    def finish(self, ds, skipped: dict, seed: int, groups: bool, ablations: dict, run_info: dict) -> dict:
        from whyrec.eval.report import metric_versions

        rows, out_dir = self.rows, self.out_dir
        result = {"data": self.data, "data_digest": self.data_id, "split": run_info["split"],
                  "n_pairs": len(self.pairs), "seed": seed, "rows": rows, "skipped": skipped}
        if self.subsets:  # external rows that cover part of the pairs, beside the others rescored on them
            result["subsets"] = [self.subset(at, externals) for at, externals in self.subsets.items()]
        if scored := [*rows.values(), *(r for s in result.get("subsets", ()) for r in s["rows"].values())]:
            result["metric_versions"] = metric_versions(scored[0]["metrics"], self.smooth)
        if self.grounding:  # the data's own rate: what a method's rate is to be read against
            result["references_grounding"] = grounding_summary(ds, self.refs, self.pairs)
        if rows and groups:
            result["by_activity"] = activity_breakdown(ds, self.pairs, self.texts, self.refs, out_dir, self.smooth)
        if ablations:
            result["ablations"] = ablations
        write_json(out_dir / "comparison.json", result)
        write_text(out_dir / "comparison.md", comparison_table(result) + ablation_section(ablations))
        write_run_info(out_dir, run_info, command="benchmark explain")
        return result


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in name).strip("-") or "run"
