"""Stages of the head-to-head (benchmarks/head_to_head.py) that outlive a work session, and their
assembly into one table per dataset.

A stage is one `whyrec benchmark explain` call for one system (a method of --methods, or the
dataset's --external prediction files, stage `external`). Its comparison.json is kept, with a `stage` record of the
settings that made it, in docs/results/stages/<dataset>/<system>.json: committed to git, since
runs/ does not survive a session. A later run skips a stage whose file was made with the same
settings and refuses one made with other settings (naming what changed) unless it is redone.
`assemble` merges a dataset's stage files into the comparison a single call would have written
(rows, skipped, by_activity, subsets, ablations ...) and renders it with the benchmark's own
markdown, naming the systems whose stage has not run yet.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from whyrec.benchmark_ablate import ablation_section
from whyrec.benchmark_cache import data_key
from whyrec.benchmark_tables import comparison_table
from whyrec.utils import WhyrecError, environment_info, write_json, write_text

STAGE = "stage"  # the key of a stage file's settings record; not part of the comparison
CHECKED_BEFORE_RUNNING = ("arguments", "data_digest")  # what a rerun compares to skip or refuse a stage
SAME_IN_EVERY_STAGE = ("data_digest", "split", "n_pairs", "seed")  # else their rows do not share a table
UNIONS = ("rows", "skipped", "by_activity", "ablations")  # keyed by row (or system) name


def slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in name).strip("-") or "stage"


def stage_path(docs: Path, dataset: str, system: str) -> Path:
    return docs / "stages" / dataset / f"{slug(system)}.json"


def _options(arguments: str) -> dict[str, str]:
    """Option -> its value text ('' holds the leading words): what an arguments diff compares."""
    options: dict[str, str] = {}
    key = ""
    for token in shlex.split(arguments):
        if token.startswith("--"):
            key, options[token] = token, ""
        else:
            options[key] = f"{options.get(key, '')} {token}".strip()
    return options


def arguments_change(old: str, new: str) -> str:
    """The options whose value differs between two argument strings, as `--opt old -> new`."""
    before, after = _options(old), _options(new)
    changes = [f"{key or '(command)'} {before.get(key, '(absent)') or '(flag)'} -> {after.get(key, '(absent)') or '(flag)'}"
               for key in dict.fromkeys([*before, *after]) if before.get(key) != after.get(key)]
    return "; ".join(changes)


def settings_change(recorded: dict, current: dict) -> str | None:
    """What differs between the settings a stage file records and the current ones (None: same).
    A current value of None is not known yet (the data is not prepared in a dry run) and not compared."""
    for field in CHECKED_BEFORE_RUNNING:
        old, new = recorded.get(field), current.get(field)
        if new is not None and old != new:
            return f"{field} {arguments_change(old or '', new) if field == 'arguments' else f'{old} -> {new}'}"
    return None


def must_run(path: Path, system: str, current: dict, redo: bool) -> bool:
    """Whether the stage of `system` runs: not when its file holds the current settings; a file made
    with other settings is refused (a one-line WhyrecError naming what changed) unless `redo`."""
    if redo or not path.is_file():
        return True
    change = settings_change(read_stage(path).get(STAGE, {}), current)
    if change is None:
        return False
    raise WhyrecError(f"{path}: stage {system} was made with other settings ({change}); "
                      f"rerun with --redo {system} to replace it, or go back to its settings")


def read_stage(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise WhyrecError(f"{path}: not a readable stage file ({e})") from e


def data_digest(data: Path) -> str | None:
    """The digest `benchmark explain` records for a dataset folder (None until it is prepared)."""
    return data_key(data) if (data / "dataset.json").is_file() else None


def encoder_digest(folder: Path) -> str:
    """A digest of a LightGCN encoder folder's weights: the encoder is retrained in each session (runs/
    does not survive one), and its training need not repeat bit for bit (thread counts change float
    sums), so each stage records which encoder its rows read."""
    import hashlib

    weights = Path(folder) / "model.safetensors"
    if not weights.is_file():
        raise WhyrecError(f"{folder}: no model.safetensors; the stage's encoder folder is incomplete")
    digest = hashlib.sha256()
    with weights.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def run_start() -> dict:
    """When a stage starts, the machine's load and the library's commit then (the stage's whyrec
    call imports it then): `run_record` completes it."""
    revision = environment_info()["git_revision"]  # the checkout whyrec is imported from
    try:
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "src"], capture_output=True, text=True,
                               cwd=Path(__file__).resolve().parents[1], check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        dirty = ""
    library = revision[:7] + ("+uncommitted src" if dirty else "") if revision else "unknown (not a git checkout)"
    return {"started_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "t0": time.time(),
            "load_start": round(os.getloadavg()[0], 2), "library": library}


def run_record(start: dict, attempts: list[dict] | None = None) -> dict:
    """Date, wall minutes, load average (1 min) at start and end, CPUs and library commit (at the
    start) of a stage: what every timing in the docs is written beside. With `attempts` (the stage's
    `attempt` log, this call last) of more than one call, the earlier, interrupted calls are kept
    too and `minutes_all_attempts` sums them: an interrupted stage's caches let the last call skip
    work the earlier ones did, so its own minutes understate the stage."""
    record = {"started_utc": start["started_utc"], "minutes": round((time.time() - start["t0"]) / 60, 1),
              "load_start": start["load_start"], "load_end": round(os.getloadavg()[0], 2),
              "cpus": os.cpu_count(), "library": start["library"]}
    earlier = (attempts or [])[:-1]
    if earlier:
        record["earlier_attempts"] = [{k: a[k] for k in ("started_utc", "minutes", "library")} for a in earlier]
        record["minutes_all_attempts"] = round(record["minutes"] + sum(a["minutes"] for a in earlier), 1)
    return record


HEARTBEAT_SECONDS = 60


@contextmanager
def attempt(log: Path, start: dict) -> Iterator[list[dict]]:
    """Log one call of a stage in `log` (a JSON list, one entry per call): written when it starts and
    its minutes updated every HEARTBEAT_SECONDS while it runs, so a call killed with the session still
    leaves its time to within a minute. Yields the log, this call last."""
    calls = json.loads(log.read_text()) if log.is_file() else []
    entry = {"started_utc": start["started_utc"], "library": start["library"], "minutes": 0.0}
    calls.append(entry)
    lock = threading.Lock()

    def save() -> None:
        with lock:
            entry["minutes"] = round((time.time() - start["t0"]) / 60, 1)
            log.parent.mkdir(parents=True, exist_ok=True)
            write_json(log, calls)

    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(HEARTBEAT_SECONDS):
            save()

    save()
    beater = threading.Thread(target=beat, name="h2h-attempt-heartbeat", daemon=True)
    beater.start()
    try:
        yield calls
    finally:
        stop.set()
        beater.join()
        save()


def save_stage(comparison_json: Path, path: Path, system: str, arguments: str, encoder: Path | None = None,
               run: dict | None = None) -> dict:
    """Copy a stage call's comparison.json to its committed stage file with the record of its settings
    (and the digest of the LightGCN `encoder` its rows read, if any, and `run_record`'s `run`)."""
    comparison = json.loads(comparison_json.read_text())
    comparison[STAGE] = {"system": system, "arguments": arguments,
                         **{key: comparison.get(key) for key in SAME_IN_EVERY_STAGE},
                         **({"encoder_digest": encoder_digest(encoder)} if encoder is not None else {}),
                         **({"run": run} if run else {})}
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, comparison)
    return comparison


def merge(stages: dict[str, dict]) -> dict:
    """One comparison from stage comparisons (label, e.g. the stage file -> its dict), in table order:
    rows, skipped, by_activity and ablations united, `subsets` of the same pairs and external files
    merged, everything else taken from the first stage. Stages scored on other pairs, or one row
    scored in two stages, are refused in one line naming the stage files."""
    if not stages:
        raise WhyrecError("no stage files to assemble")
    for key in SAME_IN_EVERY_STAGE:
        values = {label: stage.get(key) for label, stage in stages.items()}
        if len({json.dumps(v) for v in values.values()}) > 1:
            raise WhyrecError(f"cannot merge stages with different {key}: "
                              + ", ".join(f"{label} ({value})" for label, value in values.items()))
    merged: dict = {}
    origin: dict[tuple[str, str], str] = {}  # (key, name) -> the stage that brought it: names a duplicate
    for label, stage in stages.items():
        for key, value in stage.items():
            if key == STAGE:
                continue
            if key in UNIONS:
                merged[key] = _united(merged.get(key, {}), value, key, label, origin)
            elif key == "subsets":
                merged[key] = _merged_subsets(merged.get(key, []), value, label, origin)
            elif key not in merged:
                merged[key] = value
            elif key == "metric_versions" and value != merged[key]:
                merged.setdefault("metric_versions_differ", []).append(label)
                print(f"head_to_head: {label}: its metric_versions differ from the first stage's", file=sys.stderr)
    merged.setdefault("rows", {})
    merged.setdefault("skipped", {})
    return merged


def _united(into: dict, new: dict, key: str, label: str, origin: dict) -> dict:
    for name in new:
        if (key, name) in origin:
            raise WhyrecError(f"{key} {name!r} is in two stages: {origin[key, name]} and {label}; "
                              "remove one of the stage files")
        origin[key, name] = label
    return {**into, **new}


def _merged_subsets(into: list[dict], new: list[dict], label: str, origin: dict) -> list[dict]:
    """`subsets` entries of the same pairs and external files become one, their rows united."""
    out = [dict(sub) for sub in into]
    for sub in new:
        same = next((s for s in out if s["pair_indices"] == sub["pair_indices"] and s["external"] == sub["external"]), None)
        if same is None:
            same = {**sub, "rows": {}}
            out.append(same)
        key = f"subsets[{out.index(same)}] row"  # the entry's place keeps two entries' rows apart
        same["rows"] = _united(same["rows"], sub["rows"], key, label, origin)
    return out


def not_rescored(comparison: dict) -> dict[str, list[str]]:
    """Per subset ('the n pairs NAME covers'), the main-table rows missing from it: rows of stages that
    ran without the external file, whose predictions stayed in an earlier session's runs/ to rescore."""
    out = {}
    for sub in comparison.get("subsets", ()):
        missing = [name for name in comparison["rows"] if name not in sub["rows"]]
        if missing:
            out[f"the {sub['n_pairs']} pairs {' and '.join(sub['external'])} covers"] = missing
    return out


def markdown(comparison: dict, missing: list[str], stage_dir: Path, encoders: dict[str, str] | None = None,
             runs: dict[str, dict] | None = None) -> str:
    """The benchmark's own comparison.md rendering of `comparison`, with a note naming the systems whose
    stage has not run yet (a partial table can be committed and read), stages that read different
    LightGCN encoders (`encoders`: stage -> digest), the subset rows not rescored and, for the stages
    that recorded it (`runs`: stage -> `run_record`), when and how each ran."""
    head = [f"Assembled from the stage files in {stage_dir} (benchmarks/head_to_head.py)."]
    if missing:
        head += ["", f"**Partial table: no stage yet for {', '.join(missing)}.** Rerun benchmarks/head_to_head.py "
                 "with the same arguments to add them."]
    if len(set((encoders or {}).values())) > 1:
        head += ["", "**The stages read different LightGCN encoders** (retrained in another session with the same "
                 "settings; training did not repeat bit for bit): "
                 + ", ".join(f"{stage} {digest}" for stage, digest in encoders.items()) + "."]
    tail = [f"\nNot rescored on {pairs}: {', '.join(rows)} (their stages ran without that file)."
            for pairs, rows in not_rescored(comparison).items()]
    if runs:
        tail.append("\nHow each stage ran (wall time of the whole stage: training, generation, ablations; load "
                    "average over 1 minute):\n" + "".join(
                        f"\n- {stage}: {r['started_utc']}, {r['minutes']} min, load {r['load_start']} -> "
                        f"{r['load_end']}, {r['cpus']} CPUs, library {r['library']}" + _earlier(r)
                        for stage, r in runs.items()))
    return ("\n".join(head) + "\n\n" + comparison_table(comparison) + "".join(t + "\n" for t in tail)
            + ablation_section(comparison.get("ablations")))


def _earlier(run: dict) -> str:
    """The interrupted calls before a stage's last one, for its line in the table's notes."""
    earlier = run.get("earlier_attempts")
    if not earlier:
        return ""
    calls = "; ".join(f"{a['started_utc']}, {a['minutes']} min, library {a['library']}" for a in earlier)
    return f" ({run['minutes_all_attempts']} min over {len(earlier) + 1} calls; interrupted before: {calls})"


def assemble(docs: Path, dataset: str, systems: list[str]) -> tuple[dict, list[str]]:
    """Merge docs/stages/<dataset>/*.json (the stages of `systems` first, in their order, then any
    other stage file there) into docs/<dataset>.json and docs/<dataset>.md. Returns (the merged
    comparison, the systems of `systems` with no stage file yet)."""
    folder = docs / "stages" / dataset
    paths = [stage_path(docs, dataset, s) for s in systems]
    paths = [p for p in paths if p.is_file()] + sorted(p for p in folder.glob("*.json") if p not in paths)
    if not paths:
        raise WhyrecError(f"no stage files in {folder}: run benchmarks/head_to_head.py --datasets {dataset} first")
    missing = [s for s in systems if not stage_path(docs, dataset, s).is_file()]
    read = {p: read_stage(p) for p in paths}
    merged = merge({str(p): stage for p, stage in read.items()})
    encoders = {p.stem: stage[STAGE]["encoder_digest"] for p, stage in read.items()
                if stage.get(STAGE, {}).get("encoder_digest")}
    merged["stages"] = {"assembled": [p.stem for p in paths], "missing": missing,
                        **({"encoder_digests": encoders} if encoders else {})}
    write_json(docs / f"{dataset}.json", merged)
    runs = {p.stem: stage[STAGE]["run"] for p, stage in read.items() if stage.get(STAGE, {}).get("run")}
    write_text(docs / f"{dataset}.md", markdown(merged, missing, folder, encoders, runs))
    return merged, missing
