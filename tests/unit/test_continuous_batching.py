"""Continuous batching: refilled slots give every row the tokens it gets decoded alone."""

import torch

from whyrec.config import GenerationConfig, ModelConfig
from whyrec.llm.continuous import decode_continuously, hf_prefill, hf_step
from whyrec.llm.generate import logits_processors
from whyrec.llm.load import load_model

torch.set_num_threads(1)
TEXTS = ["a", "a longer prompt with words", "mid size", "b c", "the quick brown fox jumps", "x", "hello there"]


def _setup(gen: GenerationConfig):
    llm, tok = load_model(ModelConfig("tiny-random-llama", dtype="float32", device="cpu"))
    tok.padding_side = "left"
    enc = tok(TEXTS, return_tensors="pt", padding=True)
    procs = logits_processors(gen, tok.eos_token_id)
    return llm, tok, enc, procs


def _decode(llm, enc, procs, gen, eos, max_batch, **kw):
    return decode_continuously(len(TEXTS), hf_prefill(llm, enc["input_ids"], enc["attention_mask"]), hf_step(llm),
                               procs, gen.max_new_tokens, eos, max_batch, **kw)


def test_refilled_batches_match_one_row_at_a_time():
    gen = GenerationConfig(max_new_tokens=12, repetition_penalty=1.3, no_repeat_ngram_size=3)
    llm, tok, enc, procs = _setup(gen)
    with torch.no_grad():
        eos = _decode(llm, enc, procs, gen, -1, max_batch=len(TEXTS))[1][3]  # a token row 1 emits: rows stop early
        alone = _decode(llm, enc, procs, gen, eos, max_batch=1)
        refilled = _decode(llm, enc, procs, gen, eos, max_batch=3, refill_at=1)
        one_batch = _decode(llm, enc, procs, gen, eos, max_batch=len(TEXTS))
    assert refilled == alone == one_batch
    assert min(map(len, alone)) <= 4 < max(map(len, alone)) == 12  # slots freed and refilled
    assert all(r[-1] == eos or len(r) == 12 for r in alone)


def test_matches_hf_generate_per_row():
    gen = GenerationConfig(max_new_tokens=8, repetition_penalty=1.0)
    llm, tok, enc, procs = _setup(gen)
    with torch.no_grad():
        ours = _decode(llm, enc, procs, gen, tok.eos_token_id, max_batch=2, refill_at=1)
        for row, text in enumerate(TEXTS):
            one = tok([text], return_tensors="pt")
            ref = llm.generate(**one, max_new_tokens=8, do_sample=False, pad_token_id=tok.pad_token_id)
            ref = ref[0, one["input_ids"].shape[1]:].tolist()
            assert ours[row] == ref[:len(ours[row])] and len(ours[row]) == min(8, len(ref))


def test_every_row_is_reported_done_once():
    gen = GenerationConfig(max_new_tokens=5)
    llm, tok, enc, procs = _setup(gen)
    done = []
    with torch.no_grad():
        _decode(llm, enc, procs, gen, tok.eos_token_id, max_batch=2, on_row_done=done.append)
    assert sorted(done) == list(range(len(TEXTS)))
