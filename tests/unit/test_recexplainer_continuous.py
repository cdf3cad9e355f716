"""RecExplainer's explanations through continuous batching (`whyrec.llm.continuous_rows`), offline
and served: each row decodes to the greedy text HF generate gives it alone (fp32)."""

import threading
from dataclasses import replace

import pytest
import torch
from test_recexplainer import build

from whyrec.config import GenerationConfig
from whyrec.llm.continuous_rows import common_prefix
from whyrec.methods.recexplainer.model import UnalignedBackbone

torch.set_num_threads(1)
USERS, ITEMS = ["u0", "u1", "u2", "u3", "u4", "u0"], ["i5", "i7", "i1", "i9", "i4", "i2"]


@pytest.fixture(scope="module", params=["intention", "hybrid", "behaviour"])
def setup(request):
    module, _ = build(request.param)
    module.eval()
    _perturb_connectors(module)
    gen = GenerationConfig(max_new_tokens=10, batch_size=2, repetition_penalty=1.0)
    msgs, phs = module.explain_messages(USERS[:1], ITEMS[:1])
    first = _hf(module, msgs, phs, gen)[0]  # a token row 0 emits early becomes the EOS: rows end at different steps
    tok = module.tokenizer
    tok.eos_token = tok.convert_ids_to_tokens(tok(first, add_special_tokens=False).input_ids[2])
    return module, gen


def _perturb_connectors(module):
    """The tiny random backbone attends almost uniformly and small connectors add little, so every
    row would decode to one text: large connectors and sharp attention make each row's text its own."""
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for conn in (module.user_connector, module.item_connector):
            for p in conn.parameters():
                p.add_(10 * torch.randn(p.shape, generator=g))
        for name, p in module.llm.named_parameters():
            if name.endswith(("q_proj.base_layer.weight", "k_proj.base_layer.weight")):
                p.mul_(30)


def _hf(module, msgs, phs, gen, batch_size=1) -> list[str]:
    """The old path: HF generate over fixed batches (drop_finished off)."""
    hf = replace(gen, drop_finished=False)
    return [t for s in range(0, len(msgs), batch_size) for t in module.generate(msgs[s:s + batch_size],
                                                                                 phs[s:s + batch_size], hf)]


def _calls(module, monkeypatch) -> list[int]:
    calls, real = [], module.generate
    monkeypatch.setattr(module, "generate", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    return calls


def test_refilled_rows_give_the_greedy_text_of_hf_generate_alone(setup, monkeypatch):
    module, gen = setup
    msgs, phs = module.explain_messages(USERS, ITEMS)
    alone = _hf(module, msgs, phs, gen)
    assert all(alone) and len(set(alone)) > 1
    ends = [len(module.tokenizer(t, add_special_tokens=False).input_ids) for t in alone]
    assert len(set(ends)) > 1  # rows end at different steps: slots are refilled mid-decode
    assert _hf(module, msgs, phs, gen, batch_size=len(USERS)) == alone
    calls = _calls(module, monkeypatch)
    assert module.explain(USERS, ITEMS, gen) == alone
    assert calls == []  # not through HF generate
    module.explain(USERS[:2], ITEMS[:2], replace(gen, num_beams=2))  # beam search keeps it
    assert calls == [1]


def test_the_shared_prefix_stops_before_the_first_row_dependent_token(setup):
    module, _ = setup
    rows = module.prompt_ids(module.explain_messages(USERS, ITEMS)[0])
    stop = list(module.token_ids.values())
    prefix = common_prefix(rows, stop)
    assert prefix and all(r[:len(prefix)] == prefix for r in rows)
    assert not set(prefix) & set(stop)
    served = module.stream_prefix()  # what a server guesses before it sees a prompt: real rows start with it
    assert served and len(served) <= len(prefix) and all(r[:len(served)] == served for r in rows)


def test_the_unaligned_backbone_decodes_continuously_with_its_adapter_off(setup):
    module, gen = setup
    bare = UnalignedBackbone(module)
    msgs, phs = bare.explain_messages(USERS, ITEMS)
    with torch.no_grad():
        lora = [p for n, p in module.llm.named_parameters() if "lora_B" in n]
        saved = [p.clone() for p in lora]
        for p in lora:  # LoRA B starts at zero: give the adapter an effect to switch off
            p.add_(0.5 * torch.randn_like(p))
        try:
            assert bare.explain(USERS, ITEMS, gen) == _hf(bare, msgs, phs, gen)
            assert bare.explain(USERS, ITEMS, gen) != module.explain(USERS, ITEMS, gen)
        finally:
            for p, s in zip(lora, saved):
                p.copy_(s)


def test_whyrec_serve_streams_recexplainer_with_the_texts_of_the_micro_batcher(tmp_path_factory):
    pytest.importorskip("fastapi", reason="the serve extra is not installed (pip install 'whyrec[serve]')")
    from fastapi.testclient import TestClient
    from serve_tiny import SEEN, tiny_recexplainer
    from serve_tiny import USERS as SERVED

    from whyrec.serve.app import ServeSettings, create_app
    from whyrec.serve.batcher import Batcher
    from whyrec.serve.cache import ExplanationCache
    from whyrec.serve.continuous import ContinuousBatcher
    from whyrec.serve.server import build_app

    streamed = build_app(str(tiny_recexplainer(tmp_path_factory)), cache="none",
                         generation=GenerationConfig(max_new_tokens=6, batch_size=2))
    assert isinstance(streamed.state.batcher, ContinuousBatcher)
    model = streamed.state.model
    _perturb_connectors(model.module)
    batched = create_app(model, ExplanationCache(None), ServeSettings(max_batch=2))
    assert isinstance(batched.state.batcher, Batcher)
    bodies = [{"user": u, "item": SEEN[u][0]} for u in SERVED[:4]] + [{"user": "u0", "item": "no-such-item"}]
    with TestClient(streamed) as s, TestClient(batched) as b:
        got = {}
        threads = [threading.Thread(target=lambda n=n: got.__setitem__(n, s.post("/explain", json=bodies[n])))
                   for n in range(len(bodies))]
        [t.start() for t in threads]
        [t.join(60) for t in threads]
        assert [got[n].status_code for n in range(len(bodies))] == [200] * 4 + [404]
        ref = [b.post("/explain", json=body).json()["explanation"] for body in bodies[:4]]
        assert [got[n].json()["explanation"] for n in range(4)] == ref and len(set(ref)) > 1
        msgs, phs = model.module.explain_messages([b["user"] for b in bodies[:4]], [b["item"] for b in bodies[:4]])
        with torch.no_grad():
            assert _hf(model.module, msgs, phs, replace(model.gen, repetition_penalty=1.0)) == ref
        ready = s.get("/ready").json()
        assert ready["generate_calls"] >= 1 and ready["mean_batch"] <= 2
    saved = model.gen
    try:
        model.gen = GenerationConfig(num_beams=2)
        assert model.explain_stream is None  # beam search: the server keeps the micro-batcher
        model.gen = GenerationConfig(drop_finished=False)
        assert model.explain_stream is None
    finally:
        model.gen = saved


def test_a_served_row_that_cannot_be_prepared_fails_alone(tmp_path_factory):
    from serve_tiny import SEEN, tiny_recexplainer

    from whyrec.methods.catalog import Pair
    from whyrec.methods.recexplainer.served import RecExplainerModel

    model = RecExplainerModel(tiny_recexplainer(tmp_path_factory), device="cpu",
                              generation=GenerationConfig(max_new_tokens=5, batch_size=2))
    rows = [("bad", Pair("nobody", SEEN["u1"][0])), ("ok", Pair("u1", SEEN["u1"][0]))]
    got, prefills = {}, []
    model.explain_stream(lambda free: [rows.pop(0) for _ in range(min(free, len(rows)))], got.__setitem__,
                         prefills.append)
    assert isinstance(got["bad"], Exception) and prefills == [1]
    assert got["ok"] == model.explain([Pair("u1", SEEN["u1"][0])])[0]
