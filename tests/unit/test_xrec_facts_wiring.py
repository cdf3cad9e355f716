"""XRec's item facts slot end to end (issue 20): a run trained with `--xrec.item_facts` (the default
for new runs) saves the slot's text, trains and serves with it, for known and cold-start users; a
folder whose config.json predates the field prompts without it, exactly as it was trained."""

from __future__ import annotations

import json
import shutil

import pytest
import serve_tiny as T

from whyrec.methods.catalog import Pair
from whyrec.methods.xrec import model as XM


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return T.tiny_run(tmp_path_factory)


def _recording(monkeypatch) -> list[str]:
    seen: list[str] = []
    encode = XM.XRec.encode

    def record(self, prompts, *args, **kwargs):
        probe = self.prompt("x", "", "")  # decode.prefix_ids' probe for the shared prompt prefix: no pair's
        seen.extend(p for p in prompts if p != probe)
        return encode(self, prompts, *args, **kwargs)

    monkeypatch.setattr(XM.XRec, "encode", record)
    return seen


def _served(folder):
    from whyrec.config import GenerationConfig
    from whyrec.methods.xrec.served import XRecModel

    return XRecModel(folder, device="cpu", generation=GenerationConfig(max_new_tokens=2, batch_size=4))


def test_new_runs_train_and_serve_with_item_facts(root, tmp_path, monkeypatch):
    import pandas as pd

    from whyrec.config import ModelConfig, TrainConfig, XRecConfig
    from whyrec.methods.xrec.train import train_explainer

    assert XRecConfig().item_facts is True  # on for new runs
    seen = _recording(monkeypatch)
    out = tmp_path / "facts"
    train_explainer(str(root / "data"), str(root / "encoder"), str(out),
                    model=ModelConfig("tiny-random-llama", device="cpu", dtype="float32"),
                    xrec=XRecConfig(n_exps=2, item_noun="movie", max_prompt_words=12),
                    train=TrainConfig(batch_size=4, max_steps=2, max_target_tokens=8))
    assert seen and all("movie facts: " in p for p in seen)
    assert sum("movie facts: genre: " in p for p in seen) >= len(seen) // 2  # MovieLens items have genres

    items = pd.read_parquet(out / "items.parquet").set_index("item")
    assert items["facts"].str.startswith("genre: ").mean() > 0.5
    served = _served(out)
    user = next(iter(served.enc.user2idx))
    item, other = list(served.enc.item2idx)[:2]
    seen.clear()
    served.explain([Pair(user, item), Pair("cold", item, liked=(other,))])
    assert len(seen) == 2 and all(f"movie facts: {items.loc[item, 'facts']} " in p for p in seen)


def test_a_folder_saved_before_the_field_prompts_without_facts(root, tmp_path, monkeypatch):
    old = tmp_path / "old"
    shutil.copytree(root / "explainer", old)
    config = json.loads((old / "config.json").read_text())
    assert config["xrec"].pop("item_facts") is True  # the shared tiny run was trained with the slot
    (old / "config.json").write_text(json.dumps(config))
    served = _served(old)
    assert served.explainer.module.cfg.item_facts is False
    seen = _recording(monkeypatch)
    item = next(iter(served.enc.item2idx))
    served.explain([Pair(next(iter(served.enc.user2idx)), item), Pair("cold", item, liked=(item,))])
    assert len(seen) == 2 and not any("facts:" in p for p in seen)
    assert all("movie name: " in p and " user profile: " in p for p in seen)
