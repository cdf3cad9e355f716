"""RecAlpaca's training config (torch-free: `whyrec.cli` builds its `--recalpaca.*` group from it)."""

from __future__ import annotations

from dataclasses import dataclass, field

from whyrec.config import LoraConfig

METHOD = "recalpaca"


@dataclass
class RecAlpacaConfig:
    """RecAlpaca's training recipe; defaults are the original's unless noted.

    Its HF Trainer settings double some `--train.*` options: a --train option set away from its
    default replaces the field it names (`METHOD.with_train`, e.g. --train.lr -> lr); giving both
    with different values is an error."""

    lora: LoraConfig = field(default_factory=lambda: LoraConfig(enabled=True, r=16, alpha=16, dropout=0.05))
    """LoRA on the attention projections (RecAlpaca: r=16, alpha=16, dropout 0.05, q/k/v/o)."""
    lr: float = 1e-4
    """AdamW learning rate (RecAlpaca: 1e-4), linear decay after warm-up."""
    warmup_steps: int = 10
    """Optimizer steps of linear warm-up (RecAlpaca: 10)."""
    batch_size: int = 32
    """Examples per optimizer step over all processes (RecAlpaca: 32)."""
    micro_batch_size: int = 8
    """Examples per forward pass and device; gradients accumulate to `batch_size` (RecAlpaca: 8)."""
    group_by_length: bool = True
    """Fill each micro-batch with examples of similar token length (whyrec, not RecAlpaca, which drew
    micro-batches at random): the prompts' liked/disliked title lists make lengths vary widely, and
    right-padding a random micro-batch to its longest row spends compute on padding. The order is a
    pure function of seed and epoch (`whyrec.llm.length_grouping`), so a resumed run equals an
    uninterrupted one; false: the Trainer's random order, as before this option."""
    epochs: float = 3.0
    """Passes over the training examples (RecAlpaca: 3)."""
    cutoff_len: int = 1024
    """Tokens kept per example (prompt + response), cut on the right. RecAlpaca used 128, which
    cuts every real prompt before its response starts. Measured with SmolLM2's tokenizer on the
    200 prompts of ML100kEvaluationRecAlpaca.json (Alpaca template, `input` field): prompt
    390-1634 tokens (median 634, p95 1147); prompt + the model's answer (`output2`) 614-1937
    (median 1035). So 128 fits 0 prompts, 512 fits 56, 1024 fits 178 prompts and 100 whole
    examples, 1536 fits 186 whole examples. The shorter AGI-Edgerunners ml_100k_instruct_data.json
    examples are 133-414 tokens (median 195): also all longer than 128. Examples whose response
    is cut away entirely are dropped (they would carry no loss)."""
    train_on_inputs: bool = False
    """Also put the loss on the prompt tokens (RecAlpaca: False, response only)."""
    add_eos: bool = True
    """End each response with EOS so the model learns to stop (RecAlpaca: True)."""
    val_set_size: int = 0
    """Examples held out (seeded) for an eval loss every `save_steps`; the best checkpoint by
    that loss is kept at the end, as RecAlpaca did (it evaluated on its train set). 0: no eval."""
    save_steps: int = 50
    """Write a resumable checkpoint (and evaluate) every N optimizer steps (RecAlpaca: 50)."""
    save_total_limit: int = 2
    """Checkpoints kept in out/checkpoints (RecAlpaca: 50; each holds optimizer state)."""
    logging_steps: int = 10
    """Log the training loss every N optimizer steps."""
    max_steps: int | None = None
    """Stop after this many optimizer steps in total (overrides `epochs`); for CPU budgets."""
    max_minutes: float | None = None
    """Stop this run after this much wall time, writing a checkpoint; a rerun resumes."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass: less memory for long prompts, ~30% slower."""
    bf16: bool | None = None
    """bfloat16 autocast (LoRA weights stay fp32); None: on when the GPU supports it."""
    deepspeed: str | None = None
    """DeepSpeed JSON for the Trainer (configs/distributed/ds_zero2.json, ds_zero3.json); launch with torchrun."""
    fsdp: str | None = None
    """FSDP settings JSON (configs/distributed/fsdp.json) for the Trainer; turns FSDP on (what
    --train.fsdp true does for XRec, which here needs this file); launch with torchrun."""
    seed: int = 42
    """Seeds the LoRA init, the validation split and the data order."""

    def __post_init__(self):
        from whyrec.config import check, fail

        check(self, "> 0", "lr", "epochs")
        check(self, ">= 1", "batch_size", "micro_batch_size", "cutoff_len", "save_steps", "save_total_limit",
              "logging_steps")
        check(self, ">= 0", "warmup_steps", "val_set_size", "seed")  # val_set_size 0: no eval
        check(self, ">= 1", "max_steps", optional=True)
        check(self, ">= 0", "max_minutes", optional=True)
        if self.batch_size % self.micro_batch_size:
            fail(self, "batch_size", f"batch_size {self.batch_size} must be a multiple of micro_batch_size "
                                     f"{self.micro_batch_size}")
