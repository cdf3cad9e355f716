"""Continuous batching in front of a model whose decoder takes new rows while it runs.

`Batcher` merges the requests that arrive within a few ms and decodes them as one call: a request
that arrives a moment later waits for that whole call, and rows that finish early leave their
slots empty. Here one decoding session runs in a worker thread and pulls waiting requests from a
thread-safe queue whenever slots are free (`whyrec.llm.continuous.decode_stream`), and each
explanation is answered the moment its row ends. The contracts are `Batcher`'s: keyed jobs
share one generation, the waiting queue is bounded (QueueFull -> 503), each request has a
timeout, and a job's own exception goes to its request alone.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable, Hashable

from whyrec.serve.batcher import QueueFull

# stream(pull, deliver, on_prefill): pull(n) -> up to n [(key, payload)]; deliver(key, result or exception)
Stream = Callable[[Callable[[int], list], Callable[[Hashable, object], None], Callable[[int], None]], None]


class ContinuousBatcher:
    """`Batcher`'s interface over a `stream` that decodes as long as work keeps arriving.

    `calls` counts decoding sessions (a session ends when nothing decodes and nothing waits);
    `batch_sizes` records how many requests each prefill took in."""

    def __init__(self, stream: Stream, max_queue: int = 256, timeout_s: float = 120.0):
        self.stream, self.max_queue, self.timeout_s = stream, max_queue, timeout_s
        self._pending: deque = deque()
        self._lock = threading.Lock()
        self._inflight: dict[Hashable, asyncio.Future] = {}
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.calls = 0
        self.batch_sizes: list[int] = []

    @property
    def waiting(self) -> int:
        return len(self._pending)

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._task = self._loop.create_task(self._run())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def submit(self, jobs: dict[Hashable, object]) -> dict[Hashable, object]:
        """Run every job (key -> payload); return key -> result, or raise QueueFull / TimeoutError."""
        new = {k: p for k, p in jobs.items() if k not in self._inflight}
        if self.waiting + len(new) > self.max_queue:  # all or nothing: no half-answered request
            raise QueueFull(f"{self.waiting} explanations are waiting (limit {self.max_queue}); retry shortly")
        for key in new:
            self._inflight[key] = self._loop.create_future()
        with self._lock:
            self._pending.extend(new.items())
        self._wake.set()
        futures = {k: self._inflight[k] for k in jobs}
        # shield: one client's timeout must not cancel a generation other clients share.
        results = await asyncio.wait_for(asyncio.gather(*(asyncio.shield(f) for f in futures.values())),
                                         self.timeout_s)
        return dict(zip(futures, results))

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()  # a job submitted during the session sets it again: the loop goes round
            while self._pending:
                await asyncio.to_thread(self._session)

    def _session(self) -> None:
        taken: set[Hashable] = set()  # handed to the decoder, not answered yet

        def pull(n: int) -> list:
            with self._lock:
                rows = [self._pending.popleft() for _ in range(min(n, len(self._pending)))]
            taken.update(key for key, _ in rows)
            return rows

        def deliver(key: Hashable, result: object) -> None:
            taken.discard(key)
            self._loop.call_soon_threadsafe(self._settle, key, result)

        error: Exception | None = None
        try:
            self.stream(pull, deliver, self.batch_sizes.append)
        except Exception as e:  # noqa: BLE001 - every unanswered job gets the error, the worker lives on
            error = e
        for key in list(taken):
            deliver(key, error or RuntimeError("the decoder ended without answering this request"))
        self.calls += 1

    def _settle(self, key: Hashable, result: object) -> None:
        fut = self._inflight.pop(key, None)
        if fut is None or fut.done():
            return
        if isinstance(result, Exception):
            fut.set_exception(result)
        else:
            fut.set_result(result)
