"""`whyrec serve` on every method's folder: one adapter each, the same API and error shapes.

Tiny untrained runs (tests/serve_tiny.py) built once per session; what is checked is the
wiring: /info names the method and what recommends/explains, recommendations rank unseen
items (or answer 409 where the method has no recommender), /explain works, unknown ids 404.
"""

import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed (pip install 'whyrec[serve]')")
import serve_tiny as T  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from whyrec.config import GenerationConfig  # noqa: E402
from whyrec.serve.server import build_app  # noqa: E402

GEN = GenerationConfig(max_new_tokens=4)


def _client(path, generation=GEN):
    with TestClient(build_app(str(path), generation=generation, cache="none")) as c:
        yield c


def _unknown_ids_404(c, user="u0"):
    assert c.get("/users/nobody/recommendations").status_code == 404
    assert c.post("/explain", json={"user": "nobody", "item": "i1"}).status_code == 404
    bad = c.post("/explain", json={"user": user, "item": "no-such-item"})
    assert bad.status_code == 404 and "no-such-item" in bad.json()["detail"]
    cold = c.post("/recommendations", json={"liked": ["i1"]})  # cold start is XRec's
    assert cold.status_code == 409 and "cold start" in cold.json()["detail"]


def _ranks_unseen(c, user="u0", k=3):
    recs = c.get(f"/users/{user}/recommendations", params={"k": k}).json()["recommendations"]
    history = {h["item"] for h in c.get(f"/users/{user}").json()["history"]}
    assert len(recs) == k and not history & {r["item"] for r in recs} and "explanation" not in recs[0]
    assert [r["score"] for r in recs] == sorted((r["score"] for r in recs), reverse=True)
    return recs


@pytest.fixture(scope="module")
def gavamoe(tmp_path_factory):
    yield from _client(T.tiny_gavamoe(tmp_path_factory))


def test_gavamoe_ranks_by_the_vae_expected_rating(gavamoe):
    info = gavamoe.get("/info").json()
    assert info["method"] == "gavamoe" and "expected rating" in info["recommends"] and info["n_items"] == 10
    assert info["dataset"] == "tiny"
    recs = _ranks_unseen(gavamoe)
    assert all(1.0 <= r["score"] <= 5.0 for r in recs) and recs[0]["title"].startswith("Film")
    model = gavamoe.app.state.model
    assert recs[0]["score"] == pytest.approx(float(model.scores("u0")[model.vae.item2idx[recs[0]["item"]]]),
                                             abs=1e-4)
    explained = gavamoe.get("/users/u0/recommendations", params={"k": 2, "explain": "true"}).json()
    assert all(isinstance(r["explanation"], str) for r in explained["recommendations"])
    one = gavamoe.post("/explain", json={"user": "u0", "item": "i9"}).json()
    assert isinstance(one["explanation"], str) and one["title"] == "Film J"
    _unknown_ids_404(gavamoe)


@pytest.fixture(scope="module")
def recexplainer(tmp_path_factory):
    yield from _client(T.tiny_recexplainer(tmp_path_factory))


def test_recexplainer_ranks_by_its_target_and_explains(recexplainer):
    info = recexplainer.get("/info").json()
    assert info["method"] == "recexplainer" and "target model (mf)" in info["recommends"]
    recs = _ranks_unseen(recexplainer, "u1")
    target = recexplainer.app.state.model.target
    assert recs[0]["score"] == pytest.approx(float(target.scores(["u1"])[0][target.item2idx[recs[0]["item"]]]), abs=1e-4)
    assert [h["item"] for h in recexplainer.get("/users/u1").json()["history"]] == T.SEEN["u1"]
    one = recexplainer.post("/explain", json={"user": "u1", "item": recs[0]["item"]}).json()
    assert isinstance(one["explanation"], str) and one["cached"] is False
    assert recexplainer.post("/explain", json={"user": "u1", "item": recs[0]["item"]}).json()["cached"] is True
    _unknown_ids_404(recexplainer)


@pytest.fixture(scope="module")
def pepler_reg(tmp_path_factory):
    yield from _client(T.tiny_pepler(tmp_path_factory, "reg"), generation=None)  # it decodes its own `words`


@pytest.fixture(scope="module")
def pepler_continuous(tmp_path_factory):
    yield from _client(T.tiny_pepler(tmp_path_factory, "continuous"), generation=None)  # it decodes its own `words`


def test_pepler_reg_ranks_by_its_rating_head(pepler_reg):
    info = pepler_reg.get("/info").json()
    assert info["method"] == "pepler" and info["variant"] == "reg" and "rating head" in info["recommends"]
    recs = pepler_reg.get("/users/u2/recommendations", params={"k": 4}).json()["recommendations"]
    assert len(recs) == 4 and all(1.0 <= r["score"] <= 5.0 for r in recs)
    assert pepler_reg.get("/users/u2").json()["profile"] == "features: plot"
    explained = pepler_reg.get("/users/u2/recommendations", params={"k": 2, "explain": "true"}).json()
    assert all(isinstance(r["explanation"], str) for r in explained["recommendations"])
    _unknown_ids_404(pepler_reg)


def test_pepler_without_recommender_answers_409_and_explains_pairs(pepler_continuous):
    info = pepler_continuous.get("/info").json()
    assert info["method"] == "pepler" and info["variant"] == "continuous"
    refused = pepler_continuous.get("/users/u0/recommendations")
    assert refused.status_code == 409
    assert refused.json()["detail"] == "this PEPLER variant explains given pairs only; use POST /explain"
    one = pepler_continuous.post("/explain", json={"user": "u0", "item": "i4"})
    assert one.status_code == 200 and isinstance(one.json()["explanation"], str)
    assert pepler_continuous.get("/items", params={"q": "i4"}).json()["items"][0]["item"] == "i4"
    _unknown_ids_404(pepler_continuous)


@pytest.fixture(scope="module")
def recalpaca(tmp_path_factory):
    yield from _client(T.tiny_recalpaca(tmp_path_factory))


def test_recalpaca_picks_carry_their_reasons(recalpaca):
    info = recalpaca.get("/info").json()
    assert info["method"] == "recalpaca" and "picks" in info["recommends"]
    plain = recalpaca.get("/users/u3/recommendations", params={"k": 3}).json()["recommendations"]
    assert len(plain) == 3 and "explanation" not in plain[0] and set(T.ITEMS) >= {r["item"] for r in plain}
    recs = recalpaca.get("/users/u3/recommendations", params={"k": 3, "explain": "true"}).json()["recommendations"]
    assert [r["item"] for r in recs] == [r["item"] for r in plain] and all(r["explanation"] for r in recs)
    assert recalpaca.app.state.batcher.calls == 0  # the reasons came with the ranking: no explain call
    again = recalpaca.post("/explain", json={"user": "u3", "item": recs[0]["item"]}).json()
    assert again["cached"] is True and again["explanation"] == recs[0]["explanation"]
    model = recalpaca.app.state.model
    model._answers[model.answer_key("u4")] = '1. "Film C" - a gripping plot.'  # a known answer: one real pick, the rest fillers
    assert recalpaca.post("/explain", json={"user": "u4", "item": "i2"}).json()["explanation"] == "a gripping plot."
    refused = recalpaca.post("/explain", json={"user": "u4", "item": "i7"})
    assert refused.status_code == 409 and "did not pick item 'i7'" in refused.json()["detail"]
    _unknown_ids_404(recalpaca)


def test_docs_page_works_offline_and_validation_per_method(gavamoe, tmp_path, tmp_path_factory):
    import shutil

    from whyrec.serve.validate import check_artifact
    from whyrec.utils import WhyrecError

    page = gavamoe.get("/docs")
    assert page.status_code == 200 and "/openapi.json" in page.text and "http" not in page.text  # no external script or style
    for build, drop, words in ((T.tiny_gavamoe, "vae/item2idx.json", "missing item2idx.json"),
                               (lambda f: T.tiny_pepler(f, "reg"), "lm", "missing lm/"),
                               (T.tiny_recexplainer, "connectors.safetensors", "missing connectors.safetensors"),
                               (T.tiny_recalpaca, "adapter_model.safetensors", "missing adapter_model.safetensors")):
        copy = tmp_path / drop.replace("/", "_")
        shutil.copytree(build(tmp_path_factory), copy)
        (shutil.rmtree if (copy / drop).is_dir() else (lambda p: p.unlink()))(copy / drop)
        with pytest.raises(WhyrecError, match=words) as err:
            check_artifact(copy)
        assert "\n" not in str(err.value)


def test_cli_explain_goes_through_each_methods_own_loader(tmp_path_factory, capsys):
    """`whyrec explain` loads any method's folder through its registered method object (the
    same model the server uses): PEPLER folders explain too, unknown ids are one error line."""
    from whyrec.cli import main

    pepler = T.tiny_pepler(tmp_path_factory, "continuous")
    capsys.readouterr()
    assert main(["explain", "--run", str(pepler), "--user", "u0", "--item", "i4", "--device", "cpu"]) == 0
    assert capsys.readouterr().out.strip() != ""
    assert main(["explain", "--run", str(pepler), "--user", "nobody", "--item", "i4", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.count("whyrec: error:") == 1 and "unknown user id 'nobody'" in err
