"""`whyrec benchmark explain`: every explanation method on the same pairs, one comparison table.

Each row is scored on exactly the same (user, item, reference) records: a seeded sample of a
split's explanation records, drawn once. Methods that a dataset cannot support (PEPLER's
discrete prompt without feature words, the rating head without ratings) are listed as skipped
with the reason rather than silently dropped. Predictions are cached per row in
`out/predictions/`, so an interrupted benchmark resumes where it stopped.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

import pandas as pd

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
from whyrec.data import schema as S
from whyrec.utils import WhyrecError, write_json, write_run_info, write_text

EXPLANATION_METHODS = ("xrec", "xrec-lora", "gavamoe", "pepler-continuous", "pepler-discrete", "pepler-reg",
                       "zero-shot")
ZERO_SHOT_SYSTEM = "Explain why the user would enjoy the {noun} within 50 words."


def select_pairs(ds, split: str, max_pairs: int | None, seed: int) -> pd.DataFrame:
    """The shared evaluation records: a seeded sample of `split`'s explanation records."""
    records = ds.explanation_records(split).reset_index(drop=True)
    if len(records) == 0:
        raise WhyrecError(f"no '{split}' explanation records to benchmark on; check --split")
    if max_pairs is not None and len(records) > max_pairs:
        records = records.sample(max_pairs, random_state=seed).reset_index(drop=True)
    return records


def unavailable(method: str, ds) -> str | None:
    """Why `method` cannot run on `ds`, or None when it can."""
    inter = ds.interactions
    if method == "pepler-discrete" and (S.FEATURE not in inter or inter[S.FEATURE].fillna("").eq("").all()):
        return "no feature words (prepare raw reviews with --extract_features)"
    if method in ("pepler-reg", "gavamoe") and (S.RATING not in inter or inter[S.RATING].isna().all()):
        return "no ratings" + (" (its VAE clusters users by reconstructing ratings)" if method == "gavamoe" else "")
    if method not in EXPLANATION_METHODS:
        raise WhyrecError(f"unknown benchmark method {method!r}; choose from: {', '.join(EXPLANATION_METHODS)}")
    return None


def _cached(path: Path, make) -> tuple[list[str], float]:
    if path.exists():
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        return [r["prediction"] for r in rows], rows[0]["seconds"] if rows else 0.0
    start = time.perf_counter()
    preds = make()
    secs = time.perf_counter() - start
    write_text(path, "".join(json.dumps({"prediction": p, "seconds": secs}) + "\n" for p in preds))
    return preds, secs


def zero_shot(ds, pairs: pd.DataFrame, model: ModelConfig, gen: GenerationConfig, noun: str) -> list[str]:
    """The backbone alone, prompted with the same title and profiles XRec's prompt carries."""
    from whyrec.llm.client import LocalHFClient, complete_many

    def text(frame, key, col):
        if frame is None or col not in frame:
            return {}
        return dict(zip(frame[key].astype(str), frame[col].fillna("").astype(str)))

    titles, item_prof, user_prof = text(ds.items, S.ITEM, S.TITLE), text(ds.items, S.ITEM, S.PROFILE), text(ds.users, S.USER, S.PROFILE)
    convs = []
    for u, i in zip(pairs[S.USER].astype(str), pairs[S.ITEM].astype(str)):
        user = (f"{noun} name: {titles.get(i, i)} user profile: {user_prof.get(u, '')} "
                f"{noun} profile: {item_prof.get(i, '')}")
        convs.append([{"role": "system", "content": ZERO_SHOT_SYSTEM.format(noun=noun)}, {"role": "user", "content": user}])
    client = LocalHFClient(model, max_tokens=gen.max_new_tokens, batch_size=gen.batch_size,
                           repetition_penalty=gen.repetition_penalty)
    return complete_many(client, convs, cache=None, progress=True, max_tokens=gen.max_new_tokens, desc="zero-shot")


def _train(method: str, data: str, encoder: str | None, folder: Path, model: ModelConfig, cfgs: dict,
           train: TrainConfig) -> dict:
    if method.startswith("pepler-"):
        from whyrec.methods.pepler import train_pepler

        variant = PEPLERConfig(**{**asdict(cfgs["pepler"]), "variant": method[7:]})
        return train_pepler(data, str(folder), model=model, pepler=variant, train=train)
    if method == "gavamoe":
        from whyrec.methods.gavamoe_train import train_gavamoe

        return train_gavamoe(data, encoder, str(folder), model=model, cfg=cfgs["gavamoe"], train=train)
    from whyrec.explainer import train_explainer

    xrec = cfgs["xrec"]
    cfg = XRecConfig(**{**asdict(xrec), "lora": xrec.lora})
    cfg.lora = type(xrec.lora)(**{**asdict(xrec.lora), "enabled": method == "xrec-lora"})
    return train_explainer(data, encoder, str(folder), model=model, xrec=cfg, train=train)


def _predict(folder: Path, data: str, pairs: pd.DataFrame, gen: GenerationConfig, device: str) -> list[str]:
    cfg = json.loads((folder / "config.json").read_text())
    if cfg.get("method") == "pepler":
        from whyrec.methods.pepler import generate_pepler

        return generate_pepler(folder, data, frame=pairs, device=device)[0]
    from whyrec.explainer import load_explainer

    return load_explainer(str(folder), device=device).explain(pairs[S.USER].tolist(), pairs[S.ITEM].tolist(), gen)


def _pepler_rating(folder: Path, pairs: pd.DataFrame, device: str) -> dict | None:
    """RMSE/MAE on the pairs for a PEPLER `reg` folder; None (nothing loaded) for any other folder."""
    cfg = json.loads((folder / "config.json").read_text())
    if cfg.get("method") != "pepler" or cfg.get("pepler", {}).get("variant") != "reg":
        return None
    from whyrec.methods.pepler import pepler_rating_metrics

    return pepler_rating_metrics(folder, pairs, device)


def external_predictions(spec: str, pairs: pd.DataFrame) -> tuple[str, list[str]]:
    """`NAME=PREDICTIONS[:REFERENCES]`: another system's outputs, re-linked to `pairs` by reference text
    when its references are given (XRec ships predictions in a different order), else paired in order."""
    from whyrec.eval.readers import read_texts

    name, sep, paths = spec.partition("=")
    if not sep or not paths:
        raise WhyrecError(f"--external {spec!r}: write NAME=PREDICTIONS_FILE[:REFERENCES_FILE]")
    pred_path, _, ref_path = paths.partition(":")
    preds = read_texts(pred_path, role="prediction")
    wanted = pairs[S.EXPLANATION].astype(str).tolist()
    if not ref_path:
        if len(preds) != len(wanted):
            raise WhyrecError(f"--external {name}: {len(preds)} predictions for {len(wanted)} pairs; give its "
                              "references too (NAME=PRED:REF) so they can be matched by text")
        return name, preds
    by_ref = dict(zip(map(str, read_texts(ref_path, role="reference")), map(str, preds)))
    missing = sum(r not in by_ref for r in wanted)
    if missing:
        raise WhyrecError(f"--external {name}: {missing} of {len(wanted)} benchmark references are not in {ref_path}")
    return name, [by_ref[r] for r in wanted]


def benchmark_explain(data: str, out: str, methods: tuple[str, ...] | list[str] = EXPLANATION_METHODS,
                      encoder: str | None = None, runs: tuple[str, ...] | list[str] = (),
                      external: tuple[str, ...] | list[str] = (), model: ModelConfig | None = None,
                      xrec: XRecConfig | None = None, pepler: PEPLERConfig | None = None,
                      train: TrainConfig | None = None, lightgcn: LightGCNConfig | None = None,
                      generation: GenerationConfig | None = None, split: str = "test", max_pairs: int | None = 200,
                      seed: int = 0, smooth: bool = False, bertscore: bool = False, device: str = "auto",
                      vae: str | None = None, vae_config: VaeGmmConfig | None = None,
                      gavamoe: GaVaMoEConfig | None = None, groups: bool = True) -> dict:
    """Train (or reuse) every method, generate for the same pairs, score, write the comparison.

    `runs` adds already-trained explainer/PEPLER folders as `NAME=FOLDER`; `external` adds
    other systems' prediction files as `NAME=PRED[:REF]`. XRec uses `encoder` (LightGCN) and
    GaVaMoE `vae` (stage 1); each is trained into `out` when not given. Writes
    out/comparison.{md,json}; with `groups`, also every system's metrics by user activity
    (out/by_activity.{md,png}).
    """
    from whyrec.data.dataset import RecDataset
    from whyrec.eval.features import feature_metrics, feature_set_from_records
    from whyrec.eval.report import evaluate_texts, metric_versions

    model, xrec, pepler = model or ModelConfig(), xrec or XRecConfig(), pepler or PEPLERConfig()
    train, generation = train or TrainConfig(max_minutes=10), generation or GenerationConfig(max_new_tokens=80)
    out_dir, ds = Path(out), RecDataset.load(data)
    pairs = select_pairs(ds, split, max_pairs, seed)
    refs = pairs[S.EXPLANATION].astype(str).tolist()
    rows, skipped, predictions = {}, {}, {}
    feature_set = feature_set_from_records(ds) if S.FEATURE in ds.interactions else set()
    gt_features = pairs[S.FEATURE].fillna("").astype(str).tolist() if S.FEATURE in pairs else []

    def score(name: str, preds: list[str], train_log: dict | None, secs: float | None) -> None:
        metrics = evaluate_texts(preds, refs, smooth=smooth, bertscore=bertscore)
        if feature_set and gt_features:  # review data with PEPLER templates: FMR/FCR/DIV as well
            metrics["features"] = feature_metrics(preds, gt_features, feature_set)
        rows[name] = {"metrics": metrics, "train": _train_summary(train_log), "generate_s_per_pair":
                      None if secs is None else round(secs / max(1, len(preds)), 3)}
        predictions[name] = preds

    for spec in external:
        name, preds = external_predictions(spec, pairs)
        score(name, preds, None, None)
    for spec in runs:
        name, sep, folder = spec.partition("=")
        if not sep or not (Path(folder) / "config.json").exists():
            raise WhyrecError(f"--runs {spec!r}: write NAME=FOLDER with a trained explainer or PEPLER folder")
        preds, secs = _cached(out_dir / "predictions" / f"{_slug(name)}.jsonl",
                              lambda f=folder: _predict(Path(f), data, pairs, generation, device))
        score(name, preds, _read_log(Path(folder)), secs)
        rating = _pepler_rating(Path(folder), pairs, device)
        if rating:
            rows[name]["metrics"]["rating"] = rating
    for method in methods:
        reason = unavailable(method, ds)
        if reason:
            skipped[method] = reason
            continue
        if method == "zero-shot":
            preds, secs = _cached(out_dir / "predictions" / "zero-shot.jsonl",
                                  lambda: zero_shot(ds, pairs, model, generation, xrec.item_noun))
            score(f"zero-shot {model.name_or_path}", preds, None, secs)
            continue
        if method.startswith("xrec") and encoder is None:
            encoder = _encoder(data, out_dir / "encoder", lightgcn or LightGCNConfig(), device)
        if method == "gavamoe" and vae is None:
            from whyrec.encoders.vae_train import train_vae_gmm

            train_vae_gmm(data, str(out_dir / "vae"), vae_config or VaeGmmConfig(), device=device)
            vae = str(out_dir / "vae")
        folder = out_dir / "methods" / method
        cfgs = {"xrec": xrec, "pepler": pepler, "gavamoe": gavamoe or GaVaMoEConfig()}
        log = _train(method, data, vae if method == "gavamoe" else encoder, folder, model, cfgs, train)
        preds, secs = _cached(out_dir / "predictions" / f"{method}.jsonl",
                              lambda f=folder: _predict(f, data, pairs, generation, device))
        score(method, preds, log, secs)
        rating = _pepler_rating(folder, pairs, device)
        if rating:
            rows[method]["metrics"]["rating"] = rating

    result = {"data": data, "split": split, "n_pairs": len(pairs), "seed": seed, "rows": rows, "skipped": skipped}
    if rows:
        result["metric_versions"] = metric_versions(next(iter(rows.values()))["metrics"], smooth)
    if rows and groups:
        result["by_activity"] = activity_breakdown(ds, pairs, predictions, refs, out_dir, smooth)
    write_json(out_dir / "comparison.json", result)
    write_text(out_dir / "comparison.md", comparison_table(result))
    write_run_info(out_dir, {"data": data, "methods": list(methods), "runs": list(runs), "external": list(external),
                             "model": asdict(model), "train": asdict(train), "generation": asdict(generation),
                             "split": split, "max_pairs": max_pairs, "seed": seed}, command="benchmark explain")
    return result


def activity_breakdown(ds, pairs: pd.DataFrame, predictions: dict[str, list[str]], refs: list[str],
                       out_dir: Path, smooth: bool = False) -> dict:
    """Each system's PEPLER metrics per user-activity quintile and for zero-shot users (XRec §4.4).

    The groups are drawn once from the shared pairs, so every system is scored on the same
    users in each group: this is the table that tests a claim of robustness for sparse users.
    """
    from functools import partial

    from whyrec.eval.groups import activity_groups, grouped_metrics, plot_systems_by_group
    from whyrec.eval.text import pepler_text_metrics

    inter = ds.interactions
    train_users = inter.loc[inter[S.SPLIT] == S.TRAIN, S.USER].astype(str).tolist()
    users = pairs[S.USER].astype(str).tolist()
    seen = set(train_users)  # groups split the users with training activity; the others are zero-shot
    labels = activity_groups(train_users, users, n_groups=min(5, max(1, len(set(users) & seen))))
    metric_fn = partial(pepler_text_metrics, smooth=smooth)
    grouped = {name: grouped_metrics(preds, refs, labels, metric_fn) for name, preds in predictions.items()}
    plot_systems_by_group(grouped, metrics=("bleu1", "rougeL_f", "usr"), path=out_dir / "by_activity.png")
    write_text(out_dir / "by_activity.md", activity_table(grouped))
    return grouped


def activity_table(grouped: dict[str, dict]) -> str:
    """Markdown: BLEU-1/4, ROUGE-L F and USR of every system (rows) in every activity group (columns)."""
    names = list(grouped)
    group_names = list(next(iter(grouped.values())))
    head = ["system", "metric"] + [f"{g} (n={grouped[names[0]][g]['n']})" for g in group_names]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in names:
        for key, label in (("bleu1", "BLEU-1"), ("bleu4", "BLEU-4"), ("rougeL_f", "ROUGE-L F"), ("usr", "USR")):
            lines.append("| " + " | ".join([name, label] + [f"{grouped[name][g][key]:.3f}" for g in group_names]) + " |")
    return "\n".join(lines) + "\n"


def _encoder(data: str, folder: Path, cfg: LightGCNConfig, device: str) -> str:
    from whyrec.encoders.train import train_encoder

    train_encoder(data=data, out=str(folder), config=cfg, device=device)
    return str(folder)


def _read_log(folder: Path) -> dict | None:
    for name in ("training_log.json", "train_log.json"):
        if (folder / name).exists():
            return json.loads((folder / name).read_text())
    return None


def _train_summary(log: dict | None) -> dict | None:
    if not log:
        return None
    if log.get("history"):  # PEPLER logs epochs, not steps
        hist = log["history"]
        return {"steps": f"{len(hist)} epochs", "first_loss": hist[0]["train_loss"],
                "last_loss": hist[-1]["train_loss"], **({"elapsed_s": log["elapsed_s"]} if "elapsed_s" in log else {})}
    keys = ("steps", "first_loss", "last_loss", "elapsed_s")
    return {k: log[k] for k in keys if k in log} or None


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in name).strip("-") or "run"


def comparison_table(result: dict) -> str:
    """Markdown: one row per system, PEPLER-definition metrics, training and generation cost."""
    bert = any("bertscore" in r["metrics"] for r in result["rows"].values())
    feats = any("features" in r["metrics"] for r in result["rows"].values())
    head = ["system", "BLEU-1", "BLEU-4", "ROUGE-1 F", "ROUGE-2 F", "ROUGE-L F", "USR"] + (["BERTScore F1"] if bert else [])
    head += ["FMR", "FCR", "DIV"] if feats else []
    rated = any(r["metrics"].get("rating") for r in result["rows"].values())
    head += ["RMSE", "MAE"] if rated else []
    head += ["train steps (loss first→last)", "train min", "generate s/pair"]
    lines = [f"Explanations for {result['n_pairs']} '{result['split']}' pairs of {result['data']} (seed {result['seed']}).",
             "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, row in result["rows"].items():
        m, t = row["metrics"]["pepler"], row["train"] or {}
        cells = [name] + [f"{m[k]:.2f}" for k in ("bleu1", "bleu4", "rouge1_f", "rouge2_f", "rougeL_f")] + [f"{m['usr']:.3f}"]
        if bert:
            cells.append(f"{row['metrics']['bertscore']['bertscore_f1']:.4f}" if "bertscore" in row["metrics"] else "–")
        if feats:
            f = row["metrics"].get("features", {})
            cells += [f"{f[k]:.3f}" if k in f else "–" for k in ("fmr", "fcr", "div")]
        if rated:
            r = row["metrics"].get("rating") or {}
            cells += [f"{r[k]:.4f}" if k in r else "–" for k in ("rmse", "mae")]
        steps = f"{t['steps']} ({t.get('first_loss', '?')}→{t.get('last_loss', '?')})" if "steps" in t else "–"
        cells += [steps, f"{t['elapsed_s'] / 60:.1f}" if "elapsed_s" in t else "–",
                  "–" if row["generate_s_per_pair"] is None else f"{row['generate_s_per_pair']:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [f"\nSkipped: {m} ({why})" for m, why in result["skipped"].items()]
    return "\n".join(lines) + "\n"
