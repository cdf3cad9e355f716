"""End to end through the CLI on a small MovieLens-100K slice with the tiny random model."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, require_distribution

from whyrec.cli import main


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    require_distribution("recbole", "recbole/dataset_example/ml-100k/ml-100k.inter")
    root = tmp_path_factory.mktemp("e2e")
    data, enc, expl = root / "data", root / "encoder", root / "explainer"
    assert main(["data", "prepare", "--source", "ml-100k", "--out", str(data), "--max_users", "60", "--seed", "1"]) == 0
    assert main(["train", "encoder", "--data", str(data), "--out", str(enc),
                 "--config", str(REPO / "configs/tiny/lightgcn.yaml")]) == 0
    assert main(["train", "explainer", "--method", "xrec", "--data", str(data), "--encoder", str(enc),
                 "--out", str(expl), "--config", str(REPO / "configs/tiny/xrec.yaml")]) == 0
    return root


def test_files_written(run_dir):
    data, enc, expl = run_dir / "data", run_dir / "encoder", run_dir / "explainer"
    for f in ("interactions.parquet", "items.parquet", "users.parquet", "user2idx.json", "item2idx.json",
              "dataset.json", "run_config.json"):
        assert (data / f).exists(), f
    for f in ("config.json", "model.safetensors", "user2idx.json", "item2idx.json", "README.md", "metrics.json"):
        assert (enc / f).exists(), f
    for f in ("config.json", "adapter_model.safetensors", "items.parquet", "users.parquet", "README.md",
              "training_log.json", "run_config.json", "encoder/model.safetensors"):
        assert (expl / f).exists(), f
    assert not (expl / "checkpoint").exists()
    log = json.loads((expl / "training_log.json").read_text())
    assert log["steps"] == 6 and len(log["losses"]) == 6
    run_cfg = json.loads((expl / "run_config.json").read_text())
    assert run_cfg["config"]["train"]["max_steps"] == 6 and "torch" in run_cfg["environment"]["packages"]


def _user_and_item(run_dir):
    from whyrec.data.dataset import RecDataset

    test = RecDataset.load(run_dir / "data").split("test")
    return str(test["user"].iloc[0]), str(test["item"].iloc[0])


def test_explain_and_recommend(run_dir, capsys):
    user, item = _user_and_item(run_dir)
    expl = str(run_dir / "explainer")
    assert main(["explain", "--run", expl, "--user", user, "--item", item, "--generation.max_new_tokens", "5"]) == 0
    assert capsys.readouterr().out.strip() != ""
    assert main(["recommend", "--run", expl, "--user", user, "-k", "3", "--explain",
                 "--generation.max_new_tokens", "4"]) == 0
    lines = capsys.readouterr().out.splitlines()
    ranked = [line for line in lines if line[:2] in ("1.", "2.", "3.")]
    assert len(ranked) == 3 and len(lines) == 6  # each item followed by its explanation


def test_recommend_excludes_training_items(run_dir):
    import whyrec
    from whyrec.data.dataset import RecDataset

    ds = RecDataset.load(run_dir / "data")
    user, _ = _user_and_item(run_dir)
    seen = set(ds.split("train").query("user == @user")["item"].astype(str))
    recs = whyrec.load_run(run_dir / "explainer").recommend(user, k=10)
    assert len(recs) == 10 and not seen & {r["item"] for r in recs}
    assert [r["score"] for r in recs] == sorted((r["score"] for r in recs), reverse=True)


def test_evaluate_generated_and_files(run_dir, tmp_path, capsys):
    out = tmp_path / "eval"
    assert main(["evaluate", "--run", str(run_dir / "explainer"), "--data", str(run_dir / "data"), "--out", str(out),
                 "--max_pairs", "6", "--generation.max_new_tokens", "6", "--grounding"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n"] == 6 and set(metrics) >= {"pepler", "standard", "n", "groups", "grounding"}
    assert sum(g["n"] for g in metrics["groups"].values()) == 6
    assert metrics["grounding_references"]["false_claims"] == 0  # grounded targets are true by construction
    assert (out / "report.md").exists() and (out / "predictions.jsonl").exists()
    assert (out / "metrics_by_activity.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    preds = tmp_path / "p.txt"
    preds.write_text("the same text\nother words here\n")
    refs = tmp_path / "r.txt"
    refs.write_text(preds.read_text())
    assert main(["evaluate", "--predictions", str(preds), "--references", str(refs), "--out", str(tmp_path / "e2")]) == 0
    same = json.loads((tmp_path / "e2" / "metrics.json").read_text())
    assert same["pepler"]["bleu1"] == pytest.approx(100.0) and same["pepler"]["rougeL_f"] == pytest.approx(100.0, abs=1e-3)


def test_reload_gives_identical_outputs(run_dir):
    import torch

    from whyrec.config import GenerationConfig
    from whyrec.methods.xrec.artifact import load_explainer

    user, item = _user_and_item(run_dir)
    gen = GenerationConfig(max_new_tokens=8, repetition_penalty=1.0)
    a, b = load_explainer(str(run_dir / "explainer")), load_explainer(str(run_dir / "explainer"))
    for (n1, p1), (n2, p2) in zip(a.module.named_parameters(), b.module.named_parameters()):
        assert n1 == n2 and torch.equal(p1, p2), n1
    assert a.explain([user], [item], gen) == b.explain([user], [item], gen)


def test_bad_inputs_exit_nonzero_with_one_line(run_dir, tmp_path, capsys):
    expl = str(run_dir / "explainer")
    cases = [
        ["explain", "--run", expl, "--user", "no-such-user", "--item", "1"],
        ["recommend", "--run", expl, "--user", "no-such-user"],
        ["recommend", "--run", str(tmp_path), "--user", "1"],
        ["train", "explainer", "--method", "nope", "--data", "x", "--encoder", "y", "--out", "z"],
        ["data", "prepare", "--source", "csv", "--path", str(tmp_path / "missing.csv"), "--out", str(tmp_path / "o")],
        ["evaluate", "--out", str(tmp_path / "e")],
    ]
    for argv in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()[-1]  # earlier lines: progress bars
        assert err.startswith("whyrec: error:"), (argv, err)


def test_console_script_help_and_list():
    exe = Path(sys.executable).with_name("whyrec")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "whyrec.cli"]
    out = subprocess.run(cmd + ["--help"], capture_output=True, text=True, check=True).stdout
    for sub in ("data", "train", "explain", "recommend", "evaluate", "quickstart", "list"):
        assert sub in out
    listed = subprocess.run(cmd + ["list"], capture_output=True, text=True, check=True).stdout.splitlines()
    assert "method xrec" in listed and "encoder lightgcn" in listed and "dataset ml-100k" in listed
    assert all(len(line.split()) == 2 for line in listed)


def test_quickstart_runs_then_reuses_artifacts(tmp_path, capsys):
    require_distribution("recbole", "recbole/dataset_example/ml-100k/ml-100k.inter")
    argv = ["quickstart", "--out", str(tmp_path / "qs"), "--max_users", "50", "--users", "2", "--k", "3",
            "--eval_pairs", "4", "--model.name_or_path", "tiny-random-llama", "--train.max_steps", "3",
            "--lightgcn.dim", "16", "--lightgcn.epochs", "4", "--lightgcn.n_layers", "2"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.count("\n  1. ") == 2 and "BLEU-1" in out and "Recall@20" in out
    from whyrec.outputs import read_marker

    # the metrics come from grounding-aware decoding: greedy + 1 sample, the checker chooses
    assert read_marker(tmp_path / "qs" / "eval")["fingerprint"]["generation"]["candidates"] == 2
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "qs").rglob("*.safetensors")}
    assert len(stamps) >= 2
    assert main(argv) == 0
    assert "BLEU-1" in capsys.readouterr().out
    assert stamps == {p: p.stat().st_mtime_ns for p in (tmp_path / "qs").rglob("*.safetensors")}  # nothing retrained


def test_reviews_to_pepler_end_to_end(shared_data, tmp_path):
    """Raw Amazon reviews -> feature templates + PEPLER folds -> PEPLER (tiny LM) -> evaluate."""
    raw = shared_data / "amazon-musical-instruments" / "reviews_Musical_Instruments_5.json.gz"
    data, run = tmp_path / "mi", tmp_path / "pepler"
    assert main(["data", "prepare", "--source", "amazon-json", "--path", str(raw), "--out", str(data),
                 "--extract_features"]) == 0
    assert (data / "pepler" / "reviews.pickle").exists() and (data / "pepler" / "5" / "test.index").exists()
    assert main(["train", "explainer", "--method", "pepler", "--data", str(data), "--out", str(run),
                 "--model.name_or_path", "tiny-random-llama", "--model.device", "cpu", "--pepler.epochs", "1",
                 "--pepler.epochs_phase2", "1", "--pepler.batch_size", "64", "--pepler.words", "8"]) == 0
    assert main(["evaluate", "--run", str(run), "--data", str(data), "--out", str(tmp_path / "eval"),
                 "--max_pairs", "20", "--device", "cpu"]) == 0
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["n"] == 20 and {"fmr", "fcr", "div"} <= set(metrics["features"])


def test_benchmark_explain_compares_methods_on_the_same_pairs(run_dir, tmp_path, capsys):
    import pandas as pd

    from whyrec.benchmark import select_pairs
    from whyrec.data.dataset import RecDataset

    data, out = run_dir / "data", tmp_path / "bench"
    pairs = select_pairs(RecDataset.load(data), "test", 6, 0)
    oracle = tmp_path / "oracle.jsonl"  # a system that returns the references scores BLEU 100
    pd.DataFrame({"prediction": pairs["explanation"]}).to_json(oracle, orient="records", lines=True)
    args = ["benchmark", "explain", "--data", str(data), "--out", str(out), "--max_pairs", "6",
            "--methods", "pepler-continuous,pepler-discrete,pepler-reg,zero-shot",
            "--runs", f"xrec-tiny={run_dir / 'explainer'}", "--external", f"oracle={oracle}",
            "--model.name_or_path", "tiny-random-llama", "--model.device", "cpu", "--device", "cpu",
            "--pepler.epochs", "1", "--pepler.epochs_phase2", "1", "--pepler.words", "6", "--train.max_steps", "2",
            "--generation.max_new_tokens", "6"]
    assert main(args) == 0
    result = json.loads((out / "comparison.json").read_text())
    assert set(result["rows"]) == {"oracle", "xrec-tiny", "pepler-continuous", "pepler-reg",
                                   "zero-shot tiny-random-llama"}
    assert result["skipped"] == {"pepler-discrete": "no feature words (prepare raw reviews with --extract_features)"}
    assert result["rows"]["oracle"]["metrics"]["pepler"]["bleu1"] == pytest.approx(100.0)
    assert all(r["metrics"]["n"] == 6 for r in result["rows"].values())
    table = (out / "comparison.md").read_text()
    systems = [line for line in table.splitlines() if line.startswith("| ") and "mispaired" not in line
               and not line.startswith("| references")]
    assert len(systems) == 6 and table.count("| ↳ mispaired |") == 5 and "Skipped: pepler-discrete" in table
    assert "| oracle | 100.00 |" in capsys.readouterr().out
    # Re-running reuses trained methods and cached predictions.
    stamps = {p: p.stat().st_mtime_ns for p in (out / "predictions").iterdir()}
    assert main(args) == 0
    assert stamps == {p: p.stat().st_mtime_ns for p in (out / "predictions").iterdir()}


def test_benchmark_explain_trains_recexplainer_and_its_target_on_the_training_split(run_dir, tmp_path):
    """RecExplainer as a benchmark row: an MF target trained on the training interactions only, the
    alignment at the benchmark's budget, its explanations scored and CF-ablated like any row."""
    import pandas as pd

    from whyrec.data.dataset import RecDataset

    data, out = run_dir / "data", tmp_path / "bench"
    args = ["benchmark", "explain", "--data", str(data), "--out", str(out), "--max_pairs", "4", "--methods",
            "recexplainer", "--model.name_or_path", "tiny-random-llama", "--model.device", "cpu", "--device", "cpu",
            "--train.max_steps", "2", "--train.batch_size", "2", "--recexplainer.grad_accum", "1",
            "--recexplainer.max_examples", "16", "--recexplainer.connector_hidden", "16",
            "--recexplainer.max_length", "512", "--mf.dim", "8", "--mf.n_negatives", "4", "--mf.epochs", "2",
            "--mf.batch_size", "256", "--generation.max_new_tokens", "4", "--groups", "false",
            "--ablations", "shuffle-users,no-cf,no-profiles"]
    assert main(args) == 0
    result = json.loads((out / "comparison.json").read_text())
    row = result["rows"]["recexplainer"]
    assert row["metrics"]["n"] == 4 and row["train"]["steps"] == 2
    # the target never saw an interaction of the benchmark's valid or test split
    seen = pd.read_parquet(out / "target-data" / "interactions.parquet")
    full = RecDataset.load(data).interactions
    held_out = full[full["split"] != "train"]
    assert len(seen) == (full["split"] == "train").sum()
    assert not set(zip(seen["user"], seen["item"])) & set(zip(held_out["user"], held_out["item"]))
    assert json.loads((out / "methods" / "recexplainer" / "config.json").read_text())["target_kind"] == "mf"
    ablations = result["ablations"]["recexplainer"]
    assert set(ablations["systems"]) >= {"shuffle-users", "no-cf"} and "no-profiles" in ablations["skipped"]
    kept = [*(out / "predictions").iterdir(), *(out / "target").iterdir(), *(out / "methods" / "recexplainer").iterdir()]
    stamps = {p: p.stat().st_mtime_ns for p in kept}
    assert main(args) == 0  # a rerun reuses the target, the trained row and its predictions
    assert stamps == {p: p.stat().st_mtime_ns for p in kept}


@pytest.mark.parametrize("ratings", [True, False])
def test_gavamoe_cluster_train_explain_evaluate(run_dir, tmp_path, capsys, ratings):
    """GaVaMoE end to end on the MovieLens slice: VAE-GMM clusters -> cluster-gated MoE LLM -> text;
    its VAE reconstructs the ratings or, on the slice without them, tells observed from sampled pairs."""
    data, vae, expl = run_dir / "data", tmp_path / "vae", tmp_path / "gavamoe"
    if not ratings:  # implicit feedback only, as XRec's Amazon-books files
        from whyrec.data.dataset import RecDataset

        ds = RecDataset.load(data)
        ds.interactions = ds.interactions.drop(columns="rating")
        data = tmp_path / "implicit"
        ds.save(data)
    tiny_vae = ["--vae.n_clusters", "2", "--vae.latent_dim", "4", "--vae.embedding_dim", "8", "--vae.n_heads", "2",
                "--vae.ff_dim", "16", "--vae.decoder_dims", "[16]", "--vae.pretrain_epochs", "2",
                "--vae.elbo_epochs", "2", "--vae.pretrain_batch_size", "512", "--vae.batch_size", "512"]
    assert main(["cluster", "--data", str(data), "--out", str(vae), "--device", "cpu", *tiny_vae]) == 0
    metrics = json.loads((vae / "metrics.json").read_text())
    assert sum(metrics["train"]["cluster_sizes"]) > 0 and (vae / "latent.png").exists()
    assert metrics["feedback"] == ("ratings" if ratings else "interactions")
    assert ("auc" in metrics["test"]) == (not ratings)
    assert main(["train", "explainer", "--method", "gavamoe", "--data", str(data), "--encoder", str(vae),
                 "--out", str(expl), "--model.name_or_path", "tiny-random-llama", "--model.device", "cpu",
                 "--gavamoe.n_experts", "2", "--gavamoe.top_k", "1", "--train.max_steps", "2",
                 "--train.batch_size", "2", "--train.max_target_tokens", "16"]) == 0
    user, item = _user_and_item(run_dir)
    capsys.readouterr()
    assert main(["explain", "--run", str(expl), "--user", user, "--item", item,
                 "--generation.max_new_tokens", "4", "--device", "cpu"]) == 0
    assert capsys.readouterr().out.endswith("\n")  # one explanation line (a random tiny model's text)
    assert main(["evaluate", "--run", str(expl), "--data", str(data), "--out", str(tmp_path / "eval"),
                 "--max_pairs", "4", "--generation.max_new_tokens", "4", "--device", "cpu"]) == 0
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["n"] == 4
    import whyrec
    from whyrec.data.dataset import RecDataset

    seen = set(RecDataset.load(data).split("train").query("user == @user")["item"].astype(str))
    recs = whyrec.load_run(expl).recommend(user, k=5)  # ranked by E[rating] or P(observed)
    assert len(recs) == 5 and not seen & {r["item"] for r in recs}
    assert all(0 <= r["score"] <= 1 for r in recs) or ratings  # P(observed) without ratings


def test_recexplainer_target_align_evaluate_explain(run_dir, tmp_path, capsys):
    """RecExplainer end to end: SASRec target -> hybrid alignment (tiny LLM) -> alignment metrics."""
    data, target, run = run_dir / "data", tmp_path / "sasrec", tmp_path / "recexplainer"
    assert main(["train", "encoder", "--encoder", "sasrec", "--data", str(data), "--out", str(target),
                 "--sasrec.dim", "16", "--sasrec.ffn_dim", "16", "--sasrec.epochs", "2", "--sasrec.batch_size", "256",
                 "--device", "cpu"]) == 0
    metrics = json.loads((target / "metrics.json").read_text())
    assert {"valid", "test"} <= metrics.keys()
    assert main(["train", "explainer", "--method", "recexplainer", "--data", str(data), "--encoder", str(target),
                 "--out", str(run), "--model.name_or_path", "tiny-random-llama", "--model.device", "cpu",
                 "--recexplainer.mode", "hybrid", "--recexplainer.max_steps", "2", "--recexplainer.max_examples", "16",
                 "--recexplainer.connector_hidden", "16", "--recexplainer.max_length", "512",
                 "--recexplainer.micro_batch_size", "2", "--recexplainer.grad_accum", "1"]) == 0
    assert (run / "config.json").exists()
    assert main(["evaluate", "--task", "alignment", "--run", str(run), "--max_pairs", "2", "--out",
                 str(tmp_path / "align"), "--generation.max_new_tokens", "4", "--device", "cpu"]) == 0
    tasks = json.loads((tmp_path / "align" / "metrics.json").read_text())["tasks"]
    assert {"iid2title", "uid2hist", "uid2next", "uidiid2rank", "uidiid2binary"} <= tasks.keys()
    assert 0.0 <= tasks["uidiid2binary"]["accuracy"] <= 1.0
    user, item = _user_and_item(run_dir)
    capsys.readouterr()
    assert main(["explain", "--run", str(run), "--user", user, "--item", item,
                 "--generation.max_new_tokens", "4", "--device", "cpu"]) == 0
