"""The canonical dataset: Parquet tables plus id maps, saved as one self-describing folder."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from whyrec.data import schema as S
from whyrec.utils import WhyrecError, atomic_path, read_json, write_json

FILES = ("interactions.parquet", "items.parquet", "users.parquet", "user2idx.json", "item2idx.json", "dataset.json")


@dataclass
class RecDataset:
    """Interactions with optional per-pair text, item text and user text.

    Ids are strings everywhere; `user2idx`/`item2idx` fix the contiguous indices that
    encoders use, so the same folder always gives the same embedding rows.
    """

    interactions: pd.DataFrame
    items: pd.DataFrame
    users: pd.DataFrame
    user2idx: dict[str, int] = field(default_factory=dict)
    item2idx: dict[str, int] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)
    texts: pd.DataFrame | None = None
    """Per-pair text records that are not graph edges (XRec's tst.pkl rows): user, item,
    explanation, split. MovieLens keeps its explanations on `interactions` instead."""

    def __post_init__(self):
        validate_interactions(self.interactions, "interactions")
        self.interactions[S.USER] = self.interactions[S.USER].astype(str)
        self.interactions[S.ITEM] = self.interactions[S.ITEM].astype(str)
        if self.items is None or len(self.items) == 0:
            self.items = pd.DataFrame({S.ITEM: sorted(self.interactions[S.ITEM].unique())})
        if self.users is None or len(self.users) == 0:
            self.users = pd.DataFrame({S.USER: sorted(self.interactions[S.USER].unique())})
        self.items[S.ITEM] = self.items[S.ITEM].astype(str)
        self.users[S.USER] = self.users[S.USER].astype(str)
        if not self.user2idx:
            ids = pd.unique(pd.concat([self.users[S.USER], self.interactions[S.USER]]))
            self.user2idx = {u: i for i, u in enumerate(sorted(map(str, ids)))}
        if not self.item2idx:
            ids = pd.unique(pd.concat([self.items[S.ITEM], self.interactions[S.ITEM]]))
            self.item2idx = {it: i for i, it in enumerate(sorted(map(str, ids)))}

    @property
    def n_users(self) -> int:
        return len(self.user2idx)

    @property
    def n_items(self) -> int:
        return len(self.item2idx)

    def split(self, name: str) -> pd.DataFrame:
        if S.SPLIT not in self.interactions:
            raise WhyrecError("dataset has no split column; run `whyrec data prepare` with --split")
        return self.interactions[self.interactions[S.SPLIT] == name]

    def index_pairs(self, frame: pd.DataFrame):
        """(user_idx, item_idx) numpy arrays for a frame of this dataset."""
        u = frame[S.USER].map(self.user2idx)
        i = frame[S.ITEM].map(self.item2idx)
        if u.isna().any() or i.isna().any():
            raise WhyrecError("interactions reference ids missing from user2idx/item2idx; rebuild the dataset")
        return u.to_numpy("int64"), i.to_numpy("int64")

    def item_text(self, col: str = S.TITLE) -> dict[str, str]:
        if col not in self.items:
            return {}
        return dict(zip(self.items[S.ITEM], self.items[col].fillna("").astype(str), strict=True))

    def user_text(self, col: str = S.PROFILE) -> dict[str, str]:
        if col not in self.users:
            return {}
        return dict(zip(self.users[S.USER], self.users[col].fillna("").astype(str), strict=True))

    def summary(self) -> dict:
        counts = self.interactions[S.SPLIT].value_counts().to_dict() if S.SPLIT in self.interactions else {}
        return {"users": self.n_users, "items": self.n_items, "interactions": len(self.interactions),
                "splits": {k: int(v) for k, v in counts.items()}}

    def save(self, out: str | Path) -> Path:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        for name, frame in (("interactions", self.interactions), ("items", self.items), ("users", self.users)):
            with atomic_path(out / f"{name}.parquet") as tmp:
                frame.to_parquet(tmp, index=False)
        if self.texts is not None:
            with atomic_path(out / "texts.parquet") as tmp:
                self.texts.to_parquet(tmp, index=False)
        write_json(out / "user2idx.json", self.user2idx)
        write_json(out / "item2idx.json", self.item2idx)
        write_json(out / "dataset.json", {**self.meta, "summary": self.summary()})
        return out

    @classmethod
    def load(cls, path: str | Path) -> RecDataset:
        path = Path(path)
        if not path.is_dir():
            raise WhyrecError(f"dataset folder {path} not found; create it with `whyrec data prepare`")
        missing = [f for f in FILES if not (path / f).exists()]
        if missing:
            raise WhyrecError(f"dataset folder {path} is missing {', '.join(missing)}; re-run `whyrec data prepare`")
        try:
            frames = [pd.read_parquet(path / f"{n}.parquet") for n in ("interactions", "items", "users")]
            texts = pd.read_parquet(path / "texts.parquet") if (path / "texts.parquet").exists() else None
        except Exception as e:  # pyarrow raises several types for corrupt files
            raise WhyrecError(f"{path}: cannot read Parquet ({type(e).__name__}: {e}); re-run `whyrec data prepare`") from None
        return cls(*frames, user2idx=read_json(path / "user2idx.json"),
                   item2idx=read_json(path / "item2idx.json"), meta=read_json(path / "dataset.json"), texts=texts)

    def explanation_records(self, split: str | None = None) -> pd.DataFrame:
        """(user, item, explanation[, split]) pairs to train or evaluate explainers on."""
        frame = self.texts if self.texts is not None else self.interactions
        if S.EXPLANATION not in frame:
            raise WhyrecError("dataset has no explanation text; prepare it with explanations (MovieLens) or from XRec/review data")
        frame = frame[frame[S.EXPLANATION].fillna("").str.strip() != ""]
        if split is not None:
            if S.SPLIT not in frame:
                raise WhyrecError("explanation records have no split column; re-run `whyrec data prepare`")
            frame = frame[frame[S.SPLIT] == split]
        return frame


def validate_interactions(frame: pd.DataFrame, where: str) -> None:
    if not isinstance(frame, pd.DataFrame):
        raise WhyrecError(f"{where}: expected a table, got {type(frame).__name__}")
    missing = [c for c in S.INTERACTION_REQUIRED if c not in frame.columns]
    if missing:
        raise WhyrecError(
            f"{where}: missing column(s) {', '.join(missing)} (have: {', '.join(map(str, frame.columns))}); "
            "map yours with --user_col/--item_col"
        )
    if len(frame) == 0:
        raise WhyrecError(f"{where}: no interactions")
    if frame[S.USER].isna().any() or frame[S.ITEM].isna().any():
        raise WhyrecError(f"{where}: empty user or item ids in {int(frame[S.USER].isna().sum() + frame[S.ITEM].isna().sum())} rows; drop or fill them")
