"""RecAlpaca's answers through continuous batching (`whyrec.llm.continuous_rows`), offline and served:
each prompt decodes to the greedy text HF generate gives it alone (fp32)."""

import threading
from dataclasses import replace

import pytest
import torch

from whyrec.config import GenerationConfig, ModelConfig
from whyrec.llm.continuous_rows import common_prefix
from whyrec.llm.load import load_model
from whyrec.methods.recalpaca import model as M
from whyrec.methods.recalpaca.alpaca import render_prompt

torch.set_num_threads(1)
TINY = ModelConfig("tiny-random-llama", device="cpu", dtype="float32")
INSTRUCTION = "Pick five movies from the candidates, each with a reason."
PROMPTS = [(INSTRUCTION, f"Liked {liked}. Candidates: Fargo, Brazil, Aliens.")
           for liked in ("Heat", "Fargo and Brazil", "a long list of quiet films", "x", "Star Wars", "Heat")]


def sharpen(model):
    """The tiny random backbone attends almost uniformly, so every prompt would decode to one text:
    sharp attention makes each prompt's text its own."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("q_proj.weight", "k_proj.weight", "q_proj.base_layer.weight", "k_proj.base_layer.weight")):
                p.mul_(30)


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    rec = M.RecAlpaca(*load_model(TINY))
    sharpen(rec.model)
    gen = GenerationConfig(max_new_tokens=10, batch_size=2, repetition_penalty=1.0)
    first = _hf(rec, PROMPTS[:1], gen)[0]  # a token prompt 0 answers early becomes the EOS: rows end at different steps
    tok = rec.tokenizer
    tok.eos_token = tok.convert_ids_to_tokens(tok(first, add_special_tokens=False).input_ids[2])
    return rec, gen


def _hf(rec, prompts, gen, batch_size=1) -> list[str]:
    return rec.generate(prompts, replace(gen, drop_finished=False, batch_size=batch_size))


def _calls(monkeypatch) -> list[int]:
    calls, real = [], M.generate
    monkeypatch.setattr(M, "generate", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    return calls


def test_refilled_rows_give_the_greedy_text_of_hf_generate_alone(setup, monkeypatch):
    rec, gen = setup
    alone = [_hf(rec, [p], gen)[0] for p in PROMPTS]
    assert all(alone) and len(set(alone)) > 2
    ends = [len(rec.tokenizer(t, add_special_tokens=False).input_ids) for t in alone]
    assert len(set(ends)) > 1  # rows end at different steps: slots are refilled mid-decode
    assert _hf(rec, PROMPTS, gen, batch_size=len(PROMPTS)) == alone
    calls = _calls(monkeypatch)
    assert rec.generate(PROMPTS, gen, progress=True) == alone
    assert calls == []  # not through HF generate


def test_penalties_and_beams_keep_hf_generate(setup, monkeypatch):
    """HF penalises the prompt's tokens too (input_ids); the continuous loop would not: those stay HF's."""
    rec, gen = setup
    calls = _calls(monkeypatch)
    for other in (replace(gen, repetition_penalty=1.2), replace(gen, no_repeat_ngram_size=2), replace(gen, num_beams=2)):
        assert not M.refills(other)
        rec.generate(PROMPTS[:2], other)
    assert len(calls) == 3 and M.refills(gen)


def test_the_shared_prefix_holds_the_header_and_the_common_instruction(setup):
    rec, _ = setup
    rows = rec.prompt_ids([render_prompt(*p) for p in PROMPTS])
    prefix = common_prefix(rows)
    assert rec.tokenizer.decode(prefix).rstrip().endswith("### Input:\nLiked")  # header, instruction, inputs' first word
    served = rec.stream_prefix(INSTRUCTION)  # a server's guess before any prompt: every row starts with it
    assert served and all(r[:len(served)] == served for r in rows)
    assert INSTRUCTION in rec.tokenizer.decode(served)


@pytest.fixture
def served(tmp_path_factory, monkeypatch):
    from serve_tiny import tiny_recalpaca

    from whyrec.methods.recalpaca.served import RecAlpacaModel

    model = RecAlpacaModel(tiny_recalpaca(tmp_path_factory), device="cpu",
                           generation=GenerationConfig(max_new_tokens=6, batch_size=2))
    sharpen(model.model.model)
    # The tiny model names no candidate: let it pick the first one, its answer being the reason.
    monkeypatch.setattr(M, "pick_recommendations", lambda text, cands, k=5: [
        {"title": c, "reason": text if n == 0 else None, "from_model": n == 0} for n, c in enumerate(cands[:k])])
    return model


def _hf_answer(model, user: str) -> str:
    rec = model.records[user]
    return _hf(model.model, [(rec["instruction"], rec["input"])], model._decoding())[0]


def test_a_served_row_is_a_users_answer_shared_by_their_pairs(served):
    from serve_tiny import USERS

    from whyrec.methods.catalog import Pair, Unsupported

    model, top = served, served.records[USERS[0]]["top1_item"]
    other = served.records[USERS[0]]["candidate_items"][1]
    rows = [("a", Pair(USERS[0], top)), ("b", Pair(USERS[1], top)), ("c", Pair(USERS[0], other)),
            ("d", Pair("nobody", top)), ("e", Pair(USERS[2], top))]
    got, prefills = {}, []
    model.explain_stream(lambda free: [rows.pop(0) for _ in range(min(free, len(rows)))], got.__setitem__,
                         prefills.append)
    assert sum(prefills) == 3  # three users decoded; c waited for a's answer
    answers = {u: _hf_answer(model, u) for u in USERS[:3]}
    assert [got[k] for k in "abe"] == [answers[USERS[0]], answers[USERS[1]], answers[USERS[2]]]
    assert isinstance(got["c"], Unsupported) and isinstance(got["d"], Exception)
    rows = [("f", Pair(USERS[1], top))]  # known answer: no decoding
    model.explain_stream(lambda free: [rows.pop(0) for _ in range(min(free, len(rows)))], got.__setitem__,
                         prefills.append)
    assert got["f"] == answers[USERS[1]] and sum(prefills) == 3


def test_whyrec_serve_streams_recalpaca_with_the_texts_of_the_micro_batcher(served):
    pytest.importorskip("fastapi", reason="the serve extra is not installed (pip install 'whyrec[serve]')")
    from fastapi.testclient import TestClient
    from serve_tiny import USERS

    from whyrec.serve.app import ServeSettings, create_app
    from whyrec.serve.batcher import Batcher
    from whyrec.serve.cache import ExplanationCache
    from whyrec.serve.continuous import ContinuousBatcher

    model = served
    streamed = create_app(model, ExplanationCache(None), ServeSettings(continuous=True))  # as `whyrec serve` sets it
    assert isinstance(streamed.state.batcher, ContinuousBatcher)  # `whyrec serve`'s default for RecAlpaca now
    bodies = [{"user": u, "item": model.records[u]["top1_item"]} for u in USERS[:4]]
    bodies.append({"user": USERS[0], "item": model.records[USERS[0]]["candidate_items"][1]})
    with TestClient(streamed) as s:
        got = {}
        threads = [threading.Thread(target=lambda n=n: got.__setitem__(n, s.post("/explain", json=bodies[n])))
                   for n in range(len(bodies))]
        [t.start() for t in threads]
        [t.join(60) for t in threads]
        assert [got[n].status_code for n in range(len(bodies))] == [200] * 4 + [409]
        texts = [got[n].json()["explanation"] for n in range(4)]
    assert texts == [_hf_answer(model, u) for u in USERS[:4]] and len(set(texts)) > 1
    model._answers.clear()
    batched = create_app(model, ExplanationCache(None), ServeSettings())
    assert isinstance(batched.state.batcher, Batcher)
    with TestClient(batched) as b:
        assert [b.post("/explain", json=body).json().get("explanation") for body in bodies[:4]] == texts
    saved = model.gen
    try:
        for gen in (GenerationConfig(num_beams=2), GenerationConfig(drop_finished=False),
                    GenerationConfig(no_repeat_ngram_size=3)):
            model.gen = gen
            assert model.explain_stream is None  # HF generate: the server keeps the micro-batcher
    finally:
        model.gen = saved


def test_evaluate_decodes_several_batches_per_call_and_still_keeps_them_batch_by_batch(tmp_path, monkeypatch):
    import json

    records = [{"instruction": INSTRUCTION, "input": f"user {n}", "testGT": ["Fargo"]} for n in range(5)]
    (tmp_path / "test.json").write_text(json.dumps(records))
    calls: list[int] = []

    class Fake:
        def generate(self, prompts, gen, **kw):
            calls.append(len(prompts))
            return [f"1. Fargo - for {inp}" for _, inp in prompts]

    monkeypatch.setattr(M, "load_recalpaca", lambda *a, **kw: Fake())
    gen = replace(M.GENERATION, batch_size=2)
    M.evaluate_recalpaca("some/run", tmp_path / "test.json", tmp_path / "a", gen=gen)
    assert calls == [5]  # one continuous call: freed slots refill across the batches
    lines = (tmp_path / "a" / M.GENERATIONS).read_text().splitlines()
    assert [json.loads(x)["generation"] for x in lines[1:]] == [f"1. Fargo - for user {n}" for n in range(5)]
    (tmp_path / "a" / M.GENERATIONS).write_text("\n".join(lines[:3]) + "\n")  # a kill after the first batch
    M.evaluate_recalpaca("some/run", tmp_path / "test.json", tmp_path / "a", gen=gen)
    assert calls == [5, 3]  # the missing batches only
    M.evaluate_recalpaca("some/run", tmp_path / "test.json", tmp_path / "b", gen=replace(gen, repetition_penalty=1.2))
    assert calls == [5, 3, 2, 2, 1]  # HF generate's fixed batches


def test_batch_explain_decodes_the_missing_users_answers_in_one_call(served, monkeypatch):
    from serve_tiny import USERS

    from whyrec.methods.catalog import Pair

    model, calls = served, []
    alone = [_hf_answer(model, u) for u in USERS[:3] + USERS[:1]]
    real = model.model.generate
    monkeypatch.setattr(model.model, "generate", lambda prompts, gen, **kw: calls.append(len(prompts)) or real(prompts, gen))
    pairs = [Pair(u, model.records[u]["top1_item"]) for u in USERS[:3] + USERS[:1]]
    assert model.explain(pairs) == alone
    assert calls == [3]  # one call for three users, who share the decoder's batches
    model.explain(pairs[1:2])
    assert calls == [3]  # known answers: no decoding
