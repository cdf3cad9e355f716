"""The RecAlpaca prompt for any user of an instruction-data folder, for `whyrec recommend`.

Users with a training record get that record's prompt. Every other user the folder's encoder
knows gets a prompt built the same way (same encoder, history split, candidates and
instruction pool) without an output: at inference time there is nothing to teach.
"""

from __future__ import annotations

import json
from pathlib import Path

from whyrec.utils import WhyrecError, read_json


def user_prompt(folder: str | Path, user: str) -> dict:
    """`{"instruction", "input", "candidates", "top1"}` for `user` from a `whyrec data instructions` folder."""
    folder, user = Path(folder), str(user)
    records = folder / "instructions.jsonl"
    if not records.exists() or not (folder / "run.json").exists():
        raise WhyrecError(f"{folder} is not an instruction-data folder; build one with `whyrec data instructions`")
    with open(records, encoding="utf-8") as f:
        for line in f:
            rec = json.loads(line)
            if str(rec.get("user")) == user:
                return {k: rec[k] for k in ("instruction", "input", "candidates", "top1")}
    return _build(folder, user)


def _build(folder: Path, user: str) -> dict:
    import numpy as np

    from whyrec.data import schema as S
    from whyrec.data.movielens import load_ml100k
    from whyrec.encoders.artifact import load_encoder
    from whyrec.methods.recalpaca.instructions.examples import (
        ExampleContext,
        build_example,
        short_title_facts,
        split_from_encoder,
    )
    from whyrec.methods.recalpaca.instructions.prompts import instruction_pool
    from whyrec.methods.recalpaca.instructions.testusers import banned_items, match_test_users
    from whyrec.methods.recalpaca.instructions.titles import short_title

    config = read_json(folder / "run.json").get("config") or {}
    if not config.get("encoder"):
        raise WhyrecError(f"unknown user {user!r}: {folder} has no record for them and names no encoder "
                          "to build one with")
    data = load_ml100k()
    if user not in set(data.interactions[S.USER]):
        raise WhyrecError(f"unknown user {user!r}: MovieLens-100K users are 1..943")
    test = config.get("exclude_test")
    banned = banned_items(data, match_test_users(test, data)) if test and Path(test).exists() else {}
    inter = data.interactions
    if banned:
        leaked = [i in banned.get(u, ()) for u, i in zip(inter[S.USER], inter[S.ITEM], strict=True)]
        inter = inter[~np.array(leaked, dtype=bool)]
    enc = load_encoder(config["encoder"])
    inter = split_from_encoder(inter[inter[S.USER] == user], enc, banned)
    idx2item = [""] * enc.n_items
    for item, i in enc.item2idx.items():
        idx2item[i] = item
    ctx = ExampleContext(facts=short_title_facts(data), titles={str(i): short_title(t) for i, t in zip(
        data.items[S.ITEM], data.items[S.TITLE], strict=True)}, user_rows=dict(tuple(inter.groupby(S.USER))),
        users=data.users.set_index(S.USER), enc=enc, idx2item=idx2item, banned=banned,
        pool=instruction_pool(folder, None, 0, config.get("seed", 0), None),
        n_candidates=config.get("n_candidates", 20), seed=config.get("seed", 0))
    example = build_example(ctx, user)
    if isinstance(example, str):
        raise WhyrecError(f"cannot build a prompt for user {user!r} ({example.replace('_', ' ')})")
    return {k: example[k] for k in ("instruction", "input", "candidates", "top1")}
