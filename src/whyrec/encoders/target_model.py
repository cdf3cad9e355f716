"""RecExplainer's target recommenders (Lei et al., KDD 2024): the loaded model and its folder.

`TargetModel` is what the LLM side aligns to: a trained SASRec or MF with user/item vectors,
scores with each user's training history masked, and that history itself (time-ordered).
`save_target` writes the artifact folder that `whyrec.encoders.target_train.train_target`
produces; `load_target` reads it back (frozen, eval mode) and needs no other file.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

from whyrec.encoders.mf import MF, MFConfig
from whyrec.encoders.sasrec import SASRec, SASRecConfig
from whyrec.utils import WhyrecError, atomic_path, read_json, write_json, write_text

CONFIGS = {"sasrec": SASRecConfig, "mf": MFConfig}
FILES = ("config.json", "model.safetensors", "user2idx.json", "item2idx.json")


# ---------------------------------------------------------------- the loaded model
class TargetModel:
    """A trained target recommender plus each user's time-ordered training history."""

    def __init__(self, kind: str, model: SASRec | MF, user2idx: dict[str, int], item2idx: dict[str, int],
                 hist_indptr: np.ndarray, hist_items: np.ndarray, titles: dict[str, str] | None = None):
        self.kind, self.model, self.user2idx, self.item2idx = kind, model, user2idx, item2idx
        self.hist_indptr, self.hist_items = hist_indptr, hist_items  # CSR rows: item indices, oldest first
        self.titles = titles or {}
        self.idx2item = sorted(item2idx, key=item2idx.__getitem__)
        self.idx2user = sorted(user2idx, key=user2idx.__getitem__)

    @property
    def dim(self) -> int:
        return self.model.config.dim

    @property
    def n_items(self) -> int:
        return len(self.item2idx)

    def _index(self, ids: list[str], mapping: dict[str, int], what: str) -> np.ndarray:
        missing = [i for i in map(str, ids) if i not in mapping]
        if missing:
            raise WhyrecError(f"unknown {what} {missing[0]!r}: the target model knows {len(mapping)} {what}s "
                              f"(e.g. {', '.join(list(mapping)[:3])})")
        return np.fromiter((mapping[str(i)] for i in ids), dtype=np.int64, count=len(ids))

    def history(self, user: str) -> list[str]:
        u = int(self._index([user], self.user2idx, "user")[0])
        return [self.idx2item[i] for i in self.hist_items[self.hist_indptr[u]:self.hist_indptr[u + 1]]]

    def _sequences(self, users: np.ndarray, append: np.ndarray | None = None) -> torch.Tensor:
        """[B, L] left-padded last `max_seq_len` items (index + 1) of each user's history (+ `append` >= 0)."""
        L = self.model.config.max_seq_len
        out = np.zeros((len(users), L), dtype=np.int64)
        for row, u in enumerate(users):
            seq = self.hist_items[self.hist_indptr[u]:self.hist_indptr[u + 1]]
            if append is not None and append[row] >= 0:
                seq = np.append(seq, append[row])
            seq = seq[-L:]
            if len(seq) == 0:
                raise WhyrecError(f"user {self.idx2user[u]!r} has no training history for SASRec to encode")
            out[row, L - len(seq):] = seq + 1
        return torch.from_numpy(out).to(self.device)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.no_grad()
    def _user_matrix(self, users: np.ndarray, append: np.ndarray | None = None, batch: int = 4096) -> torch.Tensor:
        if self.kind == "mf":
            return self.model.user_vectors(torch.from_numpy(users).to(self.device))
        parts = [self.model.user_vector(self._sequences(users[s:s + batch], None if append is None else append[s:s + batch]))
                 for s in range(0, len(users), batch)]
        return torch.cat(parts) if parts else torch.zeros(0, self.dim, device=self.device)

    def user_vectors(self, users: list[str]) -> torch.Tensor:
        """[N, dim]: SASRec encodes the last max_seq_len train items; MF returns the user embedding."""
        return self._user_matrix(self._index(users, self.user2idx, "user"))

    @torch.no_grad()
    def item_vectors(self, items: list[str] | None = None) -> torch.Tensor:
        """[N, dim] item embeddings (all items in index order when `items` is None)."""
        emb = self.model.item_vectors().detach()
        return emb if items is None else emb[torch.from_numpy(self._index(items, self.item2idx, "item")).to(emb.device)]

    def scores(self, users: list[str]) -> torch.Tensor:
        """[N, n_items] dot-product scores, each user's training history set to -inf."""
        idx = self._index(users, self.user2idx, "user")
        scores = self._user_matrix(idx) @ self.item_vectors().T  # [N, I]
        for row, u in enumerate(idx):
            seen = torch.from_numpy(self.hist_items[self.hist_indptr[u]:self.hist_indptr[u + 1]]).to(scores.device)
            scores[row, seen] = float("-inf")
        return scores


def _build(kind: str, config, n_users: int, n_items: int) -> SASRec | MF:
    return SASRec(config, n_items) if kind == "sasrec" else MF(config, n_users, n_items)


# ---------------------------------------------------------------- artifact
def save_target(target: TargetModel, path: str | Path, card: str = "") -> Path:
    """Write config.json (with "encoder"), model.safetensors (weights + histories), id maps,
    titles.json and README.md; every file atomically, config.json last."""
    from safetensors.torch import save_file

    path = Path(path)
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in target.model.state_dict().items()}
    tensors |= {"hist_indptr": torch.from_numpy(target.hist_indptr.astype(np.int64)),
                "hist_items": torch.from_numpy(target.hist_items.astype(np.int64))}
    config = {"encoder": target.kind, **dataclasses.asdict(target.model.config),
              "n_users": len(target.user2idx), "n_items": target.n_items}
    path.mkdir(parents=True, exist_ok=True)
    with atomic_path(path / "model.safetensors") as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt", "encoder": target.kind})
    write_json(path / "user2idx.json", target.user2idx)
    write_json(path / "item2idx.json", target.item2idx)
    write_json(path / "titles.json", target.titles)
    write_text(path / "README.md", f"# {target.kind} target recommender (RecExplainer)\n\n{card}\n```python\n"
               "from whyrec.encoders.target_train import load_target\nt = load_target('path/to/this/folder')\n"
               "scores = t.scores(['some-user-id'])  # history masked\n```\n")
    write_json(path / "config.json", config)
    return path


def load_target(path: str | Path, device: str = "cpu") -> TargetModel:
    """Load a `train_target` folder (no other files needed) as a frozen, eval-mode `TargetModel`."""
    from safetensors.torch import load_file

    path, retrain = Path(path), "re-run `whyrec train encoder --encoder sasrec|mf`"
    missing = [f for f in FILES if not (path / f).is_file()]
    if missing:
        raise WhyrecError(f"target model folder {path} is missing {', '.join(missing)}; {retrain}")
    config = read_json(path / "config.json")
    kind = config.get("encoder") if isinstance(config, dict) else None
    if kind not in CONFIGS:
        raise WhyrecError(f"{path / 'config.json'}: \"encoder\" is {kind!r}, expected one of {', '.join(CONFIGS)}")
    fields = {f.name for f in dataclasses.fields(CONFIGS[kind])}
    try:
        model = _build(kind, CONFIGS[kind](**{k: v for k, v in config.items() if k in fields}),
                       int(config["n_users"]), int(config["n_items"]))
        tensors = load_file(str(path / "model.safetensors"))
        model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        indptr, items = tensors["hist_indptr"].numpy(), tensors["hist_items"].numpy()
    except Exception as e:  # missing sizes, a truncated file, missing or mis-shaped tensors
        raise WhyrecError(f"{path / 'model.safetensors'} does not fit config.json ({type(e).__name__}: {e}); {retrain}") from None
    model.requires_grad_(False)
    titles = read_json(path / "titles.json") if (path / "titles.json").is_file() else {}
    return TargetModel(kind, model.to(device).eval(), read_json(path / "user2idx.json"),
                       read_json(path / "item2idx.json"), indptr, items, titles)
