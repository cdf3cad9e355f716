"""`whyrec` command line: subcommands map to the plain functions below (jsonargparse).

Every command takes `--config file.yaml`, dotted overrides (`--train.lr 3e-4`) and
`--print_config`. Heavy imports happen inside the functions so `--help` is fast.
"""

from __future__ import annotations

import inspect
import re
import sys
from pathlib import Path

from whyrec.cli_benchmark import benchmark_explain
from whyrec.cli_common import encoder_summary, print_result, quiet_library_warnings
from whyrec.cli_common import run_method_object as _run_method_object
from whyrec.cli_data import data_download, data_instructions, data_prepare, data_profiles
from whyrec.cli_evaluate import evaluate
from whyrec.config import (
    GaVaMoEConfig,
    GenerationConfig,
    LightGCNConfig,
    MFConfig,
    ModelConfig,
    PEPLERConfig,
    RecExplainerConfig,
    SASRecConfig,
    TrainConfig,
    VaeGmmConfig,
    XRecConfig,
)
from whyrec.methods.recalpaca.config import RecAlpacaConfig
from whyrec.progress import duration
from whyrec.quickstart import LIGHTGCN as QUICKSTART_LIGHTGCN
from whyrec.quickstart import TRAIN as QUICKSTART_TRAIN
from whyrec.registry import METHODS
from whyrec.utils import WhyrecError


def train_encoder(data: str, out: str, encoder: str = "lightgcn", lightgcn: LightGCNConfig = LightGCNConfig(),
                  sasrec: SASRecConfig = SASRecConfig(), mf: MFConfig = MFConfig(), device: str = "auto",
                  resume: bool = True, overwrite: bool = False, json: bool = False):
    """Train a collaborative encoder on a prepared dataset and save it as an artifact folder.

    Args:
        data: dataset folder from `whyrec data prepare`.
        out: artifact folder to write (config.json, model.safetensors, id maps, metrics.json).
        encoder: lightgcn (XRec, RecAlpaca), or sasrec / mf (RecExplainer's target models: leave-last-out
            split, full-ranking HR/NDCG@10, early stopping on valid NDCG@10).
        device: auto, cpu or cuda.
        resume: continue from out/checkpoint after an interruption.
        overwrite: replace --out if it holds another run (built beside it, then renamed into place).
        json: print out/metrics.json in full (for scripts) instead of the short summary.
    """
    if encoder in ("sasrec", "mf"):
        from whyrec.encoders.target_train import train_target

        config = sasrec if encoder == "sasrec" else mf
        metrics = train_target(data=data, out=out, encoder=encoder, config=config, device=device, resume=resume,
                               overwrite=overwrite)
    else:
        from whyrec.encoders.train import train_encoder as _train

        metrics = _train(data=data, out=out, encoder=encoder, config=lightgcn, device=device, resume=resume,
                         overwrite=overwrite)
    print_result(metrics, json, lambda: encoder_summary(metrics, out))


def train_explainer(data: str, out: str, encoder: str | None = None, method: str = "xrec",
                    model: ModelConfig = ModelConfig(), xrec: XRecConfig = XRecConfig(),
                    pepler: PEPLERConfig = PEPLERConfig(), train: TrainConfig = TrainConfig(),
                    recalpaca: RecAlpacaConfig = RecAlpacaConfig(), gavamoe: GaVaMoEConfig = GaVaMoEConfig(),
                    recexplainer: RecExplainerConfig = RecExplainerConfig(), resume: bool = True,
                    overwrite: bool = False, json: bool = False):
    """Train an explainer (the LLM side of a method) on the dataset's training explanations.

    Args:
        data: dataset folder from `whyrec data prepare`; for recalpaca, instruction data (a
            `whyrec data instructions` folder or Alpaca JSON/JSONL files, comma-separated).
        encoder: encoder artifact folder: from `whyrec train encoder` (XRec: lightgcn; RecExplainer: the
            sasrec/mf target model to align to, its own data) or `whyrec cluster` (GaVaMoE's VAE); PEPLER
            learns its own ID embeddings.
        out: explainer folder to write.
        method: registered method name (see `whyrec list`).
        resume: continue from out/checkpoint after an interruption.
        overwrite: replace --out if it holds another run (built beside it, then renamed into place); without
            it, a folder trained with another config, data or encoder is refused, naming what differs.
        json: print the full training log (for scripts) instead of the short summary.
    """
    from whyrec.registry import METHODS

    chosen = METHODS.get(method)  # unknown name: KeyError listing the registered ones
    # the option group named after the method (--xrec.*, ...); a method without one gets its defaults
    groups = {"xrec": xrec, "pepler": pepler, "recalpaca": recalpaca, "gavamoe": gavamoe, "recexplainer": recexplainer}
    config = groups[method] if method in groups else chosen.config_class()
    log = chosen.train(data, out, encoder=encoder, model=model, train=train, config=config, resume=resume,
                       overwrite=overwrite)
    print_result(log, json, lambda: explainer_summary(log, method, out))


def explainer_summary(log: dict, method: str, out: str) -> str:
    """`whyrec train explainer` in a few lines; the methods' logs differ, so each line takes what is there."""
    last = (log.get("history") or [{}])[-1]  # PEPLER: one record per epoch
    examples = log.get("examples", log.get("train_examples"))
    done = [f"{log[k]:,} {k}" for k in ("steps", "epochs") if isinstance(log.get(k), int)]
    done += [f"{examples:,} training examples"] if isinstance(examples, int) else []
    done += [duration(log["elapsed_s"])] if isinstance(log.get("elapsed_s"), int | float) else []
    losses = {"first loss": log.get("first_loss"), "final loss": log.get("last_loss", last.get("train_loss")),
              "valid loss": log.get("eval_loss", last.get("valid_loss"))}
    lines = [f"{method} explainer written to {out}", " · ".join(done),
             " · ".join(f"{k} {v:.4f}" for k, v in losses.items() if isinstance(v, int | float))]
    saved = [Path(out) / f for f in ("training_log.json", "train_log.json") if (Path(out) / f).is_file()]
    lines.append(f"full log: {saved[0]} (--json prints it)" if saved else "--json prints the full training log")
    return "\n".join(line for line in lines if line)


def explain(run: str, user: str, item: str, generation: GenerationConfig | None = None, device: str = "auto"):
    """Explain why `user` would enjoy `item`.

    Args:
        run: a run folder (from quickstart) or any method's trained folder.
        user: raw user id.
        item: raw item id.
        generation: decoding settings (default: the method's own).
        device: auto, cpu or cuda.
    """
    from whyrec.runs import load_run

    loaded = load_run(run, device=device, generation=generation)
    text = loaded.explain(user, item)
    print(f"user {user} · {_item_label(item, loaded.title(item))}:")
    print(text)
    note = grounding_note(_choices(loaded, 1)[0])
    if note:
        print(note)


def _item_label(item: str, title: str) -> str:
    return title if str(item) == title else f"{title} [{item}]"


def _choices(loaded, n: int) -> list:
    """The grounding choice of each of the last `n` explanations (`--generation.candidates` > 1), else Nones."""
    choices = getattr(loaded, "last_choices", None)
    return list(choices) if choices is not None and len(choices) == n else [None] * n


def grounding_note(choice) -> str | None:
    """A short marker after an explanation whose grounding choice (`whyrec.eval.grounded_choice.Choice`)
    dropped sentences with a false claim or had to keep one: a false claim is never shown silently."""
    if choice is None or not choice.flagged:
        return None
    parts = [f"dropped {len(choice.removed)} sentence(s) with a false claim"] if choice.removed else []
    if choice.kept_false:
        parts.append("still holds a false claim: " + "; ".join(f"{kind} {value}" for kind, value in choice.kept_false))
    return f"[grounding: {', '.join(parts)}]"


def recommend(run: str, user: str, k: int = 5, explain: bool = False, generation: GenerationConfig | None = None,
              device: str = "auto", instructions: str | None = None, method: str | None = None,
              max_new_tokens: int | None = None, include_held_out: bool = False):
    """Top-k items for a user (every item they interacted with left out), optionally each with an explanation.

    Every method recommends its own way (`whyrec serve` GET /info says how). A RecAlpaca run's LLM
    picks k of the user's LightGCN candidates and gives a reason for each; picks outside the
    candidate set are dropped and, if needed, filled in candidate order (marked as filled).

    Args:
        run: a run folder (from quickstart) or any method's trained folder.
        user: raw user id.
        k: number of items.
        explain: generate an explanation for each item (RecAlpaca always gives its reasons).
        generation: decoding settings (default: the method's own; RecAlpaca: 400 new tokens).
        device: auto, cpu or cuda.
        instructions: (recalpaca) the `whyrec data instructions` folder to build the prompt from
            (default: the one the run was trained on).
        method: optional check that --run holds this method (e.g. recalpaca); it is read from the run.
        max_new_tokens: renamed: use --generation.max_new_tokens.
        include_held_out: leave out only the training items, so the user's valid/test items can be
            recommended (the ranking evaluation's protocol).
    """
    from whyrec.runs import load_run

    if max_new_tokens is not None:
        raise WhyrecError("--max_new_tokens is now --generation.max_new_tokens (one name for every command)")
    held = _run_method_object(run)
    if method is not None and (method not in METHODS or METHODS.get(method) is not held):
        raise WhyrecError(f"--run {run} holds a {getattr(held, 'name', 'unknown')} run, not {method}; pass its folder")
    options = {"instructions": instructions} if instructions is not None else {}
    loaded = load_run(run, device=device, generation=generation, **options)
    recs = loaded.recommend(user, k=k, exclude="train" if include_held_out else "all")
    if len(recs) < k:  # said before explaining: explaining a whole catalogue takes minutes
        unseen = "has no training interaction with" if include_held_out else "has not seen"
        print(f"whyrec: note: k={k} capped to {len(recs):,} (all the items user {user} {unseen})", file=sys.stderr)
    todo = [r for r in recs if r.get("explanation") is None] if explain else []
    if todo:  # the served model shows progress for a long job (in logs too: whyrec.progress)
        texts = loaded.explain_many([user] * len(todo), [r["item"] for r in todo])
        for rec, text, choice in zip(todo, texts, _choices(loaded, len(todo))):
            rec["explanation"], rec["grounding_note"] = text, grounding_note(choice)
    for rank, rec in enumerate(recs, 1):
        print(f"{rank}. {_item_label(rec['item'], rec['title'])} score={rec['score']:.3f}")
        if rec.get("explanation") is not None:
            print(f"   {rec['explanation']}")
        if rec.get("grounding_note"):
            print(f"   {rec['grounding_note']}")


def cluster(data: str, out: str, vae: VaeGmmConfig = VaeGmmConfig(), device: str = "auto", resume: bool = True,
            overwrite: bool = False, json: bool = False):
    """GaVaMoE stage 1: train the VAE with a Gaussian-mixture prior and cluster (user, item) pairs.

    Its decoder reconstructs the 1-5 ratings, or on data without ratings tells observed pairs from
    sampled ones (--vae.feedback). Writes an artifact folder (config.json, model.safetensors, id
    maps, metrics.json with accuracy, RMSE or AUC and cluster sizes, latent.png: the latent space
    coloured by cluster).

    Args:
        data: dataset folder with a train/valid/test split, with or without ratings (1-5).
        out: VAE artifact folder (use it as --encoder of `whyrec train explainer --method gavamoe`).
        device: auto, cpu or cuda.
        resume: continue from out/checkpoint after an interruption.
        overwrite: replace --out if it holds another run (built beside it, then renamed into place).
        json: print out/metrics.json in full (for scripts) instead of the short summary.
    """
    from whyrec.encoders.vae_train import cluster_summary, train_vae_gmm

    metrics = train_vae_gmm(data, out, vae, device=device, resume=resume, overwrite=overwrite)
    print_result(metrics, json, lambda: cluster_summary(metrics, out))


def quickstart(out: str = "runs/quickstart", users: int = 3, k: int = 5, eval_pairs: int = 24,
               model: ModelConfig = ModelConfig(),
               train: TrainConfig = QUICKSTART_TRAIN, lightgcn: LightGCNConfig = QUICKSTART_LIGHTGCN,
               max_users: int | None = None, device: str = "auto", overwrite: bool = False):
    """MovieLens-100K end to end: data, LightGCN, XRec on SmolLM2, top-k with explanations, metrics.

    Re-running reuses every finished stage in `out`.

    Args:
        out: run folder.
        users: how many users to show.
        k: recommendations per user.
        eval_pairs: held-out pairs whose explanations are scored.
        max_users: use a seeded sample of this many MovieLens users (quicker).
        device: auto, cpu or cuda.
        overwrite: replace --out if it holds a run with other settings (rebuilt beside it, then renamed).
    """
    from whyrec.quickstart import run_quickstart

    run_quickstart(out=out, n_users=users, k=k, eval_pairs=eval_pairs, model=model, train=train,
                   lightgcn=lightgcn, max_users=max_users, device=device, overwrite=overwrite)


def serve(run: str, host: str = "127.0.0.1", port: int = 8000, device: str = "auto",
          generation: GenerationConfig = GenerationConfig(), cache: str | None = "auto", max_batch: int = 8,
          max_wait_ms: float = 10.0, max_queue: int = 256, timeout_s: float = 120.0, max_body_bytes: int = 65536,
          read_timeout_s: float = 10.0, max_connections: int = 512, keep_alive_s: float = 5.0,
          continuous: bool = True):
    """Serve recommendations with explanations: HTTP API, web page at /, API reference at /docs.

    Any method's trained folder (xrec, gavamoe, pepler, recexplainer, recalpaca; GET /info says what
    recommends and what explains). Needs the serve extra (pip install 'whyrec[serve]'). Refuses folders
    with missing or extra files or id maps that do not match the embeddings.

    Args:
        run: a run folder (with explainer/) or a method's trained folder (`whyrec train explainer --out`).
        host: address to listen on (127.0.0.1: this machine only).
        port: TCP port.
        device: auto, cpu or cuda.
        cache: SQLite file of generated explanations, kept across restarts ('auto': ~/.cache/whyrec/serve/
            explanations.sqlite; 'none': memory only).
        max_batch: explanations generated together at most (concurrent requests are merged); the same
            setting as --generation.batch_size (give either; both at odds is an error).
        max_wait_ms: how long the batcher waits for more requests once one arrives.
        max_queue: waiting explanations at most; requests beyond it get HTTP 503.
        timeout_s: per-request wait limit for an explanation (HTTP 504 after it).
        max_body_bytes: larger request bodies get HTTP 413.
        read_timeout_s: a request's headers and body must arrive within this many seconds (HTTP 408 after it).
        max_connections: open connections at most; more are answered HTTP 503 and closed.
        keep_alive_s: an idle kept-alive connection is closed after this many seconds.
        continuous: continuous batching for models that support it (XRec): a request joins the running
            decode at the next free row instead of waiting for the batch (false: the micro-batcher).
    """
    from whyrec.serve.server import run_server
    from whyrec.serve.settings import ServeSettings

    run_server(run, host, port, device=device, generation=generation, cache=cache,
               settings=ServeSettings(max_batch=max_batch, max_wait_ms=max_wait_ms, max_queue=max_queue,
                                      timeout_s=timeout_s, max_body_bytes=max_body_bytes,
                                      read_timeout_s=read_timeout_s, max_connections=max_connections,
                                      keep_alive_s=keep_alive_s, continuous=continuous))


def list_():
    """Print registered datasets, encoders, methods and models, one per line as `kind name`."""
    from whyrec.registry import ALL

    for kind, reg in ALL.items():
        for name in reg.names():
            print(f"{kind} {name}")


COMMANDS = {
    "data": {"prepare": data_prepare, "download": data_download, "profiles": data_profiles,
             "instructions": data_instructions},
    "train": {"encoder": train_encoder, "explainer": train_explainer},
    "explain": explain,
    "recommend": recommend,
    "evaluate": evaluate,
    "benchmark": {"explain": benchmark_explain},
    "cluster": cluster,
    "quickstart": quickstart,
    "serve": serve,
    "list": list_,
}
# one line per command group in `whyrec --help` (jsonargparse reads a group's "_help" key)
GROUP_HELP = {
    "data": "Get and prepare datasets: download, prepare, profiles, instructions.",
    "train": "Train a collaborative encoder or an explainer (the LLM side of a method).",
    "benchmark": "Compare methods on the same pairs of one dataset.",
}


def _with_help(tree: dict) -> dict:
    return {name: {"_help": GROUP_HELP[name], **node} if isinstance(node, dict) else node
            for name, node in tree.items()}


def _functions(tree):
    for v in tree.values():
        yield from (_functions(v) if isinstance(v, dict) else [v])


# argparse reads `-inf` or `-1e3` after an option as another option (it knows only `-2` and `-.5`)
_NEGATIVE_NUMBER = re.compile(r"-(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?|-inf(inity)?", re.IGNORECASE)


def normalise_argv(argv: list[str]) -> list[str]:
    """Accept `-k 5`, `--user-col x`, bare boolean flags (`--explain`), negative values (`--x -inf`) and
    `None` as users type them."""
    bools = {f"--{n}" for f in _functions(COMMANDS) for n, p in inspect.signature(f).parameters.items()
             if p.annotation in ("bool", bool)}
    out = []
    for pos, tok in enumerate(argv):
        if tok == "-k" or tok.startswith("-k="):
            tok = "--k" + tok[2:]
        elif tok.startswith("--") and not tok.startswith("--print"):
            name, eq, value = tok.partition("=")  # the value after '=' keeps its dashes
            tok = "--" + name[2:].replace("-", "_") + eq + value
        elif tok == "None":  # Python's spelling of "no limit" (jsonargparse reads YAML's null)
            tok = "null"
        nxt = argv[pos + 1] if pos + 1 < len(argv) else None
        if tok in bools and (nxt is None or nxt.startswith("-")):
            tok += "=true"
        if _NEGATIVE_NUMBER.fullmatch(tok) and out and out[-1].startswith("--") and "=" not in out[-1]:
            out[-1] += "=" + tok  # the option's value, not an option
            continue
        out.append(tok)
    return out


def main(argv: list[str] | None = None) -> int:
    """Run one command; every failure ends as one `whyrec: error:` line (exit 2: fixable input, 1: a bug)."""
    from jsonargparse import CLI, set_parsing_settings

    from whyrec.cli_errors import config_instantiators, parser_class, report

    # config fields are documented by the docstring under each dataclass attribute: show those in --help
    set_parsing_settings(docstring_parse_attribute_docstrings=True)
    argv = normalise_argv(sys.argv[1:] if argv is None else list(argv))
    commands = dict(COMMANDS)
    try:
        with quiet_library_warnings():  # deprecation notices of transformers & co. (WHYREC_DEBUG=1 shows them)
            CLI(_with_help(commands), args=argv, as_positional=False, prog="whyrec", parser_class=parser_class(),
                instantiators=config_instantiators(argv, commands))
    except SystemExit as e:  # --help and --print_config (a library's sys.exit("why") is one line too)
        if isinstance(e.code, str):
            print(f"whyrec: error: {' '.join(e.code.split())}", file=sys.stderr)
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    except KeyboardInterrupt:
        print("whyrec: interrupted; re-run the same command to resume", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - report() tells user errors (exit 2) from bugs (exit 1)
        return report(e, argv, commands)
    return 0


if __name__ == "__main__":
    sys.exit(main())
