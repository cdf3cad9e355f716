"""RecExplainer's target recommenders (Lei et al., KDD 2024; METHODS §5.1): training. The loaded
model, `save_target` and `load_target` are in `whyrec.encoders.target_model` (re-exported here).

`train_target` fits SASRec or MF on each user's time-ordered TRAIN items with AdamW, gradient
clipping and early stopping on validation NDCG@10 (full ranking, the user's history masked),
then writes an artifact folder that `load_target` turns into the `TargetModel` the LLM side
aligns to: user/item vectors, scores with history masked, and the history itself.

Split: leave-last-out (per user the last item is the test target, the one before the valid
target; whyrec's `leave_last_out`). RecExplainer's UniRec split used the last item as BOTH the
valid and the test target; we keep them apart so early stopping never sees the test item. A
dataset with no split, or a split that is not leave-last-out (e.g. random), is re-split and
metrics.json says so. Test users are encoded from train + valid items (the whole history
before the target), and those items are masked.

Resumable like `whyrec.encoders.train`: out/checkpoint/checkpoint.safetensors (weights, best
weights, AdamW state, torch RNG; counters and numpy RNG in its metadata) is replaced
atomically after every epoch, so an interrupted CPU run resumes to the identical result.

Under torchrun (`whyrec.distributed`) every rank takes its strided share of each global batch
(MF's negatives are drawn for the whole batch, identically on every rank), SASRec's loss is
weighted by its target positions and MF's by its examples, and the all-reduced gradient is
clipped, so N processes make the single-process update. Rank 0 runs the validation ranking
(its result is broadcast, so all ranks stop together), the final evaluation and every write.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from whyrec.data import schema as S
from whyrec.data.dataset import RecDataset
from whyrec.data.splits import has_valid_split, leave_last_out
from whyrec.distributed import (
    broadcast_parameters,
    data_parallel_step,
    device_for_rank,
    distributed_run,
    from_rank0,
    is_main,
    rank,
    world_size,
)
from whyrec.encoders.mf import MF, MFConfig
from whyrec.encoders.sasrec import SASRec, SASRecConfig
from whyrec.encoders.target_model import CONFIGS, TargetModel, _build, load_target, save_target  # noqa: F401 (load_target: old import path)
from whyrec.encoders.train import _cached
from whyrec.eval.ranking import evaluate_ranking
from whyrec.outputs import destination, output_folder
from whyrec.progress import progress as progress_bar
from whyrec.utils import (
    WhyrecError,
    atomic_path,
    resolve_device,
    seed_everything,
    write_json,
    write_run_info,
)

log = logging.getLogger(__name__)
CHECKPOINT = "checkpoint/checkpoint.safetensors"
REPORT_KS = (10, 20)
SPLIT_SEED = 42  # whyrec's default split seed; it only breaks ties in time


# ---------------------------------------------------------------- data
@dataclasses.dataclass
class _Seqs:
    indptr: np.ndarray  # [U + 1]
    items: np.ndarray  # train item indices, each user's oldest first
    valid: tuple[np.ndarray, np.ndarray]
    test: tuple[np.ndarray, np.ndarray]
    user2idx: dict[str, int]
    item2idx: dict[str, int]
    titles: dict[str, str]
    split_note: str
    digest: str

    def csr(self, extra: tuple[np.ndarray, np.ndarray] | None = None) -> sp.csr_matrix:
        """Binary [U, I] history (plus `extra` pairs): what full ranking masks."""
        shape = (len(self.indptr) - 1, len(self.item2idx))
        m = sp.csr_matrix((np.ones(len(self.items), np.float32), self.items, self.indptr), shape=shape)
        if extra is not None and len(extra[0]):
            m = m + sp.csr_matrix((np.ones(len(extra[0]), np.float32), extra), shape=shape)
        m.sum_duplicates()
        m.data[:] = 1
        return m


def _is_leave_last_out(frame: pd.DataFrame) -> bool:
    """At most one valid and one test item per user, the valid one after train, the test one last."""
    if not has_valid_split(frame) or frame[frame[S.SPLIT] != S.TRAIN].duplicated([S.USER, S.SPLIT]).any():
        return False
    latest = {s: frame[frame[S.SPLIT] == s].groupby(S.USER)[S.TIMESTAMP].max() for s in S.SPLITS}
    before_valid = latest[S.TRAIN].reindex(latest[S.VALID].index)
    before_test = pd.concat([latest[S.TRAIN], latest[S.VALID]], axis=1).max(axis=1).reindex(latest[S.TEST].index)
    return bool((~(latest[S.VALID] < before_valid)).all() and (~(latest[S.TEST] < before_test)).all())


def _sequential_split(frame: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    if S.TIMESTAMP not in frame or frame[S.TIMESTAMP].isna().any():
        raise WhyrecError("SASRec/MF targets need a timestamp on every interaction to order histories; "
                          "prepare the dataset with a timestamp column")
    if S.SPLIT in frame and _is_leave_last_out(frame):
        return frame, "the dataset's own leave-last-out split"
    why = "had no split" if S.SPLIT not in frame else "had a split that is not leave-last-out (e.g. random)"
    log.warning("the dataset %s; re-splitting it with leave_last_out (seed %d)", why, SPLIT_SEED)
    return leave_last_out(frame, seed=SPLIT_SEED), f"re-split with leave_last_out (seed {SPLIT_SEED}): the dataset {why}"


def _load_sequences(path: str) -> _Seqs:
    ds = RecDataset.load(path)
    frame, note = _sequential_split(ds.interactions)
    users, items = ds.index_pairs(frame)
    split, times = frame[S.SPLIT].to_numpy(), frame[S.TIMESTAMP].to_numpy()
    tr = split == S.TRAIN
    order = np.lexsort((items[tr], times[tr], users[tr]))  # by user, then time (item id breaks ties)
    u_tr, i_tr = users[tr][order], items[tr][order]
    indptr = np.concatenate([[0], np.cumsum(np.bincount(u_tr, minlength=ds.n_users))]).astype(np.int64)
    valid, test = ((users[split == s], items[split == s]) for s in (S.VALID, S.TEST))
    h = hashlib.sha256()
    for arr in (indptr, i_tr, *valid, *test):
        h.update(np.ascontiguousarray(arr, dtype=np.int64).tobytes())
    h.update(json.dumps([ds.user2idx, ds.item2idx], sort_keys=True).encode())
    titles = {k: v for k, v in ds.item_text().items() if v}
    return _Seqs(indptr, i_tr, valid, test, ds.user2idx, ds.item2idx, titles, note, h.hexdigest()[:16])


def _training_windows(seqs: _Seqs, L: int) -> tuple[np.ndarray, np.ndarray]:
    """SASRec inputs/targets [W, L]: each train item after a user's first is a target exactly once,
    in windows of L consecutive targets cut from the most recent end (padded targets = -100)."""
    inputs, targets = [], []
    for u in range(len(seqs.indptr) - 1):
        s = seqs.items[seqs.indptr[u]:seqs.indptr[u + 1]]
        for end in range(len(s), 1, -L):
            start = max(1, end - L)
            x, y = np.zeros(L, np.int64), np.full(L, -100, np.int64)
            x[L - (end - start):], y[L - (end - start):] = s[start - 1:end - 1] + 1, s[start:end]
            inputs.append(x)
            targets.append(y)
    if not inputs:
        raise WhyrecError("no user has two training items, so SASRec has no next-item target to learn")
    return np.stack(inputs), np.stack(targets)


# ---------------------------------------------------------------- checkpoint
def _save_checkpoint(out: Path, model, opt, best: dict, state: dict) -> None:
    from safetensors.torch import save_file

    optim = opt.state_dict()
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()} | {f"best.{k}": v for k, v in best.items()}
    tensors |= {f"optim.{pid}.{name}": t for pid, st in optim["state"].items() for name, t in st.items()}
    tensors["torch_rng"] = torch.get_rng_state()
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    meta = {"state": json.dumps(state), "param_groups": json.dumps(optim["param_groups"])}
    with atomic_path(out / CHECKPOINT) as tmp:
        save_file(tensors, str(tmp), metadata=meta)


def _load_checkpoint(out: Path, resume_key: dict, model, opt):
    """Restore weights, AdamW and torch RNG in place; (best weights, state) or None if unusable."""
    from whyrec.encoders.train import read_checkpoint

    read = read_checkpoint(out / CHECKPOINT, resume_key)
    if read is None:
        return None
    tensors, state, meta = read
    device = next(model.parameters()).device
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    optim: dict = {"state": {}, "param_groups": json.loads(meta["param_groups"])}
    for key, t in tensors.items():
        if key.startswith("optim."):
            _, pid, name = key.split(".", 2)
            optim["state"].setdefault(int(pid), {})[name] = t if name == "step" else t.to(device)
    opt.load_state_dict(optim)
    torch.set_rng_state(tensors["torch_rng"])
    return {k[5:]: v.to(device) for k, v in tensors.items() if k.startswith("best.")}, state


# ---------------------------------------------------------------- training
def _run_epoch(target: TargetModel, opt, batches, config, progress: bool, epoch: int = 0,
               n_batches: int | None = None) -> float:
    """One pass over `batches` (tuples of tensors for model.loss); mean loss per example.

    Under torchrun each rank takes its share of every batch (`data_parallel_step`, clipping the
    all-reduced gradient) and draws its dropout from a stream of (seed, epoch, batch, rank).
    """
    model, total, count = target.model, 0.0, 0
    model.train()
    params, world = [p for p in model.parameters() if p.requires_grad], world_size()
    bar = progress_bar(batches, total=n_batches, desc=f"{target.kind} epoch {epoch + 1}", unit="batch", leave=False,
                       enabled=progress)
    for b, batch in enumerate(bar):
        n = len(batch[0])
        if world == 1:  # the loop as it always was (the helper's clipped path rounds differently)
            loss = model.loss(*batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            opt.step()
            loss = loss.item()
        else:
            def seed(m: int, b: int = b) -> None:
                torch.manual_seed(int(np.random.SeedSequence([config.seed, epoch, b, rank()]).generate_state(1, np.uint64)[0]))

            loss = data_parallel_step(params, opt, [range(n)], lambda idx, batch=batch: _shard_loss(model, batch, idx),
                                      config.grad_clip, seed)
        total, count = total + loss * n, count + n
        bar.set_postfix(loss=f"{total / count:.4f}", refresh=False)  # the epoch's running mean
    return total / max(count, 1)


def _shard_loss(model: SASRec | MF, batch: list[torch.Tensor], idx: list[int]) -> tuple[torch.Tensor, int]:
    """(mean loss, what it averages over) of the rows `idx`: SASRec's target positions, MF's pairs."""
    part = [t[torch.as_tensor(idx, device=t.device)] for t in batch]
    weight = int((part[1] >= 0).sum()) if isinstance(model, SASRec) else len(idx)
    return model.loss(*part), weight


def _batches(target: TargetModel, train, config, rng: np.random.Generator):
    """Lazily shuffled minibatches; MF negatives are drawn uniformly from all items per batch."""
    device, order = target.device, rng.permutation(len(train[0]))
    for start in range(0, len(order), config.batch_size):
        idx = order[start:start + config.batch_size]
        batch = [torch.from_numpy(a[idx]).to(device) for a in train]
        if target.kind == "mf":
            batch.append(torch.from_numpy(rng.integers(target.n_items, size=(len(idx), config.n_negatives))).to(device))
        yield batch


def _evaluate(target: TargetModel, pairs, mask: sp.csr_matrix, ks, append: np.ndarray | None = None) -> dict | None:
    """Full-ranking metrics of the users in `pairs`, `mask` items excluded (None without pairs)."""
    if len(pairs[0]) == 0:
        return None
    target.model.eval()
    users = np.unique(pairs[0])
    user_emb = torch.zeros(mask.shape[0], target.dim, device=target.device)  # [U, d]; only `users` are read
    user_emb[torch.from_numpy(users).to(target.device)] = target._user_matrix(users, None if append is None else append[users])
    return evaluate_ranking(user_emb, target.item_vectors(), pairs, mask, ks=ks)


def _popularity(seqs: _Seqs, pairs, mask: sp.csr_matrix, ks) -> dict | None:
    """Most-popular baseline (training counts), same protocol and mask."""
    if len(pairs[0]) == 0:
        return None
    counts = np.bincount(seqs.items, minlength=len(seqs.item2idx)).astype(np.float32)
    return evaluate_ranking(torch.ones(mask.shape[0], 1), torch.from_numpy(counts)[:, None], pairs, mask, ks=ks)


def train_target(data: str, out: str, encoder: str = "sasrec", config: SASRecConfig | MFConfig | None = None,
                 device: str = "auto", resume: bool = True, progress: bool = True, overwrite: bool = False) -> dict:
    """Train RecExplainer's target recommender on a dataset folder and write its artifact to `out`.

    Args:
        data: a `RecDataset` folder with timestamps (re-split leave-last-out unless it already is).
        out: output folder: the artifact, metrics.json, run_config.json, checkpoint/.
        encoder: "sasrec" or "mf".
        config: hyperparameters (default: RecExplainer's for `encoder`).
        device: "auto", "cpu", "cuda", ...
        resume: continue from out/checkpoint and reuse a finished run with the same config and data.
        progress: show progress (a tqdm bar on a terminal, a line every 30 s in a log).
        overwrite: replace `out` if it holds another run (built beside it, then renamed). Without
            it, a folder made with another config or data is refused, naming what differs.
    Returns:
        The metrics written to out/metrics.json.
    """
    if encoder not in CONFIGS:
        raise WhyrecError(f"unknown target encoder {encoder!r}; choose one of: {', '.join(CONFIGS)}")
    config = config or CONFIGS[encoder]()
    if not isinstance(config, CONFIGS[encoder]):
        raise WhyrecError(f"encoder {encoder!r} needs a {CONFIGS[encoder].__name__}, got {type(config).__name__}")
    out, device = Path(out), device_for_rank(resolve_device(device))
    with distributed_run(device):
        seqs = _load_sequences(data)
        cfg = dataclasses.asdict(config)
        # Checkpoints stay valid when only the stopping budget changes (that is how a run is extended).
        trajectory = {k: v for k, v in cfg.items() if k not in ("epochs", "patience")}
        with output_folder(out, f"{encoder} target model", {encoder: trajectory, "data": seqs.digest},
                           overwrite=overwrite) as work:
            return _train(data, work, encoder, seqs, config, device, resume, progress and is_main())


def _train(data: str, out: Path, encoder: str, seqs: _Seqs, config, device: str, resume: bool, progress: bool) -> dict:
    cfg = dataclasses.asdict(config)
    fingerprint = {"encoder": encoder, "config": cfg, "data": seqs.digest}
    resume_key = {**fingerprint, "config": {k: v for k, v in cfg.items() if k not in ("epochs", "patience")}}
    if resume and (cached := _cached(out, fingerprint)) is not None:
        return cached

    seed_everything(config.seed)
    model = _build(encoder, config, len(seqs.user2idx), len(seqs.item2idx)).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    rng = np.random.default_rng(config.seed)
    best: dict[str, torch.Tensor] = {}
    state = {"epoch": 0, "best_metric": -1.0, "best_epoch": 0, "bad_epochs": 0, "history": [],
             "train_seconds": 0.0, "resume_key": resume_key}
    if resume and (restored := _load_checkpoint(out, resume_key, model, opt)) is not None:
        best, state = restored
        rng.bit_generator.state = state["rng"]
    broadcast_parameters(model)
    target = TargetModel(encoder, model, seqs.user2idx, seqs.item2idx, seqs.indptr, seqs.items, seqs.titles)
    _fit(target, opt, seqs, config, rng, best, state, out, progress)
    return _finish(target, seqs, config, best, state, out, data, fingerprint, device)


def _fit(target: TargetModel, opt, seqs: _Seqs, config, rng, best: dict, state: dict, out: Path, progress: bool):
    if target.kind == "sasrec":
        train = _training_windows(seqs, config.max_seq_len)
    else:
        train = (np.repeat(np.arange(len(seqs.indptr) - 1), np.diff(seqs.indptr)), seqs.items.astype(np.int64))
    mask, k = seqs.csr(), config.eval_k
    n_batches = -(-len(train[0]) // config.batch_size)
    bar = progress_bar(range(state["epoch"], config.epochs), initial=state["epoch"], total=config.epochs,
                       desc=target.kind, unit="epoch", enabled=progress)
    for epoch in bar:
        if state["bad_epochs"] >= config.patience:
            break
        tic = time.perf_counter()
        loss = _run_epoch(target, opt, _batches(target, train, config, rng), config, progress, epoch=epoch,
                          n_batches=n_batches)
        state["train_seconds"] += time.perf_counter() - tic
        record = {"epoch": epoch + 1, "loss": loss}
        valid = from_rank0(_evaluate(target, seqs.valid, mask, (k,)) if is_main() else None)  # all decide alike
        if valid is not None:
            record[f"valid_ndcg@{k}"] = valid[f"ndcg@{k}"]
            if valid[f"ndcg@{k}"] > state["best_metric"]:
                state.update(best_metric=valid[f"ndcg@{k}"], best_epoch=epoch + 1, bad_epochs=0)
                best.clear()
                best.update({n: t.detach().clone() for n, t in target.model.state_dict().items()})
            else:
                state["bad_epochs"] += 1
        state["epoch"] = epoch + 1
        state["history"].append(record)
        state["rng"] = rng.bit_generator.state
        if is_main():
            _save_checkpoint(out, target.model, opt, best, state)
        bar.set_postfix(loss=f"{loss:.4f}", **{f"best_val_ndcg@{k}": f"{max(state['best_metric'], 0):.4f}"})
    bar.close()


def _finish(target: TargetModel, seqs: _Seqs, config, best: dict, state: dict, out: Path, data: str,
            fingerprint: dict, device: str) -> dict:
    if not is_main():  # rank 0 evaluates and writes the folder; the others take its metrics
        return from_rank0(None)
    if best:  # no validation split: keep the last weights
        target.model.load_state_dict(best)
    ks = tuple(sorted({*REPORT_KS, config.eval_k}))
    valid_of = np.full(len(seqs.user2idx), -1, dtype=np.int64)
    valid_of[seqs.valid[0]] = seqs.valid[1]  # test users are encoded from train + their valid item
    masks = {"valid": seqs.csr(), "test": seqs.csr(seqs.valid)}
    metrics = {
        "encoder": target.kind, "split": seqs.split_note,
        "best_epoch": state["best_epoch"] if best else state["epoch"], "epochs_run": state["epoch"],
        "stopped_early": state["bad_epochs"] >= config.patience,
        "seconds_per_epoch": state["train_seconds"] / max(len(state["history"]), 1),
        "valid": _evaluate(target, seqs.valid, masks["valid"], ks),
        "test": _evaluate(target, seqs.test, masks["test"], ks, append=valid_of),
        "popularity": {name: _popularity(seqs, getattr(seqs, name), masks[name], ks) for name in ("valid", "test")},
        "protocol": "full ranking over all items; the user's earlier items (train, + valid for test) masked; "
                    "mean over unique users",
        "n_users": len(seqs.user2idx), "n_items": len(seqs.item2idx), "n_train": len(seqs.items),
        "history": state["history"], "fingerprint": fingerprint,
    }
    save_target(target, out, card=f"- data: {data}\n- split: {seqs.split_note}\n- best epoch: {metrics['best_epoch']}\n"
                                  f"- test (full ranking, history masked): {_short(metrics['test'])}\n")
    run = {"data": str(data), "encoder": target.kind, "device": device, "world_size": world_size(),
           "config": dataclasses.asdict(config)}
    write_run_info(out, run, command=f"whyrec train encoder --encoder {target.kind} --data {data} --out {destination(out)}")
    write_json(out / "metrics.json", metrics)  # last: marks the folder as finished
    return from_rank0(metrics)


def _short(m: dict | None) -> str:
    return "n/a" if m is None else ", ".join(f"{k} {m[k]:.4f}" for k in ("hit@10", "ndcg@10") if k in m)
