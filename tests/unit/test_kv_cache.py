"""The in-place KV cache of the continuous decoder (`whyrec.llm.kv_cache.SlotCache`): each edit
the decoder makes (step, drop rows, join rows, grow) leaves the same keys, values, mask and
logits as HF's `DynamicCache` under the same edits (`continuous.select_rows` / `join_rows`)."""

import pytest
import torch
from transformers import DynamicCache, LlamaConfig, LlamaForCausalLM

from whyrec.llm import kv_cache
from whyrec.llm.continuous import decode_continuously, hf_prefill, hf_step, join_rows, select_rows
from whyrec.llm.kv_cache import SlotCache, adoptable, slot_caching

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def llm():
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, max_position_embeddings=128)
    return LlamaForCausalLM(cfg).eval()


def _prefill(llm, rows: list[list[int]]):
    width = max(map(len, rows))
    ids = torch.tensor([[0] * (width - len(r)) + r for r in rows])
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
    cache = DynamicCache(config=llm.config)
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    logits = llm(input_ids=ids, attention_mask=mask, position_ids=pos, cache=cache, use_cache=True).logits
    return logits[:, -1], cache, mask, pos[:, -1:] + 1


def _step(llm, cache, mask, pos, tokens):
    mask = torch.cat([mask, mask.new_ones(len(mask), 1)], 1)
    logits = llm(input_ids=tokens[:, None], attention_mask=mask, position_ids=pos, cache=cache,
                 use_cache=True).logits[:, -1]
    return logits, mask, pos + 1


def _poison(slot: SlotCache) -> None:
    """NaN everywhere outside the live window: no edit may read what it did not write."""
    window = slot.buf[:, :, :slot.n, :, slot.start:slot.end].clone()
    slot.buf.fill_(float("nan"))
    slot.buf[:, :, :slot.n, :, slot.start:slot.end] = window


def _same(slot: SlotCache, dyn) -> bool:
    _poison(slot)
    return all(torch.equal(a.keys, b.keys) and torch.equal(a.values, b.values) for a, b in zip(slot.layers, dyn.layers))


@torch.no_grad()
def test_steps_drops_joins_and_growth_match_dynamic_cache(llm, monkeypatch):
    monkeypatch.setattr(kv_cache, "GROW", 1)  # the buffer is full after every step: each step regrows it
    rows = [[5, 6, 7], [8, 9, 10, 11, 12, 13], [14, 15], [16, 17, 18, 19]]
    logits, dyn, mask, pos = _prefill(llm, rows)
    slot = SlotCache.adopt(_prefill(llm, rows)[1], rows=2)  # fewer row slots than rows: adopt makes room
    slot_mask, slot_pos = mask, pos
    assert _same(slot, dyn)
    for t in range(6):
        tokens = logits.argmax(-1)
        logits, mask, pos = _step(llm, dyn, mask, pos, tokens)
        slot_logits, slot_mask, slot_pos = _step(llm, slot, slot_mask, slot_pos, tokens)
        assert torch.equal(slot_logits, logits) and _same(slot, dyn)
        if t == 1:  # the second row (the only one using the first columns) and the last row leave
            keep = torch.tensor([0, 2])
            mask, slot_mask = select_rows(dyn, mask, keep), select_rows(slot, slot_mask, keep)
            logits, pos, slot_pos = logits[keep], pos[keep], slot_pos[keep]
            assert torch.equal(slot_mask, mask) and mask.shape[1] < 8 and _same(slot, dyn)
        if t == 3:  # newcomers: one wider than the live rows (they get padded), one narrower
            new = [[20, 21, 22, 23, 24, 25, 26, 27, 28, 29], [30]]
            new_logits, new_dyn, new_mask, new_pos = _prefill(llm, new)
            mask = join_rows([dyn, new_dyn], [mask, new_mask])
            slot_mask = join_rows([slot, _prefill(llm, new)[1]], [slot_mask, new_mask])
            logits, pos, slot_pos = torch.cat([logits, new_logits]), torch.cat([pos, new_pos]), torch.cat([slot_pos, new_pos])
            assert torch.equal(slot_mask, mask) and len(mask) == 4 and _same(slot, dyn)


@torch.no_grad()
def test_rows_in_another_order_and_a_narrow_join_after_a_cut(llm):
    rows = [[1, 2, 3, 4, 5], [6, 7], [8, 9, 10], [11]]
    _, dyn, mask, _ = _prefill(llm, rows)
    slot = SlotCache.adopt(_prefill(llm, rows)[1], rows=4)
    keep = torch.tensor([3, 1, 2])  # not ascending: gathered, not moved slot by slot
    mask, slot_mask = select_rows(dyn, mask, keep), select_rows(slot, mask, keep)
    assert torch.equal(slot_mask, mask) and mask.shape[1] == 3 and slot.start == 2 and _same(slot, dyn)
    _, new_dyn, new_mask, _ = _prefill(llm, [[12, 13]])
    # the join fits in the row slots freed and the columns left: no reallocation
    buf = slot.buf
    mask, slot_mask = join_rows([dyn, new_dyn], [mask, new_mask]), join_rows([slot, new_dyn], [slot_mask, new_mask])
    assert slot.buf is buf and torch.equal(slot_mask, mask) and _same(slot, dyn)


def test_the_views_handed_to_attention_are_strided_windows_of_one_buffer(llm):
    with torch.no_grad():
        slot = SlotCache.adopt(_prefill(llm, [[1, 2], [3, 4, 5]])[1], rows=8)
    keys = slot.layers[1].keys
    assert keys.shape == (2, 2, 3, 8) and keys.data_ptr() == slot.buf[1, 0].data_ptr()
    assert slot.buf.shape[2] == 8 and slot.buf.shape[4] == 3 + kv_cache.GROW


@torch.no_grad()
def test_decoding_with_and_without_the_slot_cache_gives_the_same_tokens(llm, monkeypatch):
    monkeypatch.setattr(kv_cache, "GROW", 2)
    rows = [[3, 4, 5, 6], [7], [8, 9, 10, 11, 12, 13, 14], [15, 16], [17, 18, 19], [20, 21, 22, 23, 24]]
    ids = torch.tensor([[0] * (7 - len(r)) + r for r in rows])
    attn = torch.tensor([[0] * (7 - len(r)) + [1] * len(r) for r in rows])

    def run(on: bool, max_batch: int, eos: int):
        with slot_caching(on):
            return decode_continuously(len(rows), hf_prefill(llm, ids, attn), hf_step(llm), [], 10, eos, max_batch,
                                       refill_at=1)

    eos = run(False, 6, -1)[1][2]  # a token row 1 emits: rows end early, so rows leave and slots refill
    alone = run(False, 1, eos)
    assert run(True, 3, eos) == run(False, 3, eos) == alone == run(True, 6, eos)
    assert min(map(len, alone)) < 10 == max(map(len, alone))  # rows did end early and others ran on


def test_only_plain_full_attention_caches_are_adopted(llm):
    from transformers.cache_utils import DynamicSlidingWindowLayer

    with torch.no_grad():
        cache = _prefill(llm, [[1, 2, 3]])[1]
    assert adoptable(cache) and not adoptable(object())
    cache.layers[1] = DynamicSlidingWindowLayer(sliding_window=4)
    assert not adoptable(cache)
