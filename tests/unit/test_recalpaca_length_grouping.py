"""RecAlpaca's length-grouped micro-batches (`--recalpaca.group_by_length`, default on): less padding on
the rows its instruction builder writes, a killed-and-resumed run equal to an uninterrupted one, and
the Trainer's old random order with the option off."""

import json
from dataclasses import asdict

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from safetensors.torch import load_file
from test_length_grouping import killed_and_resumed, recording_trainer
from test_recalpaca import TINY, _tiny_cfg, _write

from whyrec.config import LightGCNConfig
from whyrec.data import schema as S
from whyrec.data.dataset import RecDataset
from whyrec.llm.load import load_model
from whyrec.methods.recalpaca import train as RT
from whyrec.methods.recalpaca.config import RecAlpacaConfig
from whyrec.outputs import OutputConflict, fingerprint_of

REAL_TRAINER_CLASS = RT._trainer_class


@pytest.fixture(scope="module")
def builder_rows(tmp_path_factory) -> list[dict]:
    """RecAlpaca rows from `build_instructions` (grounded outputs) on a small world shaped like ML-100K:
    users rate 12-60 of 80 movies, so the prompts' liked/disliked title lists vary in length."""
    from whyrec.encoders.artifact import save_lightgcn
    from whyrec.encoders.lightgcn import LightGCN
    from whyrec.methods.recalpaca.instructions.build import build_instructions

    tmp, rng, n_users, n_items = tmp_path_factory.mktemp("world"), np.random.default_rng(0), 120, 80
    items = pd.DataFrame({S.ITEM: [str(k) for k in range(n_items)],
                          S.TITLE: [f"Movie {k} (19{50 + k % 50})" for k in range(n_items)],
                          "genre": [[("Drama", "Comedy", "Horror")[k % 3]] for k in range(n_items)],
                          "director": [[f"d{k % 5}"] for k in range(n_items)], "cast": [[] for _ in range(n_items)],
                          "year": [1950 + k for k in range(n_items)]})
    rows = [(str(u), str(i), float(rng.integers(1, 6)), k) for u in range(n_users)
            for k, i in enumerate(rng.choice(n_items, int(rng.choice([12, 14, 16, 30, 60])), replace=False))]
    inter = pd.DataFrame(rows, columns=[S.USER, S.ITEM, S.RATING, S.TIMESTAMP])
    users = pd.DataFrame({S.USER: [str(u) for u in range(n_users)], "age": 30, "gender": "F", "occupation": "writer"})
    ds = RecDataset(inter, items, users)
    train = inter[inter[S.TIMESTAMP] < inter.groupby(S.USER)[S.TIMESTAMP].transform("size") * 0.7]
    csr = sp.csr_matrix((np.ones(len(train)), (train[S.USER].map(ds.user2idx), train[S.ITEM].map(ds.item2idx))),
                        shape=(ds.n_users, ds.n_items))
    with torch.random.fork_rng():  # a random encoder, the same one whichever tests ran before
        torch.manual_seed(0)
        encoder = LightGCN(LightGCNConfig(dim=8, n_layers=1), ds.n_users, ds.n_items, csr)
    save_lightgcn(encoder, tmp / "enc", ds.user2idx, ds.item2idx, csr)
    path = build_instructions(str(tmp / "data"), encoder=str(tmp / "enc"), exclude_test=None, n_candidates=20,
                              progress=False, data=ds)
    records = RT.load_alpaca_records(path)
    # The tiny tokenizer spends one token per byte (a BPE one ~4x fewer): keep every response.
    rows, dropped = RT.tokenize_records(load_model(TINY)[1], records, RecAlpacaConfig(cutoff_len=8192))
    assert dropped == 0 and len(rows) >= 32, len(rows)
    return rows


def _micro_batches(rows, tmp_path, group: bool, epoch: int = 0, micro: int = 8, seed: int = 0) -> list[dict]:
    """The micro-batches RecAlpaca's Trainer feeds the model in `epoch` (its own sampler and collator)."""
    model, tok = load_model(TINY)
    cfg = _tiny_cfg(micro_batch_size=micro, batch_size=micro, seed=seed, group_by_length=group)
    trainer = RT._trainer_class(group)(model=model, args=RT._training_args(cfg, tmp_path / "ckpt", False),
                                       data_collator=RT.PadCollator(tok.pad_token_id), train_dataset=rows)
    loader = trainer.get_train_dataloader()
    loader.set_epoch(epoch)
    return list(loader)


def _pad_ratio(batches: list[dict]) -> float:
    """Padded tokens over real tokens."""
    real = sum(int(b["attention_mask"].sum()) for b in batches)
    return sum(b["attention_mask"].numel() for b in batches) / real - 1


def _row_order(batches: list[dict], rows: list[dict]) -> list[int]:
    index = {tuple(r["input_ids"]): i for i, r in enumerate(rows)}
    assert len(index) == len(rows)
    return [index[tuple(ids[mask.bool()].tolist())] for b in batches
            for ids, mask in zip(b["input_ids"], b["attention_mask"], strict=True)]


def test_grouping_cuts_the_padding_of_the_builders_rows(builder_rows, tmp_path):
    lengths = [len(r["input_ids"]) for r in builder_rows]
    assert max(lengths) > 1.2 * min(lengths)  # lengths really vary
    before = _pad_ratio(_micro_batches(builder_rows, tmp_path, group=False))
    after = _pad_ratio(_micro_batches(builder_rows, tmp_path, group=True))
    assert before > 0.05 and after < before / 3, (before, after)
    grouped = _row_order(_micro_batches(builder_rows, tmp_path, group=True), builder_rows)
    assert sorted(grouped) == list(range(len(builder_rows)))  # every row once per epoch


def test_option_off_keeps_the_trainers_random_order(builder_rows, tmp_path):
    from transformers import Trainer

    assert REAL_TRAINER_CLASS(False)._get_train_sampler is Trainer._get_train_sampler
    n = len(builder_rows)
    for epoch in (0, 1):  # accelerate's seedable sampler: randperm seeded with seed + epoch
        off = _row_order(_micro_batches(builder_rows, tmp_path, False, epoch, seed=3), builder_rows)
        assert off == torch.randperm(n, generator=torch.Generator().manual_seed(3 + epoch)).tolist()
        on = _row_order(_micro_batches(builder_rows, tmp_path, True, epoch, seed=3), builder_rows)
        assert on != off and sorted(on) == sorted(off)


# ---------------------------------------------------------------- kill and resume


def _records(n: int = 16) -> list[dict]:
    """Inputs of 8 to ~180 characters: micro-batches differ in width, so their order matters."""
    return [{"instruction": "Recommend one movie.", "input": "Liked: " + ", ".join(f"film {j}" for j in range(i * 7 % 23)),
             "output": f"1. Fargo - a dark comedy ({i})."} for i in range(n)]


def _run(data, out, max_steps, save_steps, monkeypatch, kill_at=None, seen=None):
    """Train the tiny RecAlpaca (micro-batches of 2, accumulated 2); record each micro-batch's input_ids;
    raise after `kill_at` optimizer steps."""

    def recording(*args):
        assert args == (True,)  # the run asks for the length-grouped Trainer
        return recording_trainer(REAL_TRAINER_CLASS(*args), seen, kill_at)

    monkeypatch.setattr(RT, "_trainer_class", recording)
    cfg = _tiny_cfg(max_steps=max_steps, save_steps=save_steps)
    assert cfg.group_by_length and cfg.lora.dropout > 0  # dropout: the resumed RNG state matters too
    return RT.train_recalpaca(data, str(out), TINY, cfg)


def test_resumed_run_equals_an_uninterrupted_one(tmp_path, monkeypatch):
    n = 16
    data = _write(tmp_path, _records(n))
    per_epoch = n // 4  # optimizer steps per epoch: micro-batches of 2, accumulated 2 at a time
    kill = per_epoch + 1  # the checkpoint the rerun resumes from lies inside the second epoch
    total = kill + per_epoch + 1
    _, _, seen_whole = killed_and_resumed(
        lambda out, steps, save, kill_at, seen: _run(data, out, steps, save, monkeypatch, kill_at, seen),
        tmp_path, kill, total)
    assert len({len(b[0]) for b in seen_whole}) > 2  # the batches really differ in width, so order matters
    assert seen_whole[:n // 2] != seen_whole[n // 2:n]  # set_epoch reaches the sampler: a new order
    a, b = (load_file(str(tmp_path / run / "adapter_model.safetensors")) for run in ("whole", "cut"))
    assert a and a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ---------------------------------------------------------------- folders trained before the option


def test_a_folder_made_before_the_option_resumes_with_it_off_and_is_refused_with_it_on(tmp_path):
    old = {k: v for k, v in asdict(RecAlpacaConfig()).items() if k != "group_by_length"}
    assert fingerprint_of(RecAlpacaConfig(group_by_length=False)) == fingerprint_of(old)
    assert fingerprint_of(RecAlpacaConfig()) == {**fingerprint_of(old), "group_by_length": True}

    # With the option off a folder's marker is the one an older whyrec wrote (no such field) ...
    data, out = _write(tmp_path, _records(8)), tmp_path / "run"
    RT.train_recalpaca(data, str(out), TINY, _tiny_cfg(max_steps=2, group_by_length=False))
    marker = json.loads((out / ".whyrec.json").read_text())
    assert "group_by_length" not in json.dumps(marker)
    # ... so the default refuses it, naming the field, and the option off resumes it.
    with pytest.raises(OutputConflict, match="group_by_length"):
        RT.train_recalpaca(data, str(out), TINY, _tiny_cfg(max_steps=3))
    log = RT.train_recalpaca(data, str(out), TINY, _tiny_cfg(max_steps=3, group_by_length=False))
    assert log["resumed_from"] == "checkpoint-2" and log["steps"] == 3
