"""Small helpers the command modules share: JSON or short human output, comma lists, which method a
run holds, and the library warnings a user cannot act on."""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from whyrec.cli_errors import debugging

# Deprecation notices of the libraries under whyrec (e.g. transformers' `is_gradient_checkpointing`
# FutureWarning on every training run): only a whyrec release can act on them, so the CLI hides them.
LIBRARY_MODULES = r"(transformers|peft|torch|accelerate|huggingface_hub|tokenizers|safetensors)(\..*)?"


def print_json(obj) -> None:
    print(json.dumps(obj, indent=2, default=str))


def print_result(obj, as_json: bool, human: Callable[[], str]) -> None:
    """`--json`: the full result as JSON (for machines); otherwise the few lines `human()` writes."""
    if as_json:
        print_json(obj)
    else:
        print(human().rstrip("\n"))


@contextmanager
def quiet_library_warnings() -> Iterator[None]:
    """Hide the third-party FutureWarning/DeprecationWarning notices while a command runs (shown with
    WHYREC_DEBUG=1); whyrec's own warnings and every other category still reach the terminal."""
    with warnings.catch_warnings():
        if not debugging():
            for category in (FutureWarning, DeprecationWarning):
                warnings.filterwarnings("ignore", category=category, module=LIBRARY_MODULES)
        yield


def table(header: list[str], rows: list[list]) -> list[str]:
    """A Markdown table; floats with 4 decimals, None as '-'."""
    cell = lambda v: "-" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]


def ranking_columns(*results: dict | None) -> list[str]:
    """recall@k, ndcg@k and hit@k of ranking results, by k (the rest is in metrics.json)."""
    keys = {k for r in results if r for k, v in r.items() if "@" in k and isinstance(v, int | float)}
    keep = [k for k in keys if k.split("@")[0] in ("recall", "ndcg", "hit")]
    order = ("recall", "ndcg", "hit")
    return sorted(keep, key=lambda k: (int(k.split("@")[1]) if k.split("@")[1].isdigit() else 0,
                                       order.index(k.split("@")[0])))


def encoder_summary(metrics: dict, out: str) -> str:
    """`whyrec train encoder` in a few lines: sizes, epochs, test/valid ranking next to popularity."""
    n = lambda key: f"{metrics[key]:,}" if isinstance(metrics.get(key), int) else "?"  # noqa: E731
    lines = [f"{metrics.get('encoder', 'encoder')}: {n('n_users')} users, {n('n_items')} items, "
             f"{n('n_train')} training interactions"]
    epochs = f"best epoch {metrics.get('best_epoch')} of {metrics.get('epochs_run')}"
    if metrics.get("stopped_early"):
        epochs += " (stopped early)"
    if metrics.get("seconds_per_epoch"):
        epochs += f", {metrics['seconds_per_epoch']:.2f} s/epoch"
    lines.append(epochs)
    popularity = metrics.get("popularity") or {}
    results = [(name, metrics.get(name)) for name in ("test", "valid")]
    results += [(f"popularity ({name})", popularity.get(name)) for name in ("test", "valid")]
    results = [(name, r) for name, r in results if r]
    if results:
        cols = ranking_columns(*(r for _, r in results))
        lines += ["", *table(["", *cols], [[name, *(r.get(c) for c in cols)] for name, r in results])]
    if metrics.get("protocol"):
        lines.append(f"({metrics['protocol']})")
    lines.append(f"full metrics: {Path(out) / 'metrics.json'} (--json prints them)")
    return "\n".join(lines)


def split_specs(specs: str | None) -> list[str]:
    return [s.strip() for s in (specs or "").split(",") if s.strip()]


def run_method_name(run: str) -> str | None:
    """The `method` in RUN/config.json or RUN/explainer/config.json (checked reader), else None."""
    from whyrec.folders import read_config

    for cfg in (Path(run) / "config.json", Path(run) / "explainer" / "config.json"):
        if cfg.is_file():
            return read_config(cfg).get("method")
    return None


def run_method_object(run: str):
    """The registered method object of a run folder; a folder without a method name holds the
    registry's default method (runs written before folders recorded it); None if unregistered."""
    from whyrec.registry import DEFAULT_METHOD, METHODS

    name = run_method_name(run) or DEFAULT_METHOD
    return METHODS.get(name) if name in METHODS else None
