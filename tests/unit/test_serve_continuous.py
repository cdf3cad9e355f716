"""The server's continuous batcher: Batcher's contracts, and requests joining a running decode."""

import asyncio
import threading
import time

import pytest

from whyrec.serve.batcher import QueueFull
from whyrec.serve.continuous import ContinuousBatcher


class FakeDecoder:
    """A stream whose rows take `payload` steps of 20 ms; it pulls at every step like the real loop."""

    def __init__(self, slots: int = 4):
        self.slots, self.pulled, self.started = slots, [], threading.Event()

    def __call__(self, pull, deliver, on_prefill):
        live = {}
        while True:
            for key, steps in pull(self.slots - len(live)):
                self.pulled.append(key)
                if steps == "boom":
                    deliver(key, ValueError(f"cannot explain {key}"))
                elif steps == "crash":
                    raise RuntimeError("the decoder died")
                else:
                    live[key] = steps
            if not live:
                return
            self.started.set()
            time.sleep(0.02)
            for key in list(live):
                live[key] -= 1
                if live[key] == 0:
                    del live[key]
                    deliver(key, f"text {key}")


def _run(coro):
    return asyncio.run(coro)


def test_a_request_arriving_mid_decode_joins_and_is_answered_first():
    fake = FakeDecoder()

    async def main():
        b = ContinuousBatcher(fake, max_queue=8, timeout_s=10)
        b.start()
        slow = asyncio.ensure_future(b.submit({"slow": 25}))
        await asyncio.to_thread(fake.started.wait, 5)
        t0 = time.perf_counter()
        quick = await b.submit({"quick": 1})
        quick_s = time.perf_counter() - t0
        assert not slow.done()  # answered while the long row still decodes
        shared = await b.submit({"slow": 25})  # in flight: shares that row, not decoded again
        assert await slow == shared == {"slow": "text slow"} and quick == {"quick": "text quick"}
        await b.stop()
        return b, quick_s

    b, quick_s = _run(main())
    assert fake.pulled == ["slow", "quick"] and b.calls == 1  # one session: the newcomer joined it
    assert quick_s < 0.4  # a few decode steps, not the 25 of the row before it


def test_a_jobs_own_error_fails_it_alone_and_a_crash_fails_the_rest_then_the_worker_goes_on():
    fake = FakeDecoder()

    async def main():
        b = ContinuousBatcher(fake, max_queue=8, timeout_s=10)
        b.start()
        good, bad = await asyncio.gather(b.submit({"a": 2}), b.submit({"b": "boom"}), return_exceptions=True)
        assert good == {"a": "text a"} and isinstance(bad, ValueError) and "cannot explain b" in str(bad)
        crashed = await asyncio.gather(b.submit({"c": 3}), b.submit({"d": "crash"}), return_exceptions=True)
        assert all(isinstance(e, RuntimeError) for e in crashed)  # "c" was taken when the decoder died
        assert await b.submit({"e": 1}) == {"e": "text e"}  # the worker lives on
        await b.stop()

    _run(main())


def test_full_queue_refuses_at_once_and_a_slow_answer_times_out():
    release, holding = threading.Event(), threading.Event()

    def blocked(pull, deliver, on_prefill):
        rows = pull(1)
        holding.set()
        assert release.wait(10)
        for key, _ in rows:
            deliver(key, "late")

    async def main():
        b = ContinuousBatcher(blocked, max_queue=2, timeout_s=0.3)
        b.start()
        first = asyncio.ensure_future(b.submit({"a": 1}))
        assert await asyncio.to_thread(holding.wait, 5)  # the worker holds "a"
        waiting = [asyncio.ensure_future(b.submit({k: 1})) for k in "bc"]
        await asyncio.sleep(0.05)
        assert b.waiting == 2
        with pytest.raises(QueueFull, match="limit 2"):
            await b.submit({"d": 1})
        try:
            with pytest.raises(asyncio.TimeoutError):
                await first
        finally:
            release.set()
        await asyncio.gather(*waiting, return_exceptions=True)
        await b.stop()

    _run(main())


def test_served_xrec_streams_the_texts_of_the_micro_batcher(tmp_path_factory):
    pytest.importorskip("fastapi", reason="the serve extra is not installed (pip install 'whyrec[serve]')")
    from fastapi.testclient import TestClient
    from serve_tiny import tiny_run

    from whyrec.config import GenerationConfig
    from whyrec.serve.app import ServeSettings, create_app
    from whyrec.serve.batcher import Batcher
    from whyrec.serve.cache import ExplanationCache
    from whyrec.serve.server import build_app

    streamed = build_app(str(tiny_run(tmp_path_factory)), generation=GenerationConfig(max_new_tokens=6, batch_size=2),
                         cache="none")
    assert isinstance(streamed.state.batcher, ContinuousBatcher)  # `whyrec serve`'s default for XRec
    model = streamed.state.model
    batched = create_app(model, ExplanationCache(None), ServeSettings(max_batch=2))
    assert isinstance(batched.state.batcher, Batcher)
    with TestClient(streamed) as s, TestClient(batched) as b:
        user = s.get("/users", params={"limit": 1}).json()["users"][0]["user"]
        items = [r["item"] for r in s.get(f"/users/{user}/recommendations", params={"k": 5}).json()["recommendations"]]
        bodies = [{"user": user, "item": i} for i in items] + [{"liked": items[:2], "item": items[3]}]
        got = {}

        def ask(n):
            got[n] = s.post("/explain", json=bodies[n])

        threads = [threading.Thread(target=ask, args=(n,)) for n in range(len(bodies))]
        [t.start() for t in threads]
        [t.join(60) for t in threads]
        assert all(got[n].status_code == 200 for n in range(len(bodies)))
        ref = [b.post("/explain", json=body).json()["explanation"] for body in bodies]
        assert [got[n].json()["explanation"] for n in range(len(bodies))] == ref
        ready = s.get("/ready").json()
        assert ready["generate_calls"] >= 1 and ready["mean_batch"] <= 2  # prefills take at most the free slots
        unsupported = model.gen.__class__(num_beams=2)
        model.gen, saved = unsupported, model.gen
        try:
            assert model.explain_stream is None  # beam search: the server keeps the micro-batcher
        finally:
            model.gen = saved


@pytest.mark.parametrize("flag, expected", [([], True), (["--continuous", "false"], False)])
def test_whyrec_serve_turns_continuous_batching_on_unless_told_otherwise(monkeypatch, tmp_path, flag, expected):
    import whyrec.serve.server as server
    from whyrec.cli import main

    seen = {}
    monkeypatch.setattr(server, "run_server", lambda run, host, port, **kw: seen.update(kw))
    assert main(["serve", "--run", str(tmp_path), *flag]) in (0, None)
    assert seen["settings"].continuous is expected
