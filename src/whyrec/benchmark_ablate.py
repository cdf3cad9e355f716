"""`whyrec benchmark explain --ablations`: the CF ablations of every trained row (issue 20, item 2).

Each row with a trained folder (a method the benchmark trained into out/methods/<row>, or a
`--runs NAME=FOLDER`) is ablated on the benchmark's own pairs by
`whyrec.benchmark_ablations.run_ablations`, writing out/ablations/<row>/ablations/ (the cached
texts, ablations.json, ablations.md). comparison.json gets every row's result under `ablations`
and comparison.md one section with every row's table. Rows without a folder (zero-shot, the
retrieval baseline, --external predictions) have no CF input to ablate and are left out.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from whyrec.config import GenerationConfig
from whyrec.utils import WhyrecError

ALL = "all"


def ablation_kinds(ablations: str | Iterable[str] | None) -> tuple[str, ...]:
    """The ablation kinds asked for (a comma-separated string or names; `all`: every kind), checked
    before anything is trained: an unknown one is a one-line WhyrecError naming the known ones."""
    from whyrec.methods.cf_ablation import KINDS

    names = ablations.split(",") if isinstance(ablations, str) else list(ablations or ())
    names = [n.strip() for n in names if n and n.strip()]
    if ALL in names:
        return KINDS
    unknown = [n for n in names if n not in KINDS]
    if unknown:
        raise WhyrecError(f"--ablations: unknown ablation {unknown[0]!r}; choose from {', '.join(KINDS)} "
                          f"(comma-separated) or {ALL}")
    return tuple(dict.fromkeys(names))


def ablate_rows(folders: dict[str, tuple[Path, Path, list[str]]], pairs: pd.DataFrame, kinds: tuple[str, ...],
                generation: GenerationConfig, device: str, seed: int, bertscore: bool, data: str) -> dict:
    """{row: run_ablations result} for each row's (trained folder, output folder, the row's own
    predictions), in row order. The row's predictions are the ablations' full method (the same folder,
    pairs and decoding), so it is not generated twice; the personalisation histories come from the
    benchmark's dataset folder `data`."""
    from whyrec.benchmark_ablations import run_ablations

    return {row: run_ablations(folder, pairs, kinds, generation, device, seed, work, bertscore=bertscore, data=data,
                               full=texts)
            for row, (folder, work, texts) in folders.items()}


def ablation_section(ablations: dict | None) -> str:
    """comparison.md's section: each row's ablation table (empty without ablations)."""
    from whyrec.benchmark_ablations import ablation_table

    if not ablations:
        return ""
    parts = ["", "## Ablations: does the CF signal change the explanations?", "",
             "Each trained row regenerated with its CF input perturbed; an interval that excludes 0 says "
             "the ablation changed the scores, one around 0 that these pairs do not show the row using it.", ""]
    for row, result in ablations.items():
        parts += [f"### {row}", "", ablation_table(result)]
    return "\n".join(parts)
