"""Sampling whose draws do not depend on the batch: each row draws from its own seeded generator.

Grounding-aware decoding (`whyrec.runs.Run`, `--generation.candidates N`) samples N-1 candidates
per pair and must give a pair the same candidates whether it is decoded alone, in a batch of 16 or
in a continuously refilled batch. Drawing from torch's global RNG cannot: a row's draws depend on
how many rows were drawn before it. Inside `seeded_rows(stream)`, every decoder that goes through
`whyrec.llm.generate` (HF `generate` and XRec's continuous loop alike) samples with a `RowSampler`
instead: for each row it applies temperature and top-p, then draws the next token with a
generator seeded from (stream, the tokens the row has generated so far), and forces that token
(every other score -inf), so the decoder's own draw or argmax can only pick it.

A row's draw is then a function of its own scores and history only: batch-independent up to
the float rounding any batching has (a draw flips only when rounding moves a probability across
its uniform number). Rows sharing a history in one stream share their uniform numbers; their
tokens differ where their distributions do, and each row's draw is still an exact sample of its
own distribution. Distinct candidates of one pair come from distinct streams.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import torch

_STREAM: ContextVar[int | None] = ContextVar("whyrec_row_sampling_stream", default=None)


@contextmanager
def seeded_rows(stream: int) -> Iterator[None]:
    """Decoding inside the block samples each row from its own generator (module docstring);
    `stream` separates the draws of different candidates of the same pairs."""
    token = _STREAM.set(int(stream))
    try:
        yield
    finally:
        _STREAM.reset(token)


def active_sampler(temperature: float, top_p: float, skip: int = 0) -> RowSampler | None:
    """The sampler for a sampled decoding call made inside `seeded_rows`, else None (the decoder
    samples its usual way). `skip`: leading columns of the token history that are the prompt
    (HF `generate` with input_ids passes prompt + generated tokens; with inputs_embeds only these)."""
    stream = _STREAM.get()
    return None if stream is None else RowSampler(stream, temperature, top_p, skip)


class RowSampler:
    """A logits processor (HF's call signature) that draws each row's token from its own generator."""

    def __init__(self, stream: int, temperature: float, top_p: float, skip: int = 0):
        from transformers.generation.logits_process import TemperatureLogitsWarper, TopPLogitsWarper

        self.stream, self.skip = stream, skip
        self._warp = [TemperatureLogitsWarper(temperature), TopPLogitsWarper(top_p)]

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        warped = scores.float()
        for warp in self._warp:
            warped = warp(input_ids, warped)
        # Cumulative sums on the CPU in float64: the uniform number is compared against the same
        # boundaries whatever device or batch produced the scores.
        cdf = warped.softmax(-1).double().cpu().cumsum(-1)
        history = input_ids[:, self.skip:].cpu()
        picked = [_draw(cdf[r], row_seed(self.stream, history[r].tolist())) for r in range(len(cdf))]
        forced = torch.full_like(scores, float("-inf"))
        forced[torch.arange(len(picked)), torch.tensor(picked, device=scores.device)] = 0.0
        return forced


def row_seed(stream: int, history: list[int]) -> int:
    """The seed of a row's next draw: its stream and the tokens it has generated, nothing else."""
    data = ",".join(map(str, [stream, *history])).encode()
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


def _draw(cdf: torch.Tensor, seed: int) -> int:
    u = torch.rand((), generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * cdf[-1]
    return min(int(torch.searchsorted(cdf, u, right=True)), len(cdf) - 1)
