"""Train RecExplainer's alignment through the HF Trainer and save a self-contained folder.

Mirrors `whyrec.methods.recalpaca`: response-only loss, resumable checkpoints in
out/checkpoints (LoRA + connector weights and optimizer state only, never the frozen LLM),
a time budget, and the run folder

    adapter_config.json  adapter_model.safetensors   PEFT LoRA adapter (base model by name)
    connectors.safetensors                           user_connector / item_connector
    target/                                          copy of the target recommender folder
    config.json  train_log.json  run_config.json  README.md

Each example is rendered with the backbone's chat template; labels are -100 on the prompt.
"""

from __future__ import annotations

import logging
import math
import os
import random
import shutil
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from whyrec.config import ModelConfig
from whyrec.fingerprint import digest
from whyrec.llm.collate import IGNORE as IGNORE_INDEX
from whyrec.llm.hf_resume import (
    budget_change,
    last_complete_checkpoint,
    run_train_loss,
    stops_at_planned_end,
    time_budget_callback,
)
from whyrec.methods.recexplainer.model import METHOD, RecExplainer, RecExplainerConfig, _load_target
from whyrec.outputs import MARKER
from whyrec.utils import (
    WhyrecError,
    read_json,
    seed_everything,
    write_json,
    write_run_info,
    write_text,
)

logger = logging.getLogger(__name__)
CHECKPOINT_WEIGHTS = "trainable.safetensors"
CARD = """# RecExplainer ({mode})

LoRA (r={r}, alpha={alpha}) and connectors aligning `{base}` with a {kind} target recommender,
trained by whyrec's `recexplainer` method for {steps} steps on {n} task examples. Reload with
`whyrec.methods.recexplainer.load_recexplainer(folder)`; the target model is in target/.
"""


def tokenize_chat(tokenizer, example: dict, max_length: int) -> dict:
    """input_ids / labels of a [user, assistant] example; the loss covers the reply and EOS only."""
    messages = example["messages"]
    prompt = tokenizer.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True)
    p_ids = tokenizer(prompt, add_special_tokens=False).input_ids
    r_ids = tokenizer(messages[-1]["content"], add_special_tokens=False).input_ids + [tokenizer.eos_token_id]
    ids = (p_ids + r_ids)[:max_length]
    labels = ([IGNORE_INDEX] * len(p_ids) + r_ids)[:max_length]
    return {"input_ids": ids, "labels": labels, "placeholders": example.get("placeholders", [])}


@dataclass
class ChatCollator:
    """Right-pad; placeholders travel as a plain list the module turns into target vectors."""

    pad_id: int

    def __call__(self, rows: list[dict]) -> dict:
        width = max(len(r["input_ids"]) for r in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
        for b, r in enumerate(rows):
            n = len(r["input_ids"])
            ids[b, :n], mask[b, :n], labels[b, :n] = torch.tensor(r["input_ids"]), 1, torch.tensor(r["labels"])
        return {"input_ids": ids, "attention_mask": mask, "labels": labels,
                "placeholders": [r["placeholders"] for r in rows]}


def _trainer_class(group_by_length: bool = False):
    from safetensors.torch import load_file, save_file
    from transformers import Trainer

    from whyrec.llm.length_grouping import with_length_grouping
    from whyrec.llm.trainer import trainable_state

    class RecExplainerTrainer(Trainer):
        """Checkpoints hold the trainable weights only (LoRA + connectors), not the frozen LLM."""

        def _save(self, output_dir=None, state_dict=None):
            if self.args.should_save:
                os.makedirs(output_dir or self.args.output_dir, exist_ok=True)
                weights = trainable_state(self.model)
                if state_dict is not None:  # ZeRO-3 hands over the gathered weights; ours are empty shards
                    weights = {k: state_dict[k].detach().cpu().contiguous() if k in state_dict else v
                               for k, v in weights.items()}
                save_file(weights, os.path.join(output_dir or self.args.output_dir, CHECKPOINT_WEIGHTS))

        def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
            (model or self.model).load_state_dict(load_file(os.path.join(resume_from_checkpoint,
                                                                         CHECKPOINT_WEIGHTS)), strict=False)

    return stops_at_planned_end(with_length_grouping(RecExplainerTrainer) if group_by_length else RecExplainerTrainer)


def _training_args(cfg: RecExplainerConfig, ckpt_dir: Path, hidden_size: int | None = None):
    from transformers import TrainingArguments

    from whyrec.distributed import trainer_parallel_args

    cuda = torch.cuda.is_available()
    return TrainingArguments(
        output_dir=str(ckpt_dir), per_device_train_batch_size=cfg.micro_batch_size,
        gradient_accumulation_steps=cfg.grad_accum, num_train_epochs=cfg.epochs, max_steps=cfg.max_steps or -1,
        learning_rate=cfg.lr, warmup_steps=cfg.warmup_ratio,  # a float < 1 is a ratio (transformers 5)
        weight_decay=cfg.weight_decay, optim="adamw_torch",
        # checkpointing is switched on in train_recexplainer: the Trainer's switch needs a PreTrainedModel
        use_cpu=not cuda, **trainer_parallel_args(cfg.deepspeed, cfg.fsdp, cfg.bf16, gradient_checkpointing=False,
                                                  hidden_size=hidden_size),  # the module has no .config
        logging_steps=cfg.logging_steps, logging_first_step=True,
        save_strategy="steps" if cfg.save_steps else "epoch", save_steps=cfg.save_steps or 500,
        save_total_limit=cfg.save_total_limit,
        remove_unused_columns=False,  # rows carry placeholders, which the signature check would drop
        ddp_find_unused_parameters=True if int(os.environ.get("WORLD_SIZE", "1")) > 1 else None,  # no <item> in a batch
        dataloader_pin_memory=cuda, report_to="none", seed=cfg.seed,
    )


def _mixture(target, cfg: RecExplainerConfig, users, teacher) -> list[dict]:
    from whyrec.methods.recexplainer.material import alignment_material
    from whyrec.methods.recexplainer.tasks import build_alignment_tasks

    users = [str(u) for u in (users if users is not None else target.user2idx)]
    needs = {"uid2next", "uidiid2rank", "uidiid2binary"} & set(cfg.tasks)
    material = alignment_material(target, users, topk=cfg.topk, seed=cfg.data_seed) if needs else None
    return build_alignment_tasks(target, users, cfg.mode, cfg.tasks, material=material, teacher=teacher,
                                 max_hist_len=cfg.max_hist_len, seed=cfg.data_seed)


def train_recexplainer(target_path: str, out: str, model: ModelConfig | None = None,
                       cfg: RecExplainerConfig | None = None, users: list[str] | None = None,
                       examples: list[dict] | None = None, teacher=None, resume: bool = True,
                       overwrite: bool = False) -> dict:
    """Align `model` with the target recommender at `target_path`; write the run folder `out`.

    Args:
        target_path: a trained target folder (`whyrec.encoders.target_train`).
        users: users whose tasks form the mixture (default: every user the target knows).
        examples: a ready task mixture (`whyrec.methods.recexplainer.tasks`) instead of building one.
        teacher: chat client for the optional uid2summary task.
        resume: continue from the newest complete checkpoint; False starts over.
        overwrite: replace `out` if it holds another run (built beside it, then renamed). Without it
            a folder made with another model, config, target, users or examples is refused, naming
            what differs. max_steps/epochs may change: that is how a run is extended (the LR
            schedule then spans the new budget from the resumed step on; a warning names both budgets,
            and the train log keeps them as `budget_changed`).

    Returns:
        The training log (also out/train_log.json).
    """
    from whyrec.outputs import (
        BUDGET_FIELDS,
        HARMLESS_FIELDS,
        fingerprint_of,
        folder_digest,
        output_folder,
    )

    model, cfg = model or ModelConfig(), cfg or RecExplainerConfig()
    fingerprint = {"method": METHOD, "model": fingerprint_of(model), "recexplainer": fingerprint_of(cfg, HARMLESS_FIELDS + BUDGET_FIELDS),
                   "target": folder_digest(target_path), "users": digest(users) if users is not None else None,
                   "examples": digest(examples) if examples is not None else None}
    with output_folder(out, f"{METHOD} explainer", fingerprint, overwrite=overwrite) as work:
        return _train(target_path, work, model, cfg, users, examples, teacher, resume)


def _train(target_path: str, out_dir: Path, model: ModelConfig, cfg: RecExplainerConfig, users: list[str] | None,
           examples: list[dict] | None, teacher, resume: bool) -> dict:
    from whyrec.llm.load import load_model

    ckpt_dir = out_dir / "checkpoints"
    if not resume and ckpt_dir.exists() and os.environ.get("RANK", "0") == "0":
        shutil.rmtree(ckpt_dir)
    target = _load_target(target_path, "cpu")
    examples = examples if examples is not None else _mixture(target, cfg, users, teacher)
    other = next((e for e in examples if e["mode"] != cfg.mode and e["task"] != "general"), None)
    if other is not None:
        raise WhyrecError(f"a {other['task']} example is in mode {other['mode']!r} but the config trains {cfg.mode!r}")
    if cfg.max_examples and len(examples) > cfg.max_examples:
        examples = random.Random(cfg.data_seed).sample(examples, cfg.max_examples)
    seed_everything(cfg.seed)
    llm, tok = load_model(replace(model, device="cpu"))  # the Trainer moves it to this process's device
    module = RecExplainer(llm, tok, target, cfg)
    module.touch_unused_connectors = bool(cfg.deepspeed)  # ZeRO needs every rank to reduce every connector
    if cfg.gradient_checkpointing:
        from whyrec.llm.checkpointing import enable_gradient_checkpointing

        enable_gradient_checkpointing(module)
    rows = [tokenize_chat(tok, e, cfg.max_length) for e in examples]
    rows = [r for r in rows if any(x != IGNORE_INDEX for x in r["labels"])]
    if not rows:
        raise WhyrecError(f"no training examples for mode {cfg.mode!r} (got {len(examples)} before cutting "
                          f"to max_length={cfg.max_length})")
    callbacks = [time_budget_callback(cfg.max_minutes)] if cfg.max_minutes else []
    if cfg.max_minutes and not cfg.max_steps:
        planned = math.ceil(len(rows) / (cfg.micro_batch_size * cfg.grad_accum)) * cfg.epochs
        # The schedule (warmup ratio, decay) spans every planned step; a short time budget would
        # stop inside the warmup, at a learning rate near zero, and train nothing.
        logger.warning("recexplainer: the LR schedule spans %d planned steps (%s epochs) but "
                       "--recexplainer.max_minutes %s will stop long before; set --recexplainer.max_steps to the "
                       "steps the budget allows so warmup and decay fit it", planned, cfg.epochs, cfg.max_minutes)
    trainer = _trainer_class(cfg.group_by_length)(model=module, args=_training_args(cfg, ckpt_dir, llm.config.hidden_size), train_dataset=rows,
                               data_collator=ChatCollator(tok.pad_token_id), callbacks=callbacks)
    per_step = cfg.micro_batch_size * cfg.grad_accum * trainer.args.world_size
    if trainer.is_world_process_zero():  # its own batch and lr are not TrainConfig's: say which ran
        print(f"recexplainer: {len(rows)} examples, {per_step} a step ({cfg.micro_batch_size} a micro-batch x "
              f"{cfg.grad_accum} accumulated x {trainer.args.world_size} processes), lr {cfg.lr:g} (--recexplainer."
              "micro_batch_size/grad_accum/lr; --train.batch_size/lr, when given, replace them)", file=sys.stderr, flush=True)
    start_ckpt = last_complete_checkpoint(ckpt_dir) if resume and ckpt_dir.is_dir() else None
    started = time.time()
    trainer.train(resume_from_checkpoint=str(start_ckpt) if start_ckpt else None)
    extended = budget_change(start_ckpt, trainer.state.max_steps, METHOD)
    losses = [(h["step"], h["loss"]) for h in trainer.state.log_history if "loss" in h]
    counts: dict[str, int] = {}
    for e in examples:
        counts[e["task"]] = counts.get(e["task"], 0) + 1
    log = {"first_loss": losses[0][1] if losses else None, "last_loss": losses[-1][1] if losses else None,
           "train_loss": run_train_loss(trainer.state.log_history), "steps": trainer.state.global_step,
           "elapsed_s": round(time.time() - started, 2), "resumed_from": start_ckpt.name if start_ckpt else None,
           "train_examples": len(rows), "rows_per_step": per_step, "tasks": counts, "losses": losses,
           **({"budget_changed": extended} if extended else {})}
    with _gathered_trainable(module):  # every rank enters (a collective under ZeRO-3); rank 0 writes
        if trainer.is_world_process_zero():
            save_recexplainer(module, out_dir, target_path, model, cfg, log)
    return log


def _gathered_trainable(module):
    """Under DeepSpeed ZeRO-3 each rank holds a shard of every weight: gather the trainable ones (LoRA,
    connectors) for the save. A no-op context otherwise."""
    from contextlib import nullcontext

    from transformers.integrations import is_deepspeed_zero3_enabled

    if not is_deepspeed_zero3_enabled():
        return nullcontext()
    import deepspeed

    return deepspeed.zero.GatheredParameters([p for p in module.parameters() if p.requires_grad], modifier_rank=None)


def save_recexplainer(module: RecExplainer, out_dir: Path, target_path, model: ModelConfig,
                      cfg: RecExplainerConfig, log: dict) -> None:
    """Write the folder of the module docstring; config.json last marks it complete."""
    from safetensors.torch import save_file

    out_dir.mkdir(parents=True, exist_ok=True)
    if cfg.lora.enabled:
        tmp = out_dir / ".adapter.tmp"
        module.llm.save_pretrained(str(tmp), save_embedding_layers=False)  # new rows are rebuilt (mean row)
        adapter_cfg = read_json(tmp / "adapter_config.json")
        adapter_cfg["base_model_name_or_path"] = model.name_or_path  # the name we load by, not a cache path
        write_json(tmp / "adapter_config.json", adapter_cfg)
        for name in ("adapter_config.json", "adapter_model.safetensors"):
            os.replace(tmp / name, out_dir / name)
        shutil.rmtree(tmp, ignore_errors=True)
    save_file(module.connector_state(), str(out_dir / "connectors.safetensors"))
    src, dst = Path(target_path), out_dir / "target"
    if src.resolve() != dst.resolve():
        shutil.rmtree(dst, ignore_errors=True)
        shutil.copytree(src, dst, ignore=shutil.ignore_patterns(MARKER)) if src.is_dir() else (
            dst.mkdir(), shutil.copy2(src, dst / src.name))
    target_ref = "target" if src.is_dir() else f"target/{src.name}"
    resolved = {"method": METHOD, "base_model": asdict(model), "config": asdict(cfg), "target": target_ref,
                "target_kind": getattr(module.target, "kind", None), "target_dim": module.target.dim}
    write_text(out_dir / "README.md", CARD.format(mode=cfg.mode, r=cfg.lora.r, alpha=cfg.lora.alpha,
                                                  base=model.name_or_path, kind=resolved["target_kind"],
                                                  steps=log["steps"], n=log["train_examples"]))
    write_json(out_dir / "train_log.json", log)
    write_run_info(out_dir, resolved, command=f"train explainer --method {METHOD}")
    write_json(out_dir / "config.json", resolved)
