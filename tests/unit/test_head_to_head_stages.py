"""benchmarks/head_to_head.py runs one `benchmark explain` stage per system and keeps each in a
committed stage file (benchmarks/h2h_stages.py): a rerun skips a stage made with the same settings,
refuses one made with other settings naming what changed, and the stage files merge into the one
comparison a single call would have written, refused when they were scored on other pairs."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import benchmark_script

from whyrec.utils import WhyrecError

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
SCRIPT = BENCHMARKS / "head_to_head.py"


stages = benchmark_script("h2h_stages")
h2h = benchmark_script("head_to_head")


def _row(bleu4: float) -> dict:
    pepler = {"bleu1": 2 * bleu4, "bleu4": bleu4, "rouge1_f": 30.0, "rouge2_f": 10.0, "rougeL_f": 25.0, "usr": 1.0}
    return {"metrics": {"pepler": pepler}, "train": None, "generate_s_per_pair": None}


def _stage(rows: dict, digest: str = "d1", **extra) -> dict:
    return {"data": "runs/h2h/x/data", "data_digest": digest, "split": "test", "n_pairs": 6, "seed": 0,
            "rows": rows, "skipped": {}, "metric_versions": {"whyrec": "0.1.0"},
            "by_activity": {name: {"g1": {"n": 3, "bleu4": row["metrics"]["pepler"]["bleu4"]}} for name, row in rows.items()},
            **extra}


def _subset(rows: dict, pairs: list[int], external: str = "ext") -> dict:
    return {"n_pairs": len(pairs), "of_pairs": 6, "pair_indices": pairs, "external": {external: f"{external}.ref"},
            "rows": rows}


def test_merge_unites_rows_activity_ablations_and_subsets_of_the_same_pairs() -> None:
    external = _stage({"ext": _row(15.0)}, subsets=[_subset({"ext-part": _row(14.0)}, [0, 2])])
    xrec = _stage({"xrec": _row(10.0)}, ablations={"xrec": {"kinds": ["no-cf"]}},
                  subsets=[_subset({"xrec": _row(11.0)}, [0, 2]), _subset({"other": _row(9.0)}, [1], "other"),
                           _subset({"xrec": _row(8.0)}, [1, 3])])
    skipped = _stage({}, skipped={"pepler-continuous": "no feature words"})
    merged = stages.merge({"external.json": external, "xrec.json": xrec, "pepler-continuous.json": skipped})
    assert list(merged["rows"]) == ["ext", "xrec"]  # stage order, as one call lists its rows
    assert merged["rows"]["xrec"]["metrics"]["pepler"]["bleu4"] == 10.0
    assert merged["by_activity"] == {"ext": {"g1": {"n": 3, "bleu4": 15.0}}, "xrec": {"g1": {"n": 3, "bleu4": 10.0}}}
    assert merged["skipped"] == {"pepler-continuous": "no feature words"}
    assert merged["ablations"] == {"xrec": {"kinds": ["no-cf"]}}
    assert (merged["data_digest"], merged["n_pairs"], merged["seed"]) == ("d1", 6, 0)
    # one entry per (pairs, external files): the [0, 2] entries of both stages merge, [1] stays apart
    assert [(s["pair_indices"], list(s["rows"])) for s in merged["subsets"]] == [
        ([0, 2], ["ext-part", "xrec"]), ([1], ["other"]), ([1, 3], ["xrec"])]
    assert stages.not_rescored(merged) == {"the 2 pairs ext covers": ["ext"], "the 1 pairs other covers": ["ext", "xrec"]}
    assert "stage" not in merged and "metric_versions_differ" not in merged


@pytest.mark.parametrize("field, value", [("data_digest", "d2"), ("n_pairs", 7), ("seed", 1), ("split", "valid")])
def test_merge_refuses_stages_scored_on_other_pairs(field: str, value) -> None:
    other = _stage({"xrec": _row(10.0)}) | {field: value}
    with pytest.raises(WhyrecError, match=f"different {field}: a.json .*, b.json \\({value}\\)") as err:
        stages.merge({"a.json": _stage({"ext": _row(1.0)}), "b.json": other})
    assert "\n" not in str(err.value)


def test_merge_refuses_a_row_in_two_stages() -> None:
    with pytest.raises(WhyrecError, match="rows 'xrec' is in two stages: a.json and b.json"):
        stages.merge({"a.json": _stage({"xrec": _row(1.0)}), "b.json": _stage({"xrec": _row(2.0)})})


def _write_stage(tmp_path: Path, arguments: str, digest: str = "d1") -> Path:
    out = tmp_path / "out" / "comparison.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(_stage({"xrec": _row(10.0)}, digest)))
    path = stages.stage_path(tmp_path / "docs", "ml-100k", "xrec")
    stages.save_stage(out, path, "xrec", arguments)
    return path


def test_a_stage_file_of_the_same_settings_is_skipped_and_other_settings_are_refused(tmp_path: Path) -> None:
    args = "benchmark explain --methods xrec --train.max_steps 300 --bertscore true"
    path = _write_stage(tmp_path, args)
    assert path == tmp_path / "docs" / "stages" / "ml-100k" / "xrec.json"
    assert json.loads(path.read_text())["stage"] == {"system": "xrec", "arguments": args, "data_digest": "d1",
                                                     "split": "test", "n_pairs": 6, "seed": 0}
    assert not stages.must_run(path, "xrec", {"arguments": args, "data_digest": "d1"}, redo=False)
    assert not stages.must_run(path, "xrec", {"arguments": args, "data_digest": None}, redo=False)  # not prepared yet
    assert stages.must_run(path.with_name("gavamoe.json"), "gavamoe", {"arguments": args}, redo=False)
    with pytest.raises(WhyrecError, match=r"stage xrec was made with other settings \(arguments --train.max_steps "
                                          r"300 -> 200; --bertscore true -> \(absent\)\); rerun with --redo xrec"):
        stages.must_run(path, "xrec", {"arguments": "benchmark explain --methods xrec --train.max_steps 200"}, redo=False)
    with pytest.raises(WhyrecError, match=r"\(data_digest d1 -> d9\)"):
        stages.must_run(path, "xrec", {"arguments": args, "data_digest": "d9"}, redo=False)
    assert stages.must_run(path, "xrec", {"arguments": "other", "data_digest": "d9"}, redo=True)


def test_assemble_writes_the_benchmark_markdown_naming_missing_systems(tmp_path: Path) -> None:
    from whyrec.benchmark_tables import comparison_table

    docs = tmp_path / "docs"
    for system, rows in (("external", {"ext": _row(15.0)}), ("zero-shot", {"zero-shot m": _row(2.0)})):
        path = stages.stage_path(docs, "d", system)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(_stage(rows) | {"stage": {"system": system}}))
    merged, missing = stages.assemble(docs, "d", ["external", "xrec", "zero-shot"])
    assert missing == ["xrec"] and list(merged["rows"]) == ["ext", "zero-shot m"]
    assert json.loads((docs / "d.json").read_text())["stages"] == {"assembled": ["external", "zero-shot"],
                                                                   "missing": ["xrec"]}
    md = (docs / "d.md").read_text()
    assert "**Partial table: no stage yet for xrec.**" in md
    assert comparison_table(merged) in md  # the benchmark's own rendering, not a copy of it
    with pytest.raises(WhyrecError, match="no stage files in"):
        stages.assemble(docs, "empty", ["xrec"])


def test_stages_record_their_encoder_and_the_table_names_a_retrained_one(tmp_path: Path) -> None:
    docs, digests = tmp_path / "docs", {}
    for system, weights in (("retrieval", b"session 1"), ("xrec", b"session 2"), ("zero-shot", None)):
        out = tmp_path / system / "comparison.json"
        out.parent.mkdir(parents=True)
        out.write_text(json.dumps(_stage({system: _row(5.0)})))
        encoder = None
        if weights is not None:
            encoder = tmp_path / system / "encoder"
            encoder.mkdir()
            (encoder / "model.safetensors").write_bytes(weights)
            digests[system] = stages.encoder_digest(encoder)
        stages.save_stage(out, stages.stage_path(docs, "d", system), system, f"benchmark explain --methods {system}",
                          encoder)
    assert digests["retrieval"] != digests["xrec"] and len(digests["xrec"]) == 16
    assert "encoder_digest" not in json.loads(stages.stage_path(docs, "d", "zero-shot").read_text())["stage"]
    merged, _ = stages.assemble(docs, "d", ["retrieval", "xrec", "zero-shot"])
    assert merged["stages"]["encoder_digests"] == digests
    md = (docs / "d.md").read_text()
    assert "**The stages read different LightGCN encoders** (retrained" in md and digests["xrec"] in md
    stages.save_stage(tmp_path / "xrec" / "comparison.json", stages.stage_path(docs, "d", "xrec"), "xrec", "a",
                      tmp_path / "retrieval" / "encoder")  # the same encoder: no note
    stages.assemble(docs, "d", ["retrieval", "xrec", "zero-shot"])
    assert "different LightGCN encoders" not in (docs / "d.md").read_text()
    with pytest.raises(WhyrecError, match="no model.safetensors"):
        stages.encoder_digest(tmp_path)


def _dry_run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), "--dry-run", "--work", str(tmp_path / "work"), "--docs",
                           str(tmp_path / "docs"), *args], capture_output=True, text=True, cwd=tmp_path)


def _benchmark_calls(stdout: str) -> list[list[str]]:
    return [shlex.split(line)[1:] for line in stdout.splitlines() if line.startswith("$ whyrec benchmark explain")]


def test_dry_run_prints_one_benchmark_call_per_system_with_its_own_out(tmp_path: Path) -> None:
    done = _dry_run(tmp_path, "--datasets", "xrec-amazon", "--methods", "xrec-lora,zero-shot,retrieval")
    assert done.returncode == 0, done.stderr
    calls = _benchmark_calls(done.stdout)
    methods = [call[call.index("--methods") + 1] for call in calls]
    outs = [call[call.index("--out") + 1] for call in calls]
    assert methods == ["none", "xrec-lora", "zero-shot", "retrieval"]  # the external stage, then each method
    assert outs == [str(tmp_path / "work" / "xrec-amazon" / "stages" / s)
                    for s in ("external", "xrec-lora", "zero-shot", "retrieval")]
    assert [call.count("--external") for call in calls] == [1, 0, 0, 0]
    # the LightGCN encoder of the XRec row and the retrieval row is trained once, before the stages
    assert ["--encoder" in call for call in calls] == [False, True, False, True]
    assert sum(line.startswith("$ whyrec train encoder") for line in done.stdout.splitlines()) == 1
    assert not (tmp_path / "docs").exists() and not (tmp_path / "work").exists()  # nothing ran


def test_rerun_skips_a_stage_file_of_the_same_settings_and_refuses_changed_ones(tmp_path: Path) -> None:
    docs, args = tmp_path / "docs", h2h.stage_arguments("ml-100k", "zero-shot", "all", "")
    _write_stage(tmp_path, args)
    stages.stage_path(docs, "ml-100k", "xrec").rename(stages.stage_path(docs, "ml-100k", "zero-shot"))
    done = _dry_run(tmp_path, "--datasets", "ml-100k", "--methods", "zero-shot,retrieval")
    assert [call[call.index("--methods") + 1] for call in _benchmark_calls(done.stdout)] == ["retrieval"]
    assert "ml-100k/zero-shot: done in" in done.stdout

    refused = _dry_run(tmp_path, "--datasets", "ml-100k", "--methods", "zero-shot,retrieval", "--ablations", "none")
    assert refused.returncode == 2 and not _benchmark_calls(refused.stdout)  # refused before any stage runs
    assert refused.stderr.count("\n") == 1 and "arguments --ablations all -> (absent)" in refused.stderr
    assert "--redo zero-shot" in refused.stderr

    redone = _dry_run(tmp_path, "--datasets", "ml-100k", "--methods", "zero-shot,retrieval", "--ablations", "none",
                      "--redo", "zero-shot")
    assert [call[call.index("--methods") + 1] for call in _benchmark_calls(redone.stdout)] == ["zero-shot", "retrieval"]


def test_stages_run_once_across_sessions_and_assemble_the_table(tmp_path: Path, monkeypatch) -> None:
    """Two 'sessions' of the same command with a stand-in for the whyrec CLI: the first runs each stage and
    writes its stage file and the table, the second (a fresh work folder) runs no stage."""
    pytest.importorskip("matplotlib")
    from whyrec.benchmark_cache import data_key

    monkeypatch.syspath_prepend(str(BENCHMARKS))  # as when the script runs: h2h_stages is importable by name
    calls: list[str] = []

    def fake_whyrec(args: str, dry: bool) -> None:
        calls.append(args)
        words = shlex.split(args)
        out = Path(words[words.index("--out") + 1])
        out.mkdir(parents=True, exist_ok=True)
        if words[:2] == ["data", "prepare"]:
            (out / "dataset.json").write_text("{}")
        elif words[:2] == ["train", "encoder"]:
            (out / "model.safetensors").write_bytes(b"weights")
        elif words[:2] == ["benchmark", "explain"]:
            system = words[words.index("--methods") + 1]
            data = words[words.index("--data") + 1]
            (out / "comparison.json").write_text(json.dumps(_stage({system: _row(len(system))}, data_key(data))))

    monkeypatch.setattr(h2h, "whyrec", fake_whyrec)
    docs = tmp_path / "docs"
    for session in ("one", "two"):
        h2h._main(h2h.argparse.Namespace(
            datasets="ml-100k", methods="zero-shot,retrieval", work=str(tmp_path / session), shared="s", docs=str(docs),
            ablations="all", extra="", redo=[], dry_run=False, assemble_only=False, plot_only=False))
        benchmark_calls = [c for c in calls if c.startswith("benchmark explain")]
        assert len(benchmark_calls) == 2  # the second session ran none
    assert sorted(p.name for p in (docs / "stages" / "ml-100k").iterdir()) == ["retrieval.json", "zero-shot.json"]
    table = json.loads((docs / "ml-100k.json").read_text())
    # a run of some methods still counts the whole table's systems as missing until their stages exist
    assert list(table["rows"]) == ["zero-shot", "retrieval"]
    assert table["stages"]["missing"] == ["xrec", "xrec-lora", "gavamoe", "pepler-continuous", "recexplainer"]
    assert list(table["stages"]["encoder_digests"]) == ["retrieval"]  # the only stage reading the encoder
    md = (docs / "ml-100k.md").read_text()
    assert (docs / "ml-100k.png").stat().st_size > 0 and "Partial table: no stage yet for xrec, xrec-lora" in md
    # every stage file says when and how it ran, and the table lists it beside the timings
    run = json.loads((docs / "stages" / "ml-100k" / "retrieval.json").read_text())["stage"]["run"]
    assert set(run) == {"started_utc", "minutes", "load_start", "load_end", "cpus", "library"}
    assert run["started_utc"].endswith(" UTC") and 0 <= run["minutes"] < 5 and run["cpus"] >= 1
    assert "How each stage ran" in md and f"- retrieval: {run['started_utc']}, {run['minutes']} min, load" in md
    assert not list((tmp_path / "one" / "ml-100k" / "stages").glob("*.attempts.json"))  # kept in the stage files


def test_an_interrupted_call_is_logged_and_counted_in_the_stage_record(tmp_path: Path, monkeypatch) -> None:
    """A stage's first call dies (here: raises) after 2 minutes, the rerun finishes in 1: the record
    keeps its own minutes, lists the earlier call and sums both; the log is on disk from the start."""
    import time

    monkeypatch.setattr(stages, "HEARTBEAT_SECONDS", 0.02)
    log = tmp_path / "stages" / "xrec.attempts.json"
    first = {"started_utc": "2026-12-07 10:00 UTC", "t0": time.time() - 120, "library": "aaa1111", "load_start": 0.5}
    with pytest.raises(WhyrecError), stages.attempt(log, first):
        on_disk = json.loads(log.read_text())  # written before the call runs: a killed call leaves it
        assert on_disk == [{"started_utc": first["started_utc"], "library": "aaa1111", "minutes": 2.0}]
        time.sleep(0.1)  # heartbeats rewrite it while the call runs
        raise WhyrecError("the stage's benchmark call failed")
    assert [c["minutes"] for c in json.loads(log.read_text())] == [2.0]
    second = {"started_utc": "2026-12-07 11:00 UTC", "t0": time.time() - 60, "library": "bbb2222", "load_start": 0.7}
    with stages.attempt(log, second) as calls:
        pass
    record = stages.run_record(second, calls)
    assert record["minutes"] == 1.0 and record["minutes_all_attempts"] == 3.0
    assert record["earlier_attempts"] == [{"started_utc": "2026-12-07 10:00 UTC", "minutes": 2.0, "library": "aaa1111"}]
    assert stages._earlier(record) == " (3.0 min over 2 calls; interrupted before: 2026-12-07 10:00 UTC, 2.0 min, library aaa1111)"
    assert "earlier_attempts" not in stages.run_record(second, calls[-1:]) and stages._earlier({"minutes": 1}) == ""


@pytest.mark.parametrize("dataset", ["xrec-amazon", "ml-100k"])
def test_every_trained_row_gets_the_same_steps_of_the_same_rows(dataset: str, capsys) -> None:
    """Parsed by whyrec's own CLI: PEPLER would otherwise keep its own batch of 128 (TrainConfig's
    default batch 8 does not replace it) and run up to 100 epochs per phase."""
    import yaml

    from whyrec import cli

    def parsed(system: str) -> dict:
        args = h2h.stage_arguments(dataset, system, "none", "").replace("{work}", "/w").replace("{shared}", "/s")
        assert cli.main([*shlex.split(args), "--print_config"]) == 0
        return yaml.safe_load(capsys.readouterr().out)

    def parsed_default(section: str) -> dict:
        assert cli.main(["benchmark", "explain", "--data", "/w", "--out", "/o", "--print_config"]) == 0
        return yaml.safe_load(capsys.readouterr().out)[section]

    xrec, pepler = parsed("xrec-lora"), parsed("pepler-continuous")
    assert (xrec["train"]["max_steps"], xrec["train"]["batch_size"]) == (h2h.BUDGET_STEPS, h2h.BATCH)
    assert pepler["pepler"]["batch_size"] == h2h.BATCH
    phases = pepler["pepler"]["epochs"] + pepler["pepler"]["epochs_phase2"]  # one epoch each, capped per epoch
    assert phases * pepler["train"]["max_steps"] == h2h.BUDGET_STEPS
    # PEPLER decodes its own words and refuses every other --generation field (checked before training)
    assert xrec["generation"]["max_new_tokens"] == 80
    assert {k: v for k, v in pepler["generation"].items() if v != parsed_default("generation")[k]} == {}


def test_a_dataset_can_give_one_stage_more_arguments(capsys) -> None:
    """XRec-amazon's GaVaMoE stage trains a narrower VAE (hours otherwise); no other stage's arguments change."""
    import yaml

    from whyrec import cli

    gavamoe = h2h.stage_arguments("xrec-amazon", "gavamoe", "none", "")
    assert "--vae_config.embedding_dim 128" in gavamoe
    for system in ("xrec", "xrec-lora", "retrieval"):
        assert "--vae_config" not in h2h.stage_arguments("xrec-amazon", system, "none", "")
    assert "--vae_config" not in h2h.stage_arguments("ml-100k", "gavamoe", "none", "")
    args = gavamoe.replace("{work}", "/w").replace("{shared}", "/s")
    assert cli.main([*shlex.split(args), "--print_config"]) == 0
    vae = yaml.safe_load(capsys.readouterr().out)["vae_config"]
    assert (vae["embedding_dim"], vae["decoder_dims"], vae["pretrain_epochs"], vae["feedback"]) == (128, [256, 128], 10, "auto")
