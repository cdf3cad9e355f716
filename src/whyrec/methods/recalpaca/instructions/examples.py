"""One user's RecAlpaca example: history, LightGCN candidates, targets and the rendered prompt.

Every user's ratings are cut into a history (what the prompt shows and the encoder trains
on) and a held-out part. The candidates are the encoder's top items with the history masked,
shown in a seeded shuffle (the test file does not list them by score either); the targets
are the held-out items rated >= 4 among them. The output is written elsewhere
(`whyrec.methods.recalpaca.instructions.outputs`).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from whyrec.config import LightGCNConfig
from whyrec.data import schema as S
from whyrec.data.dataset import RecDataset
from whyrec.data.grounded import ItemFacts, item_facts, pair_rng
from whyrec.methods.recalpaca.instructions.prompts import (
    LIKED_MIN,
    N_CHOICES,
    profile_text,
    render_input,
)
from whyrec.methods.recalpaca.instructions.titles import short_title
from whyrec.utils import WhyrecError

# Small enough for a CPU (a few minutes on ML-100K, one thread); RecAlpaca's notebook ran 1000 epochs.
DEFAULT_ENCODER = LightGCNConfig(dim=64, n_layers=3, layer_combine="mean", epochs=30, eval_every=5, patience=3)


# ---------------------------------------------------------------- history / held-out split and encoder


def split_history(inter: pd.DataFrame, holdout: float, seed: int) -> pd.DataFrame:
    """Copy with `split`: per user a seeded `holdout` share of ratings -> valid, the rest -> train."""
    frame = inter.sort_values([S.USER, S.ITEM], kind="stable").reset_index(drop=True)
    draw = np.random.default_rng(seed).random(len(frame))
    rank = pd.Series(draw).groupby(frame[S.USER].to_numpy()).rank(method="first").to_numpy()
    size = frame.groupby(S.USER)[S.ITEM].transform("size").to_numpy()
    frame[S.SPLIT] = np.where(rank <= np.floor(size * holdout), S.VALID, S.TRAIN)
    return frame


def train_history_encoder(ds: RecDataset, out: Path, config: LightGCNConfig) -> Path:
    """Train a LightGCN on `ds`'s history split into `out/encoder` (its data in `out/encoder_data`)."""
    from whyrec.encoders.train import train_encoder

    data = RecDataset(ds.interactions, ds.items, ds.users, dict(ds.user2idx), dict(ds.item2idx),
                      meta={"source": "recalpaca instructions history/held-out split"})
    data.save(out / "encoder_data")
    train_encoder(str(out / "encoder_data"), str(out / "encoder"), config=config, device="cpu")
    return out / "encoder"


def split_from_encoder(inter: pd.DataFrame, enc, banned: dict[str, set[str]]) -> pd.DataFrame:
    """`split` = train for the pairs the encoder trained on, valid for the others."""
    u = inter[S.USER].map(enc.user2idx)
    i = inter[S.ITEM].map(enc.item2idx)
    known = (u.notna() & i.notna()).to_numpy()
    trained = np.zeros(len(inter), bool)
    if known.any():
        trained[known] = np.asarray(enc.train_csr[u[known].astype(int).to_numpy(),
                                                  i[known].astype(int).to_numpy()]).ravel() > 0
    for user, items in banned.items():  # the encoder itself must not have seen a test pair
        if user in enc.user2idx:
            row = enc.train_csr[enc.user2idx[user]].indices
            hit = [it for it in items if enc.item2idx.get(it, -1) in set(row.tolist())]
            if hit:
                raise WhyrecError(f"encoder {enc.path} was trained on test item {hit[0]} of user {user}; "
                                  "train one without test pairs (build_instructions(encoder=None) does)")
    return inter.assign(**{S.SPLIT: np.where(trained, S.TRAIN, S.VALID)})


def short_title_facts(data: RecDataset) -> dict[str, ItemFacts]:
    """Item facts for the grounded reasons, titled as the prompt shows them."""
    facts = item_facts(data.items)
    return {k: ItemFacts(short_title(f.title), f.genres, f.directors, f.cast, f.year) for k, f in facts.items()}


# ---------------------------------------------------------------- one user's example


@dataclass
class ExampleContext:
    """What every user's example is built from (shared across users of one run)."""

    facts: dict[str, ItemFacts]
    titles: dict[str, str]  # item -> short title
    user_rows: pd.DataFrame
    users: pd.DataFrame
    enc: object  # EncoderArtifact
    idx2item: list[str]
    banned: dict[str, set[str]]
    pool: list[str]
    n_candidates: int
    seed: int
    max_liked: int = 40
    max_disliked: int = 10


def build_example(ctx: ExampleContext, user: str) -> dict | str:
    """The prompt, candidates and targets of one user, or the reason to skip the user.

    Keys starting with '_' (ranked candidates, history, held-out ratings) serve the output
    step and are not written.
    """
    rows = ctx.user_rows.get(user)
    if rows is None or user not in ctx.enc.user2idx or user not in ctx.users.index:
        return "unknown_user"
    hist, held = rows[rows[S.SPLIT] == S.TRAIN], rows[rows[S.SPLIT] != S.TRAIN]
    hist = hist.sort_values(S.TIMESTAMP, ascending=False, kind="stable") if S.TIMESTAMP in hist else hist
    banned = ctx.banned.get(user, set())
    u = ctx.enc.user2idx[user]
    scores = ctx.enc.user_emb[u] @ ctx.enc.item_emb.T  # [I]
    seen = ctx.enc.train_csr.indices[ctx.enc.train_csr.indptr[u]:ctx.enc.train_csr.indptr[u + 1]]
    masked = {ctx.enc.item2idx[i] for i in (*hist[S.ITEM], *banned) if i in ctx.enc.item2idx} | set(seen.tolist())
    scores[torch.tensor(sorted(masked), dtype=torch.long)] = float("-inf")
    idx2item = ctx.idx2item
    ranked = [idx2item[i] for i in torch.topk(scores, min(ctx.n_candidates, len(scores))).indices.tolist()
              if torch.isfinite(scores[i])]
    if len(ranked) < N_CHOICES:
        return "too_few_candidates"
    rng = pair_rng(ctx.seed, user, "candidates")
    shown = rng.sample(ranked, len(ranked))  # the test file lists candidates out of score order
    held_rating = dict(zip(held[S.ITEM], held[S.RATING], strict=True))
    targets = [i for i in ranked if held_rating.get(i, 0) >= LIKED_MIN]
    liked = [ctx.titles[i] for i in hist[hist[S.RATING] >= LIKED_MIN][S.ITEM]][:ctx.max_liked]
    dis = {r: [ctx.titles[i] for i in hist[hist[S.RATING] == r][S.ITEM]][:ctx.max_disliked] for r in (1, 2)}
    demo = ctx.users.loc[user]
    text = render_input(profile_text(demo.get("age"), demo.get("gender"), demo.get("occupation")), liked,
                        dis[2], dis[1], [ctx.titles[i] for i in shown], ctx.titles[ranked[0]])
    instruction = ctx.pool[zlib.crc32(f"{ctx.seed}|{user}".encode()) % len(ctx.pool)]
    return {"id": user, "user": user, "instruction": instruction, "input": text,
            "candidates": [ctx.titles[i] for i in shown], "candidate_items": shown,
            "top1": ctx.titles[ranked[0]], "top1_item": ranked[0],
            "targets": [ctx.titles[i] for i in targets], "target_items": targets,
            "_ranked": ranked, "_hist": hist, "_held": held_rating}
