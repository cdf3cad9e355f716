"""Micro-batching in front of the LLM: requests that arrive within a few ms share one generate call.

Decoding a batch of 8 prompts costs little more than decoding one on a CPU (the matrix
products get wider, the step count stays), so under concurrent load batching multiplies
throughput. One worker runs generation in a thread, so the event loop keeps answering
cached and search requests meanwhile. The waiting queue is bounded: past `max_queue`
waiting jobs new work is refused at once (HTTP 503) instead of piling up latency.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable


class QueueFull(Exception):
    """More jobs are waiting than the queue holds; the client should retry later."""


class Batcher:
    """Collects jobs for up to `max_wait_ms` (or `max_batch` jobs) and runs `fn(payloads)` once.

    Jobs are keyed: a job whose key is already queued or running shares that job's result,
    so ten clients asking for the same explanation cost one generation.
    """

    def __init__(self, fn: Callable[[list], list], max_batch: int = 8, max_wait_ms: float = 10.0,
                 max_queue: int = 256, timeout_s: float = 120.0):
        self.fn, self.max_batch, self.max_wait = fn, max_batch, max_wait_ms / 1000
        self.max_queue, self.timeout_s = max_queue, timeout_s
        self._queue: asyncio.Queue | None = None
        self._inflight: dict[Hashable, asyncio.Future] = {}
        self._task: asyncio.Task | None = None
        self.calls = 0
        self.batch_sizes: list[int] = []

    @property
    def waiting(self) -> int:
        return self._queue.qsize() if self._queue else 0

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        self._queue = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def submit(self, jobs: dict[Hashable, object]) -> dict[Hashable, object]:
        """Run every job (key -> payload); return key -> result, or raise QueueFull / TimeoutError."""
        loop = asyncio.get_running_loop()
        new = {k: p for k, p in jobs.items() if k not in self._inflight}
        if self.waiting + len(new) > self.max_queue:  # all or nothing: no half-answered request
            raise QueueFull(f"{self.waiting} explanations are waiting (limit {self.max_queue}); retry shortly")
        for key, payload in new.items():
            self._inflight[key] = fut = loop.create_future()
            self._queue.put_nowait((key, payload, fut))
        futures = {k: self._inflight[k] for k in jobs}
        # shield: one client's timeout must not cancel a generation other clients share.
        results = await asyncio.wait_for(asyncio.gather(*(asyncio.shield(f) for f in futures.values())),
                                         self.timeout_s)
        return dict(zip(futures, results))

    async def _collect(self) -> list[tuple]:
        batch = [await self._queue.get()]
        deadline = asyncio.get_running_loop().time() + self.max_wait
        while len(batch) < self.max_batch:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), remaining))
            except asyncio.TimeoutError:
                break
        return batch

    async def _run(self) -> None:
        while True:
            batch = await self._collect()
            try:
                results = await asyncio.to_thread(self.fn, [payload for _, payload, _ in batch])
            except Exception as e:  # noqa: BLE001 - every waiter gets the error, the worker lives on
                results, error = None, e
            self.calls += 1
            self.batch_sizes.append(len(batch))
            for n, (key, _, fut) in enumerate(batch):
                self._inflight.pop(key, None)
                if fut.done():
                    continue
                if results is None:
                    fut.set_exception(error)
                elif isinstance(results[n], Exception):  # this job alone failed (e.g. a pair the method cannot explain)
                    fut.set_exception(results[n])
                else:
                    fut.set_result(results[n])
