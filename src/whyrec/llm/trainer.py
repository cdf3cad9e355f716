"""A small resumable training loop for the LLM-side modules (adapters, LoRA).

Checkpoints hold only trainable tensors (safetensors), the optimizer state and a JSON
state; they are written to a temp folder and renamed, so a kill never leaves a broken one.
The batch order is a pure function of the seed, so a resumed run sees the same batches.

Under torchrun (`whyrec.distributed`) every rank takes its shard of each batch, gradients are
summed over ranks and weighted by target tokens, so N processes make the single-process update
of the same global batch; rank 0 alone writes checkpoints. `grad_accum_steps` batches make one
optimizer step, `max_grad_norm` clips it, `gradient_checkpointing` and `bf16` save memory.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from whyrec import distributed as D
from whyrec.config import TrainConfig
from whyrec.llm.collate import length_bucketed_order, token_budget_order
from whyrec.llm.compile_policy import (
    is_compile_error,
    quiet_guard_errors,
    use_compile_cache,
    wants_compile,
    warn_fallback,
)
from whyrec.llm.sharding import shard_frozen_layers
from whyrec.progress import progress
from whyrec.utils import WhyrecError, adam


def trainable_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().cpu().contiguous() for n, p in module.named_parameters() if p.requires_grad}


def _save_checkpoint(ckpt: Path, module, optimizer, state: dict) -> None:
    tmp = ckpt.with_name(ckpt.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    save_file(trainable_state(module), tmp / "trainable.safetensors")
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    (tmp / "trainer_state.json").write_text(json.dumps(state))
    old = ckpt.with_name(ckpt.name + ".old")
    if ckpt.exists():
        if old.exists():
            shutil.rmtree(old)
        ckpt.rename(old)
    tmp.rename(ckpt)
    if old.exists():
        shutil.rmtree(old)


def _load_checkpoint(ckpt: Path, module, optimizer) -> dict:
    weights = load_file(ckpt / "trainable.safetensors")
    missing = module.load_state_dict(weights, strict=False)
    if missing.unexpected_keys:
        raise RuntimeError(f"checkpoint {ckpt} does not match this model: {missing.unexpected_keys[:3]}")
    # weights_only: optimizer state is tensors and numbers, never arbitrary objects.
    optimizer.load_state_dict(torch.load(ckpt / "optimizer.pt", weights_only=True))
    return json.loads((ckpt / "trainer_state.json").read_text())


def epoch_batches(lengths: list[int], cfg: TrainConfig, epoch: int,
                  token_lengths: list[int] | None = None) -> list[list[int]]:
    """The batches of one epoch: a pure function of the seed and the epoch, so a resumed run sees
    the same ones. `cfg.batch_tokens` packs by `token_lengths` (tokens per example)."""
    gen = torch.Generator().manual_seed(cfg.seed + epoch)
    if cfg.batch_tokens is None:
        return length_bucketed_order(lengths, cfg.batch_size, gen)
    if token_lengths is None:
        raise WhyrecError("--train.batch_tokens needs each example's length in tokens, which this method does "
                          "not give its trainer; use --train.batch_size instead")
    if len(token_lengths) != len(lengths):
        raise ValueError(f"{len(token_lengths)} token lengths for {len(lengths)} examples")
    return token_budget_order(token_lengths, cfg.batch_tokens, 50 * cfg.batch_size, gen)


def scheduled_lr(cfg: TrainConfig, step: int, total: int) -> float:
    """The learning rate of optimizer step `step` (0-based) of `total` planned: `warmup_steps` of
    linear warm-up, then `lr_schedule` from `lr` towards 0 at step `total`."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / (cfg.warmup_steps + 1)
    if cfg.lr_schedule == "constant":
        return cfg.lr
    done = (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps)
    if cfg.lr_schedule == "linear":
        return cfg.lr * (1.0 - done)
    return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * done))


def train_loop(module: torch.nn.Module, lengths: list[int], step_fn: Callable[[list[int]], torch.Tensor],
               cfg: TrainConfig, ckpt: Path, desc: str = "train", resume: bool = True,
               token_lengths: list[int] | None = None) -> dict:
    """Run Adam over `module`'s trainable parameters.

    `step_fn(indices)` returns the batch's mean loss, or `(mean loss, weight)` with the number
    of target tokens it averages over, which makes sharded and accumulated batches exact.
    `lengths` (any unit, e.g. characters) sorts examples into batches of similar length;
    `token_lengths` (prompt + target tokens) is needed only for `cfg.batch_tokens`.
    `state["step"]` counts optimizer steps; a resumed run continues bit for bit.
    """
    if cfg.fsdp and cfg.compile:
        raise WhyrecError("train.fsdp and train.compile cannot be combined; drop one of them")
    params = [p for p in module.parameters() if p.requires_grad]
    optimizer = adam(params, cfg.lr)
    accum = max(1, cfg.grad_accum_steps)
    batches = epoch_batches(lengths, cfg, 0, token_lengths)
    total = cfg.max_steps or max(1, math.ceil(len(batches) * cfg.epochs / accum))
    state = {"step": 0, "losses": [], "elapsed_s": 0.0}
    # A kill between the two renames of _save_checkpoint leaves only the previous one, as ".old".
    found = next((c for c in (ckpt, ckpt.with_name(ckpt.name + ".old")) if (c / "trainer_state.json").exists()), None)
    if resume and found is not None:
        state = _load_checkpoint(found, module, optimizer)
    D.broadcast_parameters(module)
    epoch = 1
    while len(batches) < total * accum:
        batches += epoch_batches(lengths, cfg, epoch, token_lengths)
        epoch += 1
    if cfg.gradient_checkpointing:
        from whyrec.llm.checkpointing import enable_gradient_checkpointing

        enable_gradient_checkpointing(module)
    # set on every run: a resumed state carries the value of the run that wrote the checkpoint
    state["sharded_layers"] = shard_frozen_layers(module) if cfg.fsdp else 0
    loss_fn = _autocast(step_fn, params) if cfg.bf16 else step_fn
    world, rank = D.world_size(), D.rank()
    compiled = ExitStack()  # TrainConfig.compile: the decoder layers run compiled during the loop only
    device = params[0].device.type if params else "cpu"
    llm = getattr(module, "llm", module)
    state["compiled"] = wants_compile(cfg.compile, total - state["step"], device, cfg.fsdp, llm)
    if state["compiled"]:
        from whyrec.llm.load import compiled_decoder_layers

        use_compile_cache()
        compiled.enter_context(quiet_guard_errors())
        compiled.enter_context(compiled_decoder_layers(llm))
    with compiled:
        module.train()
        start = time.time() - state["elapsed_s"]
        bar = progress(total=total, initial=state["step"], desc=desc, unit="step", enabled=D.is_main())
        while state["step"] < total:
            step = state["step"]
            for group in optimizer.param_groups:
                group["lr"] = scheduled_lr(cfg, step, total)

            def seed(m: int, step: int = step) -> None:  # dropout/noise reproducible on resume, distinct per rank
                torch.manual_seed(cfg.seed * 100003 + (step * accum + m) * world + rank)

            def run_step(step: int = step, seed=seed) -> float:
                return D.data_parallel_step(params, optimizer, batches[step * accum:(step + 1) * accum], loss_fn,
                                            cfg.max_grad_norm, seed, every_rank_runs=state["sharded_layers"] > 0)

            try:
                loss = run_step()
            except Exception as e:  # noqa: BLE001 - only compilation errors are caught, the rest re-raised
                if not (state["compiled"] and is_compile_error(e)):
                    raise
                warn_fallback(e)
                compiled.close()  # the layers run eagerly again; the failed step made no update
                state["compiled"] = False
                optimizer.zero_grad(set_to_none=True)
                loss = run_step()
            state["step"] += 1
            state["losses"].append(round(loss, 5))
            state["elapsed_s"] = time.time() - start
            bar.set_postfix(loss=f"{sum(state['losses'][-20:]) / len(state['losses'][-20:]):.3f}")
            bar.update(1)  # after the loss: a log line shows the loss of the step it counts
            out_of_time = D.any_rank(cfg.max_minutes is not None and state["elapsed_s"] > 60 * cfg.max_minutes)
            if state["step"] % cfg.checkpoint_every == 0 or state["step"] == total or out_of_time:
                if D.is_main():
                    _save_checkpoint(ckpt, module, optimizer, state)
                D.barrier()
            if out_of_time:
                break
        bar.close()
    module.eval()
    return state


def _autocast(step_fn: Callable, params: list[torch.Tensor]) -> Callable:
    """Run `step_fn` under bfloat16 autocast on the parameters' device type."""
    device_type = params[0].device.type if params else "cpu"

    def run(idx):
        with torch.autocast(device_type, dtype=torch.bfloat16):
            return step_fn(idx)

    return run
