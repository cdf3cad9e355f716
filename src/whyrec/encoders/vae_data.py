"""The (user, item, rating) pairs the VAE-GMM trains and is evaluated on (`whyrec cluster`)."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import numpy as np
import torch

from whyrec.data import schema as S
from whyrec.data.dataset import RecDataset
from whyrec.encoders.vae_gmm import N_RATINGS
from whyrec.utils import WhyrecError


@dataclasses.dataclass
class Pairs:
    users: torch.Tensor  # [N] long
    items: torch.Tensor  # [N] long
    targets: torch.Tensor  # [N] long, rounded rating - 1
    ratings: torch.Tensor  # [N] float, the rating as given (RMSE is measured against it)

    def __len__(self) -> int:
        return len(self.users)


@dataclasses.dataclass
class _Data:
    splits: dict[str, Pairs]
    user2idx: dict[str, int]
    item2idx: dict[str, int]
    digest: str


def _load_data(path: str, device: str) -> _Data:
    ds = RecDataset.load(path)
    if S.RATING not in ds.interactions:
        raise WhyrecError(f"{path} has no '{S.RATING}' column; the VAE-GMM reconstructs ratings 1..5")
    splits, h = {}, hashlib.sha256()
    for name in S.SPLITS:
        frame = ds.split(name)  # raises without a split column
        rating = frame[S.RATING].to_numpy("float64", copy=True)
        if np.isnan(rating).any():
            raise WhyrecError(f"{path}: {int(np.isnan(rating).sum())} '{name}' interactions have no rating; drop them")
        rounded = np.floor(rating + 0.5).astype(np.int64)  # round half up (np.rint rounds 2.5 to 2)
        if len(rounded) and (rounded.min() < 1 or rounded.max() > N_RATINGS):
            raise WhyrecError(f"{path}: ratings must round to 1..{N_RATINGS}, '{name}' has {rating.min()}..{rating.max()}")
        users, items = ds.index_pairs(frame)
        for arr in (users, items, rating):
            h.update(np.ascontiguousarray(arr).tobytes())
        splits[name] = Pairs(*(torch.from_numpy(np.array(a)).to(device) for a in (users, items, rounded - 1)),
                             torch.from_numpy(rating).float().to(device))
    if len(splits[S.TRAIN]) == 0:
        raise WhyrecError(f"{path} has no '{S.TRAIN}' interactions (splits: {ds.summary()['splits']})")
    h.update(json.dumps([ds.user2idx, ds.item2idx], sort_keys=True).encode())
    return _Data(splits, ds.user2idx, ds.item2idx, h.hexdigest()[:16])


def _batches(n: int, batch_size: int, generator: torch.Generator | None = None):
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    for start in range(0, n, batch_size):
        yield order[start : start + batch_size]
