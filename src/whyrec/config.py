"""Typed configs for every component. YAML files are only serialisations of these.

Kept free of torch imports so the CLI can build its parser (and `--help`) cheaply.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class LightGCNConfig:
    """LightGCN (He et al., SIGIR 2020) as XRec trains it (METHODS §3.1)."""

    dim: int = 64
    """Embedding size (XRec: 64)."""
    n_layers: int = 4
    """Propagation layers K (XRec: 4)."""
    layer_combine: str = "sum"
    """'sum' (XRec's code) or 'mean' (the LightGCN paper)."""
    lr: float = 1e-3
    """Adam learning rate."""
    weight_decay: float = 1e-6
    """L2 on the batch's ego embeddings, summed over the batch (XRec: 1e-6)."""
    batch_size: int = 1024
    """BPR triples per step."""
    epochs: int = 300
    """Upper bound on epochs; early stopping usually ends sooner."""
    patience: int = 10
    """Stop after this many evaluations without a better validation Recall@k."""
    eval_every: int = 1
    """Evaluate on the validation split every N epochs."""
    eval_k: int = 20
    """k of the validation Recall@k used for early stopping."""
    min_rating: float | None = None
    """Keep only interactions rated at least this for the graph (None keeps all)."""
    seed: int = 42


@dataclass
class ModelConfig:
    """Which causal LM to load and how."""

    name_or_path: str = "smollm2-135m-instruct"
    """A registered model name (`whyrec list`), a local HF model folder or a local .gguf file."""
    dtype: str = "auto"
    """'auto' (bf16 on CUDA, fp32 on CPU), 'float32', 'bfloat16' or 'float16'."""
    device: str = "auto"
    """'auto' (CUDA if present), 'cpu', 'cuda', 'cuda:1' ..."""
    gguf_file: str | None = None
    """File name inside `name_or_path` when that is a folder holding a GGUF file."""


@dataclass
class LoraConfig:
    """Optional LoRA on the LLM (beyond the XRec paper, useful for small backbones)."""

    enabled: bool = False
    r: int = 8
    alpha: int = 16
    dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])


@dataclass
class XRecConfig:
    """XRec's collaborative-information adapter and prompt (METHODS §3.2-3.4)."""

    n_exps: int = 8
    """Experts per MoE adapter (XRec: 8, mixed densely by a softmax gate)."""
    dropout: float = 0.2
    """Dropout on the adapter input (XRec: 0.2)."""
    noisy_gate: bool = True
    """Add XRec's learned gate noise while training."""
    inject_qkv: bool = True
    """Add the adapted vectors to q/k/v at the special positions in every layer (XRec)."""
    item_noun: str = "item"
    """Word used in the prompt: 'book' for XRec-amazon, 'movie' for MovieLens, 'business' for Yelp."""
    max_prompt_words: int = 60
    """Profiles are cut to this many words each to bound prompt length."""
    lora: LoraConfig = field(default_factory=LoraConfig)


@dataclass
class TrainConfig:
    """Optimisation settings shared by LLM-side methods."""

    lr: float = 1e-4
    """Adam learning rate (XRec: 1e-4)."""
    batch_size: int = 8
    """Sequences per step; padding is masked out of the loss."""
    epochs: float = 1.0
    """Passes over the training explanations (XRec: 1)."""
    max_steps: int | None = None
    """Stop after this many optimizer steps (overrides epochs)."""
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
    seed: int = 42


@dataclass
class GenerationConfig:
    """Explanation decoding."""

    max_new_tokens: int = 64
    do_sample: bool = False
    """Greedy by default (reproducible); sampling uses temperature/top_p."""
    temperature: float = 0.7
    top_p: float = 0.9
    batch_size: int = 16
    repetition_penalty: float = 1.1


VARIANTS = ("continuous", "discrete", "reg")


@dataclass
class PEPLERConfig:
    """PEPLER's variant and hyperparameters; defaults are the original code's (METHODS §2.1)."""

    variant: str = "continuous"
    """'continuous' (ID soft prompt, two phases), 'discrete' (feature-word prompt) or 'reg' (ID prompt + rating head)."""
    words: int = 20
    """Explanation tokens kept as targets, and new tokens generated (PEPLER: 20)."""
    rating_head: str = "mf"
    """reg only: 'mf' (sum(u*i), PEPLER's --use_mf) or 'mlp' ([u;i] -> 3 sigmoid layers of 400 -> 1)."""
    text_reg: float = 1.0
    """reg only: weight of the explanation cross-entropy."""
    rating_reg: float = 0.01
    """reg only: weight of the rating MSE (PEPLER's README uses 1.0 with the MLP head)."""
    lr: float | None = None
    """AdamW lr of phase 1 (continuous) or the only phase; None = paper (1e-3; 1e-4 for discrete)."""
    lr_phase2: float | None = None
    """continuous only: AdamW lr of phase 2 (prompt + LM); None = same as phase 1 (PEPLER)."""
    epochs: int = 100
    """Max epochs of phase 1 / the only phase (PEPLER: 100, early stopping ends sooner)."""
    epochs_phase2: int = 100
    """continuous only: max epochs of phase 2; 0 keeps the LM frozen throughout."""
    patience: int = 5
    """Stop a phase at the 5th epoch without a new best validation loss; like PEPLER's
    endure_count, the count is cumulative within a phase (not reset on improvement)."""
    batch_size: int = 128
    """Sequences per step for training, validation and generation (PEPLER: 128)."""
    discrete_dedup: bool = False
    """discrete only: True lists intersection then the symmetric difference (the evident intent)."""
    mlp_hidden: int = 400
    """reg with the MLP head: hidden width (PEPLER: 400)."""

    def __post_init__(self):
        if self.variant not in VARIANTS:
            raise ValueError(f"PEPLER variant {self.variant!r} unknown; choose one of {', '.join(VARIANTS)}")
        if self.rating_head not in ("mf", "mlp"):
            raise ValueError(f"rating_head {self.rating_head!r} unknown; choose 'mf' or 'mlp'")

    @property
    def phase1_lr(self) -> float:
        return self.lr if self.lr is not None else (1e-4 if self.variant == "discrete" else 1e-3)


def to_dict(cfg) -> dict:
    return asdict(cfg)
