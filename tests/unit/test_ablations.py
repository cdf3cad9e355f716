"""CF ablations (issue 20, item 2): each kind changes the CF input actually fed to the model, the
context manager restores the model exactly, and `run_ablations` writes its table and deltas.

The tiny runs of tests/serve_tiny.py: a trained tiny XRec, untrained GaVaMoE/PEPLER/RecExplainer folders."""

from __future__ import annotations

import json

import numpy as np
import pytest
import serve_tiny as T
import torch

import whyrec
from whyrec.benchmark_ablations import ablation_table, paired_bootstrap, run_ablations
from whyrec.config import GenerationConfig
from whyrec.methods.cf_ablation import CF_KINDS, KINDS, derangement, overridden, perturbed, swapped
from whyrec.utils import WhyrecError

GEN = GenerationConfig(max_new_tokens=3, batch_size=8)


def _pairs(run):
    """Four pairs of distinct users and items the run knows."""
    users, items = run.catalog.users, run.catalog.items
    return [(users[k], items[(3 * k + 1) % len(items)]) for k in (0, 1, 3, 5)]


def test_derangement_moves_every_row_and_is_seeded():
    for n in (2, 3, 10, 57):
        perm = derangement(n, seed=4)
        assert sorted(perm) == list(range(n)) and all(p != k for k, p in enumerate(perm))
    assert derangement(30, 1) == derangement(30, 1) != derangement(30, 2)
    with pytest.raises(WhyrecError, match="at least 2"):
        derangement(1, 0)


def test_perturbed_tables():
    table = torch.randn(500, 4) * torch.tensor([1.0, 2.0, 3.0, 0.5]) + 5
    assert perturbed(table, "user", "shuffle-items", 0) is table  # another side's kind: untouched
    assert torch.equal(perturbed(table, "user", "shuffle-users", 3), table[derangement(500, 3)])
    assert torch.equal(perturbed(table, "item", "no-cf", 0), torch.zeros_like(table))
    rand = perturbed(table, "user", "random", 0)
    assert torch.allclose(rand.mean(0), table.mean(0), atol=0.3) and torch.allclose(rand.std(0), table.std(0), rtol=0.15)
    assert not torch.equal(rand, perturbed(table, "item", "random", 0))  # users and items differ


def test_swapped_and_overridden_put_everything_back():
    class Box:
        def f(self):
            return "class"

    box = Box()
    box.a = [1]
    original = box.a
    with pytest.raises(RuntimeError), swapped(box, a=[2]):
        assert box.a == [2]
        raise RuntimeError
    assert box.a is original
    with overridden(box, "f", lambda: "instance"):
        assert box.f() == "instance"
    assert box.f() == "class" and "f" not in vars(box)


# ---- what each method feeds its LLM: captured at the module that takes the CF vectors
def _xrec(tmp):
    run = whyrec.load_run(T.tiny_run(tmp) / "explainer", device="cpu", generation=GEN)
    m = run.model
    module = m.explainer.module
    return run, (module.user_adapter, module.item_adapter), (m.enc.user_emb, m.enc.item_emb), \
        (m.enc.user2idx, m.enc.item2idx)


def _gavamoe(tmp):
    run = whyrec.load_run(T.tiny_gavamoe(tmp), device="cpu", generation=GEN)
    m, vae = run.model, run.model.vae
    module = m.explainer.module
    return run, (module.user_proj, module.item_proj), (vae.model.user_emb.weight, vae.model.item_emb.weight), \
        (vae.user2idx, vae.item2idx)


def _pepler(tmp):
    run = whyrec.load_run(T.tiny_pepler(tmp, "continuous"), device="cpu", generation=GenerationConfig(batch_size=8))
    module = run.model.module
    return run, (module.user_emb, module.item_emb), (module.user_emb.weight, module.item_emb.weight), \
        (run.model.user2idx, run.model.item2idx)


def _recexplainer(tmp):
    run = whyrec.load_run(T.tiny_recexplainer(tmp), device="cpu", generation=GEN)
    module, t = run.model.module, run.model.target
    users, items = list(t.user2idx), list(t.idx2item)
    return run, (module.user_connector, module.item_connector), (t.user_vectors(users), t.item_vectors(items)), \
        ({u: k for k, u in enumerate(users)}, {i: k for k, i in enumerate(items)})


def _fed(run, modules, pairs, output=False):
    """The user and item vectors each pair's explanation was generated from (one pair per call)."""
    fed = {"user": [], "item": []}
    hooks = [mod.register_forward_hook(lambda _m, inp, out, side=side: fed[side].append(
        (out if output else inp[0]).detach().float().reshape(-1, (out if output else inp[0]).shape[-1]).clone()))
        for side, mod in zip(("user", "item"), modules)]
    try:
        texts = [run.explain(u, i) for u, i in pairs]
    finally:
        for h in hooks:
            h.remove()
    return torch.cat(fed["user"]), torch.cat(fed["item"]), texts


BUILDERS = {"xrec": (_xrec, False), "gavamoe": (_gavamoe, False), "pepler": (_pepler, True),
            "recexplainer": (_recexplainer, False)}


@pytest.mark.parametrize("name", list(BUILDERS))
def test_each_kind_changes_the_cf_input_fed_and_the_model_is_restored(name, tmp_path_factory):
    build, output = BUILDERS[name]
    run, modules, tables, maps = build(tmp_path_factory)
    model, pairs = run.model, _pairs(run)
    assert set(CF_KINDS) <= set(model.cf_ablations)
    u_rows = [maps[0][u] for u, _ in pairs]
    i_rows = [maps[1][i] for _, i in pairs]
    real = [t.detach().float().clone() for t in tables]
    full_u, full_i, before = _fed(run, modules, pairs, output)
    # captured where the rows enter the model: adapter/projection/connector inputs, PEPLER's ID lookup
    assert torch.allclose(full_u, real[0][u_rows]) and torch.allclose(full_i, real[1][i_rows])
    fed = {}
    for kind in CF_KINDS:
        with model.cf_ablation(kind, seed=5):
            fed[kind] = _fed(run, modules, pairs, output)[:2]
    perm_u, perm_i = derangement(len(real[0]), 5), derangement(len(real[1]), 5)
    su, si = fed["shuffle-users"]
    assert torch.allclose(su, real[0][[perm_u[r] for r in u_rows]]) and not torch.allclose(su, full_u)
    assert torch.allclose(si, full_i)  # items untouched
    iu, ii = fed["shuffle-items"]
    assert torch.allclose(ii, real[1][[perm_i[r] for r in i_rows]]) and not torch.allclose(ii, full_i)
    assert torch.allclose(iu, full_u)
    ru, ri = fed["random"]
    assert not torch.allclose(ru, full_u) and not torch.allclose(ri, full_i)
    assert not any(torch.allclose(row, other) for row in ru for other in real[0])  # no real user's row
    zu, zi = fed["no-cf"]
    assert torch.count_nonzero(zu) == 0 and torch.count_nonzero(zi) == 0
    after_u, after_i, after = _fed(run, modules, pairs, output)
    assert after == before and torch.equal(after_u, full_u) and torch.equal(after_i, full_i)
    assert all(torch.equal(t.detach().float(), r) for t, r in zip(tables, real))
    with pytest.raises(WhyrecError, match="unknown ablation"):
        with model.cf_ablation("shuffle-everything", 0):
            pass


def test_xrec_no_profiles_leaves_the_profiles_out_of_the_prompt(tmp_path_factory):
    run = whyrec.load_run(T.tiny_run(tmp_path_factory) / "explainer", device="cpu", generation=GEN)
    ex, (user, item) = run.model.explainer, _pairs(run)[0]
    assert "no-profiles" in run.model.cf_ablations and ex.user_profiles.get(user)
    full = ex.prompts([user], [item])[0]
    with run.model.cf_ablation("no-profiles", 0):
        bare = ex.prompts([user], [item])[0]
    assert ex.user_profiles[user].split()[0] in full and "user profile: unknown" in bare and bare != full
    assert ex.prompts([user], [item])[0] == full


def test_pepler_discrete_ablates_only_its_feature_prompt(tmp_path_factory, monkeypatch):
    run = whyrec.load_run(T.tiny_pepler(tmp_path_factory, "discrete"), device="cpu")
    model = run.model
    assert tuple(model.cf_ablations) == ("no-profiles",)
    with pytest.raises(WhyrecError, match="cannot ablate 'shuffle-users'"):
        with model.cf_ablation("shuffle-users", 0):
            pass
    seen = []
    real = model.module.generate_ids
    monkeypatch.setattr(model.module, "generate_ids", lambda u, i, prompts: seen.append(prompts) or real(u, i, prompts))
    run.explain("u0", "i1")
    with model.cf_ablation("no-profiles", 0):
        run.explain("u0", "i1")
    assert seen[0] != [[]] and seen[1] == [[]]


def test_methods_without_cf_input_offer_nothing(tmp_path_factory):
    from whyrec.methods.recalpaca.served import RecAlpacaModel

    assert not hasattr(RecAlpacaModel, "cf_ablation") and set(KINDS) >= set(CF_KINDS)


def test_paired_bootstrap_interval():
    rng = np.random.default_rng(0)
    base = rng.normal(10, 1, 400)
    res = paired_bootstrap(base, base + 2 + rng.normal(0, 0.1, 400), seed=1)
    assert res["low"] < 2 < res["high"] and abs(res["delta"] - 2) < 0.05 and res["high"] - res["low"] < 0.1
    same = paired_bootstrap(base, base)
    assert same == {"delta": 0.0, "low": 0.0, "high": 0.0, "n": 400}
    assert paired_bootstrap([1.0, None], [2.0, 5.0])["n"] == 1


def _embed(texts):
    out = np.zeros((len(texts), 64))
    for row, text in enumerate(texts):
        for word in str(text).lower().split():
            out[row, sum(map(ord, word)) % 64] += 1
    return out


def test_run_ablations_writes_table_and_deltas(tmp_path_factory, tmp_path):
    from whyrec.data.dataset import RecDataset

    root = T.tiny_run(tmp_path_factory)
    pairs = RecDataset.load(root / "data").explanation_records("test").head(5).reset_index(drop=True)
    kinds = ["shuffle-users", "no-cf", "no-profiles"]
    res = run_ablations(root / "explainer", pairs, kinds, GEN, "cpu", 3, tmp_path, data=str(root / "data"),
                        n_candidates=4, n_resamples=200, embed=_embed)
    assert res["method"] == "xrec" and res["n"] == 5 and not res["skipped"]
    assert set(res["systems"]) == {"full", *kinds} and set(res["deltas"]) == set(kinds)
    for kind in kinds:
        for metric in ("bleu4_sentence", "rougeL_f", "user_identification", "history_mentions"):
            d = res["deltas"][kind][metric]
            assert d["low"] <= d["delta"] <= d["high"] and d["n"] == 5
            means = res["systems"]
            assert d["delta"] == pytest.approx(means[kind]["means"][metric] - means["full"]["means"][metric])
    assert res["systems"]["full"]["personalisation"]["identification"]["chance"] == 0.25
    out = tmp_path / "ablations"
    cached = {k: (out / f"{k}.jsonl").read_text() for k in ["full", *kinds]}
    table = (out / "ablations.md").read_text()
    assert table == ablation_table(res) and all(f"| {k} " in table for k in ["full", *kinds])
    texts = {k: [json.loads(line)["prediction"] for line in cached[k].splitlines()[1:]] for k in cached}
    assert res["identical_to_full"] == [k for k in kinds if texts[k] == texts["full"]]
    assert all(("| " + k + " (every text identical to full" in table) == (k in res["identical_to_full"]) for k in kinds)
    assert json.loads((out / "ablations.json").read_text())["deltas"].keys() == set(kinds)
    again = run_ablations(root / "explainer", pairs, kinds, GEN, "cpu", 3, tmp_path, data=str(root / "data"),
                          n_candidates=4, n_resamples=200, embed=_embed)
    assert again == res and {k: (out / f"{k}.jsonl").read_text() for k in cached} == cached  # reused
    # the benchmark hands over its row's predictions as the full method: same result, nothing generated for it
    given = run_ablations(root / "explainer", pairs, kinds, GEN, "cpu", 3, tmp_path / "given", data=str(root / "data"),
                          n_candidates=4, n_resamples=200, embed=_embed, full=texts["full"])
    assert given == res and not (tmp_path / "given" / "ablations" / "full.jsonl").exists()
    with pytest.raises(WhyrecError, match="4 full-method texts for 5 pairs"):
        run_ablations(root / "explainer", pairs, kinds, GEN, "cpu", 3, tmp_path / "bad", full=texts["full"][:4])


def test_run_ablations_reports_kinds_a_model_does_not_offer(tmp_path_factory, tmp_path):
    import pandas as pd

    pairs = pd.DataFrame({"user": ["u0", "u1", "u2"], "item": ["i4", "i5", "i6"], "explanation": ["good plot"] * 3})
    res = run_ablations(T.tiny_pepler(tmp_path_factory, "discrete"), pairs, ["shuffle-users", "no-profiles"],
                        GenerationConfig(batch_size=8), "cpu", 0, tmp_path, n_candidates=3, embed=_embed,
                        bertscore=True)
    assert set(res["deltas"]) == {"no-profiles"} and "not offered" in res["skipped"]["shuffle-users"]
    res["identical_to_full"] = ["no-profiles"]  # as on data without profiles: the table says nothing was removed
    assert "| no-profiles (every text identical to full: nothing was removed) |" in ablation_table(res)
    table = ablation_table(res)
    assert "| shuffle-users | not offered" in table and "BERTScore F1" in table
    import re

    row = next(line for line in table.splitlines() if line.startswith("| no-profiles"))
    assert re.search(r"\| -?\d\.\d{4} \([+-]\d\.\d{4} \[", row), row  # BERTScore to 4 decimals, as everywhere
    # the BERTScore summary comes from the per-pair run, and is the one evaluate_texts gives
    from whyrec.eval.report import evaluate_texts

    texts = [json.loads(line)["prediction"] for line in (tmp_path / "ablations/full.jsonl").read_text().splitlines()[1:]]
    direct = evaluate_texts(texts, pairs["explanation"].tolist(), bertscore=True)["bertscore"]
    got = res["systems"]["full"]["metrics"]["bertscore"]
    assert got["bertscore_f1"] == pytest.approx(direct["bertscore_f1"]) and got["model"] == direct["model"]
    assert res["systems"]["full"]["means"]["bertscore_f1"] == pytest.approx(direct["bertscore_f1"])
