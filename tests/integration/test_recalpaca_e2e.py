"""RecAlpaca through the CLI: instruction data -> LoRA (tiny model) -> recommend -> top-k evaluation."""

import json
import re

import pytest
from conftest import require_distribution

from whyrec.cli import main


@pytest.fixture(scope="module")
def recalpaca_run(tmp_path_factory, shared_data):
    require_distribution("recbole", "recbole/dataset_example/ml-100k/ml-100k.inter")
    test_json = shared_data / "recalpaca-ml100k" / "ML100kEvaluationRecAlpaca.json"
    if not test_json.is_file():
        pytest.skip(f"{test_json} is absent from the shared data folder")
    root = tmp_path_factory.mktemp("recalpaca")
    data, run = root / "data", root / "run"
    assert main(["data", "instructions", "--out", str(data), "--max_users", "12", "--exclude_test", str(test_json),
                 "--seed", "3"]) == 0
    # The byte-level tiny tokenizer makes a prompt ~3,000 tokens: a long cutoff, two steps.
    assert main(["train", "explainer", "--method", "recalpaca", "--data", str(data), "--out", str(run),
                 "--model.name_or_path", "tiny-random-llama", "--model.device", "cpu", "--recalpaca.max_steps", "2",
                 "--recalpaca.batch_size", "2", "--recalpaca.micro_batch_size", "1",
                 "--recalpaca.cutoff_len", "6000"]) == 0
    return root, test_json


def test_instruction_folder_and_adapter(recalpaca_run):
    root, _ = recalpaca_run
    records = [json.loads(line) for line in (root / "data" / "instructions.jsonl").open()]
    assert records and all({"instruction", "input", "output", "candidates"} <= r.keys() for r in records)
    assert all(len(r["candidates"]) == 20 for r in records)
    for name in ("adapter_config.json", "adapter_model.safetensors", "config.json", "train_log.json"):
        assert (root / "run" / name).exists(), name
    assert json.loads((root / "run" / "train_log.json").read_text())["steps"] == 2


def test_recommend_stays_in_the_candidate_set(recalpaca_run, capsys):
    root, _ = recalpaca_run
    record = json.loads((root / "data" / "instructions.jsonl").open().readline())
    capsys.readouterr()
    assert main(["recommend", "--method", "recalpaca", "--run", str(root / "run"), "--user", record["user"], "-k", "5",
                 "--generation.max_new_tokens", "8", "--device", "cpu"]) == 0
    out = capsys.readouterr().out.splitlines()
    ranks = [n for n, line in enumerate(out) if line[:2] in {f"{i}." for i in range(1, 6)}]
    assert len(ranks) == 5
    titles = [re.sub(r"( \[[^\]]*\])? score=[0-9.]+$", "", out[n].split(". ", 1)[1]) for n in ranks]
    assert set(titles) <= set(record["candidates"]) and len(set(titles)) == 5
    reasons = [out[n + 1].strip() for n in ranks]  # RecAlpaca always gives its reason (or says it filled)
    assert all(reasons)
    # An untrained tiny model names no candidate: the top-1 leads the honestly marked fillers.
    assert titles[0] == record["top1"] or "not chosen by the model" not in reasons[0]
    assert main(["recommend", "--method", "xrec", "--run", str(root / "run"), "--user", record["user"]]) == 2
    assert main(["recommend", "--run", str(root / "run"), "--user", record["user"], "--max_new_tokens", "8"]) == 2
    assert "--generation.max_new_tokens" in capsys.readouterr().err


def test_evaluate_topk_with_the_run_and_baselines(recalpaca_run):
    root, test_json = recalpaca_run
    out = root / "eval"
    assert main(["evaluate", "--task", "topk", "--recalpaca_json", str(test_json), "--run", str(root / "run"),
                 "--max_pairs", "2", "--generation.max_new_tokens", "6", "--device", "cpu",
                 "--encoder", str(root / "data" / "encoder"), "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_users"] == 2 and {"recalpaca", "robust"} <= metrics.keys()
    assert len((out / "generations.jsonl").read_text().splitlines()) == 1 + 2  # row_cache key line + 2 rows
    systems = json.loads((out / "baselines.json").read_text())
    assert {"prompt-order", "lightgcn", "popularity"} <= systems.keys()
    assert systems["prompt-order"]["n_users"] == 2  # baselines are scored on the same users
    assert "| prompt-order |" in (out / "report.md").read_text()
