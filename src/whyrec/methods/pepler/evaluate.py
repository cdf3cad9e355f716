"""PEPLER evaluation: greedy generation for a split, rating RMSE/MAE (reg), grounding and `evaluate_pepler`."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from whyrec.methods.pepler.artifact import load_pepler_run
from whyrec.methods.pepler.train import _batches, make_examples

if TYPE_CHECKING:
    from whyrec.eval.judge import JudgeConfig


def generate_pepler(out_dir, data: str, split: str = "test", max_pairs: int | None = None,
                    device: str = "auto", frame=None) -> tuple[list[str], list[str], list[str]]:
    """(predictions, references truncated to `words` tokens, ground-truth features) for a split,
    or for the explanation records in `frame` (e.g. the pairs a benchmark shares across methods)."""
    preds, refs, feats, _, _, _ = _generate(out_dir, data, split, max_pairs, device, frame)
    return preds, refs, feats


def _generate(out_dir, data, split, max_pairs, device, frame=None):
    from whyrec.data.dataset import RecDataset

    module, cfg = load_pepler_run(out_dir, device)
    ds = RecDataset.load(data)
    if frame is None:
        frame = ds.explanation_records(split)
        frame = frame.head(max_pairs) if max_pairs is not None else frame
    ex = make_examples(module, frame, cfg["user2idx"], cfg["item2idx"], cfg["features"])
    preds: list[str] = []
    for idx in _batches(len(ex), module.cfg.batch_size):
        users, items, prompts, _, _ = ex.rows(idx)
        preds += [module.decode(ids) for ids in module.generate_ids(users, items, prompts)]
    return preds, ex.refs, ex.features, (module, ex, cfg), ds, frame


def rating_errors(pred: torch.Tensor, truth: torch.Tensor, low: float, high: float) -> dict[str, float]:
    """RMSE and MAE with predictions clipped to [low, high] (PEPLER's reg.py)."""
    err = pred.clamp(low, high) - truth
    return {"rmse": float(err.pow(2).mean().sqrt()), "mae": float(err.abs().mean())}


def _rating_metrics(module, ex, cfg: dict) -> dict[str, float] | None:
    """RMSE/MAE of the rating head on `ex` (reg runs on rated data), else None."""
    if module.cfg.variant != "reg" or ex.ratings is None or not cfg.get("rating_range"):
        return None
    with torch.no_grad():
        pred = torch.cat([module.predict_rating(ex.users[t], ex.items[t]).cpu()
                          for t in torch.arange(len(ex)).split(module.cfg.batch_size)])
    return rating_errors(pred, ex.ratings, *cfg["rating_range"])


def pepler_rating_metrics(out_dir, frame, device: str = "auto") -> dict[str, float] | None:
    """RMSE/MAE of a `reg` run's rating head on the (user, item, rating) rows of `frame`."""
    module, cfg = load_pepler_run(out_dir, device)
    if module.cfg.variant != "reg":
        return None
    ex = make_examples(module, frame, cfg["user2idx"], cfg["item2idx"], cfg["features"])
    return _rating_metrics(module, ex, cfg)


def evaluate_pepler(out_dir, data: str, split: str = "test", max_pairs: int | None = None, out: str | None = None,
                    smooth: bool = False, device: str = "auto", grounding: bool = True, bertscore: bool = False,
                    judge: JudgeConfig | None = None, bertscore_model: str | None = None,
                    bertscore_layers: int | None = None) -> dict:
    """Generate for a split and write `metrics.json` (+ predictions.jsonl) to `out` (default `out_dir`).

    `bertscore` and `judge` (GPTScore unless its backend is 'none') are scored by the same
    `evaluate_texts` as every method's evaluation, against the references the text metrics read.

    `grounding`: the false-claim rates of the outputs and of the references (`whyrec.eval.grounding`),
    as every method's evaluation reports them. The references are checked whole, not cut to `words`
    tokens as the text metrics read them: a cut can halve a name into a false claim of its own, and
    whole references give the same reference rate as the other methods' evaluations of the pairs."""
    import json
    from pathlib import Path

    from whyrec.eval.features import feature_metrics, feature_set_from_records
    from whyrec.eval.report import evaluate_texts, metric_versions
    from whyrec.utils import write_json, write_text

    preds, refs, feats, (module, ex, cfg), ds, frame = _generate(out_dir, data, split, max_pairs, device)
    if judge is not None:
        from whyrec.llm.judge_client import LLMJudge

        judge = LLMJudge(judge)  # eval scores with a judge object; building its LLM client is llm's job
    metrics = evaluate_texts(preds, refs, smooth=smooth, bertscore=bertscore, bertscore_model=bertscore_model,
                             bertscore_layers=bertscore_layers, judge=judge)
    feature_set = feature_set_from_records(ds) if "feature" in ds.interactions else set()
    if feature_set:
        metrics["features"] = feature_metrics(preds, feats, feature_set)
    rating = _rating_metrics(module, ex, cfg)
    if rating:
        metrics["rating"] = rating
    if grounding:
        from whyrec.data import schema as S
        from whyrec.eval.grounding import grounding_report

        users, items = frame[S.USER].astype(str).tolist(), frame[S.ITEM].astype(str).tolist()
        metrics["grounding"] = grounding_report(preds, users, items, ds)
        metrics["grounding_references"] = grounding_report(frame[S.EXPLANATION].astype(str).tolist(), users, items, ds)
    metrics.update(method=f"pepler-{module.cfg.variant}", split=split, metric_versions=metric_versions(metrics, smooth))
    target = Path(out or out_dir)
    write_json(target / "metrics.json", metrics)
    write_text(target / "predictions.jsonl", "".join(
        json.dumps({"prediction": p, "reference": r, "feature": f}) + "\n" for p, r, f in zip(preds, refs, feats)))
    return metrics
