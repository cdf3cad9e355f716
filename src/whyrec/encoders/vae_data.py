"""The (user, item, target) pairs the VAE-GMM trains and is evaluated on (`whyrec cluster`).

With ratings the target is the rounded rating's class; without (`feedback="interactions"`) every
observed pair is class 1 and, per observed pair, `negatives` items the user has no pair with in
any split are drawn once (seeded) as class 0, so the pairs, the digest and a resume are fixed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json

import numpy as np
import torch

from whyrec.data import schema as S
from whyrec.data.dataset import RecDataset
from whyrec.encoders.vae_gmm import N_RATINGS, VaeGmmConfig
from whyrec.utils import WhyrecError


@dataclasses.dataclass
class Pairs:
    users: torch.Tensor  # [N] long
    items: torch.Tensor  # [N] long
    targets: torch.Tensor  # [N] long: rounded rating - 1, or 1 observed / 0 sampled
    ratings: torch.Tensor  # [N] float: the rating as given (RMSE is measured against it), or the target

    def __len__(self) -> int:
        return len(self.users)


@dataclasses.dataclass
class _Data:
    splits: dict[str, Pairs]
    user2idx: dict[str, int]
    item2idx: dict[str, int]
    digest: str
    feedback: str  # "ratings" or "interactions", whatever the config asked


def resolve_feedback(ds: RecDataset, asked: str) -> str:
    """The config's `feedback`, with "auto" decided by the data: ratings when any interaction has one."""
    if asked != "auto":
        return asked
    return "ratings" if ds.has_ratings else "interactions"


def _load_data(path: str, device: str, config: VaeGmmConfig | None = None) -> _Data:
    config = config or VaeGmmConfig()
    ds = RecDataset.load(path)
    feedback = resolve_feedback(ds, config.feedback)
    if feedback == "ratings" and S.RATING not in ds.interactions:
        raise WhyrecError(f"{path} has no '{S.RATING}' column; the VAE-GMM reconstructs ratings 1..5 "
                          "(--vae.feedback interactions learns from the interactions alone)")
    frames = {name: ds.split(name) for name in S.SPLITS}  # raises without a split column
    indexed = {name: tuple(np.array(a, dtype=np.int64) for a in ds.index_pairs(f)) for name, f in frames.items()}
    if feedback == "interactions":  # sorted user * n_items + item of every pair in any split
        known = np.unique(np.concatenate([u * len(ds.item2idx) + i for u, i in indexed.values()]))
    splits, h = {}, hashlib.sha256()
    for k, (name, frame) in enumerate(frames.items()):
        users, items = indexed[name]
        if feedback == "ratings":
            rating = _ratings(path, name, frame)
            targets = np.floor(rating + 0.5).astype(np.int64) - 1  # round half up (np.rint rounds 2.5 to 2)
        else:
            users, items, targets = _with_negatives(users, items, known, len(ds.item2idx), config, k)
            rating = targets.astype("float64")
        for arr in (users, items, rating):
            h.update(np.ascontiguousarray(arr).tobytes())
        splits[name] = Pairs(*(torch.from_numpy(a).to(device) for a in (users, items, targets)),
                             torch.from_numpy(rating).float().to(device))
    if len(splits[S.TRAIN]) == 0:
        raise WhyrecError(f"{path} has no '{S.TRAIN}' interactions (splits: {ds.summary()['splits']})")
    h.update(json.dumps([ds.user2idx, ds.item2idx], sort_keys=True).encode())
    return _Data(splits, ds.user2idx, ds.item2idx, h.hexdigest()[:16], feedback)


def _ratings(path: str, name: str, frame) -> np.ndarray:
    rating = frame[S.RATING].to_numpy("float64", copy=True)
    if np.isnan(rating).any():
        raise WhyrecError(f"{path}: {int(np.isnan(rating).sum())} '{name}' interactions have no rating; drop them "
                          "or learn from the interactions alone (--vae.feedback interactions)")
    rounded = np.floor(rating + 0.5)
    if len(rounded) and (rounded.min() < 1 or rounded.max() > N_RATINGS):
        raise WhyrecError(f"{path}: ratings must round to 1..{N_RATINGS}, '{name}' has {rating.min()}..{rating.max()}")
    return rating


def _with_negatives(users: np.ndarray, items: np.ndarray, known: np.ndarray, n_items: int,
                    config: VaeGmmConfig, split_no: int, max_rounds: int = 100):
    """(users, items, targets): the observed pairs (1) then `config.negatives` sampled pairs each (0).
    Draws are redrawn while they hit a known pair; a user who has every item keeps no negative."""
    rng = np.random.default_rng([config.seed, split_no])
    neg_users = np.repeat(users, config.negatives)
    neg_items = rng.integers(0, n_items, len(neg_users))
    for _ in range(max_rounds):
        clash = np.isin(neg_users * n_items + neg_items, known)
        if not clash.any():
            break
        neg_items[clash] = rng.integers(0, n_items, int(clash.sum()))
    else:
        keep = ~np.isin(neg_users * n_items + neg_items, known)
        neg_users, neg_items = neg_users[keep], neg_items[keep]
    targets = np.concatenate([np.ones(len(users), np.int64), np.zeros(len(neg_users), np.int64)])
    return np.concatenate([users, neg_users]), np.concatenate([items, neg_items]), targets


def _batches(n: int, batch_size: int, generator: torch.Generator | None = None):
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    for start in range(0, n, batch_size):
        yield order[start : start + batch_size]
