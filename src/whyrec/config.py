"""Typed configs for every component. YAML files are only serialisations of these.

Kept free of torch imports so the CLI can build its parser (and `--help`) cheaply. This module
holds the configs every LLM-side method shares (model, LoRA, training, generation); the field
checks live in `whyrec.config_checks`, the encoder configs in `whyrec.config_encoders` and the
method configs in `whyrec.config_methods`, all importable from here as before.
"""

from __future__ import annotations

import importlib
from dataclasses import asdict, dataclass, field

from whyrec.config_checks import (  # noqa: F401 (re-exported: importers use whyrec.config)
    DTYPES,
    ConfigError,
    check,
    check_choice,
    check_device,
    check_text,
    fail,
    given_fields,
    mark_given,
)

# Re-exported lazily (PEP 562): config_methods imports LoraConfig from here, so an eager import
# would be circular.
_LAZY = {
    **dict.fromkeys(("LightGCNConfig", "VaeGmmConfig", "SASRecConfig", "MFConfig"), "whyrec.config_encoders"),
    **dict.fromkeys(("XRecConfig", "VARIANTS", "PEPLERConfig", "GaVaMoEConfig", "MODES", "TASKS",
                     "RecExplainerConfig"), "whyrec.config_methods"),
}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


@dataclass
class ModelConfig:
    """Which causal LM to load and how."""

    name_or_path: str = "smollm2-135m-instruct"
    """A registered model name (`whyrec list`), a local HF model folder or a local .gguf file."""
    dtype: str = "auto"
    """'auto': bf16 frozen weights where bf16 is native (GPUs with bf16, CPUs with AMX or
    AVX512-BF16), fp32 elsewhere; trainable weights stay fp32 either way. Or 'float32' (the
    exact path for any machine), 'bfloat16', 'float16'."""
    device: str = "auto"
    """'auto' (CUDA if present), 'cpu', 'cuda', 'cuda:1' ..."""
    gguf_file: str | None = None
    """File name inside `name_or_path` when that is a folder holding a GGUF file."""

    def __post_init__(self):
        check_text(self, "name_or_path")
        check_choice(self, "dtype", DTYPES)
        check_device(self)


@dataclass
class LoraConfig:
    """Optional LoRA on the LLM (beyond the XRec paper, useful for small backbones)."""

    enabled: bool = False
    r: int = 8
    alpha: int = 16
    dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])

    def __post_init__(self):
        check(self, ">= 1", "r")
        check(self, "> 0", "alpha")
        check(self, "in [0, 1)", "dropout")
        if not self.target_modules:
            fail(self, "target_modules", "target_modules must name at least one module (got [])")



LR_SCHEDULES = ("constant", "linear", "cosine")  # TrainConfig.lr_schedule


@dataclass
class TrainConfig:
    """Optimisation settings shared by every method: XRec and GaVaMoE honour every field; PEPLER,
    RecExplainer and RecAlpaca the fields their method object names (`train_fields`, see the method
    pages) and refuse any other given (`whyrec.methods.base.check_train`, `fields_set`)."""

    lr: float = 1e-4
    """Adam learning rate (XRec: 1e-4)."""
    lr_schedule: str = "constant"
    """How the learning rate moves over the planned steps (`max_steps`, else `epochs`):
    "constant" (XRec), "linear" or "cosine" decay to 0 at the last planned step (a run stopped
    early by `max_minutes` ends before the decay does). Computed from the step, so resumes are exact."""
    warmup_steps: int = 0
    """Optimizer steps of linear warm-up from 0 to `lr` before the schedule (any schedule)."""
    batch_size: int = 8
    """Sequences per step; padding is masked out of the loss."""
    batch_tokens: int | None = None
    """Token-budget batches: each step takes as many rows of similar length as fit in this many
    padded tokens (rows x the longest row) instead of `batch_size` rows, which then only sizes the
    length-sorting window (50 x batch_size rows). None: `batch_size` rows per step."""
    epochs: float = 1.0
    """Passes over the training explanations (XRec: 1)."""
    max_steps: int | None = None
    """Stop after this many optimizer steps (overrides epochs; PEPLER: the most steps of each epoch)."""
    max_minutes: float | None = None
    """Stop after this much wall time (checkpoint written)."""
    max_target_tokens: int = 96
    """Explanation tokens kept as targets."""
    checkpoint_every: int = 50
    """Write a resumable checkpoint every N steps."""
    max_train_examples: int | None = None
    """Use at most this many training explanations (sampled with the seed)."""
    min_rating: float | None = None
    """Train only on pairs rated at least this (XRec keeps stars > 3); None keeps all."""
    grad_accum_steps: int = 1
    """Batches of `batch_size` whose gradients are summed before each optimizer step (effective
    batch batch_size x grad_accum_steps, token-weighted as one batch; GaVaMoE: 16). Under
    torchrun every batch is split over the processes, so the result does not depend on N."""
    max_grad_norm: float | None = None
    """Clip the global gradient norm to this before each step (GaVaMoE: 0.3); None: no clipping."""
    gradient_checkpointing: bool = False
    """Recompute the LLM's activations in the backward pass: much less memory, ~30% slower."""
    bf16: bool = False
    """Autocast the forward to bfloat16 (mixed precision; `model.dtype` sets the stored weights)."""
    fsdp: bool = False
    """Under torchrun, shard each frozen decoder layer's weights over the ranks (FSDP2 `fully_shard`):
    ~1/N of the backbone per rank, one all-gather per layer per forward and backward; the adapters
    stay whole on every rank, so the update is the unsharded one. Not with `compile`. RecExplainer and
    RecAlpaca shard through the HF Trainer's FSDP, turned on by its settings file (`--recalpaca.fsdp
    configs/distributed/fsdp.json`); there --train.fsdp true alone is refused."""
    compile: bool | None = None
    """`torch.compile` each decoder layer of the LLM before training (fuses RMSNorm, RoPE, SiLU and
    residual element-wise ops; the q/k/v injection hooks are traced into the compiled layers).
    Costs a one-off compilation (a minute or two on CPU, seconds once its kernels are cached);
    sizes stay symbolic, so new batch shapes reuse it. None (auto): compile when the run plans at
    least `llm.compile_policy.COMPILE_MIN_STEPS` steps and a compiler exists; a failed compilation
    falls back to eager with a warning."""
    seed: int = 42

    def __post_init__(self):
        check(self, "> 0", "lr", "epochs")
        check_choice(self, "lr_schedule", LR_SCHEDULES)
        check(self, ">= 0", "warmup_steps")
        check(self, ">= 1", "batch_size", "max_target_tokens", "checkpoint_every", "grad_accum_steps")
        check(self, ">= 1", "max_steps", "max_train_examples", "batch_tokens", optional=True)
        check(self, ">= 0", "max_minutes", optional=True)  # 0: stop (with a checkpoint) after the first step
        check(self, "> 0", "max_grad_norm", optional=True)
        check(self, "finite", "min_rating", optional=True)
        check(self, ">= 0", "seed")


SELECTIONS = ("first", "consensus", "bertscore")  # GenerationConfig.select


@dataclass
class GenerationConfig:
    """Explanation decoding, one name per setting for every method (CLI `--generation.*`, API, serve).

    `whyrec.llm.generate` turns it into HF `generate` arguments; PEPLER decodes `--pepler.words`
    tokens greedily instead."""

    max_new_tokens: int = 64
    min_new_tokens: int = 0
    """End-of-sequence is blocked until this many new tokens (RecExplainer's study: 150); 0: no minimum."""
    do_sample: bool = False
    """Greedy by default (reproducible); sampling uses temperature/top_p."""
    temperature: float = 0.7
    top_p: float = 0.9
    num_beams: int = 1
    """Beam search width (RecExplainer's next-item task: 5); 1: greedy or sampling."""
    batch_size: int = 16
    repetition_penalty: float = 1.1
    """XRec/GaVaMoE (on generated tokens only); served RecExplainer and RecAlpaca decode plain greedy (1.0)."""
    no_repeat_ngram_size: int = 0
    """Never repeat an n-gram of this size (breaks the loops of small greedy models); 0: off."""
    eos_bias: float = 0.0
    """Added to the end-of-sequence token's logit at every decoding step, before the other
    processors (as HF's `sequence_bias`): negative makes texts longer, positive shorter; 0: off.
    A soft counterpart of `min_new_tokens`: XRec + LoRA's greedy explanations on XRec-amazon end
    earlier than the references (41.5 words vs 45.6), and a hard minimum of 56 tokens made every
    metric worse; a bias still lets a row end where ending clearly wins."""
    drop_finished: bool = True
    """XRec: decode with whyrec's KV-cached loop, which drops each row from the batch (and the cache)
    once it emits EOS, so a batch stops paying for finished rows; False (and always with num_beams > 1):
    HF `generate`, which decodes every row until the longest one ends. Same greedy computation (float rounding can differ
    as the batch shrinks); sampling draws differ, as finished rows no longer consume random numbers."""
    candidates: int = 1
    """Grounding-aware decoding (`whyrec.runs.Run`, any method that samples): > 1 generates the
    output these settings describe (greedy by default) plus candidates-1 sampled ones (`temperature`,
    `top_p`; each row draws from its own generator seeded by the candidate's index and the row's
    generated tokens, so a pair gets the same candidates in any batch), checks each against the run's dataset with the grounding checker and emits the one with
    the fewest false claims, then the most supported ones, then the first; sentences that still
    carry a false claim are dropped (`whyrec.eval.grounded_choice`). 1: no change."""
    select: str = "first"
    """Among candidates the grounding checker cannot tell apart (same false and supported claims):
    "first" emits the earliest (the greedy output); "consensus" emits the one closest on average to
    the other candidates (minimum-Bayes-risk decoding with a word uni-/bigram F1), the text most
    of the samples agree with; "bertscore" the same with BERTScore F1 on the evaluation's packaged
    encoder (all-MiniLM-L6-v2) as the similarity, which rewards agreement in meaning rather than
    wording (and so favours that metric when BERTScore is what is reported). Needs candidates > 1
    to change anything."""

    def __post_init__(self):
        check(self, ">= 1", "max_new_tokens", "batch_size", "num_beams", "candidates")
        check_choice(self, "select", SELECTIONS)
        if self.select != "first" and self.candidates == 1:
            fail(self, "select", f"select {self.select!r} chooses among candidates; set candidates above 1 "
                                 "(e.g. --generation.candidates 4)")
        check(self, ">= 0", "min_new_tokens", "no_repeat_ngram_size")
        check(self, "finite", "eos_bias")
        check(self, "> 0", "temperature", "repetition_penalty")
        check(self, "in (0, 1]", "top_p")
        if self.min_new_tokens > self.max_new_tokens:
            fail(self, "min_new_tokens", f"min_new_tokens must not exceed max_new_tokens "
                                         f"(got {self.min_new_tokens} > {self.max_new_tokens})")


# Added to GenerationConfig by issues 18 and 20 (and eos_bias later); at these values they change
# nothing, so a cache key leaves them out.
_NEW_GENERATION_DEFAULTS = {"min_new_tokens": 0, "num_beams": 1, "no_repeat_ngram_size": 0, "candidates": 1,
                            "select": "first", "eos_bias": 0.0}


def generation_fingerprint(gen: GenerationConfig) -> dict:
    """`gen` as a dict for cache keys and serve revisions: fields added later are left out while they
    hold their no-op defaults, so explanations cached under an earlier version stay valid."""
    return {k: v for k, v in asdict(gen).items() if _NEW_GENERATION_DEFAULTS.get(k, object()) != v}


def to_dict(cfg) -> dict:
    return asdict(cfg)
