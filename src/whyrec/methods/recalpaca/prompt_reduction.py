"""RecAlpaca's prompt-reduction analysis: how top-k quality changes as the prompt shrinks.

Each RecAlpaca input carries bracketed title lists: the liked history ("score 5 out 5"), the
disliked ones ("socre 2/1 out 5", the file's own spelling) and the 20 candidates ("likely to
like"). Keeping a fraction of every list (10%...100%, at least one title, the named top-1
always among the candidates) and re-running the model shows how much of the prompt it uses.
Writes a table (JSON + markdown) and a plot of each metric against the kept fraction. Each
row also scores the prompt-order baseline (the top-1, then the listed candidates) on the same
reduced prompts, so the model's share of the score is visible at every size.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path

from whyrec.config import GenerationConfig
from whyrec.eval.titles import candidates_from_prompt
from whyrec.eval.topk import evaluate_topk, score_ranked
from whyrec.methods.recalpaca.baselines import prompt_order_titles
from whyrec.utils import WhyrecError, atomic_path, read_json, write_json, write_text

_LIST = re.compile(r"(?P<head>(?:out 5|likely to like):\s*)\[(?P<body>.*?)\](?=\s*(?:\n|\.|$))", re.DOTALL)
_SPLIT = re.compile(r"""['"]\s*,\s*['"]""")
METRICS = ("precision@5", "recall@5", "ndcg@5", "ndcg@5_ordered")
DECODING = GenerationConfig(max_new_tokens=200, batch_size=8, repetition_penalty=1.0)
"""The analysis' default decoding: RecAlpaca's greedy without repetition penalty, 200 new tokens."""


def _keep(n: int, fraction: float) -> int:
    return max(1, math.ceil(n * fraction)) if n else 0


def reduce_prompt(text: str, fraction: float, top1: str | None = None) -> str:
    """`text` with every bracketed title list cut to its first `fraction` (top-1 kept as a candidate)."""
    if not 0 < fraction <= 1:
        raise WhyrecError(f"prompt fraction {fraction} must be in (0, 1]")

    def cut(m: re.Match) -> str:
        items = [t.strip().strip("'\"").strip() for t in _SPLIT.split(m.group("body").strip())]
        items = [t for t in items if t]
        kept = items[:_keep(len(items), fraction)]
        if "likely to like" in m.group("head") and top1 and top1 not in kept and top1 in items:
            kept = [top1] + kept[:-1]  # the prompt names the top-1 as the first pick: keep it listed
        return m.group("head") + "[" + ", ".join(repr(t) for t in kept) + "]"

    return _LIST.sub(cut, text)


def prompt_reduction(run: str | None, test_json: str | Path, out: str | Path,
                     fractions: Sequence[float] = (0.1, 0.25, 0.5, 0.75, 1.0), max_users: int | None = None,
                     gen: GenerationConfig = DECODING, device: str = "auto", generate=None) -> list[dict]:
    """Generate and score at each kept fraction; rows of {fraction, prompt_words, metrics...}.

    `gen` is the decoding (`whyrec evaluate --generation.*`), used as given; its batch_size is also
    the batch of a custom `generate`. `generate(prompts) -> texts` defaults to the RecAlpaca run's
    generation; answers are
    cached per fraction in out/generations_<fraction>.jsonl, appended batch by batch, so an
    interrupted analysis resumes. Each file is keyed by what produced it (the run folder and its
    base model, or the `generate` function; the test rows; the decoding settings) and each answer
    by its prompt: any change regenerates instead of scoring another prompt's answers.
    """
    rows = read_json(test_json)
    if not isinstance(rows, list) or not all(isinstance(r, dict) and {"instruction", "input", "testGT"} <= r.keys()
                                             for r in rows):
        raise WhyrecError(f"{test_json} is not a RecAlpaca test file (rows with instruction, input, testGT)")
    rows = rows[:max_users] if max_users else rows
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    custom = generate
    if generate is None:
        from whyrec.methods.recalpaca.model import load_recalpaca

        loaded = []

        def generate(prompts):  # the model loads on the first batch that is not cached
            if not loaded:
                loaded.append(load_recalpaca(run, device=device))
            return loaded[0].generate(prompts, gen, progress=False)

    producer = _producer(run, custom, gen)
    table = []
    for fraction in sorted(set(fractions)):
        inputs = [reduce_prompt(r["input"], fraction, r.get("top1")) for r in rows]
        texts = _generations(out / f"generations_{fraction:g}.jsonl", producer, fraction,
                             [(r["instruction"], x) for r, x in zip(rows, inputs)], gen.batch_size, generate)
        metrics, _ = evaluate_topk(texts, [candidates_from_prompt(x) for x in inputs],
                                   [r["testGT"] for r in rows], parser="robust")
        baseline, _ = score_ranked([prompt_order_titles({"input": x, "top1": r.get("top1")}) for r, x in zip(rows, inputs)],
                                   [r["testGT"] for r in rows], normalise=True, label="prompt-order")
        words = sum(len(x.split()) for x in inputs) / len(inputs)
        table.append({"fraction": fraction, "prompt_words": round(words, 1), **{m: metrics[m] for m in METRICS},
                      **{f"prompt_order_{m}": baseline[m] for m in METRICS}})
    write_json(out / "prompt_reduction.json", {"run": run, "n_users": len(rows), "parser": "robust", "rows": table})
    cols = list(METRICS) + [f"prompt_order_{m}" for m in METRICS[:2]]
    lines = ["| kept | prompt words | " + " | ".join(c.replace("_", " ") for c in cols) + " |",
             "|---|---|" + "---|" * len(cols)]
    lines += [f"| {r['fraction']:.0%} | {r['prompt_words']:.0f} | " + " | ".join(f"{r[c]:.4f}" for c in cols)
              + " |" for r in table]
    write_text(out / "prompt_reduction.md", "\n".join(lines) + "\n")
    plot_reduction(table, out / "prompt_reduction.png")
    return table


def _producer(run: str | None, custom, gen: GenerationConfig) -> dict:
    """What decides the generations besides the prompts: the model (or the caller's function)
    and the decoding settings (the batch too: padding can change greedy decoding); a setting
    beyond the three keys once held is named only away from DECODING, so old files stay valid."""
    from whyrec.identity import run_identity
    from whyrec.methods.base import decoding_key

    if custom is not None:
        model = {"generate": f"{getattr(custom, '__module__', '')}.{getattr(custom, '__qualname__', repr(custom))}"}
    else:
        model = {"run": run_identity(run)}
    return {**model, **decoding_key(gen, DECODING, ("max_new_tokens", "repetition_penalty", "batch_size"))}


def _generations(path: Path, producer: dict, fraction: float, prompts: list[tuple[str, str]], batch_size: int,
                 generate) -> list[str]:
    """The answer to every prompt, from `path`'s rows when they were made by `producer`."""
    from whyrec.fingerprint import digest
    from whyrec.row_cache import cached_rows

    ids = [(digest(list(p)),) for p in prompts]
    key = {**producer, "fraction": fraction, "prompts": {"n": len(prompts), "digest": digest([i[0] for i in ids])}}

    def make_chunk(start: int, stop: int) -> list[dict]:
        texts = generate(prompts[start:stop])
        return [{"prompt": i[0], "generation": str(t)} for i, t in zip(ids[start:stop], texts)]

    rows = cached_rows(path, key, ids, ("prompt",), batch_size, make_chunk, label=path.name, progress=True)
    return [r["generation"] for r in rows]


def plot_reduction(table: list[dict], path: Path) -> None:
    """Each metric against the kept share of the prompt's lists (Agg canvas, no pyplot state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    xs = [100 * r["fraction"] for r in table]
    for i, m in enumerate(METRICS):
        ax.plot(xs, [r[m] for r in table], marker="o", color=f"C{i}", label=m)
        if i < 2:  # precision and recall of the list order, for reference
            ax.plot(xs, [r[f"prompt_order_{m}"] for r in table], ls="--", color=f"C{i}", label=f"prompt order {m}")
    ax.set_xlabel("history and candidates kept (%)")
    ax.set_ylabel("metric (robust title parser)")
    ax.set_title("RecAlpaca prompt reduction")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
