"""A KV cache for continuous batching that writes each decode step's keys and values in place.

HF's `DynamicCache` appends a step's new column by concatenation: every layer's whole keys and
values are copied on every step (at SmolLM2-135M, batch 32, ~200 columns: ~0.4 ms of a ~3 ms layer
step in bf16 on one core). `SlotCache` keeps all layers in one preallocated buffer
(layers, 2, row slots, kv heads, columns, head dim) with spare columns on the right: a step writes
its column in place and attention reads a view of the used columns [start, end), whose strided
layout SDPA reads directly (no copy; ~7% slower attention than on a contiguous tensor, far less
than the copy it replaces). The continuous decoder's other two edits stay cheap too:
- rows leaving (`select`): the rows behind each leaver move up one slot each, in order, and the
  leading columns no kept row attends to are cut by moving `start` (no copy);
- rows joining (`join`): the newcomers' prefill caches are written into free row slots,
  left-padded with zeros to the live width (or the live rows padded to theirs), nothing else moves.
Only when the columns run out is the buffer reallocated (`GROW` spare columns: one full copy per
64 steps instead of one per step).
"""

from __future__ import annotations

from contextlib import AbstractContextManager

import torch
from transformers.cache_utils import Cache, CacheLayerMixin, DynamicLayer

from whyrec.llm.switches import Switch

# Spare columns added when the buffer is full: the cache is copied once per GROW decode steps.
GROW = 64
_SWITCH = Switch("whyrec_slot_cache")


def slot_caching(enabled: bool) -> AbstractContextManager[None]:
    """Switch the continuous decoder's `SlotCache` on or off inside the block (on by default; off:
    HF's `DynamicCache`, concatenated every step); for benchmarks and for ruling it out."""
    return _SWITCH.scope(enabled)


def slot_cache_on() -> bool:
    return _SWITCH.on()


def adoptable(cache) -> bool:
    """Whether `SlotCache.adopt` keeps `cache`'s meaning: plain full-attention layers only (a
    sliding-window or linear-attention layer keeps its own cache and rules)."""
    layers = getattr(cache, "layers", None)
    return bool(layers) and all(type(layer) is DynamicLayer for layer in layers)


class SlotLayer(CacheLayerMixin):
    """One layer's view of a `SlotCache` (the interface HF attention calls: `update`, sizes)."""

    is_sliding = False

    def __init__(self, cache: SlotCache, idx: int):  # no super().__init__: keys/values are views
        self.cache, self.idx, self.is_initialized = cache, idx, True

    @property
    def keys(self) -> torch.Tensor:
        return self.cache.view(self.idx, 0)

    @property
    def values(self) -> torch.Tensor:
        return self.cache.view(self.idx, 1)

    def lazy_initialization(self, key_states, value_states) -> None:  # the buffer exists from the start
        pass

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        return self.cache.write(self.idx, key_states, value_states)

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.get_seq_length() + query_length, 0

    def get_seq_length(self) -> int:
        return self.cache.end - self.cache.start

    def get_max_length(self) -> int:
        return -1


class SlotCache(Cache):
    """Rows 0..n-1 of `buf[:, :, :n, :, start:end]` are the live rows' keys/values, left-padded.

    Args:
        buf: (layers, 2 [keys, values], row slots, kv heads, columns, head dim).
        n, start, end: live rows and used columns. Only these are ever read (attention, `select`),
        and every edit writes all of them first (a step its column, `join` the newcomers and zeros
        for any new left padding), so the rest of the buffer is left uninitialised.
    """

    def __init__(self, buf: torch.Tensor, n: int, start: int, end: int):
        self.buf, self.n, self.start, self.end = buf, n, start, end
        super().__init__(layers=[SlotLayer(self, i) for i in range(buf.shape[0])])

    @classmethod
    def adopt(cls, cache, rows: int = 0) -> SlotCache:
        """A `SlotCache` holding the rows of a HF cache (`layers[i].keys/values`: (n, heads, width,
        dim)), with room for `rows` rows (at least n) and `GROW` more columns."""
        keys = cache.layers[0].keys
        n, heads, width, dim = keys.shape
        buf = keys.new_empty(len(cache.layers), 2, max(rows, n), heads, width + GROW, dim)
        for i, layer in enumerate(cache.layers):
            buf[i, 0, :n, :, :width] = layer.keys
            buf[i, 1, :n, :, :width] = layer.values
        return cls(buf, n, 0, width)

    def view(self, idx: int, kv: int) -> torch.Tensor:
        return self.buf[idx, kv, :self.n, :, self.start:self.end]  # (n, heads, width, dim), strided

    def write(self, idx: int, keys: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Layer `idx`'s new columns (n, heads, q, dim) go in place after `end`; returns its views
        up to them. `end` moves once the last layer has written (every layer sees the same width)."""
        q = keys.shape[-2]
        if idx == 0 and self.end + q > self.buf.shape[-2]:
            self._resize(self.buf.shape[2], 0, self.end - self.start + q + GROW)
        end = self.end + q
        self.buf[idx, 0, :self.n, :, self.end:end] = keys
        self.buf[idx, 1, :self.n, :, self.end:end] = values
        if idx == self.buf.shape[0] - 1:
            self.end = end
        return self.buf[idx, 0, :self.n, :, self.start:end], self.buf[idx, 1, :self.n, :, self.start:end]

    def _resize(self, rows: int, left: int, width: int) -> None:
        """A new buffer of `rows` slots and `left` + `width` columns; the used columns move to start
        at column `left`."""
        used = self.end - self.start
        buf = self.buf.new_empty(*self.buf.shape[:2], rows, self.buf.shape[3], left + width, self.buf.shape[-1])
        buf[:, :, :self.n, :, left:left + used] = self.buf[:, :, :self.n, :, self.start:self.end]
        self.buf, self.start, self.end = buf, left, left + used

    def select(self, mask: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """Keep the `keep` rows (in that order) and the columns they attend to; returns their mask
        (rows, width). Ascending `keep` (the decoder's case) moves only the rows behind a leaver,
        one slot copy each; another order gathers all kept rows once."""
        mask = mask[keep]
        used = mask.any(0).nonzero()
        cut = int(used[0]) if len(used) else 0
        order = keep.tolist()
        cols = slice(self.start + cut, self.end)
        if order == sorted(order):
            for slot, row in enumerate(order):
                if slot != row:  # row > slot: its source is never a later destination
                    self.buf[:, :, slot, :, cols] = self.buf[:, :, row, :, cols]
        else:
            self.buf[:, :, :len(order), :, cols] = self.buf[:, :, keep.to(self.buf.device), :, cols]
        self.n, self.start = len(order), self.start + cut
        return mask[:, cut:]

    def join(self, mask: torch.Tensor, caches: list, masks: list[torch.Tensor]) -> torch.Tensor:
        """Append the rows of HF caches `caches` (each left-padded, masks `masks`) after the live
        rows, everyone left-padded with zeros to the widest; returns the joint mask."""
        width = max(m.shape[1] for m in [mask, *masks])
        rows = self.n + sum(m.shape[0] for m in masks)
        if rows > self.buf.shape[2] or width > self.end:  # not enough row slots or columns on the left
            self._resize(max(rows, self.buf.shape[2]), width - (self.end - self.start), self.end - self.start + GROW)
        start = self.end - width
        self.buf[:, :, :self.n, :, start:self.start] = 0  # the live rows' new left padding
        self.start = start
        n = self.n
        for cache, m in zip(caches, masks, strict=True):
            k, w = m.shape
            self.buf[:, :, n:n + k, :, start:self.end - w] = 0
            for i, layer in enumerate(cache.layers):
                self.buf[i, 0, n:n + k, :, self.end - w:self.end] = layer.keys
                self.buf[i, 1, n:n + k, :, self.end - w:self.end] = layer.values
            n += k
        self.n = n
        return torch.cat([_pad_left(m, width) for m in [mask, *masks]])


def _pad_left(mask: torch.Tensor, width: int) -> torch.Tensor:
    missing = width - mask.shape[1]
    return mask if missing <= 0 else torch.cat([mask.new_zeros(mask.shape[0], missing), mask], 1)
