"""Prefill in groups of bounded padded size (`continuous.prefill_rows(max_tokens=...)`): the rows
decode as when prefilled at once."""

import torch

from whyrec.config import GenerationConfig, ModelConfig
from whyrec.llm.continuous import (
    SharedPrefix,
    _token_groups,
    decode_continuously,
    hf_step,
    prefill_rows,
)
from whyrec.llm.generate import logits_processors
from whyrec.llm.load import load_model


def test_groups_are_consecutive_and_bounded_by_rows_times_longest():
    assert _token_groups([5, 5, 5, 9, 2], 12) == [[0, 1], [2], [3], [4]]
    assert _token_groups([3, 3, 3, 3], 12) == [[0, 1, 2, 3]]
    assert _token_groups([20, 1], 12) == [[0], [1]]  # a row longer than the budget goes alone


def test_grouped_prefill_decodes_what_one_prefill_decodes():
    llm, tok = load_model(ModelConfig("tiny-random-llama", dtype="float32", device="cpu"))
    head = tok("shared header: ").input_ids
    texts = ["a", "a longer prompt with words", "mid size", "b c", "the quick brown fox jumps", "x", "hello there"]
    rows = [head + tok(t).input_ids for t in texts]
    gen = GenerationConfig(max_new_tokens=10, repetition_penalty=1.3)
    procs = logits_processors(gen, tok.eos_token_id)
    prefilled: list[int] = []  # rows per prefill forward
    llm.register_forward_pre_hook(
        lambda m, args, kw: prefilled.append(len(kw["input_ids"])) if kw["input_ids"].shape[1] > 1 else None,
        with_kwargs=True)

    def decode(max_tokens: int, prefix=None) -> list[list[int]]:
        prefilled.clear()
        prefill = prefill_rows(llm, lambda picked: [rows[r] for r in picked], prefix=prefix, max_tokens=max_tokens)
        return decode_continuously(len(rows), prefill, hf_step(llm), procs, gen.max_new_tokens, tok.eos_token_id,
                                   max_batch=5, refill_at=2)

    with torch.no_grad():
        whole = decode(10_000)
        assert max(prefilled) == 5
        grouped = decode(3 * max(map(len, rows)))
        assert max(prefilled) <= 3 and len(prefilled) >= 3
        prefix = SharedPrefix(llm, head[:-1])
        prefilled_prefix = decode(12, prefix)
        assert max(prefilled) <= 2
    assert grouped == whole == prefilled_prefix
