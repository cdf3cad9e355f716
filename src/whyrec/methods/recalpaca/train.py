"""RecAlpaca: LoRA instruction tuning on Alpaca-style recommendation prompts (METHODS §6).

RecAlpaca (Allenpai1/RecAlpaca, no paper) fine-tunes LLaMA-7B with the Alpaca-LoRA recipe
on ~13k "pick 5 of these 20 candidates and say why" examples. Here the same recipe runs
through the HF `Trainer` on any causal LM `load_model` knows (SmolLM2-135M by default):
LoRA r=16/alpha=16 on q,k,v,o; loss on the response only; micro-batches of 8 accumulated
to 32; 3 epochs at lr 1e-4. Deliberate departures from the original, each for a reason:

- cutoff_len 1024 instead of 128 (128 cut every prompt before its response, see below);
- the validation rows are held out of training (the original evaluated on the train set);
- fp32 weights with bf16 autocast on GPUs that support it, instead of int8 + fp16.
- micro-batches of similar token length (`group_by_length`) instead of random ones: on ML-100K
  instruction rows padding falls from ~0.17 to ~0.005 padded tokens per real token.

The run folder is a PEFT adapter folder (adapter_config.json + adapter_model.safetensors)
plus config.json (base model and this config), train_log.json and run_config.json.
Inference and evaluation live in `whyrec.methods.recalpaca.model`; the config in `whyrec.methods.recalpaca.config`.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from whyrec.config import LoraConfig, ModelConfig
from whyrec.llm.hf_resume import (
    budget_change,
    last_complete_checkpoint,
    run_train_loss,
    stops_at_planned_end,
    time_budget_callback,
)
from whyrec.methods.recalpaca.alpaca import IGNORE_INDEX, tokenize_example
from whyrec.methods.recalpaca.config import METHOD, RecAlpacaConfig
from whyrec.utils import (
    WhyrecError,
    read_json,
    seed_everything,
    write_json,
    write_run_info,
    write_text,
)

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
CARD = """# RecAlpaca adapter

LoRA adapter (r={r}, alpha={alpha}) for `{base}`, trained by whyrec's `recalpaca` method
(Alpaca-LoRA recipe of Allenpai1/RecAlpaca) for {steps} steps on {n} Alpaca records.
Load it with `whyrec.methods.recalpaca.load_recalpaca(folder)`; config.json holds the
base model and the training config, train_log.json the losses.
"""


# ------------------------------------------------------------------ data


def load_alpaca_records(instructions: str | os.PathLike | list) -> list[dict]:
    """Alpaca records from JSON list / JSONL files, or from a folder holding instructions.jsonl."""
    paths = [instructions] if isinstance(instructions, (str, os.PathLike)) else list(instructions)
    records: list[dict] = []
    for p in map(Path, paths):
        if p.is_dir():
            p = p / "instructions.jsonl"
        if not p.is_file():
            raise WhyrecError(f"instruction file {p} not found (a JSON list or JSONL of Alpaca records)")
        text = p.read_text()
        if text.lstrip().startswith("["):
            rows = read_json(p)
        else:
            try:
                rows = [json.loads(line) for line in text.splitlines() if line.strip()]
            except json.JSONDecodeError as e:
                raise WhyrecError(f"{p} is neither a JSON list nor JSON lines ({e.msg})") from None
        for i, r in enumerate(rows):
            if not (isinstance(r, dict) and isinstance(r.get("instruction"), str)
                    and isinstance(r.get("output"), str)):
                raise WhyrecError(f"{p}: record {i} lacks string 'instruction' and 'output' fields")
        records += rows
    if not records:
        raise WhyrecError(f"no Alpaca records in {', '.join(map(str, paths))}")
    return records


def tokenize_records(tokenizer, records: list[dict], cfg: RecAlpacaConfig) -> tuple[list[dict], int]:
    """Tokenised examples and how many were dropped for having no response token left."""
    rows = [tokenize_example(tokenizer, r, cfg.cutoff_len, cfg.add_eos, cfg.train_on_inputs) for r in records]
    kept = [r for r in rows if any(label != IGNORE_INDEX for label in r["labels"])]
    return kept, len(rows) - len(kept)


@dataclass
class PadCollator:
    """Right-pad a list of tokenised examples; padding gets attention 0 and label -100."""

    pad_id: int

    def __call__(self, features: list[dict]) -> dict:
        import torch

        width = max(len(f["input_ids"]) for f in features)
        batch = {"input_ids": [], "attention_mask": [], "labels": []}
        for f in features:
            pad = width - len(f["input_ids"])
            batch["input_ids"].append(list(f["input_ids"]) + [self.pad_id] * pad)
            batch["attention_mask"].append(list(f["attention_mask"]) + [0] * pad)
            batch["labels"].append(list(f["labels"]) + [IGNORE_INDEX] * pad)
        return {k: torch.tensor(v, dtype=torch.long) for k, v in batch.items()}  # each (B, width)


# ------------------------------------------------------------------ training


def _training_args(cfg: RecAlpacaConfig, ckpt_dir: Path, has_val: bool):
    import torch
    from transformers import TrainingArguments

    from whyrec.distributed import trainer_parallel_args

    cuda = torch.cuda.is_available()
    world = int(os.environ.get("WORLD_SIZE", "1"))  # set by torchrun / accelerate launch
    return TrainingArguments(
        output_dir=str(ckpt_dir),
        per_device_train_batch_size=cfg.micro_batch_size,
        per_device_eval_batch_size=cfg.micro_batch_size,
        gradient_accumulation_steps=max(1, cfg.batch_size // (cfg.micro_batch_size * world)),
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps or -1,
        learning_rate=cfg.lr,
        warmup_steps=cfg.warmup_steps,
        optim="adamw_torch",
        use_cpu=not cuda,
        **trainer_parallel_args(cfg.deepspeed, cfg.fsdp, cfg.bf16, cfg.gradient_checkpointing),
        logging_steps=cfg.logging_steps,
        logging_first_step=True,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit,
        eval_strategy="steps" if has_val else "no",
        eval_steps=cfg.save_steps,
        load_best_model_at_end=has_val,
        metric_for_best_model="eval_loss",
        greater_is_better=False,
        remove_unused_columns=False,  # our rows hold exactly input_ids, attention_mask, labels
        ddp_find_unused_parameters=False if world > 1 else None,
        dataloader_pin_memory=cuda,
        report_to="none",
        seed=cfg.seed,
    )


def _trainer_class(group_by_length: bool = False) -> type:
    from transformers import Trainer

    from whyrec.llm.length_grouping import with_length_grouping
    from whyrec.llm.target_loss import target_loss

    class RecAlpacaTrainer(Trainer):
        """HF's loss value with the LM head run on the response positions only (`target_loss`):
        the prompt and padding are most of each row, and HF's loss computes fp32 logits on all of it."""

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            # Evaluation wants the logits; a DDP/FSDP/DeepSpeed wrapper must run its own forward
            # (gradient sync, parameter gathering); a custom loss reads the logits: all keep HF's path.
            if (return_outputs or model is not self.model or self.label_smoother is not None
                    or self.compute_loss_func is not None):
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            inputs = dict(inputs)
            labels = inputs.pop("labels")
            # The Trainer hands num_items_in_batch to the model when it accepts loss kwargs (PEFT's
            # forward does) and then skips its own division by the accumulation steps.
            items = num_items_in_batch if self.model_accepts_loss_kwargs else None
            loss = target_loss(model, labels, items, **inputs)
            if self.args.average_tokens_across_devices and items is not None:
                loss = loss * self.accelerator.num_processes  # as Trainer.compute_loss (1 here: unwrapped)
            return loss

    # Grouping replaces only the training sampler: evaluation keeps the Trainer's sequential order.
    return stops_at_planned_end(with_length_grouping(RecAlpacaTrainer) if group_by_length else RecAlpacaTrainer)


def _wrap_lora(llm, lc: LoraConfig):
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model

    return get_peft_model(llm, PeftLoraConfig(
        r=lc.r, lora_alpha=lc.alpha, lora_dropout=lc.dropout, target_modules=list(lc.target_modules),
        bias="none", task_type="CAUSAL_LM"))


def train_recalpaca(instructions: str | list, out: str, model: ModelConfig | None = None,
                    cfg: RecAlpacaConfig | None = None, resume: bool = True, overwrite: bool = False) -> dict:
    """Fine-tune `model` with LoRA on Alpaca records; write the adapter run folder `out`.

    Args:
        instructions: JSON list / JSONL file(s) of {instruction, input, output} records, or a
            `whyrec data instructions` folder (its instructions.jsonl).
        out: run folder; checkpoints go to out/checkpoints.
        resume: continue from the newest complete checkpoint in out/checkpoints if any;
            False deletes those checkpoints and starts over.
        overwrite: replace `out` if it holds another run (built beside it, then renamed). Without it
            a folder made with another model, config or instruction data is refused, naming what
            differs. max_steps/epochs may change: that is how a run is extended (the LR schedule
            then spans the new budget from the resumed step on; a warning names both budgets,
            and the train log keeps them as `budget_changed`).

    Returns:
        The training log (also out/train_log.json): first/last loss, steps, elapsed seconds.
    """
    from whyrec.outputs import BUDGET_FIELDS, HARMLESS_FIELDS, fingerprint_of, output_folder

    model, cfg = model or ModelConfig(), cfg or RecAlpacaConfig()
    sources = instructions if isinstance(instructions, list) else [instructions]
    fingerprint = {"method": "recalpaca", "model": fingerprint_of(model), "recalpaca": fingerprint_of(cfg, HARMLESS_FIELDS + BUDGET_FIELDS),
                   "instructions": [_records_digest(s) for s in sources]}
    with output_folder(out, "recalpaca explainer", fingerprint, overwrite=overwrite) as work:
        return _train(instructions, work, model, cfg, resume)


def _records_digest(source) -> str | None:
    """Digest of the file `load_alpaca_records` reads for `source` (None if missing: it says so)."""
    from whyrec.outputs import folder_digest

    path = Path(source) / "instructions.jsonl" if Path(source).is_dir() else Path(source)
    return folder_digest(path) if path.is_file() else None


def _train(instructions: str | list, out_dir: Path, model: ModelConfig, cfg: RecAlpacaConfig, resume: bool) -> dict:
    from whyrec.llm.load import load_model

    ckpt_dir = out_dir / "checkpoints"
    if not resume and ckpt_dir.exists() and os.environ.get("RANK", "0") == "0":
        shutil.rmtree(ckpt_dir)
    records = load_alpaca_records(instructions)
    seed_everything(cfg.seed)
    # Load on CPU: the Trainer places the model on this process's device (CPU, GPU or rank).
    llm, tok = load_model(replace(model, device="cpu"))
    rows, dropped = tokenize_records(tok, records, cfg)
    random.Random(cfg.seed).shuffle(rows)
    val, train = rows[:cfg.val_set_size], rows[cfg.val_set_size:]
    if not train:
        raise WhyrecError(f"no training examples left ({len(records)} records, {dropped} cut away by "
                          f"cutoff_len={cfg.cutoff_len}, {len(val)} held out for validation)")
    if cfg.gradient_checkpointing:
        llm.enable_input_require_grads()  # frozen embeddings: let checkpointed blocks get grads
    peft_model = _wrap_lora(llm, cfg.lora)
    callbacks = [time_budget_callback(cfg.max_minutes)] if cfg.max_minutes else []
    trainer = _trainer_class(cfg.group_by_length)(
        model=peft_model, args=_training_args(cfg, ckpt_dir, bool(val)), data_collator=PadCollator(tok.pad_token_id),
        train_dataset=train, eval_dataset=val or None, callbacks=callbacks)
    args = trainer.args
    per_step = args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size
    if trainer.is_world_process_zero():  # its own batch and lr are not TrainConfig's: say which ran
        print(f"recalpaca: {len(train)} examples, {per_step} a step ({args.per_device_train_batch_size} a micro-batch "
              f"x {args.gradient_accumulation_steps} accumulated x {args.world_size} processes), lr {cfg.lr:g} "
              "(--recalpaca.batch_size/micro_batch_size/lr; --train.batch_size/grad_accum_steps/lr, when "
              "given, replace them)", file=sys.stderr, flush=True)
    start_ckpt = last_complete_checkpoint(ckpt_dir) if resume and ckpt_dir.is_dir() else None
    started = time.time()
    trainer.train(resume_from_checkpoint=str(start_ckpt) if start_ckpt else None)
    log = _train_log(trainer, time.time() - started, start_ckpt, len(train), len(val), dropped)
    log["rows_per_step"] = per_step
    extended = budget_change(start_ckpt, trainer.state.max_steps, METHOD)
    if extended:
        log["budget_changed"] = extended
    _save_run(trainer, out_dir, model, cfg, log, instructions)
    return log


def _train_log(trainer, elapsed: float, start_ckpt, n_train: int, n_val: int, dropped: int) -> dict:
    losses = [(h["step"], h["loss"]) for h in trainer.state.log_history if "loss" in h]
    evals = [h["eval_loss"] for h in trainer.state.log_history if "eval_loss" in h]
    return {
        "first_loss": losses[0][1] if losses else None,
        "last_loss": losses[-1][1] if losses else None,
        "train_loss": run_train_loss(trainer.state.log_history),
        "eval_loss": evals[-1] if evals else None,
        "steps": trainer.state.global_step,
        "max_steps": trainer.state.max_steps,
        "elapsed_s": round(elapsed, 2),
        "resumed_from": start_ckpt.name if start_ckpt else None,
        "train_examples": n_train,
        "val_examples": n_val,
        "dropped_truncated": dropped,
        "losses": losses,
    }


def _save_run(trainer, out_dir: Path, model: ModelConfig, cfg: RecAlpacaConfig, log: dict, instructions) -> None:
    """Adapter files first, config.json last: a folder with config.json is complete."""
    tmp = out_dir / ".adapter.tmp"
    trainer.save_model(str(tmp))  # every rank calls it (gathers sharded weights); rank 0 writes
    if not trainer.is_world_process_zero():
        return
    adapter_cfg = json.loads((tmp / "adapter_config.json").read_text())
    adapter_cfg["base_model_name_or_path"] = model.name_or_path  # the name we load by, not a cache path
    (tmp / "adapter_config.json").write_text(json.dumps(adapter_cfg, indent=2))
    for name in ADAPTER_FILES:
        os.replace(tmp / name, out_dir / name)
    shutil.rmtree(tmp, ignore_errors=True)  # drops PEFT's blank card and the pickled training_args.bin
    # Where the prompts came from: `whyrec recommend` rebuilds a user's prompt from that folder.
    source = [str(Path(p).resolve()) for p in ([instructions] if isinstance(instructions, (str, Path)) else instructions)]
    resolved = {"method": METHOD, "base_model": asdict(model), "config": asdict(cfg), "instructions": source}
    write_text(out_dir / "README.md", CARD.format(r=cfg.lora.r, alpha=cfg.lora.alpha, base=model.name_or_path,
                                                   steps=log["steps"], n=log["train_examples"]))
    write_json(out_dir / "train_log.json", log)
    write_run_info(out_dir, resolved, command="train explainer --method recalpaca")
    write_json(out_dir / "config.json", resolved)
