"""Data-parallel training for whyrec's own loops with plain `torch.distributed`.

Launch any training command with `torchrun --nproc_per_node N whyrec train ...`: torchrun sets
RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR, `distributed_run` joins the process group (gloo
on CPU, NCCL on CUDA), and `data_parallel_step` runs one optimizer step over a *global* batch:
every rank takes its strided shard of each micro-batch, and the gradients of the
token/example-weighted losses are summed over ranks and divided by the global weight, so the
update equals the single-process update on the same global batch (up to float rounding).
Only rank 0 writes checkpoints and artifacts (`is_main`); the others wait at `barrier`.

Without WORLD_SIZE > 1 every function is a cheap no-op, and a single-process step with one
micro-batch and no clipping runs exactly the plain `loss.backward(); optimizer.step()` it
replaced, so existing runs reproduce bit for bit.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from contextlib import contextmanager

import torch
import torch.distributed as dist


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def is_main() -> bool:
    """True on rank 0 (and in a single process): the one process that writes files."""
    return rank() == 0


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def device_for_rank(device: str) -> str:
    """Under torchrun a CUDA device becomes this process's GPU (LOCAL_RANK); CPU stays CPU."""
    if device.startswith("cuda") and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return device


@contextmanager
def distributed_run(device: str = "cpu"):
    """Join torchrun's process group for the block if WORLD_SIZE > 1 and none is active yet.

    gloo for CPU training, NCCL for CUDA. On exit all ranks meet at a barrier (rank 0 has
    then finished writing) and the group this call created is destroyed.
    """
    created = False
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        cuda = device.startswith("cuda")
        if cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend="nccl" if cuda else "gloo")
        created = True
    try:
        yield
        barrier()
    finally:
        if created and dist.is_initialized():
            dist.destroy_process_group()


def shard(indices: Sequence, r: int | None = None, n: int | None = None) -> list:
    """This rank's strided share of a global batch (rank r gets positions r, r+n, ...)."""
    r, n = rank() if r is None else r, world_size() if n is None else n
    return list(indices[r::n])


def any_rank(flag: bool) -> bool:
    """True if `flag` is true on any rank (e.g. a time budget), so all ranks stop together."""
    if not dist.is_initialized():
        return flag
    device = f"cuda:{torch.cuda.current_device()}" if dist.get_backend() == "nccl" else "cpu"  # NCCL: GPU tensors
    t = torch.tensor([float(flag)], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def from_rank0(obj):
    """Rank 0's `obj` on every rank (`obj` itself in one process). torch pickles it between
    this run's own processes only, never from a file."""
    if not dist.is_initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def broadcast_parameters(module: torch.nn.Module) -> None:
    """Copy rank 0's trainable parameters to every rank (seeded init makes them equal already;
    this guards against any nondeterministic initialisation)."""
    if not dist.is_initialized():
        return
    with torch.no_grad():
        for p in module.parameters():
            if p.requires_grad:
                dist.broadcast(p.data, src=0)


def data_parallel_step(params: list[torch.nn.Parameter], optimizer: torch.optim.Optimizer,
                       micro_batches: Sequence[Sequence], loss_fn: Callable, max_grad_norm: float | None = None,
                       seed_fn: Callable[[int], None] | None = None, every_rank_runs: bool = False) -> float:
    """One optimizer step over a global batch given as micro-batches of indices.

    Args:
        params: the trainable parameters (the optimizer's).
        micro_batches: the global batch split for gradient accumulation; each rank runs
            `shard(mb)` of every micro-batch.
        loss_fn: `loss_fn(indices)` -> mean loss tensor, or `(mean loss, weight)` where weight
            is what the mean is over (target tokens, examples). Plain tensors weigh len(indices).
        max_grad_norm: clip the global gradient norm before the step (None: no clipping).
        seed_fn: called with a micro-batch counter before each forward (dropout seeding).
        every_rank_runs: a rank with an empty shard of a micro-batch still runs a forward and
            backward, of zero weight (FSDP-sharded layers gather inside every rank's forward).
    Returns:
        The weighted mean loss of the whole global batch (the same number on every rank).
    """
    optimizer.zero_grad(set_to_none=True)
    if world_size() == 1 and len(micro_batches) == 1 and max_grad_norm is None:
        if seed_fn is not None:
            seed_fn(0)
        loss, _ = _split(loss_fn(list(micro_batches[0])), len(micro_batches[0]))
        loss.backward()  # exactly the loop this replaced
        optimizer.step()
        return loss.item()
    totals = torch.zeros(2, dtype=torch.float64)  # [sum of loss * weight, sum of weight]
    for m, mb in enumerate(micro_batches):
        idx = shard(mb)
        if not idx:  # a last batch smaller than the world: this rank only joins the reduction
            if every_rank_runs:
                _zero_weight_pass(params, loss_fn, [mb[0]])
            continue
        if seed_fn is not None:
            seed_fn(m)
        loss, weight = _split(loss_fn(idx), len(idx))
        (loss * weight).backward()
        totals += torch.tensor([loss.item() * float(weight), float(weight)], dtype=torch.float64)
    _reduce_gradients(params, totals)
    if max_grad_norm is not None:
        torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
    optimizer.step()
    return float(totals[0] / totals[1]) if totals[1] > 0 else float("nan")


def _zero_weight_pass(params, loss_fn: Callable, idx: list) -> None:
    """Forward and backward on `idx` that leave every gradient as it was (None stays None); the
    next micro-batch reseeds, so the random draws here change nothing after it."""
    untouched = [p.grad is None for p in params]
    loss, _ = _split(loss_fn(idx), len(idx))
    (loss * 0.0).backward()
    for p, none in zip(params, untouched):
        if none:
            p.grad = None


def _split(out, n: int) -> tuple[torch.Tensor, float]:
    if isinstance(out, tuple):
        loss, weight = out
        return loss, float(weight)
    return out, float(n)


def _reduce_gradients(params: list[torch.nn.Parameter], totals: torch.Tensor) -> None:
    """grad <- (sum over ranks of grad) / (global weight); `totals` becomes the global sums.

    A parameter no rank touched keeps `grad = None`, so Adam skips it as it would in one process.
    """
    used = [p.grad is not None for p in params]
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    if dist.is_initialized():
        device = params[0].device if params else torch.device("cpu")
        flat = torch.cat([g.reshape(-1).float() for g in grads]  # one collective for all tensors
                         + [torch.tensor(used, dtype=torch.float32, device=device)])
        dist.all_reduce(flat)
        *grads, hits = torch.split(flat, [g.numel() for g in grads] + [len(params)])
        used = (hits > 0).tolist()
        exact = totals.to(device)  # float64 so long sums of token counts stay exact
        dist.all_reduce(exact)
        totals.copy_(exact.cpu())
    weight = float(totals[1])
    for p, g, u in zip(params, grads, used):
        p.grad = (g.view_as(p) / weight).to(p.dtype) if u and weight > 0 else None


def trainer_parallel_args(deepspeed: str | None, fsdp: str | None, bf16: bool | None,
                          gradient_checkpointing: bool, hidden_size: int | None = None) -> dict:
    """HF `TrainingArguments` keywords for the Trainer-based methods' memory/parallel switches.

    Args:
        deepspeed: path to a DeepSpeed JSON (ZeRO-2/3: configs/distributed/ds_zero*.json).
        fsdp: path to an FSDP settings JSON (`fsdp_config`, configs/distributed/fsdp.json); turns FSDP on.
        bf16: autocast to bfloat16; None = on when the GPU supports it.
        gradient_checkpointing: recompute activations in the backward pass.
        hidden_size: the LLM's width, for a model the Trainer cannot read it from (RecExplainer
            wraps the LLM in a plain module without `.config`): the DeepSpeed bucket sizes left
            "auto" are filled from it as transformers would (else the Trainer raises "The model's
            config file has neither `hidden_size` nor `hidden_sizes` entry").

    FSDP needs a GPU: accelerate (1.15) turns the FSDP plugin on only for GPU-type devices, so on
    CPU the Trainer silently trains with plain DDP instead; this logs a warning. DeepSpeed ZeRO-2/3
    do run on CPU (DeepSpeed's CPU accelerator, tested with 2 gloo processes).
    """
    import json
    from pathlib import Path

    from whyrec.utils import WhyrecError

    for name, path in (("deepspeed", deepspeed), ("fsdp", fsdp)):
        if path is not None and not Path(path).is_file():
            raise WhyrecError(f"{name} config {path} not found; see configs/distributed/")
    if deepspeed and fsdp:
        raise WhyrecError("choose DeepSpeed or FSDP, not both")
    cuda = torch.cuda.is_available()
    kw = {"bf16": (cuda and torch.cuda.is_bf16_supported()) if bf16 is None else bf16,
          "activation_checkpointing": gradient_checkpointing}  # transformers 5 name
    if deepspeed:
        kw["deepspeed"] = str(deepspeed) if hidden_size is None else _deepspeed_dict(deepspeed, hidden_size)
    if fsdp:
        if not cuda:
            import logging

            logging.getLogger(__name__).warning(
                "fsdp: accelerate applies FSDP on GPUs only; on this CPU the Trainer trains with plain DDP "
                "(every rank holds the whole model). Use DeepSpeed ZeRO-3 to shard on CPU.")
        kw["fsdp"] = True
        kw["fsdp_config"] = json.loads(Path(fsdp).read_text())
    return kw


def _deepspeed_dict(path: str, hidden_size: int) -> dict:
    """The DeepSpeed JSON with its hidden-size-based "auto" entries filled (transformers' own rule)."""
    import json
    from pathlib import Path

    cfg = json.loads(Path(path).read_text())
    zero = cfg.get("zero_optimization", {})
    rule = {"reduce_bucket_size": hidden_size * hidden_size,
            "stage3_prefetch_bucket_size": int(0.9 * hidden_size * hidden_size),
            "stage3_param_persistence_threshold": 10 * hidden_size}
    for key, value in rule.items():
        if zero.get(key) == "auto":
            zero[key] = value
    return cfg
