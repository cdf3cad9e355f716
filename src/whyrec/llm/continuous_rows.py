"""Continuous batching (`whyrec.llm.continuous`) over prompts given as token rows, offline and served.

RecExplainer and RecAlpaca decode plain token prompts (RecExplainer adds its connector outputs at
the placeholder positions through `prepare`); XRec and GaVaMoE keep loops of their own because
each row carries injected vectors or a cluster gate through every decode step. Both paths here
decode as HF `generate` would for one row alone (greedy: the same tokens up to float rounding),
with at most `gen.batch_size` rows at once and freed slots refilled by waiting rows.

The shared prefix is the token run every prompt starts with (a chat template's header and system
prompt, a fixed instruction). It must stop before any position whose input depends on the row
(`stop` tokens: placeholders whose embedding is replaced), since `SharedPrefix` prefills it from
plain token embeddings once and copies its KV cache into every prefill group.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any

import torch

from whyrec.config import GenerationConfig

# prepare(rows, ids) -> (model inputs, context), as `whyrec.llm.continuous.prefill_rows` takes it
Prepare = Callable[[list, torch.Tensor], tuple[dict, object]]


def continuous(gen: GenerationConfig) -> bool:
    """Whether `gen` decodes through the continuous loop: beam search (and drop_finished off, the
    switch back to HF's fixed batches) stays with HF `generate`."""
    return gen.drop_finished and gen.num_beams == 1


BATCHES_PER_CALL = 8  # batches of rows worth one continuous call: freed slots refill from all of them


def rows_per_call(gen: GenerationConfig) -> int:
    """How many rows a caller that splits work into calls (a cached chunk, a served batch) should hand
    one decoding call: several batches when the loop refills freed slots, else one batch."""
    return gen.batch_size * (BATCHES_PER_CALL if continuous(gen) else 1)


def pull_rows(pull: Callable[[int], list], free: int, admit: Callable[[Any], Any]) -> list:
    """Up to `free` rows for a decoding loop's free slots: `pull(n)` gives at most n waiting requests,
    `admit(request)` makes one a row, or returns None when it takes no slot (refused and answered
    with its error, or served otherwise). Pulls again while slots stay free, since handing the loop
    no rows while requests still wait would end the decoding session."""
    out: list = []
    while len(out) < free:
        pulled = pull(free - len(out))
        if not pulled:
            break
        out += [row for row in map(admit, pulled) if row is not None]
    return out


def refusing(build: Callable[[Hashable, Any], Any], deliver: Callable[[Hashable, object], None]) -> Callable:
    """An `admit` for `pull_rows` over `(key, request)` pairs: the row `build(key, request)` makes, or
    None after answering that request alone with the error `build` raised (e.g. an unknown id)."""
    def admit(pulled: tuple) -> Any:
        key, request = pulled
        try:
            return build(key, request)
        except Exception as e:  # noqa: BLE001 - this request alone fails
            deliver(key, e)
            return None
    return admit


def common_prefix(rows: Sequence[Sequence[int]], stop: Sequence[int] = ()) -> list[int] | None:
    """The token ids every row starts with, cut before the first `stop` id and kept shorter than
    the shortest row (a prefill group needs one token of each row's own); None when empty."""
    if not rows:
        return None
    first, n = rows[0], min(map(len, rows)) - 1
    for row in rows[1:]:
        n = next((k for k in range(n) if row[k] != first[k]), n)
    blocked = set(stop)
    n = next((k for k in range(n) if first[k] in blocked), n)
    return list(first[:n]) or None


def probed_prefix(render: Callable[[str], list[int]], stop: Sequence[int] = ()) -> list[int] | None:
    """The prefix of a template whose rows are not known yet (a server's): the common start of the
    template rendered with two different texts, less its last token, which a tokenizer may merge
    with the text that follows it. A row that does not start with it is prefilled whole, so a
    shorter guess only costs time."""
    ids = common_prefix([render("A"), render("B")], stop) or []
    return ids[:-1] or None


def shared_prefix(llm, ids: list[int] | None):
    from whyrec.llm.continuous import SharedPrefix

    return SharedPrefix(llm, ids) if ids else None


@torch.no_grad()
def decode_rows(llm, rows: list[list[int]], gen: GenerationConfig, eos: int, pad_id: int = 0,
                prepare: Prepare | None = None, stop: Sequence[int] = (),
                on_row_done: Callable[[int], None] | None = None) -> list[list[int]]:
    """New token ids for every prompt row (each up to and including its EOS); `prepare` sees row
    indices into `rows`. The rows' common prefix (up to a `stop` token) is prefilled once."""
    from whyrec.llm.continuous import decode_continuously, hf_step, prefill_rows
    from whyrec.llm.generate import logits_processors

    prefix = shared_prefix(llm, common_prefix(rows, stop))
    prefill = prefill_rows(llm, lambda picked: [rows[r] for r in picked], prepare, prefix, pad_id)
    return decode_continuously(len(rows), prefill, hf_step(llm), logits_processors(gen, eos), gen.max_new_tokens, eos,
                               gen.batch_size, do_sample=gen.do_sample, on_row_done=on_row_done)


def stream_rows(llm, pull: Callable[[int], list[tuple[Hashable, list[int]]]],
                deliver: Callable[[Hashable, list[int]], None], gen: GenerationConfig, eos: int, pad_id: int = 0,
                prepare: Prepare | None = None, prefix: list[int] | None = None,
                on_prefill: Callable[[int], None] | None = None) -> None:
    """Decode (key, prompt ids) rows as `pull(free_slots)` hands them over, until it gives none and
    nothing decodes; `deliver(key, new ids)` as each row ends. `prepare` sees row keys. `pull` must
    not answer [] while rows still wait (that ends the session): a caller that refuses some rows
    pulls again. Keys must be unique among the rows in flight."""
    from whyrec.llm.continuous import decode_stream, hf_step, prefill_rows
    from whyrec.llm.generate import logits_processors

    rows: dict[Hashable, list[int]] = {}

    def take(free: int) -> list[Hashable]:
        got = pull(free)
        rows.update(got)
        return [key for key, _ in got]

    def done(key: Hashable, ids: list[int]) -> None:
        rows.pop(key, None)
        deliver(key, ids)

    with torch.no_grad():
        prefill = prefill_rows(llm, lambda keys: [rows[k] for k in keys], prepare, shared_prefix(llm, prefix), pad_id)
        decode_stream(take, prefill, hf_step(llm), logits_processors(gen, eos), gen.max_new_tokens, eos,
                      gen.batch_size, do_sample=gen.do_sample, on_row_done=done, on_prefill=on_prefill)
