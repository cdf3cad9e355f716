"""Issue 18's proof: a method defined only in the tests (tests/unit/toy_method.py) runs through
`train explainer`, `recommend --explain`, `explain`, `evaluate --run`, `benchmark explain`,
`whyrec.load_run` and the HTTP API, with no library file naming it."""

from __future__ import annotations

import json

import pytest
from toy_method import ToyMethod

import whyrec
from whyrec.cli import main
from whyrec.config import GenerationConfig
from whyrec.registry import METHODS
from whyrec.utils import WhyrecError

USERS, ITEMS = 24, 8


@pytest.fixture(scope="module")
def toy():
    with METHODS.temporary("toy", ToyMethod(), "popularity with template explanations (tests only)") as method:
        yield method


@pytest.fixture(scope="module")
def trained(toy, tmp_path_factory):
    """A small CSV dataset (item i liked by the first 3*(i+1) users) and the toy trained on it via the CLI."""
    root = tmp_path_factory.mktemp("toy")
    rows = ["user,item,rating,title,explanation"]
    for i in range(ITEMS):
        for u in range(min(USERS, 3 * (i + 1))):
            rows.append(f"u{u},i{i},{1 + (u + i) % 5},Film {i},the plot of film {i} suits user {u}")
    (root / "ratings.csv").write_text("\n".join(rows) + "\n")
    data, run = root / "data", root / "run"
    assert main(["data", "prepare", "--source", "csv", "--path", str(root / "ratings.csv"), "--out", str(data)]) == 0
    assert main(["train", "explainer", "--method", "toy", "--data", str(data), "--out", str(run)]) == 0
    return root, data, run


def test_load_run_recommends_explains_and_describes(trained):
    _, _, folder = trained
    run = whyrec.load_run(folder)
    recs = run.recommend("u0", k=3, explain=True)
    seen = set(json.loads((folder / "popularity.json").read_text())["seen"]["u0"])
    assert len(recs) <= 3 and not seen & {r["item"] for r in recs}
    assert [r["score"] for r in recs] == sorted((r["score"] for r in recs), reverse=True)
    assert all(r["explanation"].startswith(f"{r['title']} is popular") for r in recs)
    assert run.explain("u0", "i7") == f"Film 7 is popular: {run.model.counts['i7']} people liked it."
    assert run.explain("u0", "i7", GenerationConfig(max_new_tokens=2)) == "Film 7"  # per-call decoding
    assert run.explain("u0", "i7").endswith("liked it.")  # and back to the load-time settings
    assert run.info()["method"] == "toy"
    with pytest.raises(WhyrecError, match="unknown user id 'nobody'"):
        run.recommend("nobody")


def test_cli_recommend_and_explain(trained, capsys):
    _, _, run = trained
    assert main(["recommend", "--run", str(run), "--user", "u1", "-k", "2", "--explain"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("1. Film ") and "score=" in lines[0] and "is popular" in lines[1]
    assert main(["explain", "--run", str(run), "--user", "u1", "--item", "i3"]) == 0
    assert capsys.readouterr().out.startswith("user u1 · Film 3 [i3]:\nFilm 3 is popular")
    assert main(["explain", "--run", str(run), "--user", "u1", "--item", "nope"]) == 2
    assert "unknown item id 'nope'" in capsys.readouterr().err


def test_cli_evaluate_run(trained):
    root, data, run = trained
    out = root / "eval"
    assert main(["evaluate", "--run", str(run), "--data", str(data), "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    predictions = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert metrics["n"] == len(predictions) > 0
    assert all(p["prediction"].endswith("people liked it.") for p in predictions)
    assert 0 < metrics["pepler"]["bleu1"] < 100  # "film" overlaps the references, the rest does not


def test_benchmark_explain_with_the_toy(trained):
    root, data, run = trained
    out = root / "bench"
    assert main(["benchmark", "explain", "--data", str(data), "--out", str(out), "--methods", "toy",
                 "--runs", f"given={run}", "--groups", "false"]) == 0
    rows = json.loads((out / "comparison.json").read_text())["rows"]
    assert {"toy", "given"} <= set(rows)
    # trained by the benchmark or given: the same method on the same pairs writes the same texts
    assert rows["toy"]["metrics"]["pepler"] == rows["given"]["metrics"]["pepler"]


def test_http_api_serves_the_toy(trained):
    pytest.importorskip("fastapi", reason="the serve extra is not installed (pip install 'whyrec[serve]')")
    from fastapi.testclient import TestClient

    from whyrec.serve.server import build_app

    _, _, run = trained
    with TestClient(build_app(str(run), cache="none")) as client:
        assert client.get("/info").json()["method"] == "toy"
        recs = client.get("/users/u2/recommendations", params={"k": 2, "explain": True}).json()["recommendations"]
        assert len(recs) == 2 and "is popular" in recs[0]["explanation"]
        answer = client.post("/explain", json={"user": "u2", "item": "i5"}).json()
        assert answer["explanation"].startswith("Film 5 is popular")
        assert client.post("/recommendations", json={"liked": ["i1"], "k": 2}).status_code == 409


def test_benchmark_refuses_a_train_field_before_training(trained):
    """The toy honours no --train field: the benchmark stops before it trains anything."""
    root, data, _ = trained
    out = root / "bench-refused"
    assert main(["benchmark", "explain", "--data", str(data), "--out", str(out), "--methods", "toy",
                 "--train.lr", "0.5"]) == 2
    assert not (out / "methods").exists()
