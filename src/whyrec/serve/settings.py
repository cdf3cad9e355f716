"""Limits of the server, in a module free of fastapi so the CLI can build them before the import check."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ServeSettings:
    max_batch: int = 8
    """Explanations generated in one forward pass at most."""
    max_wait_ms: float = 10.0
    """How long the batcher waits for more requests after the first one arrives."""
    max_queue: int = 256
    """Waiting explanations at most; beyond it requests get 503 at once."""
    timeout_s: float = 120.0
    """Per-request limit on waiting for an explanation (504 after it; generation goes on and is cached)."""
    max_body_bytes: int = 65536
    """Larger request bodies get 413 before parsing."""
