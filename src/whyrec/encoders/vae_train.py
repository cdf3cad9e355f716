"""`whyrec cluster`: train GaVaMoE's stage-1 VAE-GMM (METHODS §4.1) on a dataset folder.

Three phases, as in the original `train.py`:
1. pretrain: a deterministic autoencoder, CE(decoder(μ), r - 1), Adam on encoder + decoder
   (without ratings, `feedback="interactions"`: observed pair 1 against sampled pairs 0, `vae_data`);
2. gmm: sklearn GaussianMixture(diag, K) on μ of the training pairs initialises π, μ_c, σ²_c;
3. elbo: VaDE ELBO, Adam on everything, StepLR-style decay, the KL weight schedule.

Resumable: `out/checkpoint/checkpoint.safetensors` (weights, Adam state and, in its metadata,
phase, epoch and history) is replaced atomically after every epoch. Each epoch reseeds the
RNGs from (seed, phase, epoch), so a resumed run equals an uninterrupted one. The checkpoint
stays valid when only `elbo_epochs` grows, which is how a run is extended. A finished folder
whose metrics.json matches the config and data is returned without retraining.

Under torchrun (`whyrec.distributed`) every rank takes its strided share of each global batch
and the gradients of the per-pair mean losses are averaged over all pairs, so N processes make
the single-process update. The ELBO's ε of a global batch is drawn from the shared per-epoch
stream on every rank, as one process draws it, so a pair gets the same z whatever the number
of processes (dropout masks come from a per-rank stream). The GMM is fitted once, on rank 0,
and broadcast; rank 0 evaluates and writes the checkpoint, plot and folder.

The pairs are read by `vae_data`; evaluation, plot and model card are in `vae_report`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from whyrec.data import schema as S
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
from whyrec.encoders.vae_data import Pairs, _batches, _Data, _load_data
from whyrec.encoders.vae_gmm import VaeGmm, VaeGmmConfig, save_vae_gmm
from whyrec.encoders.vae_report import _card, evaluate, fmt, latent_means, plot_latent
from whyrec.outputs import destination, output_folder
from whyrec.progress import duration
from whyrec.progress import progress as progress_bar
from whyrec.utils import WhyrecError, atomic_path, resolve_device, write_json, write_run_info

log = logging.getLogger(__name__)
CHECKPOINT = "checkpoint/checkpoint.safetensors"
PLOT = "latent.png"
PHASES = ("pretrain", "elbo")
PROTOCOL = {"ratings": "decoder(μ): accuracy of the argmax rating class; RMSE of Σ_k p_k·k against the raw rating",
            "interactions": "decoder(μ): accuracy of observed-vs-sampled over the observed pairs and their sampled "
                            "negatives; AUC of P(observed) between the two"}


# ---------------------------------------------------------------- checkpoint
def _optimizer(model: VaeGmm, phase: str, config: VaeGmmConfig) -> torch.optim.Adam:
    """Pretraining moves encoder + decoder only; the ELBO phase also moves π, μ_c, log σ²_c."""
    prior = {"pi_logits", "mu_c", "logvar_c"}
    if phase == "pretrain":
        return torch.optim.Adam([p for n, p in model.named_parameters() if n not in prior], lr=config.pretrain_lr)
    return torch.optim.Adam(model.parameters(), lr=config.lr)


def _save_checkpoint(out: Path, model: VaeGmm, opt, state: dict) -> None:
    from safetensors.torch import save_file

    optim = opt.state_dict()
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    tensors |= {f"optim.{pid}.{name}": t for pid, st in optim["state"].items() for name, t in st.items()}
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    meta = {"state": json.dumps(state), "param_groups": json.dumps(optim["param_groups"])}
    with atomic_path(out / CHECKPOINT) as tmp:
        save_file(tensors, str(tmp), metadata=meta)


def _load_checkpoint(out: Path, resume_key: dict, model: VaeGmm, config: VaeGmmConfig):
    """Restore the weights in place; return (optimizer, state), or None if unusable."""
    from whyrec.encoders.train import read_checkpoint

    read = read_checkpoint(out / CHECKPOINT, resume_key)
    if read is None:
        return None
    tensors, state, meta = read
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    opt = _optimizer(model, state["phase"], config)
    optim: dict = {"state": {}, "param_groups": json.loads(meta["param_groups"])}
    device = model.mu_c.device
    for key, t in tensors.items():
        if key.startswith("optim."):
            _, pid, name = key.split(".", 2)
            optim["state"].setdefault(int(pid), {})[name] = t if name == "step" else t.to(device)
    opt.load_state_dict(optim)
    return opt, state


# ---------------------------------------------------------------- epochs
def _seed(config: VaeGmmConfig, phase: str, epoch: int) -> torch.Generator:
    """Reseed torch (dropout, ε) per epoch and return the shuffling generator: resume is exact."""
    seed = config.seed + 100_003 * PHASES.index(phase) + epoch
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------- data parallel
def _params(opt) -> list[torch.nn.Parameter]:
    return [p for group in opt.param_groups for p in group["params"]]


def _rows(idx: torch.Tensor, positions: list[int]) -> torch.Tensor:
    """The pair indices at `positions` of the global batch `idx` (the whole batch as it is)."""
    return idx if len(positions) == len(idx) else idx[torch.as_tensor(positions, device=idx.device)]


def _rank_rng(*key: int):
    """Under torchrun, the block's random draws (dropout) come from a stream of (key, rank) and torch's
    RNG is left as it was, so the ε stream all ranks share stays in step. A no-op in one process."""
    if world_size() == 1:
        return nullcontext()
    return _forked_rng(int(np.random.SeedSequence([*key, rank()]).generate_state(1, np.uint64)[0]))


@contextmanager
def _forked_rng(seed: int):
    with torch.random.fork_rng(devices=[torch.cuda.current_device()] if torch.cuda.is_initialized() else []):
        torch.manual_seed(seed)
        yield


def _all_sum(x: np.ndarray) -> np.ndarray:
    """Element-wise sum of `x` over ranks (once per epoch, for the logged means)."""
    if not dist.is_initialized():
        return x
    parts: list = [None] * world_size()
    dist.all_gather_object(parts, x.tolist())
    return np.sum(parts, axis=0)


# ---------------------------------------------------------------- epochs
def _pretrain_epoch(model: VaeGmm, opt, train: Pairs, config: VaeGmmConfig, epoch: int) -> dict:
    """One pass of CE(decoder(μ), r - 1); under torchrun each rank takes its share of every batch."""
    model.train()
    params, total = _params(opt), 0.0
    for b, idx in enumerate(_batches(len(train), config.pretrain_batch_size, _seed(config, "pretrain", epoch))):
        idx = idx.to(train.users.device)

        def loss_fn(pos: list[int], idx=idx, b=b) -> torch.Tensor:
            i = _rows(idx, pos)
            with _rank_rng(config.seed, 0, epoch, b):
                return model.reconstruction_loss(train.users[i], train.items[i], train.targets[i])

        total += data_parallel_step(params, opt, [range(len(idx))], loss_fn) * len(idx)
    return {"epoch": epoch + 1, "ce": total / len(train)}


def _elbo_epoch(model: VaeGmm, opt, train: Pairs, config: VaeGmmConfig, epoch: int) -> dict:
    """One pass of loss_scale * (recon_weight * CE + kl_weight(epoch) * KL); returns the means."""
    model.train()
    kl_weight, recon_weight = config.kl_weight(epoch), config.reconstruction_weight()
    lr = config.lr * config.lr_gamma ** (epoch // max(config.lr_step, 1))
    for group in opt.param_groups:
        group["lr"] = lr
    params, world, sums = _params(opt), world_size(), np.zeros(3)
    for b, idx in enumerate(_batches(len(train), config.batch_size, _seed(config, "elbo", epoch))):
        idx = idx.to(train.users.device)
        # Under torchrun every rank draws the whole global batch's ε from the shared stream, as one
        # process does, and keeps its shard's rows: a pair's z does not depend on the world size.
        eps = None if world == 1 else torch.randn(len(idx), config.latent_dim, device=idx.device)
        terms = [0.0, 0.0, 0]  # this rank's mean CE, mean KL, pairs

        def loss_fn(pos: list[int], idx=idx, eps=eps, terms=terms, b=b) -> torch.Tensor:
            i = _rows(idx, pos)
            with _rank_rng(config.seed, 1, epoch, b):
                ce, kl = model.elbo_terms(train.users[i], train.items[i], train.targets[i],
                                          eps=None if eps is None else eps[torch.as_tensor(pos, device=eps.device)])
            terms[:] = [ce.item(), kl.item(), len(pos)]
            return config.loss_scale * (recon_weight * ce + kl_weight * kl)

        loss = data_parallel_step(params, opt, [range(len(idx))], loss_fn)
        ce, kl, n = terms
        sums += np.array([loss, ce, kl]) * len(idx) if world == 1 else np.array([loss * len(idx), ce * n, kl * n])
    if world > 1:
        sums[1:] = _all_sum(sums[1:])  # CE and KL were summed over this rank's pairs only
    loss, ce, kl = (float(x) for x in sums / len(train))
    return {"epoch": epoch + 1, "loss": loss, "ce": ce, "kl": kl, "kl_weight": kl_weight, "lr": lr}


def fit_gmm(mu: np.ndarray, config: VaeGmmConfig):
    """The diagonal GaussianMixture that initialises the prior (random_state = config.seed)."""
    from sklearn.mixture import GaussianMixture

    if len(mu) < config.n_clusters:
        raise WhyrecError(f"{len(mu)} training pairs cannot fit {config.n_clusters} clusters")
    return GaussianMixture(n_components=config.n_clusters, covariance_type="diag",
                           random_state=config.seed).fit(mu)


def _init_prior(model: VaeGmm, train: Pairs, config: VaeGmmConfig) -> dict:
    gmm = fit_gmm(latent_means(model, train).cpu().double().numpy(), config)
    model.init_prior(gmm.weights_, gmm.means_, gmm.covariances_)
    if config.copy_mu_to_logvar:
        model.logvar_head.load_state_dict(model.mu_head.state_dict())
    return {"converged": bool(gmm.converged_), "n_iter": int(gmm.n_iter_), "weights": gmm.weights_.tolist()}


# ---------------------------------------------------------------- entry points
def _cached(out: Path, fingerprint: dict) -> dict | None:
    try:
        metrics = json.loads((out / "metrics.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    files = ("config.json", "model.safetensors", "user2idx.json", "item2idx.json", PLOT)
    if metrics.get("fingerprint") == fingerprint and all((out / f).is_file() for f in files):
        return metrics
    return None


def train_vae_gmm(data: str, out: str, config: VaeGmmConfig | None = None, device: str = "auto",
                  resume: bool = True, progress: bool = True, overwrite: bool = False) -> dict:
    """Train the VAE-GMM on a dataset folder (rating column, train/valid/test split) into `out`.

    Args:
        data: a `RecDataset` folder; ratings may be floats and are rounded to 1..5. Without ratings
            (or with config.feedback "interactions") the VAE tells observed from sampled pairs.
        out: output folder: config.json, model.safetensors, id maps, README.md, latent.png,
            metrics.json, run_config.json and checkpoint/.
        config: hyperparameters (default: the original's).
        device: "auto", "cpu", "cuda", ...
        resume: continue from out/checkpoint and reuse a finished run with the same config.
        progress: show progress (a tqdm bar on a terminal, a line every 30 s in a log).
        overwrite: replace `out` if it holds another run (built beside it, then renamed). Without
            it, a folder made with another config or data is refused, naming what differs.
    Returns:
        The metrics written to out/metrics.json.
    """
    config = config or VaeGmmConfig()
    out, device = Path(out), device_for_rank(resolve_device(device))
    with distributed_run(device):
        dset = _load_data(data, device, config)
        config = dataclasses.replace(config, feedback=dset.feedback)
        cfg = json.loads(json.dumps(dataclasses.asdict(config)))  # tuples -> lists, as they come back from JSON
        if dset.feedback == "ratings":  # the rating model of before interactions mode: its folders still resume
            cfg = {k: v for k, v in cfg.items() if k not in ("feedback", "negatives")}
        resume_key = {"config": {k: v for k, v in cfg.items() if k != "elbo_epochs"}, "data": dset.digest}
        with output_folder(out, "vae-gmm model", {"vae": resume_key["config"], "data": dset.digest},
                           overwrite=overwrite) as work:
            return _train(data, work, dset, config, cfg, resume_key, device, resume, progress and is_main())


def _train(data: str, out: Path, dset: _Data, config: VaeGmmConfig, cfg: dict, resume_key: dict, device: str,
           resume: bool, progress: bool) -> dict:
    fingerprint = {"config": cfg, "data": dset.digest}
    if resume and (cached := _cached(out, fingerprint)) is not None:
        return cached

    torch.manual_seed(config.seed)
    model = VaeGmm(config, len(dset.user2idx), len(dset.item2idx)).to(device)
    opt, state = None, {"phase": "pretrain", "epoch": 0, "best_ce": None, "bad_epochs": 0, "gmm": None,
                        "history": {"pretrain": [], "elbo": []}, "resume_key": resume_key}
    if resume and (restored := _load_checkpoint(out, resume_key, model, config)) is not None:
        opt, state = restored
    broadcast_parameters(model)
    train = dset.splits[S.TRAIN]
    if state["phase"] == "pretrain":
        opt = opt or _optimizer(model, "pretrain", config)
        _pretrain(model, opt, train, config, state, out, progress)
        gmm = _init_prior(model, train, config) if is_main() else None  # sklearn once, on rank 0
        broadcast_parameters(model)  # rank 0's π, μ_c, log σ²_c (and copied log σ² head) everywhere
        state.update(phase="elbo", epoch=0, gmm=from_rank0(gmm))
        opt = _optimizer(model, "elbo", config)
        if is_main():
            _save_checkpoint(out, model, opt, state)
    if state["phase"] == "elbo":  # also when a finished run is extended with more elbo_epochs
        bar = progress_bar(range(state["epoch"], config.elbo_epochs), initial=state["epoch"],
                           total=config.elbo_epochs, desc="vae-gmm elbo", unit="epoch", enabled=progress)
        for epoch in bar:
            tic = time.perf_counter()
            record = _elbo_epoch(model, opt, train, config, epoch)
            _add_seconds(state, tic)
            state["history"]["elbo"].append(record)
            state["epoch"] = epoch + 1
            if is_main():
                _save_checkpoint(out, model, opt, state)
            bar.set_postfix(loss=f"{record['loss']:.4f}", kl=f"{record['kl']:.3f}")
        bar.close()
    return _finish(model, dset, config, state, out, data, fingerprint, device)


def _pretrain(model: VaeGmm, opt, train: Pairs, config: VaeGmmConfig, state: dict, out: Path, progress: bool):
    """Autoencoder epochs until pretrain_epochs or pretrain_patience epochs without a lower CE."""
    bar = progress_bar(range(state["epoch"], config.pretrain_epochs), initial=state["epoch"],
                       total=config.pretrain_epochs, desc="vae-gmm pretrain", unit="epoch", enabled=progress)
    for epoch in bar:
        if state["bad_epochs"] >= config.pretrain_patience:
            break
        tic = time.perf_counter()
        record = _pretrain_epoch(model, opt, train, config, epoch)
        _add_seconds(state, tic)
        if state["best_ce"] is None or record["ce"] < state["best_ce"]:
            state.update(best_ce=record["ce"], bad_epochs=0)
        else:
            state["bad_epochs"] += 1
        state["history"]["pretrain"].append(record)
        state["epoch"] = epoch + 1
        if is_main():
            _save_checkpoint(out, model, opt, state)
        bar.set_postfix(ce=f"{record['ce']:.4f}")
    bar.close()


def _add_seconds(state: dict, tic: float) -> None:
    # in the checkpointed state, so the time `whyrec cluster` reports spans a resume; a checkpoint
    # written before it was recorded starts from 0
    state["train_seconds"] = state.get("train_seconds", 0.0) + time.perf_counter() - tic


@torch.no_grad()
def _finish(model: VaeGmm, dset: _Data, config: VaeGmmConfig, state: dict, out: Path, data: str,
            fingerprint: dict, device: str) -> dict:
    if not is_main():  # rank 0 evaluates and writes the folder; the others take its metrics
        return from_rank0(None)
    train = dset.splits[S.TRAIN]
    splits = {name: evaluate(model, pairs) for name, pairs in dset.splits.items()}
    mu = latent_means(model, train)
    plot_latent(mu, model.log_responsibilities(mu).argmax(1), out / PLOT, config.plot_points_per_cluster, config.seed)
    history = state["history"]
    metrics = {
        "encoder": "vae_gmm", "n_clusters": config.n_clusters,
        "cluster_sizes": splits[S.TRAIN]["cluster_sizes"],
        "pi": model.log_pi().exp().tolist(),
        "train": splits[S.TRAIN], "valid": splits[S.VALID], "test": splits[S.TEST],
        "pretrain_epochs_run": len(history["pretrain"]), "elbo_epochs_run": len(history["elbo"]),
        "train_seconds": round(state.get("train_seconds", 0.0), 2),
        "gmm_init": state["gmm"], "history": history,
        "feedback": config.feedback, "protocol": PROTOCOL[config.feedback],
        "n_users": len(dset.user2idx), "n_items": len(dset.item2idx), "fingerprint": fingerprint,
    }
    save_vae_gmm(model, out, dset.user2idx, dset.item2idx, card=_card(config, metrics, data))
    run = {"data": str(data), "encoder": "vae_gmm", "device": device, "world_size": world_size(),
           "config": dataclasses.asdict(config)}
    write_run_info(out, run, command=f"whyrec cluster --data {data} --out {destination(out)}")
    write_json(out / "metrics.json", metrics)  # last: marks the folder as finished
    return from_rank0(metrics)



def cluster_command(data: str, out: str, config: VaeGmmConfig = VaeGmmConfig(), device: str = "auto",  # noqa: B008
                    resume: bool = True, overwrite: bool = False) -> dict:
    """Train GaVaMoE's stage-1 VAE-GMM (the clusters that pick the stage-2 gates).

    Args:
        data: dataset folder with ratings and a train/valid/test split (`whyrec data prepare`).
        out: output folder (artifact, metrics.json, latent.png, checkpoint/).
        config: VAE-GMM hyperparameters (defaults: the original GaVaMoE values).
        device: "auto" (CUDA if present), "cpu", "cuda", ...
        resume: continue an interrupted run in `out` and reuse a finished one.
        overwrite: replace `out` if it holds another run (built beside it, then renamed).
    Returns:
        A summary: cluster sizes, π, epochs run, valid/test rating accuracy and RMSE.
    """
    metrics = train_vae_gmm(data, out, config, device=device, resume=resume, overwrite=overwrite)
    keep = ("n_clusters", "cluster_sizes", "pi", "pretrain_epochs_run", "elbo_epochs_run")
    scores = {name: {k: v for k, v in (metrics[name] or {}).items() if k in ("n", "accuracy", "rmse", "auc")} or None
              for name in ("valid", "test")}
    return {"out": str(out), **{k: metrics[k] for k in keep}, **scores}


def cluster_summary(m: dict, out: str) -> str:
    """What `whyrec cluster` prints (`--json`: the metrics in full): sizes, epochs, time, final ELBO loss,
    then valid/test accuracy and RMSE (AUC without ratings)."""
    elbo = (m.get("history") or {}).get("elbo") or [{}]
    second = "auc" if m.get("feedback") == "interactions" else "rmse"
    lines = [f"vae_gmm: {m['n_users']:,} users, {m['n_items']:,} items · {m['n_clusters']} clusters of "
             f"{', '.join(f'{n:,}' for n in m['cluster_sizes'])} training pairs",
             f"{m['pretrain_epochs_run']} pretrain + {m['elbo_epochs_run']} elbo epochs"
             + (f" in {duration(m['train_seconds'])}" if "train_seconds" in m else "")
             + (f" · final loss {elbo[-1]['loss']:.4f}" if "loss" in elbo[-1] else ""),
             "", f"|  | accuracy | {second} |", "|---|---|---|"]
    lines += [f"| {s} | {m[s]['accuracy']:.4f} | {fmt(m[s].get(second))} |" for s in ("valid", "test") if m.get(s)]
    if second == "auc":
        lines.append("(no ratings: observed pairs against sampled pairs of the same users, `--vae.negatives` per pair)")
    lines += [f"model: {out} (the --encoder of `whyrec train explainer --method gavamoe`)",
              f"full metrics: {Path(out) / 'metrics.json'} (--json prints them)"]
    return "\n".join(lines)
