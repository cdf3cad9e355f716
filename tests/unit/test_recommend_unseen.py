"""`recommend` for a user leaves out everything they interacted with (valid/test too), keeps the
held-out items with exclude="train" / include_held_out, and XRec/GaVaMoE build their LLM only
for the first explanation (issue 21). A real tiny XRec run (tests/serve_tiny.py) and tiny
GaVaMoE folders written by its own save function."""

import json
import shutil
import threading
import time

import pandas as pd
import pytest
import serve_tiny as T

from whyrec.config import GenerationConfig
from whyrec.methods.catalog import Pair, recommend_for
from whyrec.methods.xrec import artifact as XA
from whyrec.runs import load_run
from whyrec.utils import WhyrecError


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return T.tiny_run(tmp_path_factory)


def _splits(run, user):
    inter = pd.read_parquet(run / "data" / "interactions.parquet").astype(str)
    mine = inter[inter["user"] == user]
    return set(mine.loc[mine["split"] == "train", "item"]), set(mine.loc[mine["split"] != "train", "item"])


def _busiest_held_out_user(run) -> str:
    inter = pd.read_parquet(run / "data" / "interactions.parquet").astype(str)
    return inter[inter["split"] != "train"]["user"].value_counts().index[0]


@pytest.fixture
def builds(monkeypatch):
    """How many times an XRec LLM module was built."""
    calls = {"n": 0}
    real = XA.build_module

    def counting(*args, **kwargs):
        calls["n"] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(XA, "build_module", counting)
    return calls


def _check_exclusion(loaded, run, user):
    train, held = _splits(run, user)
    assert held, "the tiny data must give this user valid/test items"
    everything = len(loaded.catalog.items)
    default = [r["item"] for r in loaded.recommend(user, k=everything)]
    kept = [r["item"] for r in loaded.recommend(user, k=everything, exclude="train")]
    assert not set(default) & (train | held)
    assert set(default) == set(loaded.catalog.items) - train - held  # nothing else is lost
    assert held <= set(kept) and not set(kept) & train
    top = [r["item"] for r in loaded.recommend(user, k=5)]
    assert len(top) == 5 and top == [i for i in kept if i not in held][:5]  # same ranking, held-out dropped


def test_recommend_leaves_out_held_out_items_unless_asked(run, builds):
    loaded = load_run(run)
    user = _busiest_held_out_user(run)
    assert "held_out" in pd.read_parquet(run / "explainer" / "users.parquet").columns  # kept by the folder
    _check_exclusion(loaded, run, user)
    with pytest.raises(WhyrecError, match="exclude must be one of all, train"):
        loaded.recommend(user, k=3, exclude="none")
    assert builds["n"] == 0  # ranking needed no LLM


def test_older_folder_finds_held_out_items_in_its_dataset_folder(run, tmp_path, capsys):
    old = tmp_path / "explainer"
    shutil.copytree(run / "explainer", old)
    users = pd.read_parquet(old / "users.parquet")
    users.drop(columns=["held_out"]).to_parquet(old / "users.parquet", index=False)
    user = _busiest_held_out_user(run)
    _check_exclusion(load_run(old), run, user)  # run_config.json names the dataset folder
    assert capsys.readouterr().err == ""
    record = json.loads((old / "run_config.json").read_text())
    record["config"]["data"] = str(tmp_path / "gone")
    (old / "run_config.json").write_text(json.dumps(record))
    loaded = load_run(old)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "valid/test items" in err and "only training items are excluded" in err
    train, held = _splits(run, user)
    got = {r["item"] for r in loaded.recommend(user, k=len(loaded.catalog.items))}
    assert held <= got and not got & train  # the evaluation behaviour, as the notice says


def test_llm_is_built_only_for_the_first_explanation(run, builds):
    loaded = load_run(run)
    user = _busiest_held_out_user(run)
    with pytest.raises(WhyrecError, match="unknown user id 'nobody'"):
        loaded.recommend("nobody", k=3)
    recs = loaded.recommend(user, k=2)
    assert builds["n"] == 0 and not loaded.model.explainer.module_loaded and "explanation" not in recs[0]
    assert loaded.info()["method"] == "xrec" and builds["n"] == 0
    explained = loaded.recommend(user, k=2, explain=True)
    assert builds["n"] == 1 and all(isinstance(r["explanation"], str) for r in explained)
    loaded.explain(user, explained[0]["item"])
    assert builds["n"] == 1  # built once, then kept


def test_lazy_module_is_built_once_under_concurrent_first_calls():
    made = []

    def slow_build():
        time.sleep(0.2)
        made.append(object())
        return made[-1]

    expl = XA.Explainer(None, None, pd.DataFrame({"item": []}), pd.DataFrame({"user": []}), {}, build=slow_build)
    seen = []
    threads = [threading.Thread(target=lambda: seen.append(expl.module)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(made) == 1 and all(m is made[0] for m in seen) and expl.module_loaded


def test_serve_leaves_out_held_out_items_unless_include_held_out(run):
    pytest.importorskip("fastapi", reason="the serve extra is not installed")
    from fastapi.testclient import TestClient

    from whyrec.serve.server import build_app

    user = _busiest_held_out_user(run)
    train, held = _splits(run, user)
    with TestClient(build_app(str(run), generation=GenerationConfig(max_new_tokens=4), cache="none")) as c:
        url = f"/users/{user}/recommendations"
        default = {r["item"] for r in c.get(url, params={"k": 100}).json()["recommendations"]}
        kept = {r["item"] for r in c.get(url, params={"k": 100, "include_held_out": "true"}).json()["recommendations"]}
        assert not default & (held | train) and held & kept and not kept & train


def test_xrec_card_names_the_variant_and_its_training(run):
    card = (run / "explainer" / "README.md").read_text()
    config = json.loads((run / "explainer" / "config.json").read_text())
    log = json.loads((run / "explainer" / "training_log.json").read_text())
    lora = config["xrec"]["lora"]
    variant = f"XRec + LoRA r={lora['r']}" if lora["enabled"] else "XRec (frozen backbone"
    assert card.startswith(f"# whyrec explainer: {variant}")
    assert config["model"]["name_or_path"] in card and f"{log['steps']} steps" in card
    assert f"{log['examples']:,} training explanations" in card and str(run / "data") in card
    assert f"lr {config['train']['lr']:g}" in card and "lightgcn" in card.lower()


# ---- GaVaMoE: pairs.parquet keeps each pair's split; older folders without it keep every pair out
@pytest.fixture(scope="module")
def gavamoe(tmp_path_factory):
    """The shared tiny GaVaMoE folder rewritten with a split per pair: each user's first item held out."""
    from whyrec.data import schema as S

    folder = tmp_path_factory.mktemp("gavamoe-splits") / "gavamoe"
    shutil.copytree(T.tiny_gavamoe(tmp_path_factory), folder)
    pairs = pd.read_parquet(folder / "pairs.parquet")
    first = pairs.groupby("user").cumcount() == 0
    pairs[S.SPLIT] = ["test" if f else "train" for f in first]
    pairs.to_parquet(folder / "pairs.parquet", index=False)
    return folder


def test_gavamoe_ranks_without_held_out_pairs_and_without_its_llm(gavamoe):
    from whyrec.registry import method_of

    model = method_of(gavamoe).load(gavamoe, device="cpu")
    assert not model.explainer.module_loaded
    for user, items in T.SEEN.items():
        held, train = {items[0]}, set(items[1:])
        assert model.catalog.history(user) == items[1:] and model.catalog.held_out(user) == [items[0]]
        default = {r["item"] for r in recommend_for(model, user, len(T.ITEMS))}
        kept = {r["item"] for r in recommend_for(model, user, len(T.ITEMS), exclude="train")}
        assert default == set(T.ITEMS) - train - held and kept == set(T.ITEMS) - train
    assert not model.explainer.module_loaded
    model.gen = GenerationConfig(max_new_tokens=2)
    assert isinstance(model.explain([Pair("u0", "i5")])[0], str)
    assert model.explainer.module_loaded


def test_gavamoe_older_folder_keeps_every_known_pair_out(tmp_path_factory, capsys):
    from whyrec.registry import method_of

    folder = T.tiny_gavamoe(tmp_path_factory)  # no split column, no run_config.json
    capsys.readouterr()  # the fixture's build output
    model = method_of(folder).load(folder, device="cpu")
    assert "every known pair is excluded" in capsys.readouterr().err
    for user, items in T.SEEN.items():
        got = {r["item"] for r in recommend_for(model, user, len(T.ITEMS), exclude="train")}
        assert got == set(T.ITEMS) - set(items)


def test_gavamoe_card_names_the_variant_and_its_training(tmp_path_factory):
    card = (T.tiny_gavamoe(tmp_path_factory) / "README.md").read_text()
    assert card.startswith("# whyrec explainer: GaVaMoE, 2 experts (top-1)")
    assert "tiny-random-llama" in card and "2 clusters" in card and "0 steps" in card


def test_gavamoe_training_pairs_carry_their_split():
    from whyrec.data import schema as S
    from whyrec.methods.gavamoe.train import known_pairs

    inter = pd.DataFrame({S.USER: ["a", "a", "b"], S.ITEM: ["x", "y", "x"], S.SPLIT: ["train", "test", "valid"]})
    texts = pd.DataFrame({S.USER: ["a", "c"], S.ITEM: ["y", "z"], S.EXPLANATION: ["e", "f"]})  # no split column
    ds = type("DS", (), {"interactions": inter, "texts": texts})()
    pairs = known_pairs(ds).set_index([S.USER, S.ITEM])[S.SPLIT].to_dict()
    assert pairs == {("a", "x"): "train", ("a", "y"): "test", ("b", "x"): "valid", ("c", "z"): "train"}


def test_pepler_reg_excludes_what_its_dataset_folder_lists(tmp_path_factory, tmp_path, capsys):
    from whyrec.registry import method_of

    folder = tmp_path / "pepler"
    shutil.copytree(T.tiny_pepler(tmp_path_factory, "reg"), folder)
    capsys.readouterr()  # the fixture's build output
    model = method_of(folder).load(folder, device="cpu")  # no run_config.json: nothing known, nothing said
    assert len(recommend_for(model, "u0", len(T.ITEMS))) == len(T.ITEMS) and "whyrec:" not in capsys.readouterr().err
    assert "not excluded" in model.info()["recommends"]
    (tmp_path / "data").mkdir()
    rows = [(u, i, "test" if n == 0 else "train") for u, items in T.SEEN.items() for n, i in enumerate(items)]
    pd.DataFrame(rows, columns=["user", "item", "split"]).to_parquet(tmp_path / "data" / "interactions.parquet")
    (folder / "run_config.json").write_text(json.dumps({"config": {"data": str(tmp_path / "data")}}))
    model = method_of(folder).load(folder, device="cpu")
    assert "training items excluded" in model.info()["recommends"]
    for user, items in T.SEEN.items():
        default = {r["item"] for r in recommend_for(model, user, len(T.ITEMS))}
        kept = {r["item"] for r in recommend_for(model, user, len(T.ITEMS), exclude="train")}
        assert default == set(T.ITEMS) - set(items) and kept == set(T.ITEMS) - set(items[1:])


def _cli_items(out: str) -> set[str]:
    import re

    found = [re.match(r"^\d+\. (?:.* \[(.+)\]|(.+)) score=", line) for line in out.splitlines()]
    return {m.group(1) or m.group(2) for m in found if m}


def test_cli_recommend_leaves_out_held_out_items(run, capsys):
    from whyrec import cli

    user = _busiest_held_out_user(run)
    train, held = _splits(run, user)
    assert cli.main(["recommend", "--run", str(run), "--user", user, "-k", "100000"]) == 0
    got = _cli_items(capsys.readouterr().out)
    assert len(got) > 100 and not got & (train | held)


@pytest.mark.skipif("include_held_out" not in __import__("inspect").signature(
    __import__("whyrec.cli", fromlist=["recommend"]).recommend).parameters,
    reason="cli.recommend has no --include_held_out yet (its owner adds the flag)")
def test_cli_recommend_include_held_out_keeps_them(run, capsys):
    from whyrec import cli

    user = _busiest_held_out_user(run)
    train, held = _splits(run, user)
    assert cli.main(["recommend", "--run", str(run), "--user", user, "-k", "100000", "--include_held_out"]) == 0
    got = _cli_items(capsys.readouterr().out)
    assert held <= got and not got & train


def test_xrec_card_of_a_lora_run(tmp_path):
    from types import SimpleNamespace

    from whyrec.config import LoraConfig, ModelConfig, TrainConfig, XRecConfig

    (tmp_path / "run_config.json").write_text(json.dumps({"config": {"data": "runs/ml/data"}}))
    enc = SimpleNamespace(config={"encoder": "lightgcn"}, dim=64, n_users=943, n_items=1682)
    ds = SimpleNamespace(meta={"name": "", "source": "ml-100k"})
    xrec = XRecConfig(lora=LoraConfig(enabled=True, r=8, alpha=16))
    log = {"steps": 1200, "examples": 80000, "first_loss": 3.1, "last_loss": 1.9, "elapsed_s": 900.0}
    card = XA.model_card(tmp_path, enc, ds, ModelConfig("HuggingFaceTB/SmolLM2-135M-Instruct"), xrec,
                         TrainConfig(max_steps=1200, lr=2e-4), log)
    assert card.startswith("# whyrec explainer: XRec + LoRA r=8\n")
    assert "LoRA r=8 (alpha 16, dropout 0.05, on q_proj, k_proj, v_proj, o_proj)" in card
    assert "`HuggingFaceTB/SmolLM2-135M-Instruct`" in card and "- data: runs/ml/data (ml-100k), 80,000 training" in card
    assert "1200 steps (max_steps 1200)" in card and "lr 0.0002" in card and "dim 64, 943 users" in card
