"""The quickstart job: MovieLens-100K -> LightGCN -> XRec on SmolLM2 -> top-k with explanations.

Each stage writes its own folder under `out` and is skipped when that folder is complete,
so a second run only loads artifacts and generates. Stages are reused only under the same
`out` fingerprint: the model config and the identity of the weights it names (a local model
retrained in place is another model), train, lightgcn, max_users and eval_pairs; a rerun that
changes any of them is refused naming the field (or rebuilt aside with `overwrite`), so stage
folders of two configs never mix. The number of users shown and k only change what is printed.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

from whyrec.config import (
    GenerationConfig,
    LightGCNConfig,
    ModelConfig,
    TrainConfig,
    XRecConfig,
    generation_fingerprint,
)

TRAIN = TrainConfig(lr=1e-3, batch_size=4, max_steps=60, max_target_tokens=64, min_rating=4.0)
# Every BPR step propagates over the whole graph, so the step count sets the encoder's cost: 8x
# XRec's batch of triples with 8x its learning rate takes 7x fewer steps to the same test
# Recall@20 and NDCG@20 (measured in docs/getting-started.md).
LIGHTGCN = LightGCNConfig(epochs=200, eval_every=2, patience=5, batch_size=8192, lr=8e-3)
# Encoder settings of earlier versions: a quickstart folder made with them is finished with them,
# not refused for settings its user never chose.
EARLIER_LIGHTGCN = (LightGCNConfig(epochs=200, eval_every=2, patience=5),)


def run_quickstart(out: str = "runs/quickstart", n_users: int = 3, k: int = 5, eval_pairs: int = 24,
                   model: ModelConfig | None = None, train: TrainConfig | None = None,
                   lightgcn: LightGCNConfig | None = None, max_users: int | None = None, device: str = "auto",
                   overwrite: bool = False) -> dict:
    """Run (or resume) the quickstart in `out`. A folder made with other settings is refused,
    naming what differs, unless `overwrite` (then it is rebuilt aside and renamed into place)."""
    from whyrec.identity import model_identity
    from whyrec.outputs import fingerprint_of, output_folder

    model = model or ModelConfig()
    model = replace(model, device=device if device != "auto" else model.device)
    train = train or TRAIN

    def settings(lightgcn: LightGCNConfig) -> dict:
        return fingerprint_of({"model": model, "weights": model_identity(model.name_or_path, model.gguf_file),
                               "train": train, "lightgcn": lightgcn, "max_users": max_users,
                               "eval_pairs": eval_pairs})

    if lightgcn is None or lightgcn == LIGHTGCN:  # the CLI passes its default, which is LIGHTGCN
        lightgcn = _default_lightgcn(out, settings, overwrite)
    with output_folder(out, "quickstart run", settings(lightgcn), overwrite=overwrite) as work:
        return _run(Path(out), work, n_users, k, eval_pairs, model, train, lightgcn, max_users, device)


def _run(root: Path, work: Path, n_users: int, k: int, eval_pairs: int, model: ModelConfig, train: TrainConfig,
         lightgcn: LightGCNConfig, max_users: int | None, device: str) -> dict:
    from whyrec.config_data import PrepareConfig
    from whyrec.data.dataset import RecDataset
    from whyrec.data.prepare import prepare_dataset
    from whyrec.encoders.train import train_encoder
    from whyrec.fingerprint import plain
    from whyrec.methods.xrec.train import train_explainer
    from whyrec.outputs import output_folder, read_marker
    from whyrec.runs import evaluate_run

    data_dir, enc_dir, expl_dir = work / "data", work / "encoder", work / "explainer"
    _stage = _Stages()

    _stage("1/5 data: MovieLens-100K + Wikidata metadata, grounded explanations")
    if not (data_dir / "dataset.json").exists():
        prepare_dataset(PrepareConfig(source="ml-100k", split="random", seed=42, max_users=max_users), str(data_dir))
    ds = RecDataset.load(data_dir)
    print(f"    {ds.n_users} users, {ds.n_items} items, {len(ds.interactions)} ratings")

    _stage("2/5 encoder: LightGCN (BPR, early stopping on validation Recall@20)")
    enc_metrics = train_encoder(data=str(data_dir), out=str(enc_dir), config=lightgcn,
                                device=device)

    _stage(f"3/5 explainer: XRec adapters on {model.name_or_path} ({train.max_steps} steps)")
    log = train_explainer(str(data_dir), str(enc_dir), str(expl_dir), model=model,
                          xrec=XRecConfig(item_noun="movie", max_prompt_words=30, item_facts=True), train=train)

    _stage(f"4/5 top-{k} recommendations with explanations")
    # Two candidates, the grounding checker picks (greedy + one seeded sample): on 48 test pairs of the
    # quickstart model 0 of 102 checkable claims false vs 7 of 92 greedy, BLEU/ROUGE not lower (docs/results.md §4).
    gen = GenerationConfig(max_new_tokens=60, batch_size=16, candidates=2)
    users = ds.split("test")["user"].astype(str).value_counts().index[:n_users].tolist()
    loaded = _Loaded(expl_dir, device)
    for user, prof, recs in _samples(work, loaded, users, k, gen):
        print(f"\nuser {user}: {prof}")
        for rank, rec in enumerate(recs, 1):
            print(f"  {rank}. {rec['title']}  (score {rec['score']:.2f})\n     {rec['explanation']}")

    _stage(f"5/5 metrics ({eval_pairs} held-out explanations; ranking on the test split)")
    eval_dir, eval_key = work / "eval", {"eval_pairs": eval_pairs, "generation": gen}
    marker = read_marker(eval_dir) or {}
    same = _decoding_of(marker.get("fingerprint")) == _decoding_of(plain(eval_key))
    if marker.get("state") == "complete" and same and (eval_dir / "metrics.json").is_file():
        text_metrics = json.loads((eval_dir / "metrics.json").read_text())
    else:
        # Its own marker: an evaluation that failed or was killed half-written is redone whole, not
        # taken as done because metrics.json (written before the report and predictions) exists;
        # one made with other decoding settings (an earlier version's) is replaced, as the line says.
        if marker and not same:
            print("    the evaluation in this folder decoded with other settings: evaluating again")
        with output_folder(eval_dir, "quickstart evaluation", eval_key, resumable=False,
                           overwrite=bool(marker) and not same) as eval_work:
            text_metrics = evaluate_run(str(expl_dir), str(data_dir), str(eval_work), max_pairs=eval_pairs,
                                        generation=gen, device=device, loaded=loaded())
    summary = _summary(enc_metrics, text_metrics, log)
    summary["stage_seconds"] = _stage.done()
    for line in summary["lines"]:
        print("   ", line)
    print(f"\nartifacts in {root}/ (reuse: `whyrec recommend --run {root} --user 1 -k 5 --explain`)")
    return summary


def _default_lightgcn(out: str, settings, overwrite: bool) -> LightGCNConfig:
    """LIGHTGCN, or the earlier default a folder in `out` was made with (so its stages are reused)."""
    from whyrec.outputs import read_marker

    recorded = (read_marker(out) or {}).get("fingerprint")
    if overwrite or recorded is None:
        return LIGHTGCN
    for earlier in EARLIER_LIGHTGCN:
        if json.loads(json.dumps(settings(earlier))) == recorded:
            print(f"{out} was made with an earlier version's encoder settings; reusing them "
                  "(--overwrite rebuilds it with the current ones)")
            return earlier
    return LIGHTGCN


class _Loaded:
    """The trained explainer, loaded on first use and then shared by the samples and the evaluation."""

    def __init__(self, path: Path, device: str):
        self.path, self.device, self.run = path, device, None

    def __call__(self):
        if self.run is None:
            from whyrec.runs import load_run

            self.run = load_run(self.path, device=self.device)
        return self.run


def _samples(work: Path, loaded: _Loaded, users: list[str], k: int, gen: GenerationConfig) -> list:
    """[(user, profile, top-k with explanations)], kept in work/samples.json under a key of what made
    them, so a second quickstart prints them without loading the language model. All users' pairs
    are explained in one call, so they share decoding batches."""
    from whyrec.config import generation_fingerprint
    from whyrec.identity import run_identity
    from whyrec.utils import write_json

    path = work / "samples.json"
    key = {"explainer": run_identity(loaded.path), "users": users, "k": k, "generation": generation_fingerprint(gen)}
    if path.is_file():
        cached = json.loads(path.read_text())
        if cached.get("key") == json.loads(json.dumps(key)):
            return cached["samples"]
    run = loaded()
    top = {u: run.recommend(u, k=k) for u in users}
    todo = [(u, rec) for u in users for rec in top[u] if rec.get("explanation") is None]
    texts = run.explain_many([u for u, _ in todo], [rec["item"] for _, rec in todo], gen)
    for (_, rec), text in zip(todo, texts):
        rec["explanation"] = text
    samples = [(u, run.catalog.profile(u), top[u]) for u in users]
    write_json(path, {"key": key, "samples": samples})
    return samples


class _Stages:
    """Prints each stage's title and, when the next one starts, how long the last one took."""

    def __init__(self):
        self.times: dict[str, float] = {}
        self.current: tuple[str, float] | None = None

    def __call__(self, text: str) -> None:
        self.done()
        print(f"\n== {text}", flush=True)
        self.current = (text.split(" ", 1)[0], time.monotonic())

    def done(self) -> dict[str, float]:
        """Close the current stage (printing its time); the seconds per stage so far."""
        if self.current is not None:
            name, start = self.current
            self.times[name] = round(time.monotonic() - start, 1)
            print(f"   (stage {name} took {self.times[name]:.1f} s)", flush=True)
            self.current = None
        return dict(self.times)


def _summary(enc: dict, text: dict, log: dict) -> dict:
    test = enc.get("test", {})
    pop = (enc.get("popularity") or {}).get("test") or {}
    p = text["pepler"]
    lines = [
        f"LightGCN  test Recall@20 {test.get('recall@20', float('nan')):.4f}  NDCG@20 {test.get('ndcg@20', float('nan')):.4f}"
        f"  (popularity: Recall@20 {pop.get('recall@20', float('nan')):.4f})",
        f"XRec      train loss {log.get('first_loss')} -> {log.get('last_loss')} over {log.get('steps')} steps",
        f"Explain   BLEU-1 {p['bleu1']:.2f}  BLEU-4 {p['bleu4']:.2f}  ROUGE-L F {p['rougeL_f']:.2f}  USR {p['usr']:.3f}"
        f"  (PEPLER definitions, n={text['n']})",
    ]
    g = text.get("grounding") or {}
    if g.get("checked_claims"):
        lines.append(f"Grounding {g['false_claims']} of {g['checked_claims']} checkable claims false "
                     f"({100 * g['hallucination_rate']:.1f}%) in {g['explanations_with_false_claim']} of "
                     f"{g['explanations']} explanations (whyrec.eval.grounding)")
    return {"lines": lines, "encoder": enc, "explanations": text}


def _decoding_of(fingerprint) -> dict | None:
    """An evaluation marker's settings with the GenerationConfig fields added since at their no-op
    values left out (`generation_fingerprint`), so a folder an earlier version made with the same
    decoding still counts as the same; None if it holds no readable settings."""
    try:
        return {**fingerprint, "generation": generation_fingerprint(GenerationConfig(**fingerprint["generation"]))}
    except (TypeError, KeyError, ValueError):  # no marker, or settings of another version's making
        return None
