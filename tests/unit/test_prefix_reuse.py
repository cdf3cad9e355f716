"""Shared-prefix KV reuse and rows pulled mid-decode give the tokens of the whole-prompt path."""

from dataclasses import replace

import pytest
import torch

from whyrec.config import GenerationConfig, ModelConfig, XRecConfig
from whyrec.llm.continuous import (
    SharedPrefix,
    decode_continuously,
    decode_stream,
    hf_prefill,
    hf_step,
    prefill_rows,
)
from whyrec.llm.generate import logits_processors
from whyrec.llm.load import load_model
from whyrec.methods.xrec import decode as D
from whyrec.methods.xrec.model import XRec

torch.set_num_threads(1)
ROWS = [("Toy Story (1995)", "likes animation", "a family film"),
        ("Heat (1995)", "likes crime thrillers a lot", "a heist film"),
        ("Fargo (1996)", "dark comedy", "snow"),
        ("Up (2009)", "likes animated films with old people", "a balloon"),
        ("Alien (1979)", "space horror and long slow films", "a crew, a cat")]


@pytest.fixture(scope="module")
def xrec():
    torch.manual_seed(0)
    llm, tok = load_model(ModelConfig("tiny-random-llama", dtype="float32", device="cpu"))
    model = XRec(llm, tok, 8, XRecConfig(n_exps=2, item_noun="movie", dropout=0.0)).eval()
    enc = model.encode([model.prompt(*r) for r in ROWS], side="left")
    vec = 3 * torch.randn(len(ROWS), 2, 8, generator=torch.Generator().manual_seed(1))
    gen = GenerationConfig(max_new_tokens=12, repetition_penalty=1.1, drop_finished=False)
    free = model.generate_ids(enc["input_ids"], enc["attention_mask"], vec[:, 0], vec[:, 1], gen)
    # a token row 0 emits early becomes the EOS, so rows finish at different steps and slots refill
    model.tokenizer.eos_token = model.tokenizer.convert_ids_to_tokens(free[0][2])
    return model, enc, vec, gen


def _ids(model, enc, vec, gen):
    return model.generate_ids(enc["input_ids"], enc["attention_mask"], vec[:, 0], vec[:, 1], gen)


def test_prefix_stops_before_the_first_injected_token(xrec):
    model, enc, _, _ = xrec
    prefix = D.prefix_ids(model)
    user, item = model.token_ids[:2]
    assert prefix and user not in prefix and item not in prefix
    for ids, mask in zip(enc["input_ids"], enc["attention_mask"]):
        row = ids[mask.bool()].tolist()
        assert row[:len(prefix)] == prefix and row[len(prefix)] == user  # everything before <USER_EMBED> is shared


def test_prefix_reuse_gives_the_whole_prompt_tokens_and_hf_generate(xrec, monkeypatch):
    model, enc, vec, gen = xrec
    hf = _ids(model, enc, vec, gen)
    assert min(map(len, hf)) < max(map(len, hf)) == 12  # rows end at different steps
    widths = []
    real = model.llm.forward

    def spy(*args, **kwargs):
        x = kwargs.get("inputs_embeds")
        if x is not None and x.shape[1] > 1:
            widths.append(x.shape[1])
        return real(*args, **kwargs)

    monkeypatch.setattr(model.llm, "forward", spy)
    for batch in (2, len(ROWS)):
        loop = replace(gen, drop_finished=True, batch_size=batch)
        widths.clear()
        shared = _ids(model, enc, vec, loop)
        shared_widths = list(widths)
        monkeypatch.setattr(model, "reuse_prefix", False)
        widths.clear()
        whole = _ids(model, enc, vec, loop)
        monkeypatch.setattr(model, "reuse_prefix", True)
        assert shared == whole == hf
        # the prefix was not prefilled again: every prefill is shorter by its length
        assert max(shared_widths) <= max(widths) - len(D.prefix_ids(model))


def test_prefix_prefill_of_a_plain_lm_matches_the_whole_prompt():
    llm, tok = load_model(ModelConfig("tiny-random-llama", dtype="float32", device="cpu"))
    tok.padding_side = "left"
    texts = ["the same opening words then a", "the same opening words then something longer here", "the same opening"]
    enc = tok(texts, return_tensors="pt", padding=True)
    rows = [ids[m.bool()].tolist() for ids, m in zip(enc["input_ids"], enc["attention_mask"])]
    common = 0
    while all(len(r) > common and r[common] == rows[0][common] for r in rows):
        common += 1
    assert common >= 2
    gen = GenerationConfig(max_new_tokens=8, repetition_penalty=1.2)
    procs = logits_processors(gen, -1)
    with torch.no_grad():
        runs = [decode_continuously(3, hf_prefill(llm, enc["input_ids"], enc["attention_mask"], prefix=prefix),
                                    hf_step(llm), procs, 8, -1, batch, refill_at=1)
                for prefix in (None, SharedPrefix(llm, rows[0][:common - 1])) for batch in (1, 3)]
        assert runs[0] == runs[1] == runs[2] == runs[3]


def test_rows_pulled_mid_decode_join_and_are_answered_as_they_end(xrec):
    model, enc, vec, gen = xrec
    loop = replace(gen, drop_finished=True, batch_size=3)
    alone = _ids(model, enc, vec, loop)
    schedule, available = {0: [0, 1], 3: [2, 3], 5: [4]}, []  # pull call -> rows that arrive by then
    calls, log = [0], []
    rows = [ids[m.bool()].tolist() for ids, m in zip(enc["input_ids"], enc["attention_mask"])]

    def pull(free):
        available.extend(schedule.pop(calls[0], []))
        calls[0] += 1
        got = available[:free]
        del available[:free]
        log.append(("pull", got))
        return got

    out = {}

    def done(row, tokens):
        out[row] = tokens
        log.append(("done", row))


    prepare = D._prepare(model, lambda rs: (vec[rs, 0], vec[rs, 1]))
    prefill = prefill_rows(model.llm, lambda rs: [rows[r] for r in rs], prepare, D.shared_prefix(model))
    eos = model.tokenizer.eos_token_id
    with torch.no_grad():
        decode_stream(pull, prefill, hf_step(model.llm), logits_processors(loop, eos), loop.max_new_tokens, eos,
                      3, refill_at=1, on_row_done=done)
    assert [out[r] for r in range(len(ROWS))] == alone
    late = next(n for n, e in enumerate(log) if e[0] == "pull" and 2 in e[1])
    assert any(e[0] == "pull" and e[1] == [] for e in log[:late])  # decoding had started before row 2 came
    first_done = next(n for n, e in enumerate(log) if e[0] == "done")
    assert first_done < len(log) - len(ROWS)  # answers are handed out while others still decode


def test_stream_explains_pulled_rows_and_fails_only_the_bad_one(xrec):
    model, enc, vec, gen = xrec
    loop = replace(gen, drop_finished=True, batch_size=2)
    texts = model.generate(enc["input_ids"], enc["attention_mask"], vec[:, 0], vec[:, 1], loop)
    queue = [(k, model.prompt(*r), vec[k, 0], vec[k, 1]) for k, r in enumerate(ROWS)]
    queue.insert(2, ("bad", "a prompt without the special tokens", vec[0, 0], vec[0, 1]))
    got, sizes = {}, []

    def pull(free):
        taken = queue[:free]
        del queue[:free]
        return taken

    with torch.no_grad():
        D.stream(model, pull, got.__setitem__, loop, on_prefill=sizes.append)
    assert isinstance(got.pop("bad"), ValueError)
    assert [got[k] for k in range(len(ROWS))] == texts
    assert sum(sizes) == len(ROWS) and max(sizes) <= 2
