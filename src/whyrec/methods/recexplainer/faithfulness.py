"""RecExplainer's explanation study (Lei et al., KDD 2024; METHODS §5.3/5.4).

For a seeded sample of users, the shared target model's material gives one item it scores high
(`pos`, from its top 20%) and one it scores low (`neg`, from its bottom 50%) with the scores.
Every system - each RecExplainer run in its own mode, and optionally the un-aligned backbone
(`UnalignedBackbone`) - answers RecExplainer's question "will the user like this item, and why?"
(`EXPLAIN_QUESTION`) for the same pairs. Then:

- rubric: an LLM judge grades each explanation A-D (`whyrec.eval.judge.rubric_judge`; the label
  it checks against is the target's decision, Yes for pos and No for neg);
- distinction probe: which system wrote an explanation (`whyrec.eval.probes`), against chance
  (1 / number of systems) and the majority class of the held-out split;
- coherence probe, per system: held-out R² of the target's score regressed from the text.

Deviations: the probes use frozen MiniLM embeddings and an 80/20 split of these explanations
(the paper fine-tunes BERT on 2,000 further train rows), so their numbers are not the paper's.
Explanations are appended to out/explanations.jsonl as they are written; a rerun with the same
decoding settings reuses them (delete the file to regenerate).
"""

from __future__ import annotations

import json
import statistics
from dataclasses import replace
from pathlib import Path

from whyrec.config import GenerationConfig
from whyrec.eval.judge import RUBRIC_LEVELS, JudgeConfig, rubric_judge
from whyrec.llm.judge_client import LLMJudge
from whyrec.methods.recexplainer.alignment_table import (
    UNALIGNED,
    for_each_system,
    load_shared_target,
    run_meta,
    sample_users,
)
from whyrec.utils import WhyrecError, write_json, write_text

EXPLANATIONS = "explanations.jsonl"


def explanation_pairs(target, users: list[str], topk: int = 100, seed: int = 2023, max_hist_len: int = 9) -> list[dict]:
    """Two rows a user, pos (label Yes) then neg (No), with the target's score and the judge's context."""
    from whyrec.methods.recexplainer.material import alignment_material

    title = lambda i: target.titles.get(i, str(i))  # noqa: E731
    pairs = []
    for r in alignment_material(target, users, topk=topk, seed=seed).itertuples(index=False):
        history = [title(i) for i in target.history(r.user)[-max_hist_len:]]
        for item, score, label in ((r.pos, r.pos_score, "Yes"), (r.neg, r.neg_score, "No")):
            pairs.append({"user": r.user, "item": item, "title": title(item), "score": score, "label": label,
                          "history": history})
    return pairs


def _read_done(path: Path, gen: list) -> dict[tuple, dict]:
    if not path.is_file():
        return {}
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return {(r["system"], r["user"], r["item"]): r for r in rows if r.get("gen") == gen}


def study_decoding(gen: GenerationConfig | None) -> GenerationConfig:
    """The study's decoding from `gen` (`whyrec evaluate --generation.*`; None: the paper's 150-500
    new tokens, eight a batch): plain greedy as RecExplainer decodes (`plain_greedy`), and an unset
    min_new_tokens (0) becomes the study's min(150, max_new_tokens)."""
    from whyrec.llm.generate import plain_greedy
    from whyrec.methods.recexplainer.model import EXPLAIN_GENERATION  # torch: only for the study

    gen = plain_greedy(gen or EXPLAIN_GENERATION, "RecExplainer")
    return gen if gen.min_new_tokens else replace(gen, min_new_tokens=min(150, gen.max_new_tokens))


def _rows_key(decode: GenerationConfig) -> list:
    """The decoding a row was written with: [max_new_tokens, min_new_tokens] as rows always named it,
    then any other setting away from the study's (the batch left out), so old rows stay valid."""
    from whyrec.methods.base import decoding_key
    from whyrec.methods.recexplainer.model import EXPLAIN_GENERATION as STUDY

    other = decoding_key(replace(decode, batch_size=STUDY.batch_size), STUDY, ())
    other = {k: v for k, v in other.items() if k not in ("max_new_tokens", "min_new_tokens")}
    return [decode.max_new_tokens, decode.min_new_tokens] + ([other] if other else [])


def generate_explanations(runs: dict[str, str], pairs: list[dict], out: Path, unaligned: bool,
                          decode: GenerationConfig, device: str) -> dict[str, list[dict]]:
    """Each system's explanation rows in pair order (appending new ones to out/explanations.jsonl),
    decoded as `decode` (a `study_decoding`) says."""
    gen = _rows_key(decode)
    done = _read_done(out / EXPLANATIONS, gen)
    names = list(runs) + ([UNALIGNED] if unaligned else [])
    missing = {n for n in names if any((n, p["user"], p["item"]) not in done for p in pairs)}

    def explain(name: str, model) -> None:
        todo = [p for p in pairs if (name, p["user"], p["item"]) not in done]
        texts = model.explain([p["user"] for p in todo], [p["item"] for p in todo], decode)
        with (out / EXPLANATIONS).open("a", encoding="utf-8") as f:
            for p, text in zip(todo, texts):
                row = {"system": name, "mode": model.cfg.mode, **p, "explanation": text, "gen": gen}
                done[(name, p["user"], p["item"])] = row
                f.write(json.dumps(row) + "\n")

    out.mkdir(parents=True, exist_ok=True)
    if missing:
        for_each_system(runs, explain, unaligned, device, wanted=missing)
    return {n: [done[(n, p["user"], p["item"])] for p in pairs] for n in names}


def rubric_by_system(rows: dict[str, list[dict]], judge: JudgeConfig) -> dict[str, dict]:
    """Per system: share of A/B/C/D among parsed grades, counts, mean grade (A=1 ... D=4), unparsed."""
    flat = [r for system_rows in rows.values() for r in system_rows]
    graded = rubric_judge([r["explanation"] for r in flat],
                          [{"history": r["history"], "target_item": r["title"], "label": r["label"]} for r in flat],
                          LLMJudge(judge, progress=False), max_tokens=judge.max_tokens, constrained=judge.constrained)
    labels, out, start = graded["labels"], {}, 0
    for name, system_rows in rows.items():
        mine = labels[start:start + len(system_rows)]
        start += len(system_rows)
        parsed = [lab for lab in mine if lab is not None]
        counts = {lv: parsed.count(lv) for lv in RUBRIC_LEVELS}
        out[name] = {**{lv: (counts[lv] / len(parsed) if parsed else None) for lv in RUBRIC_LEVELS},
                     "mean": statistics.fmean(RUBRIC_LEVELS.index(lab) + 1 for lab in parsed) if parsed else None,
                     "counts": counts, "unparsed": len(mine) - len(parsed), "labels": mine, "mode": graded["mode"]}
    return out


def probes(rows: dict[str, list[dict]], embed=None, device: str = "auto", seed: int = 2024) -> dict:
    """Distinction accuracy over all systems and coherence R² per system, on one embedding pass."""
    import numpy as np

    from whyrec.eval.probes import MiniLMEmbedder, coherence_probe, distinction_probe

    flat = [(name, r) for name, system_rows in rows.items() for r in system_rows]
    x = np.asarray((embed or MiniLMEmbedder(device=device))([r["explanation"] for _, r in flat]), dtype=np.float32)
    names = np.asarray([n for n, _ in flat])
    result: dict = {"coherence": {}}
    if len(rows) >= 2:
        result["distinction"] = {**distinction_probe(names, embeddings=x, seed=seed), "chance": 1 / len(rows)}
    for name, system_rows in rows.items():
        keep = names == name
        try:
            result["coherence"][name] = coherence_probe([r["score"] for r in system_rows], embeddings=x[keep], seed=seed)
        except WhyrecError as e:  # too few explanations
            result["coherence"][name] = {"r2": None, "error": str(e)}
    return result


def faithfulness(runs: dict[str, str], out: str, unaligned: bool = True, max_pairs: int | None = 500,
                 seed: int = 2023, judge: JudgeConfig | None = None, gen: GenerationConfig | None = None,
                 device: str = "auto", embed=None) -> dict:
    """The study of the module docstring; writes out/explanations.jsonl and out/faithfulness.{json,md}.

    Args:
        runs: system name -> RecExplainer run folder (all aligned to the same target).
        max_pairs: pairs to explain, two per sampled user (RecExplainer: 500 = 250 users x {pos, neg}).
        gen: the explanations' decoding (see `study_decoding`; None: the paper's).
        judge: the rubric judge (default: the runs' own backbone, local); backend 'none' skips it.
        embed: texts -> (N, d) embeddings for the probes (default: the packaged MiniLM).
    """
    decode = study_decoding(gen)  # sampling is refused before any model loads
    out_dir = Path(out)
    target = load_shared_target(runs)
    meta = run_meta(next(iter(runs.values())))
    users = sample_users(target, None if max_pairs is None else max(1, max_pairs // 2), seed)
    pairs = explanation_pairs(target, users, meta["config"].get("topk", 100), seed, meta["config"].get("max_hist_len", 9))
    rows = generate_explanations(runs, pairs, out_dir, unaligned, decode, device)
    judge = judge or JudgeConfig(backend="local")
    if judge.backend == "local" and judge.model is None:
        judge = replace(judge, model=meta["base_model"]["name_or_path"], device=device)
    result = {"n_users": len(users), "n_pairs": len(pairs), "seed": seed, "systems": list(rows),
              "judge": None if judge.backend == "none" else {"backend": judge.backend, "model": judge.model},
              "rubric": rubric_by_system(rows, judge) if judge.backend != "none" else None,
              "probes": probes(rows, embed, device)}
    write_json(out_dir / "faithfulness.json", result)
    write_text(out_dir / "faithfulness.md", render_faithfulness(result))
    return result


def render_faithfulness(result: dict) -> str:
    fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    lines = ["| system | A | B | C | D | mean (A=1..D=4) | unparsed | coherence R² |", "|---|---|---|---|---|---|---|---|"]
    for name in result["systems"]:
        rub = (result["rubric"] or {}).get(name, {})
        cells = [fmt(rub.get(lv)) for lv in RUBRIC_LEVELS] + [fmt(rub.get("mean")), str(rub.get("unparsed", "-"))]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {fmt(result['probes']['coherence'][name]['r2'])} |")
    dist = result["probes"].get("distinction")
    lines.append("")
    if dist:
        lines.append(f"Distinction probe (which system wrote it): accuracy {fmt(dist['accuracy'])} vs chance "
                     f"{fmt(dist['chance'])} and majority {fmt(dist['majority_baseline'])} ({dist['n_test']} held out).")
    judge, mode = result["judge"], next(iter((result["rubric"] or {}).values()), {}).get("mode")
    how = {"constrained": " (grade = most probable A-D letter after '<score>')",
           "generated": " (grade = first <score>X</score> tag of its reply)"}.get(mode, "")
    lines.append(f"{result['n_pairs']} pairs ({result['n_users']} users x pos/neg, seed {result['seed']}); judge: "
                 + (f"{judge['backend']} {judge['model']}{how}" if judge else "none") + ".")
    return "\n".join(lines) + "\n"
