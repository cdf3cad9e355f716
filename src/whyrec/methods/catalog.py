"""What serving asks of a loaded method, whatever the method: one small protocol, one catalog.

Each method's served adapter lives in its package (`whyrec.methods.<name>.served`); the
method object's `load` builds it (`whyrec.registry.method_of(folder).load(...)`). The adapters
compose a `Catalog` (ids, titles, profiles, history and the search the page uses) instead of
inheriting one, so each file says only what its method does differently: what recommends and
what explains. Method-independent (imports only core), so every method package may use it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from whyrec.identity import base_model_identity


@dataclass(frozen=True)
class Pair:
    """One explanation job. `liked` is set (and `user` is a synthetic key) for cold-start users."""

    user: str
    item: str
    liked: tuple[str, ...] = ()


class Unsupported(Exception):
    """The method cannot answer this request (HTTP 409 with this one-line message)."""


def revision(folder: Path, files: list[str], extra: str = "") -> str:
    """Short sha256 of the files that decide the text, `extra` (decoding settings) and the
    identity of the base model the run's config.json names (a replaced backbone changes texts)."""
    h = hashlib.sha256(extra.encode())
    h.update(json.dumps(base_model_identity(folder), sort_keys=True).encode())
    for name in files:
        with open(folder / name, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()[:16]


@dataclass
class Catalog:
    """The ids a model knows, their text and history, and the search behind GET /users and /items."""

    users: list[str]
    items: list[str]
    titles: dict[str, str] = field(default_factory=dict)
    user_profiles: dict[str, str] = field(default_factory=dict)
    item_profiles: dict[str, str] = field(default_factory=dict)
    history_of: Callable[[str], list[str]] = lambda user: []
    also_user: Callable[[str], bool] = lambda user: False
    """Users outside `users` the model can still answer for (RecAlpaca builds their prompt on demand)."""
    held_out_of: Callable[[str], list[str]] = lambda user: []
    """Items the user interacted with that the model's `recommend` does not exclude by itself (the
    valid/test splits): `recommend_for` drops them for a user asking for recommendations."""

    def __post_init__(self):
        self._users, self._items = set(self.users), set(self.items)
        self.users = sorted(self.users, key=lambda u: (len(u), u))  # "1" before "10" before "100"

    def has_user(self, user: str) -> bool:
        return user in self._users or self.also_user(user)

    def has_item(self, item: str) -> bool:
        return item in self._items

    def title(self, item: str) -> str:
        return self.titles.get(item) or item

    def profile(self, user: str) -> str:
        return self.user_profiles.get(user, "")

    def item_profile(self, item: str) -> str:
        return self.item_profiles.get(item, "")

    def history(self, user: str) -> list[str]:
        return self.history_of(user)

    def held_out(self, user: str) -> list[str]:
        return self.held_out_of(user)

    def search_items(self, q: str, limit: int) -> list[str]:
        q = q.casefold().strip()
        exact = [i for i in self.items if i.casefold() == q]
        hits = [i for i in self.items if q in self.title(i).casefold() and i not in exact]
        return (exact + hits)[:limit]

    def search_users(self, q: str, limit: int) -> list[str]:
        q = q.casefold().strip()
        exact = [u for u in self.users if u.casefold() == q]
        rest = [u for u in self.users if q in u.casefold() and u not in exact]
        if len(exact) + len(rest) < limit and q:  # then profile text ("nurse", "sci-fi")
            rest += [u for u in self.users if q in self.profile(u).casefold() and u not in exact and u not in rest]
        return (exact + rest)[:limit]

    def rows(self, items: list[str], scores: list[float]) -> list[dict]:
        """Ranked recommendation rows as the API returns them."""
        return [{"item": i, "title": self.title(i), "score": round(float(s), 4)} for i, s in zip(items, scores)]


class ServedModel(Protocol):
    """One loaded artifact behind the API. `explain` runs in the batcher's worker thread.

    `recommend` rows may already carry an "explanation" (RecAlpaca's reasons); `explain` may put
    an `Unsupported` in place of a text for a pair it cannot explain (answered 409).
    """

    catalog: Catalog
    revision: str
    cold_start: bool  # POST /recommendations and /explain with "liked" (XRec only)

    def info(self) -> dict: ...

    def recommend(self, user: str, k: int) -> list[dict]: ...

    def recommend_cold(self, liked: list[str], k: int) -> list[dict]: ...

    def explain(self, pairs: list[Pair]) -> list[str | Unsupported]: ...


EXCLUDE = ("all", "train")


def recommend_for(model: ServedModel, user: str, k: int, exclude: str = "all") -> list[dict]:
    """`model.recommend(user, k)` without anything the user interacted with (`exclude="all"`, what a
    user asking for recommendations wants), or without training items only (`"train"`, the ranking
    evaluation sees, where the held-out items are the answers). Asks the model for k + the held-out
    count and drops those, so every method, a user-registered one included, behaves the same."""
    from whyrec.utils import WhyrecError

    if exclude not in EXCLUDE:
        raise WhyrecError(f"exclude must be one of {', '.join(EXCLUDE)} (got {exclude!r})")
    held_out = getattr(model.catalog, "held_out", None)  # a registered method's own catalog may lack it
    held = set(held_out(user)) if exclude == "all" and held_out is not None else set()
    if not held:
        return model.recommend(user, k)
    return [r for r in model.recommend(user, k + len(held)) if r["item"] not in held][:k]


def top_unseen(torch, scores, seen: list[int], k: int) -> tuple[list[int], list[float]]:
    """Indices and values of the k best scores [I] outside `seen`."""
    if seen:
        scores = scores.index_fill(0, torch.tensor(seen, dtype=torch.long), float("-inf"))
    top = torch.topk(scores, min(k, len(scores) - len(set(seen))))
    return top.indices.tolist(), top.values.tolist()


def dataset_label(folder: Path, meta: dict) -> str | None:
    """The dataset a folder was trained on: its recorded name, else the data folder's source, plus its path.

    Older loaders (MovieLens) saved an empty name, so /info showed null; run_config.json still
    records the data folder, whose dataset.json names the source.
    """
    name, data = meta.get("dataset") or None, recorded_data(folder)
    if not name and data and (Path(data) / "dataset.json").is_file():
        try:
            name = json.loads((Path(data) / "dataset.json").read_text()).get("source")
        except (OSError, ValueError, AttributeError):
            pass
    if data:
        return f"{name or Path(data).name} ({data})"
    return name


def recorded_data(folder: Path) -> str | None:
    """The dataset folder the training of `folder` read, as its run_config.json records it."""
    try:
        return json.loads((Path(folder) / "run_config.json").read_text())["config"].get("data")
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def interactions_of(folder: Path, consequence: str = "only training items are excluded from recommendations"
                    ) -> dict[str, dict[str, list[str]]] | None:
    """Every user's items by split ({user: {split: [item]}}) from the dataset folder `folder` was
    trained on: how folders saved before they kept their held-out items find them. None (and a
    one-line notice ending in `consequence`) when that folder is gone."""
    import sys

    import pandas as pd

    from whyrec.data import schema as S

    data = recorded_data(folder)
    path = Path(data) / "interactions.parquet" if data else None
    if path is None or not path.is_file():
        print(f"whyrec: {folder} does not list its users' valid/test items and its dataset folder "
              f"({data or 'not recorded'}) is gone; {consequence}", file=sys.stderr)
        return None
    frame = pd.read_parquet(path, columns=[S.USER, S.ITEM, S.SPLIT]).astype(str)
    out: dict[str, dict[str, list[str]]] = {}
    for (user, split), items in frame.groupby([S.USER, S.SPLIT], sort=False)[S.ITEM]:
        out.setdefault(user, {})[split] = items.tolist()
    return out


def held_out_lists(by_user: dict[str, dict[str, list[str]]] | None) -> dict[str, list[str]]:
    """{user: items outside the training split} of `interactions_of`'s answer."""
    from whyrec.data import schema as S

    return {u: [i for split, items in splits.items() if split != S.TRAIN for i in items]
            for u, splits in (by_user or {}).items()}
