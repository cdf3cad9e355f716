"""Limits of the server, in a module free of fastapi so the CLI can build them before the import check."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

from whyrec.utils import WhyrecError


@dataclass
class ServeSettings:
    max_batch: int = 8
    """Explanations generated in one forward pass at most: the server's decoding batch. One setting
    with `--generation.batch_size` (`one_batch`): give either; both given must agree."""
    max_wait_ms: float = 10.0
    """How long the batcher waits for more requests after the first one arrives."""
    max_queue: int = 256
    """Waiting explanations at most; beyond it requests get 503 at once."""
    timeout_s: float = 120.0
    """Per-request limit on waiting for an explanation (504 after it; generation goes on and is cached)."""
    max_body_bytes: int = 65536
    """Larger request bodies get 413 before parsing."""
    read_timeout_s: float = 10.0
    """Time a client has to send a request's headers, and again its body; slower ones get 408 and are closed."""
    max_connections: int = 512
    """Open connections at most (below the usual 1024 file limit); more get 503 and are closed at once."""
    keep_alive_s: float = 5.0
    """How long an idle connection stays open between requests."""
    continuous: bool | None = None
    """Continuous batching for models whose decoder can take requests mid-decode (XRec, GaVaMoE,
    RecExplainer, RecAlpaca): a request joins the running batch at the next free slot and is
    answered when its own row ends. None: on under `whyrec serve` (`server.build_app`), off for
    `app.create_app` on its own; False: the micro-batcher (`max_wait_ms`) for every model."""

    def __post_init__(self) -> None:
        # Every limit is a count or a duration: zero, negative, NaN or a bool would disable it silently.
        # max_wait_ms alone may be 0 (no waiting for more requests is a valid batching choice).
        for field in fields(self):
            name, value = field.name, getattr(self, field.name)
            if name == "continuous":
                if value not in (None, True, False):
                    raise WhyrecError(f"continuous must be true, false or unset, got {value!r}")
                continue
            integral = field.type in ("int", int)
            ok_type = not isinstance(value, bool) and isinstance(value, int if integral else int | float)
            low = 0 if name == "max_wait_ms" else math.ulp(0)
            if not ok_type or not (math.isfinite(value) and value >= low):
                unit = "milliseconds" if name.endswith("_ms") else "seconds"
                sign = "non-negative" if name == "max_wait_ms" else "positive"
                kind = f"a {sign} integer" if integral else f"a {sign} number of {unit}"
                raise WhyrecError(f"--{name} must be {kind}, got {value!r}")


def check_port(port: object) -> int:
    """`port` as a TCP port (0: any free one), or a one-line error (socket.bind raises OverflowError for -1)."""
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise WhyrecError(f"--port must be a TCP port from 1 to 65535 (or 0 for any free port), got {port!r}")
    return port


def one_batch(settings: ServeSettings, generation) -> ServeSettings:
    """`settings` whose max_batch is the server's one decoding batch: `--generation.batch_size` when
    only it is given, `--max_batch` otherwise; both given with different values is a one-line error.

    `--generation.batch_size` counts as given when the command line gave it (at any value) or it is
    away from its default; `--max_batch` (a plain option) only when away from its default of 8."""
    from whyrec.config import GenerationConfig, given_fields

    asked = None if generation is None else generation.batch_size
    given = asked is not None and ("batch_size" in given_fields(generation) or asked != GenerationConfig().batch_size)
    if not given or asked == settings.max_batch:
        return settings
    if settings.max_batch != ServeSettings().max_batch:
        raise WhyrecError(f"--max_batch {settings.max_batch} and --generation.batch_size {asked} disagree: both set "
                          "the server's decoding batch; give only one of them")
    return replace(settings, max_batch=asked)
