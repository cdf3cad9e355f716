"""On/off switches for the decoder's speed-ups (prepacked linears, the in-place KV cache,
grouped-query attention): each is on by default and can be switched off inside a `with` block, for
benchmarks that compare with and without it and for ruling one out when a kernel misbehaves. A
context variable rather than a global flag, so a switch set in one thread or task leaves the
others alone."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar


class Switch:
    """A named setting, on unless a `scope(False)` block is active in the current context."""

    def __init__(self, name: str):
        self._var: ContextVar[bool] = ContextVar(name, default=True)

    def on(self) -> bool:
        return self._var.get()

    @contextmanager
    def scope(self, enabled: bool) -> Iterator[None]:
        token = self._var.set(enabled)
        try:
            yield
        finally:
            self._var.reset(token)
