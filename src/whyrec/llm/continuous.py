"""Continuous batching for KV-cached decoding: a finished row's slot is refilled by a waiting prompt.

A fixed batch decodes until its longest row ends; rows that stop early leave the batch smaller and
smaller. Here the batch is topped up inside the decode loop instead: waiting prompts are prefilled
as a group, their KV cache is appended to the live rows' cache (whichever is shorter is padded on
the left, and masked), and decoding goes on for all of them together. Cache columns that every
live row masks are cut away, so the cache stays as wide as the rows in it need.

Greedy decoding gives each row the tokens it gets alone (up to float rounding, as with any
padding); the logits processors (repetition penalty, minimum length, n-gram blocking) see each
row's own generated tokens. Sampling draws from the global RNG in batch order.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable

import torch

from whyrec.llm.gqa_attention import gqa_decoding
from whyrec.llm.kv_cache import SlotCache, adoptable, slot_cache_on
from whyrec.llm.packed_linear import packed_linears
from whyrec.llm.token_choice import choose_tokens

# prefill(rows) -> (last-position logits (k, V), cache, attention mask (k, L), next position ids (k, 1))
Prefill = Callable[[list[int]], tuple[torch.Tensor, object, torch.Tensor, torch.Tensor]]
# step(tokens (n,), mask (n, L), next positions (n, 1), cache) -> logits (n, V)
Step = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, object], torch.Tensor]


def decode_continuously(n_rows: int, prefill: Prefill, step: Step, procs, max_new_tokens: int, eos: int,
                        max_batch: int, do_sample: bool = False, refill_at: int | None = None,
                        on_row_done: Callable[[int], None] | None = None) -> list[list[int]]:
    """New token ids for rows 0..n_rows-1 (each up to and including its EOS), at most `max_batch`
    rows decoding at once. Waiting rows join when `refill_at` slots are free (default a quarter of
    the batch, at least 1) or nothing is left decoding: one prefill serves several newcomers."""
    waiting = deque(range(n_rows))
    out: list[list[int]] = [[] for _ in range(n_rows)]

    def pull(free: int) -> list[int]:
        return [waiting.popleft() for _ in range(min(free, len(waiting)))]

    def done(row: int, tokens: list[int]) -> None:
        out[row] = tokens
        if on_row_done is not None:
            on_row_done(row)

    decode_stream(pull, prefill, step, procs, max_new_tokens, eos, max_batch, do_sample, refill_at, done)
    return out


def decode_stream(pull: Callable[[int], list[Hashable]], prefill: Prefill, step: Step, procs, max_new_tokens: int,
                  eos: int, max_batch: int, do_sample: bool = False, refill_at: int | None = None,
                  on_row_done: Callable[[Hashable, list[int]], None] | None = None, on_prefill=None) -> None:
    """Decode rows as `pull(free_slots)` hands them over (up to that many row keys, [] when none
    wait); returns once nothing decodes and `pull` gives nothing. A server's `pull` reads a
    thread-safe queue, so a request arriving mid-decode joins at the next refill. Each row's new
    tokens (up to and including its EOS) go to `on_row_done(row, tokens)` as soon as it ends."""
    refill_at = refill_at or max(1, max_batch // 4)
    out: dict[Hashable, list[int]] = {}
    live: list[Hashable] = []
    cache = mask = next_pos = logits = None
    while True:
        free = max_batch - len(live)
        rows = pull(free) if free >= refill_at or not live else []
        if rows:
            new_logits, new_cache, new_mask, new_pos = prefill(rows)
            if on_prefill is not None:
                on_prefill(len(rows))
            if live:
                mask = append_rows(cache, mask, new_cache, new_mask)
                next_pos, logits = torch.cat([next_pos, new_pos]), torch.cat([logits, new_logits])
            else:
                cache, mask, next_pos, logits = new_cache, new_mask, new_pos, new_logits
                if slot_cache_on() and adoptable(cache):  # each step's K/V written in place
                    cache = SlotCache.adopt(cache, max_batch)
            out.update((r, []) for r in rows)
            live += rows
        if not live:
            return
        tokens = choose_tokens(procs, logits, [out[r] for r in live], do_sample)
        going = []
        for k, (row, t) in enumerate(zip(live, tokens.tolist())):
            out[row].append(t)
            if t != eos and len(out[row]) < max_new_tokens:
                going.append(k)
            elif on_row_done is not None:
                on_row_done(row, out.pop(row))
            else:
                out.pop(row)
        if len(going) < len(live):
            keep = torch.tensor(going, dtype=torch.long, device=tokens.device)
            live = [live[k] for k in going]
            if not live:
                continue
            tokens, next_pos = tokens[keep], next_pos[keep]
            mask = select_rows(cache, mask, keep)
        mask = torch.cat([mask, mask.new_ones(len(live), 1)], 1)
        logits = step(tokens, mask, next_pos, cache)
        next_pos = next_pos + 1


def _layers(cache) -> list:
    return list(cache.layers)


def append_rows(cache, mask: torch.Tensor, new_cache, new_mask: torch.Tensor) -> torch.Tensor:
    """Append `new_cache`'s rows to `cache` in place; returns the joint attention mask."""
    return join_rows([cache, new_cache], [mask, new_mask])


def join_rows(caches: list, masks: list[torch.Tensor]) -> torch.Tensor:
    """Append the rows of `caches[1:]` to `caches[0]` in place, each left-padded to the widest;
    returns the joint attention mask. One concatenation per tensor, however many caches (a
    `SlotCache` first: the newcomers are written into its free row slots, nothing else moves)."""
    if isinstance(caches[0], SlotCache):
        return caches[0].join(masks[0], caches[1:], masks[1:])
    width = max(m.shape[1] for m in masks)
    for layers in zip(*map(_layers, caches), strict=True):
        layers[0].keys = torch.cat([_pad_left(layer.keys, width) for layer in layers])
        layers[0].values = torch.cat([_pad_left(layer.values, width) for layer in layers])
    return torch.cat([_pad_left(m, width, dim=1) for m in masks])


def select_rows(cache, mask: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Keep the `keep` rows of `cache` (in place) and of `mask`, without the leading columns none
    of them attends to; returns their mask. One copy per tensor: `index_select` on the trimmed view
    (HF's `batch_select_indices` indexes `keys[indices]`, ~2x slower on CPU, and would copy
    the columns dropped next). A row finishes every few steps, so this is a hot path: a `SlotCache`
    moves only the rows behind the leavers and cuts columns without copying."""
    if isinstance(cache, SlotCache):
        return cache.select(mask, keep)
    mask = mask[keep]
    used = mask.any(0).nonzero()
    start = int(used[0]) if len(used) else 0
    for layer in _layers(cache):
        layer.keys = layer.keys[..., start:, :].index_select(0, keep)
        layer.values = layer.values[..., start:, :].index_select(0, keep)
    return mask[:, start:]


def _pad_left(t: torch.Tensor, width: int, dim: int = -2) -> torch.Tensor:
    missing = width - t.shape[dim]
    if missing <= 0:
        return t
    shape = list(t.shape)
    shape[dim] = missing
    return torch.cat([t.new_zeros(shape), t], dim=dim)


class SharedPrefix:
    """The prompt tokens every row starts with (a system prompt, a chat template's header),
    prefilled once: each prefill group starts from copies of this KV cache and runs only its
    rows' own suffixes, instead of re-encoding the same prefix in every row."""

    def __init__(self, llm, ids: list[int]):
        from transformers import DynamicCache

        self.ids = list(ids)
        self.cache = DynamicCache(config=llm.config)
        dev = llm.device
        llm(input_ids=torch.tensor([self.ids], device=dev), cache=self.cache, use_cache=True, logits_to_keep=1,
            position_ids=torch.arange(len(self.ids), device=dev)[None])

    def __len__(self) -> int:
        return len(self.ids)

    def starts(self, row: list[int]) -> bool:
        return row[:len(self.ids)] == self.ids

    def expanded(self, k: int):
        """A cache of k copies of the prefix (a new object: decoding appends to it in place)."""
        from copy import deepcopy

        cache = deepcopy(self.cache)
        cache.batch_repeat_interleave(k)
        return cache


def hf_prefill(llm, input_ids: torch.Tensor, attention_mask: torch.Tensor,
               prepare: Callable[[list[int], torch.Tensor], tuple[dict, object]] | None = None,
               prefix: SharedPrefix | None = None) -> Prefill:
    """A `Prefill` for a HF causal LM over left-padded `input_ids` (see `prefill_rows`)."""
    rows = [ids[m.bool()].tolist() for ids, m in zip(input_ids, attention_mask)]
    return prefill_rows(llm, lambda picked: [rows[r] for r in picked], prepare, prefix)


# Padded prompt tokens per prefill forward. The prefill's elementwise work (norms, rotary, SwiGLU)
# streams (tokens x hidden) activations: at SmolLM2's 576 and ~2k tokens they stay in the CPU
# cache, and 32 rows of ~130 tokens prefill ~1.2x faster in groups of 16 than at once (1 thread).
PREFILL_TOKENS = 2048


def prefill_rows(llm, fetch: Callable[[list], list[list[int]]],
                 prepare: Callable[[list, torch.Tensor], tuple[dict, object]] | None = None,
                 prefix: SharedPrefix | None = None, pad_id: int = 0, max_tokens: int = PREFILL_TOKENS) -> Prefill:
    """A `Prefill` for a HF causal LM; `fetch(rows)` gives each row's prompt token ids (unpadded).
    The rows are prefilled in consecutive groups of at most `max_tokens` padded tokens (one row
    at least), each left-padded to its own longest prompt, their caches then joined as a refill
    joins them (`join_rows`). `prepare(rows, ids)` returns the model inputs for a group (default
    `{"input_ids": ids}`; XRec passes inputs_embeds) and a context the forward runs in (XRec's
    q/k/v injection hooks); it sees only what is prefilled now.

    With a `prefix`, a group whose rows all start with it prefills only the suffixes, on top of
    copies of the prefix's cache: the mask is [prefix ones | suffix padding zeros | suffix ones]
    and positions count the unmasked columns, so each row sees what it would see unpadded."""
    from contextlib import nullcontext

    from transformers import DynamicCache

    def prepare_ids(rows, ids):
        return {"input_ids": ids}, nullcontext()

    prepare = prepare or prepare_ids

    def group(rows: list, seqs: list[list[int]]):
        shared = prefix is not None and all(prefix.starts(s) and len(s) > len(prefix) for s in seqs)
        if shared:
            seqs = [s[len(prefix):] for s in seqs]
        width = max(map(len, seqs))
        ids = torch.tensor([[pad_id] * (width - len(s)) + s for s in seqs])
        mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in seqs])
        if shared:
            cache = prefix.expanded(len(rows))
            mask = torch.cat([mask.new_ones(len(rows), len(prefix)), mask], 1)
        else:
            cache = DynamicCache(config=llm.config)
        pos = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)[:, -width:]
        inputs, context = prepare(rows, ids)
        with context, packed_linears(llm):
            logits = llm(**inputs, attention_mask=mask.to(llm.device), position_ids=pos.to(llm.device), cache=cache,
                         use_cache=True, logits_to_keep=1).logits[:, -1]
        return logits, cache, mask.to(logits.device), pos[:, -1:].to(logits.device) + 1

    def prefill(rows: list):
        seqs = fetch(rows)
        cut = len(prefix) if prefix is not None else 0
        parts = [group([rows[k] for k in ks], [seqs[k] for k in ks])
                 for ks in _token_groups([len(s) - cut if cut and prefix.starts(s) else len(s) for s in seqs],
                                         max_tokens)]
        if len(parts) == 1:
            return parts[0]
        logits, caches, masks, next_pos = zip(*parts)
        return torch.cat(logits), caches[0], join_rows(list(caches), list(masks)), torch.cat(next_pos)

    return prefill


def _token_groups(lengths: list[int], max_tokens: int) -> list[list[int]]:
    """Consecutive indices in groups whose padded size (rows x longest) stays within `max_tokens`."""
    groups: list[list[int]] = [[]]
    longest = 0
    for k, n in enumerate(lengths):
        if groups[-1] and (len(groups[-1]) + 1) * max(longest, n) > max_tokens:
            groups.append([])
            longest = 0
        groups[-1].append(k)
        longest = max(longest, n)
    return groups


def hf_step(llm) -> Step:
    """One decode step of a HF causal LM on the live rows' last tokens (bf16 linears on CPU run on
    prepacked weights, `whyrec.llm.packed_linear`; grouped-query attention reads the key/value
    heads in place, `whyrec.llm.gqa_attention`)."""

    def step(tokens, mask, next_pos, cache):
        with packed_linears(llm), gqa_decoding(llm):
            return llm(input_ids=tokens[:, None], attention_mask=mask, position_ids=next_pos, cache=cache,
                       use_cache=True).logits[:, -1]

    return step
