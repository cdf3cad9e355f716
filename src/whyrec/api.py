"""Python API for notebooks: the same operations as the CLI.

    import whyrec
    run = whyrec.load_run("runs/quickstart")
    run.recommend("196", k=5, explain=True)
    run.explain("196", "242")
"""

from __future__ import annotations

from pathlib import Path

from whyrec.config import GenerationConfig


class Run:
    """A trained explainer with its encoder: recommend items and explain them."""

    def __init__(self, path: str | Path, device: str = "auto"):
        from whyrec.folders import check_run, weights_fit
        from whyrec.methods.xrec.artifact import load_explainer

        self.path = Path(path)
        folder = check_run(path)  # a damaged folder is one clear error, not a traceback from deep in torch
        with weights_fit(folder):
            self.explainer = load_explainer(str(path), device=device)

    @property
    def encoder(self):
        return self.explainer.encoder

    def title(self, item: str) -> str:
        return self.explainer.titles.get(str(item), str(item))

    def explain(self, user: str, item: str, generation: GenerationConfig | None = None) -> str:
        return self.explainer.explain([str(user)], [str(item)], generation, progress=False)[0]

    def explain_many(self, users: list[str], items: list[str], generation: GenerationConfig | None = None) -> list[str]:
        return self.explainer.explain(users, items, generation)

    def recommend(self, user: str, k: int = 5, explain: bool = False,
                  generation: GenerationConfig | None = None) -> list[dict]:
        """Top-k items from the collaborative encoder, training items excluded."""
        from whyrec.utils import WhyrecError

        if k < 1:
            raise WhyrecError(f"k must be at least 1 (got {k})")
        enc = self.encoder
        if str(user) not in enc.user2idx:
            raise WhyrecError(f"unknown user id {user!r}; this run knows {len(enc.user2idx)} users")
        idx2item = {v: key for key, v in enc.item2idx.items()}
        items, scores = enc.recommend(enc.user2idx[str(user)], k)
        recs = [{"item": idx2item[i], "title": self.title(idx2item[i]), "score": float(s)} for i, s in zip(items, scores)]
        if explain and recs:
            texts = self.explainer.explain([str(user)] * len(recs), [r["item"] for r in recs], generation, progress=False)
            for r, t in zip(recs, texts):
                r["explanation"] = t
        return recs


def load_run(path: str | Path, device: str = "auto") -> Run:
    """Load a run folder (with explainer/) or an explainer folder."""
    return Run(path, device=device)


def load_model(path: str | Path, device: str = "auto", generation: GenerationConfig | None = None):
    """Any registered method's trained folder (or a run folder holding explainer/), checked and loaded
    by its method object: `.recommend(user, k)`, `.explain([Pair(user, item)])`, `.info()`, `.catalog`."""
    from whyrec.folders import explainer_dir
    from whyrec.registry import method_of

    folder = explainer_dir(path)
    method = method_of(folder)
    method.check(folder)  # a damaged folder is one clear error, not a traceback from deep in torch
    return method.load(folder, device=device, generation=generation or GenerationConfig())


def explain_pair(path: str | Path, user: str, item: str, generation: GenerationConfig | None = None,
                 device: str = "auto") -> str:
    """Why `user` would enjoy `item`, as the method in `path` explains it (any registered method)."""
    from whyrec.methods.catalog import Pair, Unsupported
    from whyrec.utils import WhyrecError

    model = load_model(path, device=device, generation=generation)
    for kind, name, known in (("user", user, model.catalog.has_user(str(user))),
                              ("item", item, model.catalog.has_item(str(item)))):
        if not known:
            raise WhyrecError(f"unknown {kind} id {name!r}; the run in {path} does not know it")
    text = model.explain([Pair(str(user), str(item))])[0]
    if isinstance(text, Unsupported):
        raise WhyrecError(str(text))
    return text


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
                 bertscore: bool = False, judge=None, grounding: bool = False, overwrite: bool = False) -> dict:
    """Generate explanations for a split's pairs and score them against the references.

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
                   "generation": fingerprint_of(generation), "smooth": smooth, "bertscore": bertscore,
                   "judge": plain(judge), "grounding": grounding}
    with output_folder(out, "evaluation", fingerprint, overwrite=overwrite, resumable=False) as work:
        return _evaluate_run(run, data, work, split, max_pairs, generation, device, smooth, bertscore, judge,
                             grounding)


def _evaluate_run(run, data, out_dir: Path, split, max_pairs, generation, device, smooth, bertscore, judge,
                  grounding) -> dict:
    import pandas as pd

    from whyrec.data import schema as S
    from whyrec.data.dataset import RecDataset
    from whyrec.eval.report import evaluate_texts, markdown_report, metric_versions
    from whyrec.utils import WhyrecError, write_json, write_text

    ds = RecDataset.load(data)
    records = ds.explanation_records(split)
    loaded = load_run(run, device=device)
    known = records[S.USER].astype(str).isin(loaded.encoder.user2idx) & records[S.ITEM].astype(str).isin(loaded.encoder.item2idx)
    records = records[known]
    if max_pairs and len(records) > max_pairs:
        records = records.sample(max_pairs, random_state=0)
    if len(records) == 0:
        raise WhyrecError(f"no '{split}' explanations in {data} whose user and item the run knows")
    users, items = records[S.USER].astype(str).tolist(), records[S.ITEM].astype(str).tolist()
    preds = loaded.explain_many(users, items, generation)
    refs = records[S.EXPLANATION].astype(str).tolist()
    metrics = evaluate_texts(preds, refs, smooth=smooth, bertscore=bertscore, judge=judge)
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
