"""PEPLER training: tokenised examples, the epoch loop, early stopping and `train_pepler`.

Drivers: `train_pepler` (AdamW, per-epoch validation, early stopping, best weights kept,
resumable at epoch boundaries); the folder it writes is `whyrec.methods.pepler.artifact`'s.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import torch
from torch import nn

from whyrec.config import ModelConfig, PEPLERConfig, TrainConfig
from whyrec.methods.pepler.artifact import save_pepler
from whyrec.methods.pepler.model import PEPLER, discrete_prompt
from whyrec.utils import adam


@dataclass
class Examples:
    """One split, tokenised once: ids, prompt ids, truncated targets and their decoded text."""

    users: torch.Tensor
    items: torch.Tensor
    ratings: torch.Tensor | None
    prompts: list[list[int]]
    texts: list[list[int]]
    refs: list[str]
    features: list[str]

    def __len__(self) -> int:
        return len(self.texts)

    def rows(self, idx: list[int]) -> tuple:
        t = torch.tensor(idx, dtype=torch.long)
        ratings = self.ratings[t] if self.ratings is not None else None
        return self.users[t], self.items[t], [self.prompts[k] for k in idx], [self.texts[k] for k in idx], ratings


def train_features(ds) -> dict[str, dict[str, list[str]]]:
    """Each user's and item's features in the TRAIN split (PEPLER's user2feature/item2feature)."""
    from whyrec.data import schema as S

    frame = ds.split(S.TRAIN)
    if S.FEATURE not in frame:
        return {"user": {}, "item": {}}
    frame = frame[frame[S.FEATURE].fillna("").astype(str).str.strip() != ""]
    return {kind: {str(k): sorted(set(map(str, g))) for k, g in frame.groupby(col)[S.FEATURE]}
            for kind, col in (("user", S.USER), ("item", S.ITEM))}


def make_examples(module: PEPLER, frame, user2idx: dict, item2idx: dict, feats: dict) -> Examples:
    """Tokenise a split's (user, item, explanation[, feature, rating]) records."""
    from whyrec.data import schema as S
    from whyrec.utils import WhyrecError

    users, items = frame[S.USER].astype(str).tolist(), frame[S.ITEM].astype(str).tolist()
    unknown = [u for u in users if u not in user2idx] + [i for i in items if i not in item2idx]
    if unknown:
        raise WhyrecError(f"{len(unknown)} records use ids missing from the id maps (e.g. {unknown[0]!r})")
    texts = [module.text_ids(t) for t in frame[S.EXPLANATION].astype(str)]
    prompts = [[] for _ in users]
    if module.cfg.variant == "discrete":
        uf, itf = feats["user"], feats["item"]
        prompts = [module.feature_ids(discrete_prompt(set(uf.get(u, [])), set(itf.get(i, [])), module.cfg.discrete_dedup))
                   for u, i in zip(users, items)]
    ratings = None
    if S.RATING in frame and module.cfg.variant == "reg":
        ratings = torch.tensor(frame[S.RATING].astype(float).to_numpy(), dtype=torch.float32)
    features = frame[S.FEATURE].fillna("").astype(str).tolist() if S.FEATURE in frame else [""] * len(users)
    return Examples(torch.tensor([user2idx[u] for u in users]), torch.tensor([item2idx[i] for i in items]),
                    ratings, prompts, texts, [module.decode(t) for t in texts], features)


def _batches(n: int, size: int, generator: torch.Generator | None = None) -> list[list[int]]:
    order = torch.randperm(n, generator=generator).tolist() if generator is not None else list(range(n))
    return [order[s:s + size] for s in range(0, n, size)]


def run_epoch(module: PEPLER, data: Examples, optimizer, batch_size: int, generator: torch.Generator,
              max_steps: int | None = None) -> float:
    """One shuffled pass; returns the sample-weighted mean training objective.

    Under torchrun each rank computes its shard of every batch (`whyrec.distributed`); the text
    CE is a mean over predicted tokens and the rating MSE over examples, so a shard's loss is
    weighted by its tokens and its MSE rescaled, which makes the summed gradients the batch's.
    """
    from whyrec.distributed import data_parallel_step, is_main
    from whyrec.progress import progress

    module.train()
    params = [p for p in module.parameters() if p.requires_grad]
    # tokens the LM's shifted CE averages over: <bos> text <eos>, minus a <bos> at position 0
    tokens = lambda rows: sum(len(data.texts[k]) + 1 + bool(module.soft or data.prompts[k]) for k in rows)  # noqa: E731
    total, seen = 0.0, 0
    batches = _batches(len(data), batch_size, generator)[:max_steps]
    for idx in progress(batches, desc="pepler", unit="batch", leave=False, enabled=is_main()):

        def loss_fn(part, idx=idx):
            n, t = len(idx), tokens(idx)
            text, rating = module.losses(*data.rows(part))
            if len(part) == n:  # the whole batch (one process)
                return module.objective(text, rating)
            t_part = tokens(part)
            rating = rating * (len(part) / n) * (t / t_part) if rating is not None else None
            return module.objective(text, rating), t_part

        loss = data_parallel_step(params, optimizer, [idx], loss_fn)
        total, seen = total + loss * len(idx), seen + len(idx)
    module.eval()
    return total / max(seen, 1)


@torch.no_grad()
def validation_loss(module: PEPLER, data: Examples, batch_size: int) -> float:
    """PEPLER's early-stopping criterion: text CE, plus the (unweighted) rating MSE for reg."""
    from whyrec.distributed import is_main
    from whyrec.progress import progress

    module.eval()
    text, rating = 0.0, 0.0
    # a progress line: MovieLens' 10,000 validation pairs at batch 8 take minutes
    for idx in progress(_batches(len(data), batch_size), desc="pepler validation", unit="batch", leave=False,
                        enabled=is_main()):
        t, r = module.losses(*data.rows(idx))
        text += t.item() * len(idx)
        rating += (r.item() if r is not None else 0.0) * len(idx)
    return (text + rating) / len(data)


def _trainable(module: nn.Module) -> dict[str, torch.Tensor]:
    # clone(): tied LM weights would otherwise share memory, which safetensors refuses.
    return {n: p.detach().cpu().clone().contiguous() for n, p in module.named_parameters() if p.requires_grad}


def settings_line(cfg: PEPLERConfig, n_train: int, n_valid: int) -> str:
    """What PEPLER trains with, said once at the start: its own batch and lr are not TrainConfig's;
    --train.batch_size / --train.lr replace them when given (the values here are after that)."""
    phases = "; ".join(f"phase {k} ({'prompt + LM' if lm else 'prompt'}): up to {epochs} epoch{'s' * (epochs != 1)} at lr {lr:g}"
                       for k, (lm, lr, epochs) in enumerate(_phases(cfg), 1))
    return (f"pepler: {n_train} train / {n_valid} valid explanations, batch {cfg.batch_size}; {phases} "
            "(--pepler.batch_size/lr/epochs set these; --train.batch_size and --train.lr, when given, replace "
            "batch and lr)")


def _phases(cfg: PEPLERConfig) -> list[tuple[bool, float, int]]:
    """(train the LM?, lr, max epochs) per phase."""
    if cfg.variant != "continuous":
        return [(True, cfg.phase1_lr, cfg.epochs)]
    phases = [(False, cfg.phase1_lr, cfg.epochs)]
    if cfg.epochs_phase2 > 0:
        phases.append((True, cfg.lr_phase2 if cfg.lr_phase2 is not None else cfg.phase1_lr, cfg.epochs_phase2))
    return phases


def _save_progress(ckpt, module, optimizer, best: dict, state: dict) -> None:
    """Epoch-boundary checkpoint, written to a temp folder and renamed (a kill never breaks it)."""
    import json
    import shutil

    from safetensors.torch import save_file

    tmp = ckpt.with_name(ckpt.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(_trainable(module), tmp / "current.safetensors")
    save_file(best, tmp / "best.safetensors")
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    (tmp / "state.json").write_text(json.dumps(state))
    shutil.rmtree(ckpt, ignore_errors=True)
    tmp.rename(ckpt)


def fit(module: PEPLER, train: Examples, valid: Examples, cfg: PEPLERConfig, seed: int, ckpt,
        resume: bool = True, max_steps: int | None = None, max_minutes: float | None = None) -> dict:
    """PEPLER's loop: per phase, AdamW epochs with validation, early stopping and the best
    weights reloaded at the end of the phase (phase 2 restarts from phase 1's best)."""
    import json
    import math
    import time

    from safetensors.torch import load_file

    from whyrec import distributed as D
    from whyrec.progress import progress

    state = {"phase": 0, "epoch": 0, "best": math.inf, "bad": 0, "history": [], "elapsed_s": 0.0}
    best: dict = {}
    resumed = resume and (ckpt / "state.json").exists()
    if resumed:
        state, best = json.loads((ckpt / "state.json").read_text()), load_file(ckpt / "best.safetensors")
    start = time.time() - state["elapsed_s"]
    phases = _phases(cfg)
    while state["phase"] < len(phases):
        train_lm, lr, epochs = phases[state["phase"]]
        module.set_phase(train_lm)
        optimizer = adam([p for p in module.parameters() if p.requires_grad], lr, decoupled=True)
        if resumed and state["epoch"] > 0:
            module.load_state_dict(load_file(ckpt / "current.safetensors"), strict=False)
            optimizer.load_state_dict(torch.load(ckpt / "optimizer.pt", weights_only=True))
        elif resumed and best:  # killed at a phase boundary: start phase 2 from phase 1's best
            module.load_state_dict(best, strict=False)
        resumed = False
        bar = progress(total=epochs, initial=state["epoch"], desc=f"pepler phase {state['phase'] + 1}/{len(phases)}",
                       unit="epoch", enabled=D.is_main())
        while state["epoch"] < epochs and state["bad"] < cfg.patience:
            gen = torch.Generator().manual_seed(seed + 1000 * state["phase"] + state["epoch"])
            train_loss = run_epoch(module, train, optimizer, cfg.batch_size, gen, max_steps)
            val = validation_loss(module, valid, cfg.batch_size)
            state["epoch"] += 1
            state["history"].append({"phase": state["phase"] + 1, "epoch": state["epoch"],
                                     "train_loss": round(train_loss, 5), "valid_loss": round(val, 5)})
            if val < state["best"]:
                state["best"], best = val, _trainable(module)
            else:
                state["bad"] += 1  # PEPLER never resets endure_count within a phase
            state["elapsed_s"] = time.time() - start
            bar.set_postfix(train_loss=f"{train_loss:.4f}", valid_loss=f"{val:.4f}")
            bar.update(1)
            if D.is_main():
                _save_progress(ckpt, module, optimizer, best, state)
            if D.any_rank(max_minutes is not None and state["elapsed_s"] > 60 * max_minutes):
                bar.close()
                D.barrier()
                return {**state, "complete": False}
        bar.close()
        module.load_state_dict(best, strict=False)
        # PEPLER resets the best loss and the patience counter for phase 2.
        state.update(phase=state["phase"] + 1, epoch=0, best=math.inf, bad=0)
        if D.is_main():
            _save_progress(ckpt, module, optimizer, best, state)
    D.barrier()
    return {**state, "complete": True}


def _train_valid(ds, seed: int):
    """Train and validation explanation records. Data split only train/test (e.g. XRec's 2,400/600
    records) has no validation set for early stopping: a seeded 10% of train is held out instead."""
    from whyrec.data import schema as S

    train, valid = ds.explanation_records(S.TRAIN), ds.explanation_records(S.VALID)
    if len(valid) or len(train) < 10:
        return train, valid
    held = train.sample(frac=0.1, random_state=seed)
    return train.drop(held.index), held


def _sample(frame, n: int | None, seed: int):
    return frame if n is None or len(frame) <= n else frame.sample(n=n, random_state=seed)


def train_pepler(data: str, out: str, model: ModelConfig | None = None, pepler: PEPLERConfig | None = None,
                 train: TrainConfig | None = None, resume: bool = True, overwrite: bool = False) -> dict:
    """Train a PEPLER variant (see `_train_pepler`); under torchrun data parallel, rank 0 writes.

    `out` is guarded by `whyrec.outputs`: a folder made with another model, PEPLER config, seed,
    example cap or data is refused, naming what differs, unless `overwrite`.
    """
    from whyrec.distributed import device_for_rank, distributed_run
    from whyrec.outputs import BUDGET_FIELDS, fingerprint_of, folder_digest, output_folder
    from whyrec.utils import resolve_device

    model, pepler, train = model or ModelConfig(), pepler or PEPLERConfig(), train or TrainConfig()
    device = device_for_rank(resolve_device(model.device))
    with distributed_run(device):
        # only these train fields reach PEPLER; its budget (max_steps, max_minutes) may change between runs
        fingerprint = {"method": "pepler", "model": fingerprint_of(model), "pepler": fingerprint_of(pepler),
                       "train": {k: getattr(train, k) for k in ("seed", "max_train_examples")},
                       "data": folder_digest(data)}
        fingerprint["pepler"] = {k: v for k, v in fingerprint["pepler"].items() if k not in BUDGET_FIELDS}
        with output_folder(out, "pepler explainer", fingerprint, overwrite=overwrite) as work:
            return _train_pepler(data, str(work), model, pepler, train, resume, device)


def _train_pepler(data: str, out: str, model: ModelConfig, pepler: PEPLERConfig | None,
                  train: TrainConfig | None, resume: bool, device: str) -> dict:
    """Train a PEPLER variant on a RecDataset folder's train/valid explanations; save to `out`.

    From `train` (a `TrainConfig`) only `seed`, `max_steps` (per epoch), `max_minutes` and
    `max_train_examples` are used; lr, batch size and epochs come from `pepler` (the method object,
    `whyrec.methods.pepler.method.METHOD`, puts --train.lr/batch_size there and refuses the rest).
    """
    from dataclasses import asdict, replace
    from pathlib import Path

    from whyrec.data import schema as S
    from whyrec.data.dataset import RecDataset
    from whyrec.distributed import is_main, world_size
    from whyrec.llm.load import load_model
    from whyrec.outputs import check_finished
    from whyrec.utils import WhyrecError, read_json, seed_everything, write_json, write_run_info

    pepler, train = pepler or PEPLERConfig(), train or TrainConfig()
    out_dir = Path(out)
    wanted = {"method": "pepler", "model": asdict(model), "pepler": asdict(pepler), "train": asdict(train)}
    if (out_dir / "config.json").exists() and read_json(out_dir / "config.json").get("complete"):
        done = read_json(out_dir / "config.json")  # the rest of its config matches: output_folder checked
        budget = ("max_minutes", "max_steps")
        budget_done = {k: (done.get("train") or {}).get(k) for k in budget}
        budget_now = {k: getattr(train, k) for k in budget}
        if budget_done == budget_now:
            return read_json(out_dir / "training_log.json")
        resumable = done.get("stopped") == "max_minutes" and (out_dir / "checkpoint").is_dir()
        if not resumable:  # else: continue under the new budget
            check_finished(out_dir, "pepler explainer", {"train": budget_done}, {"train": budget_now})
    seed_everything(train.seed)
    ds = RecDataset.load(data)
    llm, tok = load_model(replace(model, device=device), trains_weights=True)  # the LM itself is tuned: fp32
    module = PEPLER(llm, tok, ds.n_users, ds.n_items, pepler)
    feats = train_features(ds)
    if pepler.variant == "discrete" and not feats["user"]:
        raise WhyrecError("the discrete variant needs a 'feature' column on the train interactions (PEPLER data)")
    train_records, valid_records = _train_valid(ds, train.seed)
    tr = make_examples(module, _sample(train_records, train.max_train_examples, train.seed),
                       ds.user2idx, ds.item2idx, feats)
    va = make_examples(module, valid_records, ds.user2idx, ds.item2idx, feats)
    if not len(tr) or not len(va):
        raise WhyrecError(f"PEPLER needs train and valid explanations (early stopping); got {len(tr)} and {len(va)}")
    if is_main():
        out_dir.mkdir(parents=True, exist_ok=True)
        write_run_info(out_dir, {**wanted, "world_size": world_size()}, "train pepler")
        print(settings_line(pepler, len(tr), len(va)), file=sys.stderr, flush=True)
    state = fit(module, tr, va, pepler, train.seed, out_dir / "checkpoint", resume, train.max_steps, train.max_minutes)
    log = {"history": state["history"], "complete": state["complete"], "train_examples": len(tr),
           "valid_examples": len(va), "epochs": state["epoch"], "elapsed_s": round(state["elapsed_s"], 1),
           "world_size": world_size()}
    if not is_main():  # rank 0 writes the folder
        return log
    write_json(out_dir / "training_log.json", log)
    ratings = ds.interactions[S.RATING].dropna() if S.RATING in ds.interactions else None
    rating_range = [float(ratings.min()), float(ratings.max())] if ratings is not None and len(ratings) else None
    if not state["complete"]:  # out of time: save the best weights so far; the checkpoint resumes the rest
        from safetensors.torch import load_file

        module.load_state_dict(load_file(out_dir / "checkpoint" / "best.safetensors"), strict=False)
    save_pepler(module, out_dir, {**wanted, "n_users": ds.n_users, "n_items": ds.n_items,
                                  "rating_range": rating_range, "dataset": ds.meta.get("name", ""),
                                  **({} if state["complete"] else {"stopped": "max_minutes"})},
                ds.user2idx, ds.item2idx, feats)
    if state["complete"]:
        import shutil

        shutil.rmtree(out_dir / "checkpoint", ignore_errors=True)
    return log
