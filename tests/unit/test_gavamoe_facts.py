"""GaVaMoE's item facts slot (issue 20), as XRec's: a new run trains, saves and explains with the
facts in its prompt; a folder whose config.json predates the field prompts without them."""

import json

import pandas as pd
import pytest
import torch
from test_gavamoe import TINY, FakeVAE, save_toy_data, small_cfg

from whyrec.config import GenerationConfig, TrainConfig, XRecConfig
from whyrec.data import schema as S
from whyrec.llm.load import load_model
from whyrec.methods.gavamoe import artifact as GA
from whyrec.methods.gavamoe import model as GM
from whyrec.methods.gavamoe import train as GT
from whyrec.methods.gavamoe.model import GaVaMoE, GaVaMoEConfig

torch.set_num_threads(1)


def _module(**kw) -> GaVaMoE:
    torch.manual_seed(0)
    llm, tok = load_model(TINY)
    return GaVaMoE(llm, tok, 8, 3, small_cfg(item_noun="hotel", **kw))


def test_the_prompt_carries_the_facts_only_when_the_slot_is_on():
    assert GaVaMoEConfig().item_facts is True  # on for new runs
    on, off = _module(), _module(item_facts=False)
    facts = "genre: spa; year: 1999; features: view, bed"
    assert "Hotel facts: genre: spa; year: 1999; features: view, bed." in on.prompt("Roma", 5.0, None, facts=facts)
    assert "Hotel facts: unknown." in on.prompt("Roma", 5.0)  # as XRec's slot: stated, not left out
    assert "facts" not in off.prompt("Roma", 5.0, None, facts=facts)
    assert off.prompt("Roma", 5.0, None, facts=facts) == off.prompt("Roma", 5.0)


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    for mod in (GA, GT):  # training reads the VAE, loading the folder reads its copy
        monkeypatch.setattr(mod, "_load_vae", lambda path, device: FakeVAE())
    return save_toy_data(tmp_path, title=lambda k: f"Hotel {k} (19{90 + k})")


def _recording(monkeypatch) -> list[str]:
    seen: list[str] = []
    encode = GM.GaVaMoE.encode

    def record(self, prompts, *args, **kwargs):
        seen.extend(prompts)
        return encode(self, prompts, *args, **kwargs)

    monkeypatch.setattr(GM.GaVaMoE, "encode", record)
    return seen


def test_new_runs_train_save_and_explain_with_facts_and_old_folders_without(data_dir, monkeypatch):
    seen = _recording(monkeypatch)
    out = data_dir / "run"
    train = TrainConfig(max_steps=2, batch_size=4, lr=1e-3)
    GT.train_gavamoe(str(data_dir / "data"), str(data_dir / "vae"), str(out), TINY, small_cfg(item_noun="hotel"), train)
    # training prompts: the title's year and the item's training feature words, for every record
    assert seen and all("Hotel facts: year: 19" in p and "; features: " in p for p in seen)
    items = pd.read_parquet(out / "items.parquet").set_index(S.ITEM)
    assert items.loc["i1", "facts"].startswith("year: 1991; features: ")
    assert json.loads((out / "config.json").read_text())["gavamoe"]["item_facts"] is True

    seen.clear()
    gen = GenerationConfig(max_new_tokens=2, batch_size=2)
    loaded = GA.load_gavamoe(str(out), device="cpu")
    loaded.explain(["u1", "u2"], ["i1", "i5"], gen, progress=False)
    assert any(f"Hotel facts: {items.loc['i1', 'facts']}." in p for p in seen)
    assert any("Hotel facts: year: 1995." in p for p in seen)  # no training record: the year alone

    config = json.loads((out / "config.json").read_text())
    del config["gavamoe"]["item_facts"]  # as a folder saved before the field existed
    (out / "config.json").write_text(json.dumps(config))
    old = GA.load_gavamoe(str(out), device="cpu")
    assert old.module.cfg.item_facts is False
    seen.clear()
    old.explain(["u1"], ["i1"], gen, progress=False)
    assert len(seen) == 1 and "facts" not in seen[0] and 'titled "Hotel 1 (1991)"' in seen[0]


@pytest.mark.parametrize("config_class", [GaVaMoEConfig, XRecConfig])
def test_the_slot_enters_the_training_fingerprint_only_when_on(config_class, tmp_path):
    from dataclasses import asdict

    from whyrec.methods.common import training_fingerprint
    from whyrec.outputs import fingerprint_of

    old = {k: v for k, v in asdict(config_class()).items() if k != "item_facts"}  # a folder made before the field
    assert fingerprint_of(config_class(item_facts=False)) == fingerprint_of(old)  # --<method>.item_facts false resumes it
    assert fingerprint_of(config_class()) == {**fingerprint_of(old), "item_facts": True}
    # the same for a train field added later (batch_tokens): unset, it is not in the fingerprint
    fp = training_fingerprint(str(tmp_path), None, "m", TINY, {"m": config_class()}, TrainConfig())
    assert "batch_tokens" not in fp["train"]
    assert training_fingerprint(str(tmp_path), None, "m", TINY, {"m": config_class()},
                                TrainConfig(batch_tokens=512))["train"]["batch_tokens"] == 512
