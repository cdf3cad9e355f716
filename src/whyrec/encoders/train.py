"""`whyrec train encoder`: train LightGCN (He et al., SIGIR 2020) with BPR, as XRec does.

Adam, one graph propagation per batch of (user, positive, negative) triples, validation
Recall@k (train items masked) every `eval_every` epochs, early stopping with `patience`,
best weights kept. Negatives are drawn uniformly per epoch from the items seen in training
and rejected if the user has a training interaction with them (XRec samples them once).

Resumable: `out/checkpoint/checkpoint.safetensors` (weights, best weights, Adam state and, in
its metadata, the counters and RNG state) is replaced atomically after every epoch. A finished
folder whose metrics.json matches the config and data is returned without retraining.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

from whyrec.config import LightGCNConfig
from whyrec.data import schema as S
from whyrec.data.dataset import read_index_pairs
from whyrec.distributed import (
    broadcast_parameters,
    data_parallel_step,
    device_for_rank,
    distributed_run,
    is_main,
    world_size,
)
from whyrec.encoders.lightgcn import LightGCN, interaction_matrix
from whyrec.eval.ranking import evaluate_popularity, evaluate_ranking
from whyrec.outputs import destination, output_folder
from whyrec.progress import progress
from whyrec.utils import (
    WhyrecError,
    atomic_path,
    resolve_device,
    seed_everything,
    write_json,
    write_run_info,
)

log = logging.getLogger(__name__)
REPORT_KS = (10, 20)
CHECKPOINT = "checkpoint/checkpoint.safetensors"


# ---------------------------------------------------------------- negatives
def _pair_keys(train: sp.csr_matrix) -> np.ndarray:
    """Sorted int64 keys user * n_items + item of the training positives."""
    rows = np.repeat(np.arange(train.shape[0], dtype=np.int64), np.diff(train.indptr))
    return np.sort(rows * train.shape[1] + train.indices)


def _contains(sorted_keys: np.ndarray, queries: np.ndarray) -> np.ndarray:
    idx = np.minimum(np.searchsorted(sorted_keys, queries), len(sorted_keys) - 1)
    return sorted_keys[idx] == queries if len(sorted_keys) else np.zeros(len(queries), bool)


def sample_negatives(users: np.ndarray, train: sp.csr_matrix, candidates: np.ndarray,
                     rng: np.random.Generator) -> np.ndarray:
    """One uniform negative from `candidates` per user, never one of the user's train items.

    Vectorised rejection sampling: draw for everyone, redraw only the rejected entries.
    """
    n_pos_in_cand = train[:, candidates].getnnz(axis=1)  # [U]
    full = np.flatnonzero(n_pos_in_cand[np.unique(users)] >= len(candidates))
    if len(full):
        raise WhyrecError(f"user index {np.unique(users)[full[0]]} interacted with all {len(candidates)} "
                          "candidate items, so no negative exists; drop such users")
    keys, n_items = _pair_keys(train), train.shape[1]
    neg = candidates[rng.integers(len(candidates), size=len(users))]
    todo = np.flatnonzero(_contains(keys, users * n_items + neg))
    while len(todo):
        neg[todo] = candidates[rng.integers(len(candidates), size=len(todo))]
        todo = todo[_contains(keys, users[todo] * n_items + neg[todo])]
    return neg


# ---------------------------------------------------------------- data
@dataclasses.dataclass
class _Data:
    train: sp.csr_matrix  # [U, I] binarised
    valid: tuple[np.ndarray, np.ndarray]
    test: tuple[np.ndarray, np.ndarray]
    user2idx: dict[str, int]
    item2idx: dict[str, int]
    digest: str


def _load_data(path: str, config: LightGCNConfig) -> _Data:
    """Integer splits and the train CSR, streamed from the folder's Parquet (no DataFrame of ids)."""
    data = read_index_pairs(path, min_rating=config.min_rating)
    if len(data.pairs[S.TRAIN][0]) == 0:
        raise WhyrecError(f"{path} has no '{S.TRAIN}' interactions (splits: {data.split_counts})")
    train = interaction_matrix(*data.pairs[S.TRAIN], len(data.user2idx), len(data.item2idx))
    valid, test = (tuple(a.astype(np.int64) for a in data.pairs[s]) for s in (S.VALID, S.TEST))
    h = hashlib.sha256()
    for arr in (train.indptr, train.indices, *valid, *test):
        h.update(np.ascontiguousarray(arr, dtype=np.int64).tobytes())
    h.update(json.dumps([data.user2idx, data.item2idx], sort_keys=True).encode())
    return _Data(train, valid, test, data.user2idx, data.item2idx, h.hexdigest()[:16])


# ---------------------------------------------------------------- checkpoint
def _save_checkpoint(out: Path, model: LightGCN, opt: torch.optim.Optimizer, best: dict, state: dict) -> None:
    from safetensors.torch import save_file

    optim = opt.state_dict()
    tensors = {"user_ego": model.user_ego.detach(), "item_ego": model.item_ego.detach(), **best}
    tensors |= {f"optim.{pid}.{name}": t for pid, st in optim["state"].items() for name, t in st.items()}
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    meta = {"state": json.dumps(state), "param_groups": json.dumps(optim["param_groups"])}
    with atomic_path(out / CHECKPOINT) as tmp:
        save_file(tensors, str(tmp), metadata=meta)


def read_checkpoint(path: Path, resume_key: dict) -> tuple[dict, dict, dict] | None:
    """(tensors, state, metadata) of a safetensors checkpoint whose metadata holds a JSON `state`, or None
    when it is missing, unreadable, or was written for another config or data (`resume_key`)."""
    from safetensors import safe_open

    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
        state = json.loads(meta["state"])
    except Exception as e:  # a truncated or foreign file: start over
        log.warning("ignoring unreadable checkpoint %s (%s)", path, e)
        return None
    if state.get("resume_key") != resume_key:
        log.warning("checkpoint %s was made with another config or data; starting over", path)
        return None
    return tensors, state, meta


def _load_checkpoint(out: Path, resume_key: dict, model: LightGCN, opt: torch.optim.Optimizer):
    """Restore weights/optimizer in place; return (best tensors, state) or None if unusable."""
    read = read_checkpoint(out / CHECKPOINT, resume_key)
    if read is None:
        return None
    tensors, state, meta = read
    device = model.user_ego.device
    with torch.no_grad():
        model.user_ego.copy_(tensors["user_ego"])
        model.item_ego.copy_(tensors["item_ego"])
    optim: dict = {"state": {}, "param_groups": json.loads(meta["param_groups"])}
    for key, t in tensors.items():
        if key.startswith("optim."):
            _, pid, name = key.split(".", 2)
            optim["state"].setdefault(int(pid), {})[name] = t if name == "step" else t.to(device)
    opt.load_state_dict(optim)
    return {k: tensors[k].to(device) for k in ("best_user_ego", "best_item_ego") if k in tensors}, state


# ---------------------------------------------------------------- training
def _run_epoch(model: LightGCN, opt: torch.optim.Optimizer, triples: list[torch.Tensor], batch_size: int) -> float:
    """One pass of BPR steps; each step propagates over the whole graph once. Mean loss.

    Under torchrun each rank computes the BPR terms of its shard of every global batch (the
    graph propagation is repeated on every rank) and the gradients are averaged over ranks.
    """
    model.train()
    users, pos, neg = triples
    params = [p for p in model.parameters() if p.requires_grad]
    total, n = 0.0, len(users)
    for start in progress(range(0, n, batch_size), desc="batches", unit="batch", leave=False, enabled=is_main()):
        rows = range(start, min(start + batch_size, n))

        def loss_fn(idx: list[int], size: int = len(rows)):
            if len(idx) == size:  # the whole batch: a plain slice, as single-process runs always did
                sl = slice(idx[0], idx[0] + size)
                return model.bpr_loss(users[sl], pos[sl], neg[sl])
            i = torch.as_tensor(idx, device=users.device)
            return model.bpr_loss(users[i], pos[i], neg[i], reg_scale=size / len(idx)), len(idx)

        total += data_parallel_step(params, opt, [rows], loss_fn) * len(rows)
    return total / n


def _evaluate(model: LightGCN, pairs, train: sp.csr_matrix, ks) -> dict | None:
    if len(pairs[0]) == 0:
        return None
    model.eval()
    return evaluate_ranking(*model.embeddings(), pairs, train, ks=ks)


def _cached(out: Path, fingerprint: dict) -> dict | None:
    try:
        metrics = json.loads((out / "metrics.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    files = ("config.json", "model.safetensors", "user2idx.json", "item2idx.json")
    if metrics.get("fingerprint") == fingerprint and all((out / f).is_file() for f in files):
        return metrics
    return None


@contextmanager
def _torch_threads(n: int | None):
    """Temporarily set torch's intra-op CPU threads (restored on exit)."""
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def train_encoder(data: str, out: str, encoder: str = "lightgcn", config: LightGCNConfig | None = None,
                  device: str = "auto", resume: bool = True, num_threads: int | None = 1,
                  overwrite: bool = False) -> dict:
    """Train a collaborative encoder on a dataset folder and write its artifact to `out`.

    Args:
        data: a `RecDataset` folder with a split column (train/valid/test).
        out: output folder: the encoder artifact, metrics.json, run_config.json, checkpoint/.
        encoder: only "lightgcn" for now.
        config: hyperparameters (default: XRec's). `min_rating` filters every split, so the
            validation/test ground truth is the liked items too.
        device: "auto", "cpu", "cuda", ...
        resume: continue from out/checkpoint and reuse a finished run with the same config.
        num_threads: CPU threads while training (None keeps torch's setting). One thread is
            fastest for this sparse, latency-bound loop on small CPUs: on a 2-core VM a step
            took 4x (XRec-amazon) to 30x (ML-100K) longer with 2 threads.
        overwrite: replace `out` if it holds another run (built beside it, then renamed). Without
            it, a folder made with another config or data is refused, naming what differs.
    Returns:
        The metrics written to out/metrics.json.
    """
    if encoder != "lightgcn":
        raise WhyrecError(f"unknown encoder {encoder!r}; train_encoder supports: lightgcn")
    config = config or LightGCNConfig()
    out, device = Path(out), device_for_rank(resolve_device(device))
    with distributed_run(device):
        dset = _load_data(data, config)
        cfg = dataclasses.asdict(config)
        # Checkpoints stay valid when only the stopping budget changes (that is how a run is extended).
        trajectory = {k: v for k, v in cfg.items() if k not in ("epochs", "patience")}
        resume_key = {"config": trajectory, "data": dset.digest}
        with output_folder(out, "lightgcn encoder", {"lightgcn": trajectory, "data": dset.digest},
                           overwrite=overwrite) as work:
            return _train(data, work, dset, config, device, resume, num_threads, resume_key)


def _train(data: str, out: Path, dset: _Data, config: LightGCNConfig, device: str, resume: bool,
           num_threads: int | None, resume_key: dict) -> dict:
    fingerprint = {"config": dataclasses.asdict(config), "data": dset.digest}
    if resume and (cached := _cached(out, fingerprint)) is not None:
        return cached

    seed_everything(config.seed)
    n_users, n_items = dset.train.shape
    init = torch.Generator().manual_seed(config.seed)
    model = LightGCN(config, n_users, n_items, dset.train, generator=init).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    rng = np.random.default_rng(config.seed)
    best: dict[str, torch.Tensor] = {}
    state = {"epoch": 0, "best_metric": -1.0, "best_epoch": 0, "bad_evals": 0, "history": [],
             "train_seconds": 0.0, "resume_key": resume_key}
    if resume and (restored := _load_checkpoint(out, resume_key, model, opt)) is not None:
        best, state = restored
        rng.bit_generator.state = state["rng"]
    broadcast_parameters(model)

    with _torch_threads(num_threads if device == "cpu" else None):
        state = _fit(model, opt, dset, config, rng, best, state, out)
        return _finish(model, dset, config, best, state, out, data, fingerprint, device)


def _fit(model, opt, dset: _Data, config: LightGCNConfig, rng, best: dict, state: dict, out: Path) -> dict:
    users_all = np.repeat(np.arange(dset.train.shape[0]), np.diff(dset.train.indptr))  # [E]
    items_all = dset.train.indices.astype(np.int64)  # [E]
    candidates = np.flatnonzero(dset.train.getnnz(axis=0) > 0)  # items seen in train (XRec)
    device = model.user_ego.device
    bar = progress(range(state["epoch"], config.epochs), initial=state["epoch"], total=config.epochs,
                   desc="lightgcn", unit="epoch", enabled=is_main())
    for epoch in bar:
        if state["bad_evals"] >= config.patience:
            break
        tic = time.perf_counter()
        order = rng.permutation(len(users_all))
        users, pos = users_all[order], items_all[order]
        neg = sample_negatives(users, dset.train, candidates, rng)
        triples = [torch.from_numpy(a).to(device) for a in (users, pos, neg)]
        loss = _run_epoch(model, opt, triples, config.batch_size)
        state["train_seconds"] += time.perf_counter() - tic
        record = {"epoch": epoch + 1, "loss": loss}
        if (epoch + 1) % config.eval_every == 0:
            _validate(model, dset, config.eval_k, best, state, record)
        state["epoch"] = epoch + 1
        state["history"].append(record)
        state["rng"] = rng.bit_generator.state
        if is_main():
            _save_checkpoint(out, model, opt, best, state)
        bar.set_postfix(loss=f"{loss:.4f}", **{f"best_val_recall@{config.eval_k}": f"{max(state['best_metric'], 0):.4f}"})
    bar.close()
    return state


def _validate(model: LightGCN, dset: _Data, k: int, best: dict, state: dict, record: dict) -> None:
    """Validation Recall@k; keep a copy of the best ego embeddings and count bad evaluations."""
    metrics = _evaluate(model, dset.valid, dset.train, (k,))
    if metrics is None:  # no validation split: nothing to early-stop on
        return
    record[f"valid_recall@{k}"] = metrics[f"recall@{k}"]
    if metrics[f"recall@{k}"] > state["best_metric"]:
        state.update(best_metric=metrics[f"recall@{k}"], best_epoch=record["epoch"], bad_evals=0)
        best["best_user_ego"] = model.user_ego.detach().clone()
        best["best_item_ego"] = model.item_ego.detach().clone()
    else:
        state["bad_evals"] += 1


def _finish(model, dset: _Data, config, best: dict, state: dict, out: Path, data: str,
            fingerprint: dict, device: str) -> dict:
    if best:  # no validation split: keep the last weights
        with torch.no_grad():
            model.user_ego.copy_(best["best_user_ego"])
            model.item_ego.copy_(best["best_item_ego"])
    ks = tuple(sorted({*REPORT_KS, config.eval_k}))
    valid = _evaluate(model, dset.valid, dset.train, ks)
    test = _evaluate(model, dset.test, dset.train, ks)
    popularity = {name: evaluate_popularity(pairs, dset.train, ks) if len(pairs[0]) else None
                  for name, pairs in (("valid", dset.valid), ("test", dset.test))}
    epochs_run = state["epoch"]
    metrics = {
        "encoder": "lightgcn", "best_epoch": state["best_epoch"] if best else epochs_run,
        "epochs_run": epochs_run, "stopped_early": state["bad_evals"] >= config.patience,
        "seconds_per_epoch": state["train_seconds"] / max(len(state["history"]), 1),
        "valid": valid, "test": test, "popularity": popularity,
        "protocol": "full ranking over all items, training items masked, mean over unique users",
        "n_users": dset.train.shape[0], "n_items": dset.train.shape[1], "n_train": int(dset.train.nnz),
        "history": state["history"], "fingerprint": fingerprint,
    }
    if not is_main():  # rank 0 writes the folder
        return metrics
    card = {"data": str(data), "n_train": int(dset.train.nnz), "best_epoch": metrics["best_epoch"], "valid": valid}
    model.save_pretrained(out, dset.user2idx, dset.item2idx, dset.train, card=card)
    run = {"data": str(data), "encoder": "lightgcn", "device": device, "world_size": world_size(),
           "config": dataclasses.asdict(config)}
    write_run_info(out, run, command=f"whyrec train encoder --data {data} --out {destination(out)}")
    write_json(out / "metrics.json", metrics)  # last: marks the folder as finished
    return metrics
