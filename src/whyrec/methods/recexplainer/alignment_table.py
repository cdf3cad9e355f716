"""RecExplainer's alignment table: aligned runs and the un-aligned backbone on the same examples.

One row per RecExplainer run (e.g. behaviour / intention / hybrid, Lei et al., KDD 2024,
METHODS §5.3) plus, on request, `un-aligned`: the first run's backbone with its LoRA disabled,
asked in behaviour mode (titles only, no connectors; `UnalignedBackbone`). Every row sees the
same seeded users and the same target-model material (computed once from the shared target),
and the task generators draw their templates from the same seed, so each row answers the same
(task, user, items, answer) examples, each phrased in its own mode. `examples_key` in the JSON
is a digest of those tuples; it is equal across rows by construction.

Runs must explain the same target model (their target/ folders are compared byte for byte).
Models are loaded one at a time and released before the next is loaded.
"""

from __future__ import annotations

import gc
import hashlib
import json
import random
import re
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from whyrec.config import GenerationConfig
from whyrec.utils import WhyrecError, read_json, write_json, write_text

UNALIGNED = "un-aligned"
COLUMNS = (  # (task, metric, header)
    ("iid2title", "accuracy", "item recovery acc"), ("uid2hist", "coverage", "history coverage"),
    ("uid2next", "hr@5", "next-item HR@5"), ("uid2next", "ndcg@5", "next-item NDCG@5"),
    ("uidiid2rank", "ndcg@5", "ranking NDCG@5"), ("uidiid2binary", "accuracy", "Yes/No acc"),
)


def parse_runs(runs: str | None, run: str | None = None) -> dict[str, str]:
    """`name=DIR,name=DIR` (a bare DIR is named by its mode) plus `run` named by its mode."""
    out: dict[str, str] = {}
    for spec in [s.strip() for s in (runs or "").split(",") if s.strip()] + ([run] if run else []):
        name, _, path = spec.rpartition("=")
        if not name:
            name = run_meta(path)["config"]["mode"]
        if name in out or name == UNALIGNED:
            raise WhyrecError(f"system name {name!r} is used twice (or is reserved); name runs NAME=DIR")
        out[name] = path
    if not out:
        raise WhyrecError("give --run DIR or --runs NAME=DIR,... (folders from `whyrec train explainer "
                          "--method recexplainer`)")
    return out


def run_meta(run: str) -> dict:
    path = Path(run) / "config.json"
    meta = read_json(path) if path.is_file() else {}
    if meta.get("method") != "recexplainer":
        raise WhyrecError(f"{run} is not a RecExplainer run folder (no config.json with method 'recexplainer')")
    return meta


def _fingerprint(run: str) -> str:
    folder = Path(run) / run_meta(run)["target"]
    digest = hashlib.sha256()
    for f in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(f.relative_to(folder).as_posix().encode() + b"\0" + f.read_bytes())
    return digest.hexdigest()


def load_shared_target(runs: dict[str, str]):
    """The one target model every run explains (an error if their target/ folders differ)."""
    from whyrec.methods.recexplainer.model import _load_target

    prints = {name: _fingerprint(path) for name, path in runs.items()}
    if len(set(prints.values())) > 1:
        raise WhyrecError(f"the runs explain different target models ({', '.join(runs)}); compare runs "
                          "aligned to the same target")
    first = next(iter(runs.values()))
    return _load_target(Path(first) / run_meta(first)["target"], "cpu")


def sample_users(target, n: int | None, seed: int = 2023) -> list[str]:
    """A seeded sample of `n` users with a training history (all when n is None), sorted."""
    users = sorted(u for u in target.user2idx if len(target.history(u)) > 0)
    if n is not None and n < len(users):
        users = sorted(random.Random(seed).sample(users, n))
    return users


def for_each_system(runs: dict[str, str], fn: Callable, unaligned: bool, device: str = "auto",
                    wanted: set[str] | None = None) -> None:
    """fn(name, model) for each run in order, then `un-aligned` (the first run's backbone, LoRA
    off) right after the first; a model is released before the next loads. Systems outside
    `wanted` are skipped (not even loaded when possible)."""
    import torch

    from whyrec.methods.recexplainer.model import UnalignedBackbone, load_recexplainer

    wanted = set(runs) | {UNALIGNED} if wanted is None else wanted
    for k, (name, path) in enumerate(runs.items()):
        need_base = unaligned and k == 0 and UNALIGNED in wanted
        if name not in wanted and not need_base:
            continue
        model = load_recexplainer(path, device=device)
        if name in wanted:
            fn(name, model)
        if need_base:
            fn(UNALIGNED, UnalignedBackbone(model))
        del model
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def examples_key(examples: list[dict]) -> str:
    """Digest of the (task, user, items, answer) tuples: equal when rows see the same examples."""
    rows = [(e["task"], e["user"], e["items"], e["messages"][-1]["content"]) for e in examples]
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()[:16]


def _file_name(name: str) -> str:
    return re.sub(r"[^\w.-]", "_", name) + ".json"


def _settings(runs: dict[str, str], name: str, users: list[str], seed: int, gen: GenerationConfig,
              target_print: str) -> dict:
    """What a system's cached row depends on: its run (weights and the shared target), users, seed,
    decoding (max_new_tokens, plus any other setting away from the old fixed decoding: old rows stay valid)."""
    from whyrec.methods.base import decoding_key
    from whyrec.methods.recexplainer.alignment import ALIGNMENT_GENERATION

    path = runs.get(name, next(iter(runs.values())))
    weights = hashlib.sha256()
    for f in sorted(p for p in Path(path).glob("*.safetensors")):
        weights.update(f.name.encode() + b"\0" + f.read_bytes())
    return {"system": name, "run": str(path), "weights": weights.hexdigest()[:16], "target": target_print[:16],
            "users": hashlib.sha256(json.dumps(users).encode()).hexdigest()[:16], "seed": seed,
            # the batch only groups prompts here: never part of this key
            **decoding_key(replace(gen, batch_size=ALIGNMENT_GENERATION.batch_size), ALIGNMENT_GENERATION,
                           ("max_new_tokens",))}


def alignment_table(runs: dict[str, str], out: str, unaligned: bool = True, max_users: int | None = 200,
                    seed: int = 2023, gen: GenerationConfig | None = None, device: str = "auto") -> dict:
    """Alignment metrics of every system on the same examples; writes out/alignment.{json,md}.

    `gen`: the decoding (default `alignment.ALIGNMENT_GENERATION`), made plain greedy as
    `evaluate_alignment` does; batch_size is left out of the rows' key, as it always was.

    Each system's row is saved to out/systems/NAME.json as soon as it is scored and the table is
    rewritten, so an interrupted run keeps what it finished; a rerun with the same runs, users,
    seed and decoding skips those systems (any change re-scores them)."""
    from whyrec.llm.generate import plain_greedy
    from whyrec.methods.recexplainer.alignment import (
        ALIGNMENT_GENERATION,
        alignment_examples,
        chance_levels,
        evaluate_alignment,
    )
    from whyrec.methods.recexplainer.material import alignment_material

    gen = plain_greedy(gen or ALIGNMENT_GENERATION, "RecExplainer")  # refuses sampling before any model loads
    target = load_shared_target(runs)
    users = sample_users(target, max_users, seed)
    topk = run_meta(next(iter(runs.values())))["config"].get("topk", 100)
    order = list(runs)
    if unaligned:
        order.insert(1, UNALIGNED)
    cache = Path(out) / "systems"
    target_print = _fingerprint(next(iter(runs.values())))  # load_shared_target checked every run has it
    settings = {name: _settings(runs, name, users, seed, gen, target_print) for name in order}
    rows: dict[str, dict] = {}
    for name in order:
        path = cache / _file_name(name)
        saved = read_json(path) if path.is_file() else {}
        if saved.get("settings") == settings[name]:
            rows[name] = saved["row"]

    chance = chance_levels(target.n_items)

    def result() -> dict:
        return {"n_users": len(users), "seed": seed, "max_new_tokens": gen.max_new_tokens,
                "rows": {name: rows[name] for name in order if name in rows}, "chance": chance}

    material = None

    def score(name: str, model) -> None:
        nonlocal material
        if material is None:  # computed once, only when some system still needs scoring
            material = alignment_material(target, users, topk=topk, seed=seed)
        examples = alignment_examples(model, users, material=material, seed=seed, max_items=max_users)
        metrics = evaluate_alignment(model, examples, gen=gen, keep_outputs=True)  # in out/systems/NAME.json: what each system answered
        rows[name] = {"run": runs.get(name, runs[next(iter(runs))] + " (LoRA off)"), "mode": model.cfg.mode,
                      "examples_key": examples_key(examples), "tasks": metrics}
        write_json(cache / _file_name(name), {"settings": settings[name], "row": rows[name]})
        write_json(Path(out) / "alignment.json", result())
        write_text(Path(out) / "alignment.md", render_alignment(result()))

    todo = set(order) - set(rows)
    if todo:
        for_each_system(runs, score, unaligned, device, wanted=todo)
    write_json(Path(out) / "alignment.json", result())
    write_text(Path(out) / "alignment.md", render_alignment(result()))
    return result()


def render_alignment(result: dict) -> str:
    head = "| system | mode | " + " | ".join(h for _, _, h in COLUMNS) + " |"
    lines = [head, "|" + "---|" * (len(COLUMNS) + 2)]
    for name, row in result["rows"].items():
        cells = [_cell(row["tasks"].get(task, {}).get(metric)) for task, metric, _ in COLUMNS]
        lines.append(f"| {name} | {row['mode']} | " + " | ".join(cells) + " |")
    if result.get("chance"):
        cells = [_cell(result["chance"].get(task, {}).get(metric)) for task, metric, _ in COLUMNS]
        lines.append("| chance (random guess) | - | " + " | ".join(cells) + " |")
    first = next(iter(result["rows"].values()), {"tasks": {}})
    counts = ", ".join(f"{t} {m['n']}" for t, m in first["tasks"].items())
    lines += ["", f"{result['n_users']} users (seeded sample, seed {result['seed']}); examples per row: {counts}; "
              f"greedy / 5-beam decoding, {result['max_new_tokens']} new tokens."]
    return "\n".join(lines) + "\n"


def _cell(value) -> str:
    return "-" if value is None else f"{value:.4f}"
