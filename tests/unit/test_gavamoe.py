"""GaVaMoE stage 2 (METHODS §4.2-4.5) on the tiny random Llama with a fake stage-1 VAE."""

import json
import random

import pandas as pd
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from whyrec.adapters.cluster_experts import (
    ClusterMoE,
    count_moe_parameters,
    decoder_layers,
    install_cluster_moe,
    route_by,
)
from whyrec.config import GenerationConfig, ModelConfig, TrainConfig
from whyrec.data import schema as S
from whyrec.data.dataset import RecDataset
from whyrec.llm.load import load_model, tiny_tokenizer
from whyrec.methods.gavamoe import artifact as GA
from whyrec.methods.gavamoe import train as GT
from whyrec.methods.gavamoe.model import GaVaMoE, GaVaMoEConfig
from whyrec.utils import WhyrecError

torch.set_num_threads(1)
TINY = ModelConfig("tiny-random-llama", dtype="float32", device="cpu")  # exact comparisons: the fp32 path
USERS, ITEMS = [f"u{k}" for k in range(8)], [f"i{k}" for k in range(6)]


class FakeVAE:
    """The stage-1 interface: n_clusters, dim, id maps, cluster() and vectors()."""

    def __init__(self, n_clusters=3, dim=8):
        self.n_clusters, self.dim = n_clusters, dim
        self.user2idx = {u: k for k, u in enumerate(USERS)}
        self.item2idx = {i: k for k, i in enumerate(ITEMS)}
        g = torch.Generator().manual_seed(0)
        self.u, self.i = torch.randn(len(USERS), dim, generator=g), torch.randn(len(ITEMS), dim, generator=g)

    def cluster(self, users, items, sample=False):
        return torch.tensor([(self.user2idx[u] + self.item2idx[i]) % self.n_clusters for u, i in zip(users, items)])

    def vectors(self, users, items):
        return self.u[[self.user2idx[u] for u in users]], self.i[[self.item2idx[i] for i in items]]


def small_cfg(**kw):
    return GaVaMoEConfig(**{"n_experts": 4, "top_k": 2, **kw})


def build(**kw):
    torch.manual_seed(0)
    llm, tok = load_model(TINY)
    return GaVaMoE(llm, tok, 8, 3, small_cfg(**kw))


def batch(module, targets=True):
    prompts = [module.prompt("Hotel Roma", 5.0, "view"), module.prompt("Old Inn by the lake", 1.0, "bed")]
    return module.encode(prompts, ["Great view and staff.", "Noisy rooms."] if targets else None)


VEC = (torch.randn(2, 8, generator=torch.Generator().manual_seed(1)), torch.randn(2, 8, generator=torch.Generator().manual_seed(2)))


def test_mixed_clusters_in_one_batch_use_their_own_router():
    torch.manual_seed(0)
    llm, _ = load_model(TINY)
    moe = install_cluster_moe(llm, n_experts=4, top_k=2, n_clusters=3, upcycle=False)[0]
    x = torch.randn(1, 6, llm.config.hidden_size).expand(2, 6, -1)  # the same tokens in both rows
    ids = torch.tensor([0, 2])
    top_idx, weights = moe.route(x, ids)
    assert not torch.equal(top_idx[0], top_idx[1])  # same tokens, different routers -> different experts
    assert torch.equal(top_idx[1], moe.routers[2](x[1]).topk(2).indices)
    assert torch.allclose(weights.sum(-1), torch.ones(2, 6))
    with route_by([moe], ids):
        both = moe(x)
    assert not torch.allclose(both[0], both[1])
    for row in (0, 1):  # a mixed batch gives each row what it gets alone
        with route_by([moe], ids[row:row + 1]):
            assert torch.allclose(moe(x[row:row + 1])[0], both[row], atol=1e-6)


def test_routing_needs_explicit_matching_ids():
    moe = ClusterMoE([torch.nn.Linear(4, 4) for _ in range(3)], hidden=4, n_clusters=2, top_k=2)
    with pytest.raises(WhyrecError, match="route_by"):
        moe(torch.randn(2, 3, 4))
    with pytest.raises(WhyrecError, match="3 cluster ids for a batch of 2"), route_by([moe], [0, 1, 1]):
        moe(torch.randn(2, 3, 4))
    with pytest.raises(WhyrecError, match="0..1"), route_by([moe], [0, 2]):
        pass
    assert moe.cluster_ids is None


def test_upcycled_model_equals_dense_model_before_training():
    module = build()
    enc = batch(module, targets=False)
    embeds = module._embeds(enc["input_ids"], *VEC)
    with torch.no_grad(), route_by(module.moes, torch.tensor([0, 2])):
        moe_logits = module.llm(inputs_embeds=embeds, attention_mask=enc["attention_mask"]).logits
    torch.manual_seed(0)
    dense, _ = load_model(TINY)
    with torch.no_grad():
        dense_logits = dense(inputs_embeds=embeds, attention_mask=enc["attention_mask"]).logits
    assert torch.allclose(moe_logits[..., :dense_logits.shape[-1]], dense_logits, atol=1e-5)


def test_a_training_forward_builds_no_kv_cache():
    """A cache per layer would also be a new torch.compile guard per layer (recompile limit 8)."""
    module = build()
    seen = []
    module.llm.register_forward_hook(lambda _m, _a, out: seen.append(out.past_key_values))
    enc = batch(module)
    module(enc["input_ids"], enc["attention_mask"], enc["labels"], *VEC, torch.tensor([0, 1])).backward()
    assert seen == [None]


def test_gradients_reach_trainable_parts_only():
    module = build(upcycle=False, ffn_width=16)
    assert module.moes[0].experts[0].gate_proj.out_features == 16
    enc = batch(module)
    module(enc["input_ids"], enc["attention_mask"], enc["labels"], *VEC, torch.tensor([0, 1])).backward()
    grads = {n: p.grad for n, p in module.named_parameters()}
    nonzero = lambda key: any(g is not None and g.abs().sum() > 0 for n, g in grads.items() if key in n)  # noqa: E731
    for key in ("experts.", "routers.", "user_proj.", "item_proj.", "lora_B"):
        assert nonzero(key), key
    frozen = [n for n, p in module.named_parameters() if not p.requires_grad]
    assert any("embed_tokens" in n for n in frozen) and any("lm_head" in n for n in frozen)
    assert any("q_proj.base_layer" in n for n in frozen) and any("norm" in n for n in frozen)
    assert all(grads[n] is None for n in frozen)


def test_upcycled_routers_start_without_gradient_and_get_one_after_a_step():
    """Identical expert copies make the output independent of the routing weights, so routers get
    no gradient on the first step; the experts' different gradients (each is weighted by its own
    routing weight) break that symmetry, so from the second step on routers learn (sparse
    upcycling needs no noise on the copies)."""
    module = build()
    enc = batch(module)
    clusters = torch.tensor([0, 1])
    params = [p for p in module.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=0.5)

    def router_grad() -> float:
        opt.zero_grad()
        module(enc["input_ids"], enc["attention_mask"], enc["labels"], *VEC, clusters).backward()
        return sum(float(p.grad.abs().sum()) for n, p in module.named_parameters() if "routers." in n and p.grad is not None)

    first = router_grad()
    expert_grads = [float(sum(p.grad.abs().sum() for p in e.parameters())) for e in module.moes[0].experts]
    assert first < 1e-6 and max(expert_grads) > 0
    opt.step()
    assert router_grad() > 1e3 * max(first, 1e-9)


def test_a_few_steps_lower_the_loss():
    module = build()
    enc = batch(module)
    opt = torch.optim.Adam([p for p in module.parameters() if p.requires_grad], lr=3e-3)
    losses = []
    for _ in range(6):
        loss = module(enc["input_ids"], enc["attention_mask"], enc["labels"], *VEC, torch.tensor([0, 1]))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.1


def test_moe_layers_subset():
    module = build(moe_layers=[0])
    layers = decoder_layers(module.llm)
    assert isinstance(layers[0].mlp, ClusterMoE) and not isinstance(layers[1].mlp, ClusterMoE)
    with pytest.raises(WhyrecError, match="out of range"):
        build(moe_layers=[5])
    with pytest.raises(WhyrecError, match="upcycled experts keep"):
        build(ffn_width=16)


def test_paper_config_shapes_on_meta_device():
    """E=12, top-2, K=5 on every layer of a Llama-2-7B-sized model, VAE dim 768 (see GaVaMoEConfig)."""
    with torch.device("meta"):
        llm = LlamaForCausalLM(LlamaConfig(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                                           num_attention_heads=32, num_key_value_heads=32, vocab_size=32000))
    module = GaVaMoE(llm, tiny_tokenizer(), 768, 5, GaVaMoEConfig())
    counts = count_moe_parameters(module.moes)
    assert len(module.moes) == 32 and len(module.moes[0].experts) == 12 and module.moes[0].top_k == 2
    assert counts == {"experts": 51_942_260_736, "routers": 7_864_320}  # 32*12*3*4096*11008, 32*5*12*4096
    lora = sum(p.numel() for n, p in module.named_parameters() if "lora_" in n)
    proj = sum(p.numel() for n, p in module.named_parameters() if "_proj." in n and n.startswith(("user", "item")))
    assert lora == 8_388_608 and proj == 6_299_648  # 32*4*8*(4096+4096); 2*(768*4096+4096)
    trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    assert trainable == counts["experts"] + counts["routers"] + lora + proj


@pytest.fixture
def data_dir(tmp_path):
    return save_toy_data(tmp_path)


def save_toy_data(tmp_path, title=lambda k: f"Hotel {k}"):
    """Synthetic hotel reviews (a fifth of the pairs in test) and an empty VAE folder under tmp_path."""
    rng = random.Random(0)
    rows = [{S.USER: u, S.ITEM: i, S.RATING: float(rng.randint(1, 5)), S.FEATURE: rng.choice(["view", "bed"]),
             S.EXPLANATION: f"the {rng.choice(['view', 'bed'])} is {rng.choice(['great', 'poor'])}",
             S.SPLIT: S.TRAIN if k % 5 else S.TEST}
            for k, (u, i) in enumerate((u, i) for u in USERS for i in ITEMS[:4])]
    items = pd.DataFrame({S.ITEM: ITEMS, S.TITLE: [title(k) for k in range(len(ITEMS))]})
    RecDataset(pd.DataFrame(rows), items, None, meta={"name": "synthetic"}).save(tmp_path / "data")
    (tmp_path / "vae").mkdir()
    (tmp_path / "vae" / "config.json").write_text("{}")
    return tmp_path


def test_save_load_round_trip_gives_identical_generations(data_dir, monkeypatch):
    monkeypatch.setattr(GA, "_load_vae", lambda path, device: FakeVAE())
    ds = RecDataset.load(data_dir / "data")
    module = build()
    with torch.no_grad():  # stand-in for training: move every trainable tensor away from its init
        for p in module.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn_like(p))
    module.eval()
    expl = GA.GaVaMoEExplainer(module, FakeVAE(), ds.item_text(), GT.known_pairs(ds), {})
    GA.save_gavamoe(data_dir / "out", expl, str(data_dir / "vae"), TINY, small_cfg(), TrainConfig(), {"steps": 0})
    loaded = GA.load_gavamoe(str(data_dir / "out"), device="cpu")
    users, items, gen = ["u0", "u3", "u5"], ["i1", "i0", "i4"], GenerationConfig(max_new_tokens=8, batch_size=2)
    before = expl.explain(users, items, gen, progress=False)
    assert loaded.explain(users, items, gen, progress=False) == before and any(before)
    assert (data_dir / "out" / "vae" / "config.json").exists()


def test_train_gavamoe_writes_a_loadable_folder(data_dir, monkeypatch):
    for mod in (GA, GT):  # training reads the VAE, loading the folder reads its copy
        monkeypatch.setattr(mod, "_load_vae", lambda path, device: FakeVAE())
    out = data_dir / "run"
    train = TrainConfig(max_steps=3, batch_size=4, lr=1e-3, checkpoint_every=2)
    log = GT.train_gavamoe(str(data_dir / "data"), str(data_dir / "vae"), str(out), TINY, small_cfg(), train)
    assert log["steps"] == 3 and len(log["losses"]) == 3 and sum(log["clusters"]) == log["examples"]
    assert {"config.json", "adapter_model.safetensors", "items.parquet", "pairs.parquet", "vae"} <= {p.name for p in out.iterdir()}
    assert not (out / "checkpoint").exists()
    assert json.loads((out / "config.json").read_text())["method"] == "gavamoe"
    texts = GA.load_gavamoe(str(out), device="cpu").explain(["u1"], ["i2"], GenerationConfig(max_new_tokens=4), progress=False)
    assert len(texts) == 1
