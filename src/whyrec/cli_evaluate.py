"""`whyrec evaluate`: text metrics, top-k, and the methods' own evaluations and studies."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from whyrec.cli_common import print_result as _print_result
from whyrec.cli_common import run_method_object as _run_method_object
from whyrec.cli_common import table as _table
from whyrec.config import GenerationConfig, ModelConfig
from whyrec.eval.judge import JudgeConfig
from whyrec.utils import WhyrecError


def evaluate(out: str, predictions: str | None = None, references: str | None = None, column: str | None = None,
             smooth: bool = False, run: str | None = None, data: str | None = None, split: str = "test",
             max_pairs: int | None = 200, generation: GenerationConfig = GenerationConfig(), device: str = "auto",
             bertscore: bool = False, bertscore_model: str | None = None, bertscore_layers: int | None = None,
             judge: JudgeConfig | None = None, grounding: bool = True, task: str = "explain",
             recalpaca_json: str | None = None, field: str = "output2", k: int = 5, parser: str = "recalpaca",
             encoder: str | None = None, prompt_reduction: str | None = None, runs: str | None = None,
             unaligned: bool = False, seed: int = 2023, overwrite: bool = False, json: bool = False):
    """Score explanations (given files, or generated with --run/--data) or top-k recommendations (--task topk).

    Writes out/metrics.json ({"pepler": ..., "standard": ..., "n": ...}) and out/report.md;
    with --task topk, out/metrics.json (precision@k, recall@k, ndcg@k, ndcg@k_ordered) and out/per_user.jsonl.

    Args:
        out: folder for metrics.json and report.md.
        predictions: generated texts (txt, jsonl, csv, parquet, a pickled list of strings such as XRec's
            tst_pred.pkl, or PEPLER/PETER's generated.txt).
        references: reference texts, paired line by line with predictions (same formats, a PEPLER fold
            folder or .index file; for PEPLER's generated.txt pass the same file, or leave it out).
        column: column/field to read from tabular or JSON inputs.
        smooth: smoothed BLEU (as GaVaMoE reports it) instead of PEPLER's unsmoothed BLEU.
        run: run or explainer folder to generate with (instead of --predictions).
        data: dataset folder whose explanations are the references (with --run).
        split: which split of --data to evaluate.
        max_pairs: evaluate at most this many pairs (seeded sample) with --run.
        device: auto, cpu or cuda.
        bertscore: also compute BERTScore P/R/F1 (mean and std) with a local encoder.
        bertscore_model: local HF encoder folder for BERTScore (default: the packaged all-MiniLM-L6-v2).
        bertscore_layers: encoder layer for BERTScore (default: BERTScore's tuned layer, e.g. 17 for roberta-large).
        judge: LLM judge for GPTScore (off by default; --judge.backend openai|local). With --task faithfulness,
            the A-D rubric judge: by default the runs' own backbone (local); --judge.backend none skips it.
        grounding: with --run/--data (on by default; --grounding false turns it off), the false-claim
            rate of checkable claims (titles, genres, people, review features) checked against the
            data, with the count of checkable claims, for the outputs and for the references.
        task: 'explain' (text metrics), 'topk' (titles parsed from generated recommendation lists) or
            'alignment' (a RecExplainer --run: item recovery, history coverage, next-item HR/NDCG@5,
            graded ranking NDCG@5, Yes/No accuracy on --max_pairs of its target model's users and item
            recovery on --max_pairs of its items (None: all); with --runs or
            --unaligned, one table of every system: out/alignment.{md,json}) or 'faithfulness' (RecExplainer
            --runs: explanations for --max_pairs high/low-scored items, A-D rubric, distinction and coherence
            probes: out/explanations.jsonl, out/faithfulness.{md,json}).
        recalpaca_json: (topk) RecAlpaca-format JSON (records with testGT and a generated field).
            With --run (a RecAlpaca run folder, or 'none' for the bare backbone), answers are generated
            for its prompts first (--max_pairs users, decoded as --generation.* says).
        field: (topk) the record field holding the generated text (RecAlpaca evaluated 'output2');
            with --run, the prompt field ('input', the default, or 'wTop1Input').
        k: (topk) cut-off.
        parser: (topk) 'recalpaca' (the original's title rules: reproduces its numbers) or 'robust'
            (lists, quotes, years, matched to the prompt's candidates).
        encoder: (topk) LightGCN folder trained without the test titles (`whyrec data instructions`
            writes one): adds LightGCN and popularity baselines next to the prompt-order baseline.
        prompt_reduction: (topk, with --run) comma-separated shares of the history and candidate lists
            to keep (e.g. 0.1,0.25,0.5,0.75,1): writes prompt_reduction.{json,md,png} to --out.
        runs: (alignment, faithfulness) comma-separated NAME=FOLDER RecExplainer runs aligned to the same
            target, e.g. behaviour=DIR,intention=DIR,hybrid=DIR (a bare FOLDER is named by its mode).
        unaligned: (alignment, faithfulness) add the un-aligned backbone (the first run's LLM with its LoRA
            off, behaviour-mode prompts, no connectors) as a row.
        seed: (alignment, faithfulness) seed of the user sample, the target's pos/neg picks and the templates.
        overwrite: replace --out if it holds anything else (rebuilt beside it, then renamed into place); without
            it, a folder holding another evaluation (other inputs or settings) is refused, naming what differs.
        json: print the full results as JSON (for scripts) instead of the short report; both are in --out.
    """
    args = {k: v for k, v in locals().items() if k not in ("out", "overwrite", "json")}
    from whyrec.outputs import output_folder

    with output_folder(out, "evaluation", _evaluation_fingerprint(args), overwrite=overwrite) as work:
        result, human = _evaluate(str(work), **args)
    _print_result(result, json, lambda: human(Path(out)))


def _evaluation_fingerprint(args: dict) -> dict:
    """The evaluate options that shape its results, with the content of the files it reads."""
    from whyrec.outputs import folder_digest

    # The RecExplainer studies key their own rows by decoding settings and ask the judge afresh, so a
    # rerun with other decoding or another judge continues in the same folder (only changed rows redone).
    own_keys = ("generation", "judge") if args.get("task") in ("alignment", "faithfulness") else ()
    kept = {k: v for k, v in args.items() if k != "device" and k not in own_keys}
    if "generation" in kept:  # a decoding field added later counts only once set
        from whyrec.config import generation_fingerprint

        kept["generation"] = generation_fingerprint(kept["generation"])
    for name in ("predictions", "references", "recalpaca_json"):
        if kept.get(name) and Path(kept[name]).exists():
            kept[name] = {"path": str(Path(kept[name]).resolve()), "digest": folder_digest(kept[name])}
    return kept


def _evaluate(out: str, predictions: str | None, references: str | None, column: str | None, smooth: bool,
              run: str | None, data: str | None, split: str, max_pairs: int | None, generation: GenerationConfig,
              device: str, bertscore: bool, bertscore_model: str | None, bertscore_layers: int | None,
              judge: JudgeConfig | None, grounding: bool, task: str, recalpaca_json: str | None, field: str, k: int,
              parser: str, encoder: str | None, prompt_reduction: str | None, runs: str | None, unaligned: bool,
              seed: int) -> tuple[object, Callable[[Path], str]]:
    """(the full results, a function of the final --out folder writing the short report)."""
    if task == "topk":
        from whyrec.eval.topk import evaluate_recalpaca_json

        if recalpaca_json is None:
            raise WhyrecError("--task topk needs --recalpaca_json FILE (records with testGT and --field)")
        from whyrec.methods.recalpaca.baselines import recalpaca_baselines, write_topk_report

        if prompt_reduction is not None:
            from whyrec.methods.recalpaca.prompt_reduction import prompt_reduction as _reduction

            if run is None:
                raise WhyrecError("--prompt_reduction needs --run (a RecAlpaca run folder) to generate with")
            fractions = [float(f) for f in prompt_reduction.split(",") if f.strip()]
            result = _reduction(run, recalpaca_json, out, fractions, max_users=max_pairs, gen=generation,
                                device=device)
            return result, lambda folder: _report_file(folder, "prompt_reduction.md")
        if run is not None:  # generate with a RecAlpaca run (or the bare backbone: --run none)
            from whyrec.methods.recalpaca.model import evaluate_recalpaca

            field = "input" if field == "output2" else field
            generated = evaluate_recalpaca(None if run == "none" else run, recalpaca_json, out, max_users=max_pairs,
                                           gen=generation, k=k, field=field, device=device,
                                           base_model=None if run != "none" else ModelConfig())
            metrics, label = generated[parser], f"{run} ({parser} parser)"
        else:
            metrics = evaluate_recalpaca_json(recalpaca_json, field=field, out=out, k=k, parser=parser)
            label = f"{field} ({parser} parser)"
        baselines = recalpaca_baselines(recalpaca_json, encoder, k=k, max_users=max_pairs if run is not None else None)
        write_topk_report(out, {label: metrics, **baselines}, k)
        return {"model": metrics, "baselines": baselines}, lambda folder: _report_file(folder, "report.md")
    if task == "alignment":
        return _evaluate_alignment(run, out, max_pairs, generation, device, runs=runs, unaligned=unaligned,
                                   seed=seed)
    if task == "faithfulness":
        from whyrec.methods.recexplainer.alignment_table import parse_runs
        from whyrec.methods.recexplainer.faithfulness import faithfulness

        result = faithfulness(parse_runs(runs, run), out, unaligned=unaligned, max_pairs=max_pairs, seed=seed,
                              judge=judge, gen=generation, device=device)
        return result["probes"], lambda folder: _report_file(folder, "faithfulness.md")
    if task != "explain":
        raise WhyrecError(f"unknown --task {task!r}; choose explain, topk, alignment or faithfulness")
    judge = judge or JudgeConfig()
    own_evaluation = getattr(_run_method_object(run), "evaluate", None) if run is not None else None
    if own_evaluation is not None:  # a method with its own metric suite (PEPLER)
        if data is None:
            raise WhyrecError("--run needs --data (the dataset folder whose explanations are the references)")
        metrics = own_evaluation(run, data, out, split=split, max_pairs=max_pairs, smooth=smooth, device=device,
                                 generation=generation, bertscore=bertscore, judge=judge, grounding=grounding,
                                 bertscore_model=bertscore_model, bertscore_layers=bertscore_layers)
    elif run is not None:
        from whyrec.api import evaluate_run

        metrics = evaluate_run(run, data, out, split=split, max_pairs=max_pairs, generation=generation,
                               device=device, smooth=smooth, bertscore=bertscore, judge=judge, grounding=grounding,
                               bertscore_model=bertscore_model, bertscore_layers=bertscore_layers)
    elif predictions and (references or Path(predictions).name.startswith("generated")):
        from whyrec.eval.report import evaluate_files
        from whyrec.llm.judge_client import LLMJudge

        references = references or predictions  # PEPLER's generated.txt holds both sides

        metrics = evaluate_files(predictions, references, out, column=column, smooth=smooth, bertscore=bertscore,
                                 bertscore_model=bertscore_model, bertscore_layers=bertscore_layers,
                                 judge=LLMJudge(judge))
    else:
        raise WhyrecError("give --predictions and --references, or --run and --data")
    return metrics, lambda folder: explanation_summary(metrics, folder)


def _report_file(folder: Path, name: str) -> str:
    return (folder / name).read_text() + f"\n(in {folder}; --json prints the full results)"


def explanation_summary(metrics: dict, folder: Path) -> str:
    """The short report of an explanation evaluation: report.md, plus grounding, per-activity-group
    scores and PEPLER's feature/rating metrics when the evaluation has them."""
    from whyrec.eval.report import markdown_report

    report = folder / "report.md"
    lines = [(report.read_text() if report.exists() else markdown_report(metrics, "Explanations")).rstrip("\n")]
    if metrics.get("rating"):
        lines += ["", "## Rating", "", *_table(["metric", "value"], [[k, v] for k, v in metrics["rating"].items()])]
    if metrics.get("features"):
        lines += ["", "## Features", "", *_table(["metric", "value"], [[k, v] for k, v in metrics["features"].items()
                                                                       if isinstance(v, int | float)])]
    if metrics.get("grounding"):
        lines += ["", *_grounding_lines(metrics["grounding"], metrics.get("grounding_references"))]
    if metrics.get("groups"):  # PEPLER definitions: ×100 scores with 2 decimals, USR a ratio
        cols = {"BLEU-1": "bleu1", "BLEU-4": "bleu4", "ROUGE-1 F": "rouge1_f", "ROUGE-L F": "rougeL_f", "USR": "usr"}
        cell = lambda key, v: v if not isinstance(v, float) else f"{v:.4f}" if key == "usr" else f"{v:.2f}"  # noqa: E731
        rows = [[name, g.get("n"), *(cell(k, g.get(k)) for k in cols.values())] for name, g in metrics["groups"].items()]
        lines += ["", "## By user activity (training interactions, sparse to dense)", "",
                  *_table(["group", "pairs", *cols], rows)]
    lines += ["", f"full metrics: {folder / 'metrics.json'} (--json prints them)"]
    return "\n".join(lines)


def _grounding_lines(pred: dict, refs: dict | None) -> list[str]:
    def rate(g: dict) -> str:
        r = g.get("hallucination_rate")
        return "no checkable claims" if r is None else f"{100 * r:.1f}% ({g['false_claims']} of {g['checked_claims']} claims)"

    def without(g: dict) -> str:
        return f"{g['explanations'] - g['explanations_with_claims']} of {g['explanations']} have no checkable claim"

    lines = ["## Grounding (claims checked against the data)", "",
             f"Hallucination rate (false claims): {rate(pred)}; {pred.get('explanations_with_false_claim')} of "
             f"{pred.get('explanations')} explanations have a false claim; {without(pred)}."]
    if refs:
        lines.append(f"References: {rate(refs)}; {without(refs)}.")
    kinds = [[kind, v["checked"], v["false"], v["rate"]] for kind, v in pred.get("per_kind", {}).items() if v["checked"]]
    return lines + (["", *_table(["claim kind", "checked", "false", "rate"], kinds)] if kinds else [])


def _evaluate_alignment(run: str | None, out: str, max_users: int | None, generation: GenerationConfig,
                        device: str, runs: str | None = None, unaligned: bool = False, seed: int = 2023):
    from whyrec.methods.recexplainer.alignment import alignment_examples, evaluate_alignment
    from whyrec.methods.recexplainer.alignment_table import (
        alignment_table,
        parse_runs,
        sample_users,
    )
    from whyrec.methods.recexplainer.model import load_recexplainer
    from whyrec.utils import write_json

    if runs or unaligned:  # one table: every run and the un-aligned backbone on the same examples
        result = alignment_table(parse_runs(runs, run), out, unaligned=unaligned, max_users=max_users, seed=seed,
                                 gen=generation, device=device)
        return result, lambda folder: _report_file(folder, "alignment.md")
    if run is None or "alignment" not in getattr(_run_method_object(run), "studies", ()):
        raise WhyrecError("--task alignment needs --run (a folder from `whyrec train explainer --method recexplainer`)")
    model = load_recexplainer(run, device=device)
    users = sample_users(model.target, max_users, seed)  # the same users as the --runs table
    metrics = evaluate_alignment(model, alignment_examples(model, users, seed=seed, max_items=max_users), generation)
    metrics = {"run": run, "mode": model.cfg.mode, "n_users": len(users), "tasks": metrics}
    write_json(Path(out) / "metrics.json", metrics)
    rows = [[task, name, value] for task, values in metrics["tasks"].items() for name, value in values.items()]
    return metrics, lambda folder: "\n".join([f"{run} ({model.cfg.mode} mode), {len(users)} users", "",
                                               *_table(["task", "metric", "value"], rows), "",
                                               f"full metrics: {folder / 'metrics.json'} (--json prints them)"])
