"""Progress of long loops, on a terminal and in log files alike.

tqdm draws a live bar on a terminal but, with `disable=None`, prints nothing at all when stderr
is a file or a pipe (a job log, `nohup`, CI), so a 20-minute training run looked dead. `progress()`
returns tqdm on a terminal and otherwise a `LogProgress`, which prints one line to stderr every
`interval` seconds and a last one when the loop ends:

    lightgcn: epoch 12/50 (24%) loss 0.4120 · 0.8 epochs/s · ETA 47s

Both take the same calls (iterate, `update`, `set_postfix`, `close`, `with`). With `unit_scale`
(byte counts: a download, a file being read) the numbers get SI prefixes, as tqdm's do:

    reviews.json.gz: 12.3 MB/45.6 MB (27%) · 3.1 MB/s · ETA 11s
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable

INTERVAL_S = 30.0  # seconds between two lines in a log: often enough to see life, rare enough to read


def scaled(value: float, unit: str) -> str:
    """'512 B', '12.3 MB', '1.5 GB' (powers of 1000, as tqdm's `unit_scale`)."""
    if abs(value) < 1000:
        return f"{value:.0f} {unit}"
    for prefix in ("k", "M", "G"):
        value /= 1000
        if abs(value) < 1000:
            return f"{value:.1f} {prefix}{unit}"
    return f"{value / 1000:.1f} T{unit}"


def duration(seconds: float) -> str:
    """'45s', '2m30s', '1h05m'."""
    s = int(round(max(seconds, 0.0)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


_PLURALS = {"batch": "batches", "pass": "passes", "box": "boxes"}  # "epoch" is regular: epochs


def plural(unit: str) -> str:
    """'step' -> 'steps', 'batch' -> 'batches' (progress lines read as English)."""
    return _PLURALS.get(unit, unit + "s")


class LogProgress:
    """tqdm's interface, printing a periodic one-line record instead of redrawing a bar.

    `leave=False` (an inner loop, e.g. the batches of one epoch) prints only the periodic lines,
    not a line at the end, so a log is not flooded with one line per epoch.
    """

    def __init__(self, iterable: Iterable | None = None, total: int | None = None, desc: str = "", unit: str = "step",
                 initial: int = 0, leave: bool = True, stream=None, interval: float | None = None,
                 clock: Callable[[], float] = time.monotonic, unit_scale: bool = False):
        self.iterable, self.desc, self.unit, self.leave = iterable, desc, unit, leave
        self.unit_scale = unit_scale
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self.total, self.n, self.initial = total, initial, initial
        self.stream, self.clock = stream, clock
        self.interval = INTERVAL_S if interval is None else interval
        self.start = self.last = clock()
        self.postfix: dict[str, object] = {}
        self.printed_at = None  # the count of the last line printed
        self.closed = False

    def __iter__(self):
        try:
            for obj in self.iterable:
                yield obj
                self.update(1)
        finally:
            self.close()

    def __len__(self) -> int:
        return self.total or 0

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def set_postfix(self, ordered_dict: dict | None = None, refresh: bool = True, **kwargs) -> None:
        self.postfix = {**(ordered_dict or {}), **kwargs}

    def set_description(self, desc: str, refresh: bool = True) -> None:
        self.desc = desc

    def refresh(self) -> None:
        pass

    def update(self, n: int = 1) -> None:
        self.n += n
        now = self.clock()
        if now - self.last >= self.interval:
            self.last = now
            self._print(now, done=self.total is not None and self.n >= self.total)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.leave and self.n > self.initial and self.printed_at != self.n:
            self._print(self.clock(), done=True)

    def line(self, now: float, done: bool = False) -> str:
        """'desc: epoch 12/50 (24%) loss 0.41 · 0.8 epochs/s · ETA 47s' (or '· done in 1m02s')."""
        elapsed = now - self.start
        rate = (self.n - self.initial) / elapsed if elapsed > 0 else 0.0
        if self.unit_scale:  # '12.3 MB/45.6 MB (27%) · 3.1 MB/s'
            count = scaled(self.n, self.unit) + (f"/{scaled(self.total, self.unit)}" if self.total else "")
            speed = f" · {scaled(rate, self.unit)}/s" if rate > 0 else ""
        else:  # 'epoch 12/50 (24%) · 0.8 epochs/s'
            count = f"{self.unit} {self.n}/{self.total}" if self.total else f"{self.unit} {self.n}"
            speed = "" if rate <= 0 else f" · {rate:.1f} {plural(self.unit)}/s" if rate >= 1 else f" · {1 / rate:.1f} s/{self.unit}"
        if self.total:
            count += f" ({100 * self.n / self.total:.0f}%)"
        parts = [f"{self.desc}: " if self.desc else "", count]
        parts += [f" {k} {v}" for k, v in self.postfix.items()]
        parts.append(speed)
        if done:
            parts.append(f" · done in {duration(elapsed)}")
        elif rate > 0 and self.total:
            parts.append(f" · ETA {duration((self.total - self.n) / rate)}")
        return "".join(parts)

    def _print(self, now: float, done: bool = False) -> None:
        self.printed_at = self.n
        print(self.line(now, done), file=self.stream or sys.stderr, flush=True)


def on_terminal(stream=None) -> bool:
    """True where a live bar can be drawn: a terminal, or a Jupyter kernel (tqdm.auto draws a widget)."""
    if stream is None and "ipykernel" in sys.modules:
        return True
    stream = stream or sys.stderr
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # closed or replaced streams (pytest capture, a closed log)
        return False


def progress(iterable: Iterable | None = None, *, total: int | None = None, desc: str = "", unit: str = "step",
             initial: int = 0, leave: bool = True, enabled: bool = True, stream=None, interval: float | None = None,
             clock: Callable[[], float] = time.monotonic, unit_scale: bool = False):
    """A progress bar for a loop: tqdm on a terminal, periodic log lines elsewhere, nothing if not `enabled`
    (e.g. off on every rank but the first of a torchrun job). `unit_scale`: counts with SI prefixes
    (unit="B": kB, MB, GB), for byte counts."""
    if enabled and on_terminal(stream):
        from tqdm.auto import tqdm

        return tqdm(iterable, total=total, desc=desc, unit=unit, initial=initial, leave=leave, dynamic_ncols=True,
                    file=stream, unit_scale=unit_scale)
    if not enabled:
        from tqdm.auto import tqdm

        return tqdm(iterable, total=total, initial=initial, disable=True)
    return LogProgress(iterable, total=total, desc=desc, unit=unit, initial=initial, leave=leave, stream=stream,
                       interval=interval, clock=clock, unit_scale=unit_scale)
