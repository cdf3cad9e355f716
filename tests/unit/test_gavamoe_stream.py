"""GaVaMoE's continuous batching (`methods/gavamoe/decode.py`): rows of different clusters share a
running batch, join it mid-decode, and each keeps its own gate; `whyrec serve` takes that path."""

import threading

import pandas as pd
import pytest
import torch
from test_gavamoe import FakeVAE, build

from whyrec.adapters.cluster_experts import route_by
from whyrec.config import GenerationConfig
from whyrec.data import schema as S
from whyrec.llm.continuous import SharedPrefix
from whyrec.llm.generate import generate
from whyrec.methods.gavamoe import decode as D
from whyrec.methods.gavamoe.artifact import GaVaMoEExplainer

torch.set_num_threads(1)
TITLES = {"i0": "Hotel Roma", "i1": "Old Inn by the lake", "i2": "Spa", "i4": "Grand Hotel des Alpes"}
# FakeVAE's cluster is (user + item) % 3: rows of clusters 0, 1 and 2, two pairs with the same prompt
PAIRS = [("u0", "i1"), ("u1", "i1"), ("u3", "i0"), ("u5", "i2"), ("u2", "i4"), ("u4", "i1")]


@pytest.fixture(scope="module")
def expl():
    module = build()
    _perturb_experts(module)
    module.eval()
    pairs = pd.DataFrame({S.USER: [u for u, _ in PAIRS], S.ITEM: [i for _, i in PAIRS], S.RATING: 4.0})
    ex = GaVaMoEExplainer(module, FakeVAE(), TITLES, pairs, {})
    gen = GenerationConfig(max_new_tokens=10, batch_size=2)
    # a token row 0 emits early becomes the EOS, so rows end at different steps and slots refill mid-decode
    tok = module.tokenizer
    tok.eos_token = tok.convert_ids_to_tokens(_new_ids(ex, gen)[0][2])
    return ex, gen


def _new_ids(ex, gen) -> list[list[int]]:
    """Each pair's new token ids from HF generate alone, up to and including its EOS."""
    module, out = ex.module, []
    for u, i in PAIRS:
        user_vec, item_vec, cluster = ex.inputs([u], [i])
        enc = module.encode(ex.prompts([u], [i]), side="left")
        with torch.no_grad(), route_by(module.moes, cluster):
            ids = generate(module.llm, gen, module.tokenizer, inputs_embeds=module._embeds(enc["input_ids"], user_vec, item_vec),
                           attention_mask=enc["attention_mask"])[0].tolist()
        eos = module.tokenizer.eos_token_id
        out.append(ids[:ids.index(eos) + 1] if eos in ids else ids)
    return out


def _alone(ex, gen) -> list[str]:
    return [ex.explain([u], [i], gen, progress=False)[0] for u, i in PAIRS]


def _streamed(ex, gen, clusters=None):
    """Texts of PAIRS through `decode.stream`, handed over one row per pull so rows join a running batch."""
    waiting, got, prefills = list(range(len(PAIRS))), {}, []
    user_vec, item_vec, cluster = ex.inputs([u for u, _ in PAIRS], [i for _, i in PAIRS])
    cluster = cluster if clusters is None else torch.tensor(clusters)
    prompts = ex.prompts([u for u, _ in PAIRS], [i for _, i in PAIRS])

    def pull(free):
        if not (free and waiting):
            return []
        n = waiting.pop(0)
        return [(n, prompts[n], user_vec[n], item_vec[n], int(cluster[n]))]

    with torch.inference_mode():
        D.stream(ex.module, pull, got.__setitem__, gen, prefills.append)
    return [got[n] for n in range(len(PAIRS))], prefills


def test_a_streamed_batch_of_mixed_clusters_gives_each_row_its_own_greedy_text(expl):
    ex, gen = expl
    _, _, clusters = ex.inputs([u for u, _ in PAIRS], [i for _, i in PAIRS])
    assert sorted(set(clusters.tolist())) == [0, 1, 2]
    alone = _alone(ex, gen)
    ends = [len(ids) for ids in _new_ids(ex, gen)]
    assert len(set(ends)) > 1 and min(ends) < gen.max_new_tokens  # rows end at different steps
    streamed, prefills = _streamed(ex, gen)
    assert streamed == alone and all(alone)
    # the first prefill holds rows of clusters 1 and 2; later rows join a batch that is still decoding
    assert sum(prefills) == len(PAIRS) and prefills[0] == 2 and 1 in prefills


def test_the_gate_matters_so_a_wrong_cluster_would_be_seen(expl):
    """Control for the test above: the same prompt and vectors under another cluster's gate decode to
    another text, and so does the stream when every row is given cluster 0."""
    ex, gen = expl
    module = ex.module
    user_vec, item_vec, _ = ex.inputs(["u0"], ["i1"])
    enc = module.encode(ex.prompts(["u0"], ["i1"]), side="left")
    texts = {c: module.generate(enc["input_ids"], enc["attention_mask"], user_vec, item_vec, torch.tensor([c]), gen)[0]
             for c in range(3)}
    assert len(set(texts.values())) == 3
    wrong, _ = _streamed(ex, gen, clusters=[0] * len(PAIRS))
    assert wrong != _alone(ex, gen)


def test_the_shared_prefix_stops_before_the_pair_and_its_cache_depends_on_the_cluster(expl):
    ex, _ = expl
    module = ex.module
    prefix = D.prefix_ids(module)
    row = module.encode(ex.prompts(["u0"], ["i1"]), side="left")["input_ids"][0].tolist()
    assert prefix and row[:len(prefix)] == prefix and row[len(prefix)] == module.token_ids[0]
    caches = []
    for c in (0, 1):
        with torch.inference_mode(), route_by(module.moes, torch.tensor([c])):
            caches.append(SharedPrefix(module.llm, prefix).cache)
    first, last = caches[0].layers, caches[1].layers
    assert torch.equal(first[0].keys, last[0].keys)  # layer 0's keys come before any MoE MLP
    assert (first[-1].keys - last[-1].keys).abs().max() > 1e-3  # later ones carry the cluster's experts: one prefix per cluster


def test_prefill_and_step_of_a_mixed_batch_give_each_row_its_logits_alone(expl):
    """Numbers behind the greedy test: a prefill group of three clusters (each on its cluster's prefix
    cache, joined and put back in order) and one decode step give every row the logits of a full
    forward of that row alone under its own gate."""
    ex, _ = expl
    module, live, keys = ex.module, D.LiveRows(), [0, 2, 1, 4, 3]  # clusters 1, 0, 2, 0, 1: regrouped out of order
    user_vec, item_vec, clusters = ex.inputs([u for u, _ in PAIRS], [i for _, i in PAIRS])
    prompts = ex.prompts([u for u, _ in PAIRS], [i for _, i in PAIRS])
    for n in keys:
        live.rows[n] = (module.encode([prompts[n]])["input_ids"][0].tolist(), user_vec[n], item_vec[n], int(clusters[n]))
    assert sorted({live.rows[n][3] for n in keys}) == [0, 1, 2]
    with torch.inference_mode():
        logits, cache, mask, pos = D.prefill_by_cluster(module, live, 0)(keys)
        assert live.order == keys
        tokens = logits.argmax(-1)
        stepped = D.step_by_cluster(module, live)(tokens, torch.cat([mask, mask.new_ones(len(keys), 1)], 1), pos, cache)
        for k, n in enumerate(keys):
            ids = torch.tensor([live.rows[n][0]])
            embeds = module._embeds(ids, user_vec[n:n + 1], item_vec[n:n + 1])
            embeds = torch.cat([embeds, module.llm.get_input_embeddings()(tokens[k:k + 1])[:, None]], 1)
            with route_by(module.moes, clusters[n:n + 1]):
                alone = module.llm(inputs_embeds=embeds).logits[0]  # (T + 1, V)
            assert torch.allclose(logits[k], alone[-2], atol=1e-4), n
            assert torch.allclose(stepped[k], alone[-1], atol=1e-4), n


def test_a_row_that_cannot_be_prepared_fails_alone(expl):
    ex, gen = expl
    user_vec, item_vec, clusters = ex.inputs(["u0", "u1"], ["i1", "i1"])
    prompt = ex.prompts(["u0"], ["i1"])[0]
    rows = [("bad", "no placeholders here", user_vec[0], item_vec[0], 0),
            ("far", prompt, user_vec[0], item_vec[0], 7),
            ("ok", prompt, user_vec[1], item_vec[1], int(clusters[1]))]
    got = {}
    with torch.inference_mode():
        D.stream(ex.module, lambda free: [rows.pop(0) for _ in range(min(free, len(rows)))], got.__setitem__, gen)
    assert isinstance(got["bad"], ValueError) and "<USER_VEC>" in str(got["bad"])
    assert isinstance(got["far"], ValueError) and "0..2" in str(got["far"])
    assert got["ok"] == _alone(ex, gen)[1]


def _perturb_experts(module, scale=3.0):
    """Upcycled experts are identical copies (the gate changes nothing): make them and the routers differ."""
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for moe in module.moes:
            for p in moe.parameters():
                p.add_(scale * p.detach().std() * torch.randn(p.shape, generator=g))


def test_whyrec_serve_streams_gavamoe_with_the_texts_of_the_micro_batcher(tmp_path_factory, monkeypatch):
    pytest.importorskip("fastapi", reason="the serve extra is not installed (pip install 'whyrec[serve]')")
    from fastapi.testclient import TestClient
    from serve_tiny import SEEN, USERS, tiny_gavamoe

    from whyrec.serve.app import ServeSettings, create_app
    from whyrec.serve.batcher import Batcher
    from whyrec.serve.cache import ExplanationCache
    from whyrec.serve.continuous import ContinuousBatcher
    from whyrec.serve.server import build_app

    streamed = build_app(str(tiny_gavamoe(tmp_path_factory)), cache="none",
                         generation=GenerationConfig(max_new_tokens=6, batch_size=2))
    assert isinstance(streamed.state.batcher, ContinuousBatcher)  # `whyrec serve`'s default for GaVaMoE now
    model = streamed.state.model
    batched = create_app(model, ExplanationCache(None), ServeSettings(max_batch=2))
    assert isinstance(batched.state.batcher, Batcher)
    vae = model.explainer.encoder  # untrained, it puts every pair in cluster 0: alternate them by user instead
    monkeypatch.setattr(vae, "cluster", lambda users, items, sample=False: torch.tensor([vae.user2idx[u] % 2 for u in users]))
    _perturb_experts(model.explainer.module)
    bodies = [{"user": u, "item": SEEN[u][0]} for u in USERS[:4]] + [{"user": "u0", "item": "no-such-item"}]
    ref_clusters = model.explainer.inputs([b["user"] for b in bodies[:4]], [b["item"] for b in bodies[:4]])[2]
    assert ref_clusters.tolist() == [0, 1, 0, 1]  # the concurrent requests span both of the VAE's clusters
    with TestClient(streamed) as s, TestClient(batched) as b:
        got = {}
        threads = [threading.Thread(target=lambda n=n: got.__setitem__(n, s.post("/explain", json=bodies[n])))
                   for n in range(len(bodies))]
        [t.start() for t in threads]
        [t.join(60) for t in threads]
        assert [got[n].status_code for n in range(len(bodies))] == [200] * 4 + [404]
        ref = [b.post("/explain", json=body).json()["explanation"] for body in bodies[:4]]
        assert [got[n].json()["explanation"] for n in range(4)] == ref
        ready = s.get("/ready").json()
        assert ready["generate_calls"] >= 1 and ready["mean_batch"] <= 2  # prefills take at most the free slots
    saved = model.gen
    try:
        model.gen = GenerationConfig(num_beams=2)
        assert model.explain_stream is None  # beam search: the server keeps the micro-batcher
        model.gen = GenerationConfig(drop_finished=False)
        assert model.explain_stream is None
    finally:
        model.gen = saved
