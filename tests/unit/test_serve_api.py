"""`whyrec serve`'s API through FastAPI's TestClient on the tiny model: every endpoint, every
error path, the cache across a restart, batching of concurrent requests and the bounded queue."""

import importlib.util
import threading
import time

import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed (pip install 'whyrec[serve]')")
from conftest import REPO  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402
from serve_tiny import tiny_run  # noqa: E402

from whyrec.config import GenerationConfig  # noqa: E402
from whyrec.serve.app import ServeSettings, create_app  # noqa: E402
from whyrec.serve.cache import ExplanationCache  # noqa: E402
from whyrec.serve.server import build_app  # noqa: E402

GEN = GenerationConfig(max_new_tokens=6)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return tiny_run(tmp_path_factory)


@pytest.fixture(scope="module")
def app(run, tmp_path_factory):
    return build_app(str(run), generation=GEN, cache=str(tmp_path_factory.mktemp("cache") / "c.sqlite"))


@pytest.fixture(scope="module")
def client(app):
    with TestClient(app) as c:
        yield c


@pytest.fixture(scope="module")
def ids(client):
    user = client.get("/users", params={"q": "1", "limit": 1}).json()["users"][0]["user"]
    item = client.get(f"/users/{user}/recommendations", params={"k": 1}).json()["recommendations"][0]["item"]
    return user, item


def test_health_ready_info_and_schema(client, app):
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/ready").json()
    assert ready["ready"] is True and ready["revision"] == app.state.model.revision
    info = client.get("/info").json()
    assert info["method"] == "xrec" and info["backbone"] == "tiny-random-llama"
    assert info["n_users"] == 60 and info["training"]["max_steps"] == 6 and info["generation"]["max_new_tokens"] == 6
    assert info["dataset"].startswith("ml-100k (") and "LightGCN" in info["recommends"]  # was null for MovieLens
    docs = client.get("/docs")
    assert docs.status_code == 200 and "/openapi.json" in docs.text and "http" not in docs.text  # offline
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/users/{user_id}/recommendations", "/explain", "/recommendations", "/items", "/users", "/info"} <= set(paths)
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"] and "Why this item?" in page.text


def test_search_and_history(client, ids, app):
    user, item = ids
    found = client.get("/users", params={"q": user}).json()["users"]
    assert found[0]["user"] == user and found[0]["n_history"] > 0  # the exact id ranks first
    detail = client.get(f"/users/{user}").json()
    assert len(detail["history"]) == found[0]["n_history"] and detail["profile"]
    title = app.state.model.catalog.title(item)
    hits = client.get("/items", params={"q": title[:6].lower()}).json()["items"]
    assert item in {h["item"] for h in hits} and all(title[:6].lower() in h["title"].lower() for h in hits)
    assert client.get("/items", params={"q": item}).json()["items"][0]["item"] == item  # id search
    assert client.get(f"/items/{item}").json()["title"] == title


def test_recommendations_exclude_history_and_explain(client, ids):
    user, _ = ids
    recs = client.get(f"/users/{user}/recommendations", params={"k": 4}).json()["recommendations"]
    history = {h["item"] for h in client.get(f"/users/{user}").json()["history"]}
    assert len(recs) == 4 and not history & {r["item"] for r in recs} and "explanation" not in recs[0]
    assert [r["score"] for r in recs] == sorted((r["score"] for r in recs), reverse=True)
    explained = client.get(f"/users/{user}/recommendations", params={"k": 2, "explain": "true"}).json()
    assert [r["item"] for r in explained["recommendations"]] == [r["item"] for r in recs[:2]]
    assert all(isinstance(r["explanation"], str) and r["explanation"] for r in explained["recommendations"])
    again = client.post("/explain", json={"user": user, "item": recs[0]["item"]}).json()
    assert again["cached"] is True and again["explanation"] == explained["recommendations"][0]["explanation"]


def test_cold_start_from_liked_items(client, ids, app):
    user, _ = ids
    liked = [h["item"] for h in client.get(f"/users/{user}").json()["history"][:3]]
    body = client.post("/recommendations", json={"liked": liked, "k": 3, "explain": True}).json()
    recs = body["recommendations"]
    assert len(recs) == 3 and not set(liked) & {r["item"] for r in recs} and all(r["explanation"] for r in recs)
    model = app.state.model  # the ranking is the mean liked-item embedding against every item
    scores = model.enc.item_emb @ model.enc.item_emb[[model.enc.item2idx[i] for i in liked]].mean(0)
    assert recs[0]["score"] == pytest.approx(float(scores[model.enc.item2idx[recs[0]["item"]]]), abs=1e-4)
    one = client.post("/explain", json={"liked": liked, "item": recs[0]["item"]}).json()
    assert one["cached"] is True and one["explanation"] == recs[0]["explanation"]


def _corpus():
    spec = importlib.util.spec_from_file_location("serve_bad_input", REPO / "benchmarks" / "serve_bad_input.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bad_input_corpus_all_4xx_with_a_message(client, ids):
    rows = _corpus().run_corpus(client, *ids)
    assert len(rows) >= 30
    assert [r for r in rows if not r["ok"]] == []
    by_name = {r["name"]: r for r in rows}
    assert by_name["unknown user"]["status"] == 404 and "no-such-user" in by_name["unknown user"]["detail"]
    assert by_name["1 MB string"]["status"] == 413 and by_name["k negative"]["status"] == 422
    assert "k" in by_name["k negative"]["detail"]
    assert client.get("/health").status_code == 200 and client.get("/ready").status_code == 200


def _slow_model(app, started: threading.Event, release: threading.Event):
    """Make the model's explain block until `release`, recording every call's batch."""
    calls, real = [], app.state.model.explain

    def explain(pairs):
        calls.append([(p.user, p.item) for p in pairs])
        started.set()
        assert release.wait(30)
        return real(pairs)

    app.state.model.explain = explain
    return calls


def _fresh(app, **settings):
    return create_app(app.state.model, ExplanationCache(None), ServeSettings(**settings))


def _items(client, user, k):
    return [r["item"] for r in client.get(f"/users/{user}/recommendations", params={"k": k}).json()["recommendations"]]


def test_concurrent_requests_merge_into_one_generate_call(app, ids):
    batched = _fresh(app, max_batch=8, max_wait_ms=1500)
    started, release = threading.Event(), threading.Event()
    release.set()
    calls = _slow_model(batched, started, release)
    try:
        with TestClient(batched) as c:
            user, items = ids[0], _items(c, ids[0], 6)
            items.append(items[0])  # the same pair twice in flight: generated once, answered twice
            gate, results = threading.Barrier(len(items)), {}

            def ask(n, item):
                gate.wait()
                results[n] = c.post("/explain", json={"user": user, "item": item})

            threads = [threading.Thread(target=ask, args=(n, it)) for n, it in enumerate(items)]
            [t.start() for t in threads]
            [t.join(60) for t in threads]
            assert all(r.status_code == 200 for r in results.values())
            assert len(calls) == 1 and sorted(i for _, i in calls[0]) == sorted(set(items))
            assert results[0].json()["explanation"] == results[len(items) - 1].json()["explanation"]
            assert c.get("/ready").json()["generate_calls"] == 1
    finally:
        del app.state.model.explain  # back to the class method


def test_full_queue_answers_503_and_timeout_504(app, ids):
    full = _fresh(app, max_batch=1, max_wait_ms=0, max_queue=2, timeout_s=20)
    started, release = threading.Event(), threading.Event()
    calls = _slow_model(full, started, release)
    try:
        with TestClient(full) as c:
            user, items = ids[0], _items(c, ids[0], 4)
            results = {}

            def ask(item):
                results[item] = c.post("/explain", json={"user": user, "item": item})

            first = threading.Thread(target=ask, args=(items[0],))
            first.start()
            assert started.wait(20)  # the worker holds job 1; jobs 2 and 3 fill the queue
            waiting = [threading.Thread(target=ask, args=(i,)) for i in items[1:3]]
            [t.start() for t in waiting]
            deadline = time.time() + 20
            while full.state.batcher.waiting < 2 and time.time() < deadline:
                time.sleep(0.02)
            refused = c.post("/explain", json={"user": user, "item": items[3]})
            assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
            assert "limit 2" in refused.json()["detail"]
            assert c.get("/health").status_code == 200  # cheap endpoints still answer
            release.set()
            [t.join(60) for t in [first, *waiting]]
            assert [results[i].status_code for i in items[:3]] == [200, 200, 200] and len(calls) == 3
    finally:
        release.set()
        del app.state.model.explain
    slow = _fresh(app, timeout_s=0.3)
    started, release = threading.Event(), threading.Event()
    _slow_model(slow, started, release)
    try:
        with TestClient(slow) as c:
            late = c.post("/explain", json={"user": ids[0], "item": ids[1]})
            assert late.status_code == 504 and "timeout" in late.json()["detail"]
            release.set()
    finally:
        release.set()
        del app.state.model.explain


def test_cache_survives_a_restart(run, tmp_path, ids):
    path = tmp_path / "explanations.sqlite"
    first = build_app(str(run), generation=GEN, cache=str(path))
    with TestClient(first) as c:
        made = c.post("/explain", json={"user": ids[0], "item": ids[1]}).json()
        assert made["cached"] is False
    first.state.cache.close()
    second = build_app(str(run), generation=GEN, cache=str(path))  # a new model load, the same file
    assert second.state.model.revision == first.state.model.revision
    with TestClient(second) as c:
        again = c.post("/explain", json={"user": ids[0], "item": ids[1]}).json()
    assert again["cached"] is True and again["explanation"] == made["explanation"]
    assert second.state.model.generate_calls == 0 and second.state.cache.count() == 1
    other = build_app(str(run), generation=GenerationConfig(max_new_tokens=7), cache=str(path))
    assert other.state.model.revision != first.state.model.revision  # other decoding: never stale text
