"""Encoder artifact folders: what a trained collaborative encoder hands to the LLM side.

A folder holds `config.json` (the encoder config plus n_users/n_items and `"encoder"`),
`model.safetensors` (ego embeddings, the final propagated `user_emb`/`item_emb`, and the
training interactions as CSR `train_indptr`/`train_indices`), `user2idx.json`,
`item2idx.json` and a `README.md` card. It reloads with no other files and no pickles.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

from whyrec.config import LightGCNConfig
from whyrec.utils import WhyrecError, atomic_path, write_json, write_text

FILES = ("config.json", "model.safetensors", "user2idx.json", "item2idx.json")
TENSORS = ("user_emb", "item_emb", "train_indptr", "train_indices")


@dataclass
class EncoderArtifact:
    """Final embeddings and id maps of a trained encoder, ready for recommending."""

    user_emb: torch.Tensor  # [U, d]
    item_emb: torch.Tensor  # [I, d]
    user2idx: dict[str, int]
    item2idx: dict[str, int]
    train_csr: sp.csr_matrix  # [U, I] training interactions
    config: dict
    path: Path | None = None

    @property
    def dim(self) -> int:
        return self.user_emb.shape[1]

    @property
    def n_users(self) -> int:
        return self.user_emb.shape[0]

    @property
    def n_items(self) -> int:
        return self.item_emb.shape[0]

    def user_index(self, user_id: str) -> int:
        """Row of a raw user id; WhyrecError if the encoder never saw it."""
        try:
            return self.user2idx[str(user_id)]
        except KeyError:
            examples = ", ".join(list(self.user2idx)[:3])
            raise WhyrecError(
                f"unknown user {user_id!r}: the encoder knows {self.n_users} users (e.g. {examples})"
            ) from None

    def recommend(self, user_idx: int, k: int = 10, exclude_train: bool = True) -> tuple[list[int], list[float]]:
        """Top-k item indices and their dot-product scores for one user index."""
        if not isinstance(user_idx, (int, np.integer)) or not 0 <= user_idx < self.n_users:
            raise WhyrecError(
                f"unknown user index {user_idx!r}: the encoder has {self.n_users} users (0..{self.n_users - 1})"
            )
        scores = self.user_emb[user_idx] @ self.item_emb.T  # [I]
        if exclude_train:
            indptr = self.train_csr.indptr
            seen = self.train_csr.indices[indptr[user_idx] : indptr[user_idx + 1]]
            scores = scores.index_fill(0, torch.from_numpy(seen.astype(np.int64)), float("-inf"))
            k = min(k, self.n_items - len(seen))
        top = torch.topk(scores, min(k, self.n_items))
        return top.indices.tolist(), top.values.tolist()


def _model_card(config: dict, card: dict) -> str:
    sizes = f"- users: {config['n_users']:,}, items: {config['n_items']:,}"
    if card.get("n_train") is not None:
        sizes += f", training interactions: {card['n_train']:,}"
    lines = [
        f"# {config['encoder']} encoder", "",
        "LightGCN (He et al., SIGIR 2020) trained by `whyrec train encoder`.", "",
        f"- data: {card.get('data', 'unknown')}", sizes,
        f"- dim {config['dim']}, {config['n_layers']} layers, layer combine '{config['layer_combine']}'",
        f"- best epoch: {card.get('best_epoch', 'unknown')}",
    ]
    if card.get("valid"):
        shown = ", ".join(f"{k} {v:.4f}" for k, v in card["valid"].items() if k != "n_users")
        lines.append(f"- validation (full ranking, train items masked): {shown}")
    lines += ["", "```python", "from whyrec.encoders.artifact import load_encoder",
              "enc = load_encoder('path/to/this/folder')",
              "items, scores = enc.recommend(enc.user_index('some-user-id'), k=10)", "```", ""]
    return "\n".join(lines)


def save_lightgcn(model, path: str | Path, user2idx: dict[str, int], item2idx: dict[str, int],
                  train_csr: sp.csr_matrix, card: dict | None = None) -> Path:
    """Write a LightGCN artifact folder; every file is replaced atomically, config.json last."""
    from safetensors.torch import save_file

    path = Path(path)
    if len(user2idx) != model.n_users or len(item2idx) != model.n_items:
        raise WhyrecError(f"id maps have {len(user2idx)} users / {len(item2idx)} items, "
                          f"the model {model.n_users} / {model.n_items}")
    user_emb, item_emb = model.embeddings()
    train_csr = sp.csr_matrix(train_csr)
    tensors = {
        "user_ego": model.user_ego.detach(), "item_ego": model.item_ego.detach(),
        "user_emb": user_emb, "item_emb": item_emb,
        "train_indptr": torch.from_numpy(train_csr.indptr.astype(np.int64)),
        "train_indices": torch.from_numpy(train_csr.indices.astype(np.int64)),
    }
    tensors = {k: v.cpu().contiguous() for k, v in tensors.items()}
    config = {"encoder": "lightgcn", **dataclasses.asdict(model.config),
              "n_users": model.n_users, "n_items": model.n_items}
    path.mkdir(parents=True, exist_ok=True)
    with atomic_path(path / "model.safetensors") as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt", "encoder": "lightgcn"})
    write_json(path / "user2idx.json", user2idx)
    write_json(path / "item2idx.json", item2idx)
    write_text(path / "README.md", _model_card(config, card or {}))
    write_json(path / "config.json", config)
    return path


RETRAIN = "re-run `whyrec train encoder`"


def _read_folder(path: str | Path, required: tuple[str, ...] = TENSORS) -> tuple[dict, dict, dict, dict]:
    """(config, tensors, user2idx, item2idx) of a folder, checked; WhyrecError says what is wrong."""
    from whyrec.folders import check_weights, existing_folder, read_config, read_json_file

    path = existing_folder(path, "encoder folder")
    missing = [f for f in FILES if not (path / f).is_file()]
    if missing:
        raise WhyrecError(f"encoder folder {path} is missing {', '.join(missing)}; {RETRAIN}")
    config = read_config(path / "config.json", RETRAIN)
    if config.get("encoder") != "lightgcn":
        raise WhyrecError(f"{path / 'config.json'}: expected \"encoder\": \"lightgcn\", got {config.get('encoder')!r}")
    check_weights(path / "model.safetensors", RETRAIN)  # truncated or not safetensors: named, before loading
    try:
        from safetensors.torch import load_file

        tensors = load_file(str(path / "model.safetensors"))
    except Exception as e:  # safetensors raises SafetensorError / OSError on truncated files
        raise WhyrecError(f"{path / 'model.safetensors'} is unreadable ({type(e).__name__}: {e}); {RETRAIN}") from None
    absent = [k for k in required if k not in tensors]
    if absent:
        raise WhyrecError(f"{path / 'model.safetensors'} lacks tensor(s) {', '.join(absent)}; {RETRAIN}")
    user2idx, item2idx = (read_json_file(path / f"{kind}2idx.json", RETRAIN) for kind in ("user", "item"))
    _check_shapes(path, config, tensors, user2idx, item2idx)
    return config, tensors, user2idx, item2idx


def _check_shapes(path: Path, config: dict, tensors: dict, user2idx: dict, item2idx: dict) -> None:
    try:
        n_users, n_items, dim = int(config["n_users"]), int(config["n_items"]), int(config["dim"])
    except (KeyError, TypeError, ValueError) as e:
        raise WhyrecError(f"{path / 'config.json'} lacks a valid {e}; {RETRAIN}") from None
    expected = {"user_emb": (n_users, dim), "item_emb": (n_items, dim), "train_indptr": (n_users + 1,),
                "user_ego": (n_users, dim), "item_ego": (n_items, dim)}
    for name, shape in expected.items():
        if name in tensors and tuple(tensors[name].shape) != shape:
            raise WhyrecError(f"{path}: {name} has shape {tuple(tensors[name].shape)}, config.json says {shape}; "
                              f"{RETRAIN}")
    indptr, indices = tensors["train_indptr"], tensors["train_indices"]
    if (int(indptr[-1]) != len(indices) or (len(indices) and int(indices.max()) >= n_items)
            or bool((indptr[1:] < indptr[:-1]).any()) or (len(indices) and int(indices.min()) < 0)):
        raise WhyrecError(f"{path}: train_indptr/train_indices do not form a [{n_users}, {n_items}] matrix; {RETRAIN}")
    for kind, mapping, n in (("user", user2idx, n_users), ("item", item2idx, n_items)):
        rows = list(mapping.values()) if isinstance(mapping, dict) else [None]
        if not all(type(r) is int for r in rows) or sorted(rows) != list(range(n)):
            size = len(mapping) if isinstance(mapping, (dict, list)) else 0
            raise WhyrecError(f"{path / f'{kind}2idx.json'} does not map {kind} ids onto rows 0..{n - 1} "
                              f"({size} entries; config.json says {n}); the id map and model.safetensors "
                              f"come from different trainings: {RETRAIN}")


def _train_csr(config: dict, tensors: dict) -> sp.csr_matrix:
    indices = tensors["train_indices"].numpy()
    data = np.ones(len(indices), dtype=np.float32)
    shape = (config["n_users"], config["n_items"])
    return sp.csr_matrix((data, indices, tensors["train_indptr"].numpy()), shape=shape)


def load_encoder(path: str | Path) -> EncoderArtifact:
    """Load a trained encoder folder for recommending (no model class needed)."""
    config, tensors, user2idx, item2idx = _read_folder(path)
    train = _train_csr(config, tensors)
    return EncoderArtifact(tensors["user_emb"], tensors["item_emb"], user2idx, item2idx, train, config, Path(path))


def load_lightgcn(path: str | Path):
    """Rebuild a trainable `LightGCN` (graph and ego embeddings) from its folder."""
    from whyrec.encoders.lightgcn import LightGCN

    config, tensors, _, _ = _read_folder(path, required=(*TENSORS, "user_ego", "item_ego"))
    fields = {f.name for f in dataclasses.fields(LightGCNConfig)}
    cfg = LightGCNConfig(**{k: v for k, v in config.items() if k in fields})
    model = LightGCN(cfg, config["n_users"], config["n_items"], _train_csr(config, tensors))
    with torch.no_grad():
        model.user_ego.copy_(tensors["user_ego"])
        model.item_ego.copy_(tensors["item_ego"])
    return model
