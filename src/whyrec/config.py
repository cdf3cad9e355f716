"""Typed configs for every component. YAML files are only serialisations of these.

Kept free of torch imports so the CLI can build its parser (and `--help`) cheaply.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from typing import NoReturn

from whyrec.utils import WhyrecError


# ---------------------------------------------------------------- field checks
class ConfigError(WhyrecError, ValueError):
    """A config field holds a value its code cannot use. `config` (the dataclass) and `field` let
    the CLI name the option (`--train.lr`) in front of the message."""

    def __init__(self, config: type, field: str, message: str):
        super().__init__(message)
        self.config, self.field = config, field


_RULES = {"> 0": lambda v: v > 0, ">= 0": lambda v: v >= 0, ">= 1": lambda v: v >= 1,
          "in [0, 1)": lambda v: 0 <= v < 1, "in (0, 1]": lambda v: 0 < v <= 1, "finite": lambda v: True}
DTYPES = ("auto", "float32", "bfloat16", "float16")
_DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


def check(cfg, rule: str, *names: str, optional: bool = False) -> None:
    """Each named field of `cfg` must be a finite number obeying `rule` (a key of _RULES); `optional`
    also admits None (the field's documented 'no limit' / 'default')."""
    for name in names:
        value = getattr(cfg, name)
        if optional and value is None:
            continue
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not (number and math.isfinite(value) and _RULES[rule](value)):
            bound = "a finite number" if rule == "finite" else rule
            fail(cfg, name, f"{name} must be {bound}{' or null' if optional else ''} (got {value!r})")


def check_choice(cfg, name: str, choices) -> None:
    value = getattr(cfg, name)
    if value not in choices:
        fail(cfg, name, f"unknown {name} {value!r}; choose one of: {', '.join(choices)}")


def check_device(cfg, name: str = "device") -> None:
    value = getattr(cfg, name)
    if not (isinstance(value, str) and _DEVICE.fullmatch(value)):
        fail(cfg, name, f"unknown {name} {value!r}; choose auto, cpu, cuda, cuda:N or mps")


def check_text(cfg, *names: str) -> None:
    for name in names:
        value = getattr(cfg, name)
        if not (isinstance(value, str) and value.strip()):
            fail(cfg, name, f"{name} must be a non-empty string (got {value!r})")


def fail(cfg, name: str, message: str) -> NoReturn:
    raise ConfigError(type(cfg), name, message)


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

    def __post_init__(self):
        check(self, ">= 1", "dim", "batch_size", "epochs", "patience", "eval_every", "eval_k")
        check(self, ">= 0", "n_layers", "weight_decay", "seed")  # 0 layers: plain embeddings (MF-BPR)
        check(self, "> 0", "lr")
        check(self, "finite", "min_rating", optional=True)
        check_choice(self, "layer_combine", ("sum", "mean"))


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

    def __post_init__(self):
        check(self, ">= 1", "n_exps", "max_prompt_words")
        check(self, "in [0, 1)", "dropout")
        check_text(self, "item_noun")


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
    stay whole on every rank, so the update is the unsharded one. Not with `compile`."""
    compile: bool = False
    """`torch.compile` each decoder layer of the LLM before training (fuses RMSNorm, RoPE, SiLU and
    residual element-wise ops; the q/k/v injection hooks are traced into the compiled layers).
    Costs a one-off compilation (minutes on CPU); sizes stay symbolic, so new batch shapes reuse it."""
    seed: int = 42

    def __post_init__(self):
        check(self, "> 0", "lr", "epochs")
        check(self, ">= 1", "batch_size", "max_target_tokens", "checkpoint_every", "grad_accum_steps")
        check(self, ">= 1", "max_steps", "max_train_examples", optional=True)
        check(self, ">= 0", "max_minutes", optional=True)  # 0: stop (with a checkpoint) after the first step
        check(self, "> 0", "max_grad_norm", optional=True)
        check(self, "finite", "min_rating", optional=True)
        check(self, ">= 0", "seed")


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
    drop_finished: bool = True
    """XRec: decode with whyrec's KV-cached loop, which drops each row from the batch (and the cache)
    once it emits EOS, so a batch stops paying for finished rows; False: HF `generate`, which
    decodes every row until the longest one ends. Same greedy computation (float rounding can differ
    as the batch shrinks); sampling draws differ, as finished rows no longer consume random numbers."""

    def __post_init__(self):
        check(self, ">= 1", "max_new_tokens", "batch_size")
        check(self, "> 0", "temperature", "repetition_penalty")
        check(self, "in (0, 1]", "top_p")


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
        check_choice(self, "variant", VARIANTS)
        check_choice(self, "rating_head", ("mf", "mlp"))
        check(self, ">= 1", "words", "epochs", "patience", "batch_size", "mlp_hidden")
        check(self, ">= 0", "epochs_phase2", "text_reg", "rating_reg")  # epochs_phase2 0: LM stays frozen
        check(self, "> 0", "lr", "lr_phase2", optional=True)

    @property
    def phase1_lr(self) -> float:
        return self.lr if self.lr is not None else (1e-4 if self.variant == "discrete" else 1e-3)


def to_dict(cfg) -> dict:
    return asdict(cfg)


@dataclass
class VaeGmmConfig:
    """GaVaMoE's VAE-GMM; defaults are the original `train.py` / `vae_cluster.py` values."""

    n_clusters: int = 5
    """K mixture components, i.e. stage-2 gates (paper default 5; K in {2..5} was swept)."""
    latent_dim: int = 128
    """Size of z."""
    embedding_dim: int = 768
    """User and item ID embedding size; stage 2 projects these vectors into the LLM."""
    init_range: float = 0.2
    """ID embeddings start as U(-init_range, init_range) (original: 0.2)."""
    n_layers: int = 2
    """Transformer encoder layers over the [user, item] token pair."""
    n_heads: int = 4
    """Attention heads; must divide embedding_dim."""
    ff_dim: int = 512
    """Feed-forward width inside each transformer layer (original: 512)."""
    dropout: float = 0.1
    """Transformer dropout (PyTorch's default, which the original kept)."""
    decoder_dims: tuple[int, ...] = (512, 256)
    """Hidden widths of the GELU MLP that maps z to the 5 rating logits."""
    pretrain_epochs: int = 50
    """Upper bound on autoencoder (reconstruction-only) epochs."""
    pretrain_patience: int = 15
    """Stop pretraining after this many epochs without a lower training loss. The original
    never reset its counter (15 bad epochs in total); here it resets on improvement."""
    pretrain_lr: float = 1.5e-4
    """Adam learning rate of the pretraining phase."""
    pretrain_batch_size: int = 2048
    copy_mu_to_logvar: bool = True
    """After pretraining, copy the μ head's weights into the log σ² head (the original does;
    the pretraining loss never trains the log σ² head)."""
    elbo_epochs: int = 30
    """Epochs of ELBO training with the mixture prior (original `cluster_epoch`)."""
    lr: float = 1e-5
    """Adam learning rate of the ELBO phase, on all parameters including π, μ_c, log σ²_c."""
    lr_step: int = 10
    """The ELBO learning rate is multiplied by lr_gamma every lr_step epochs (StepLR)."""
    lr_gamma: float = 0.5
    batch_size: int = 4096
    """Pairs per ELBO step."""
    recon_weight: float | None = None
    """Factor on the mean rating cross-entropy; None uses 2 * embedding_dim (the original's 1536)."""
    loss_scale: float = 0.1
    """Overall factor on (recon_weight * CE + kl_weight * KL), as in the original."""
    kl_weight_start: float = 0.01
    """KL weight of the first ELBO epoch."""
    kl_weight_step: float = 0.005
    """Added to the KL weight every kl_weight_every epochs..."""
    kl_weight_every: int = 5
    kl_weight_max: float = 0.1
    """...up to this cap."""
    plot_points_per_cluster: int = 500
    """Training pairs per cluster drawn in latent.png (the original's t-SNE used 500)."""
    seed: int = 105

    def __post_init__(self):
        check(self, ">= 1", "n_clusters", "latent_dim", "embedding_dim", "n_layers", "n_heads", "ff_dim",
              "pretrain_patience", "pretrain_batch_size", "lr_step", "batch_size",
              "kl_weight_every", "plot_points_per_cluster")
        # elbo_epochs 0 keeps the pretrained autoencoder with its GMM initialisation (a real model, not random)
        check(self, ">= 0", "pretrain_epochs", "elbo_epochs", "kl_weight_start", "kl_weight_step", "kl_weight_max",
              "seed")
        check(self, "> 0", "init_range", "pretrain_lr", "lr", "lr_gamma", "loss_scale")
        check(self, ">= 0", "recon_weight", optional=True)
        check(self, "in [0, 1)", "dropout")
        if self.embedding_dim % self.n_heads:
            fail(self, "n_heads", f"n_heads must divide embedding_dim {self.embedding_dim} (got {self.n_heads})")
        if not all(isinstance(d, int) and d >= 1 for d in self.decoder_dims):
            fail(self, "decoder_dims", f"decoder_dims must be widths >= 1 (got {self.decoder_dims!r})")

    def kl_weight(self, epoch: int) -> float:
        """KL weight of 0-based ELBO epoch `epoch`: 0.01, +0.005 every 5 epochs, capped at 0.1."""
        steps = epoch // max(self.kl_weight_every, 1)
        return min(self.kl_weight_start + self.kl_weight_step * steps, self.kl_weight_max)

    def reconstruction_weight(self) -> float:
        return float(self.recon_weight if self.recon_weight is not None else 2 * self.embedding_dim)


@dataclass
class GaVaMoEConfig:
    """Stage 2 of GaVaMoE; defaults are the paper's (METHODS §4.2-4.3).

    On a Llama-2-7B-sized backbone (hidden 4096, intermediate 11008, 32 layers) the paper
    config (12 upcycled experts, top-2, K=5, all layers) holds 51,942,260,736 expert
    parameters (32 x 12 x 3 x 4096 x 11008) and 7,864,320 router parameters (32 x 5 x 12 x 4096);
    random experts of the original's intended width 1280 would hold 6,039,797,760.
    """

    n_experts: int = 12
    """Experts E per MoE layer (paper: 12)."""
    top_k: int = 2
    """Experts mixed per token (paper: 2); their softmax weights sum to 1."""
    n_clusters: int | None = None
    """Routers K, one per VAE cluster; None takes the VAE's (paper: 5), another value must match it."""
    upcycle: bool = True
    """Experts start as copies of the pretrained MLP, so the untrained model equals the dense one.
    False: random experts as in the paper (which discarded the pretrained MLP)."""
    ffn_width: int | None = None
    """Hidden units of random experts; None = the model's intermediate size (the original crashed on None)."""
    moe_layers: list[int] | None = None
    """Decoder layers whose MLP becomes a MoE; None = all (paper)."""
    use_feature: bool = False
    """Put the record's ground-truth feature word in the prompt (the paper's prompt). It leaks the
    reference and inflates FMR/BLEU (§4.3), so compare only with PETER+-style baselines."""
    positive_rating: float = 3.0
    """Ratings at least this make the mood 'positive', lower ones 'negative' (paper: 3)."""
    item_noun: str = "item"
    """Word used in the prompt: 'hotel', 'movie', 'business' ..."""
    max_prompt_words: int = 30
    """Titles and feature strings are cut to this many words."""
    lora: LoraConfig = field(default_factory=lambda: LoraConfig(enabled=True, r=8, alpha=16, dropout=0.1))
    """LoRA on attention q/k/v/o (paper: r 8, alpha 16, dropout 0.1)."""

    def __post_init__(self):
        check(self, ">= 1", "n_experts", "top_k", "max_prompt_words")
        check(self, ">= 1", "n_clusters", "ffn_width", optional=True)
        check(self, "finite", "positive_rating")
        check_text(self, "item_noun")
        if self.top_k > self.n_experts:
            fail(self, "top_k", f"top_k must be <= n_experts {self.n_experts} (got {self.top_k})")
        if self.moe_layers is not None and not all(isinstance(i, int) and i >= 0 for i in self.moe_layers):
            fail(self, "moe_layers", f"moe_layers must be layer indices >= 0 or null (got {self.moe_layers!r})")


@dataclass
class SASRecConfig:
    """SASRec as RecExplainer's UniRec run trains it (METHODS §5.1)."""

    dim: int = 256
    """Embedding and hidden size (RecExplainer: 256)."""
    max_seq_len: int = 9
    """Most recent items a user is encoded from (RecExplainer: 9, also the LLM's history length)."""
    n_layers: int = 2
    """Self-attention blocks. UniRec's default is NOT FOUND in METHODS; 2 is the SASRec paper's."""
    n_heads: int = 2
    """Attention heads. UniRec's default is NOT FOUND in METHODS; 2 is a common SASRec choice."""
    ffn_dim: int = 256
    """Point-wise feed-forward width (the SASRec paper uses the hidden size)."""
    hidden_dropout: float = 0.4954
    """Dropout on embeddings and block outputs (RecExplainer: 0.4954, a tuned value)."""
    attn_dropout: float = 0.1872
    """Dropout on attention weights (RecExplainer: 0.1872)."""
    init_std: float = 0.02
    """Std of the normal init of embeddings (UniRec's init NOT FOUND; BERT-style 0.02)."""
    lr: float = 3.1126e-4
    """AdamW learning rate (RecExplainer: 3.1126e-4)."""
    weight_decay: float = 0.0
    """AdamW decoupled weight decay (RecExplainer's value NOT FOUND; 0 = none)."""
    batch_size: int = 2048
    """Training windows per step (RecExplainer: 2048)."""
    epochs: int = 100
    """Upper bound on epochs (RecExplainer: 100); early stopping usually ends sooner."""
    patience: int = 5
    """Stop after this many epochs without a better validation NDCG@eval_k (RecExplainer: 5)."""
    eval_k: int = 10
    """k of the validation NDCG@k used for early stopping (RecExplainer: 10)."""
    grad_clip: float = 10.0
    """Max global gradient norm (RecExplainer: 10)."""
    seed: int = 3418
    """Seed of init, shuffling and dropout (RecExplainer: 3418)."""

    def __post_init__(self):
        check(self, ">= 1", "dim", "max_seq_len", "n_layers", "n_heads", "ffn_dim", "batch_size", "epochs",
              "patience", "eval_k")
        check(self, "in [0, 1)", "hidden_dropout", "attn_dropout")
        check(self, "> 0", "init_std", "lr", "grad_clip")
        check(self, ">= 0", "weight_decay", "seed")
        if self.dim % self.n_heads:
            fail(self, "n_heads", f"n_heads must divide dim {self.dim} (got {self.n_heads})")


@dataclass
class MFConfig:
    """MF as RecExplainer's UniRec run trains it (METHODS §5.1)."""

    dim: int = 512
    """Embedding size (RecExplainer: 512)."""
    n_negatives: int = 285
    """Uniform negatives per positive in the sampled softmax (RecExplainer: 285, a tuned value)."""
    init_std: float = 0.02
    """Std of the normal init (UniRec's init NOT FOUND; BERT-style 0.02)."""
    lr: float = 4.4329e-3
    """AdamW learning rate (RecExplainer: 4.4329e-3)."""
    weight_decay: float = 0.0
    """AdamW decoupled weight decay (RecExplainer's value NOT FOUND; 0 = none)."""
    batch_size: int = 128
    """(user, item) training pairs per step (RecExplainer: 128)."""
    epochs: int = 100
    """Upper bound on epochs (RecExplainer: 100); early stopping usually ends sooner."""
    patience: int = 5
    """Stop after this many epochs without a better validation NDCG@eval_k (RecExplainer: 5)."""
    eval_k: int = 10
    """k of the validation NDCG@k used for early stopping (RecExplainer: 10)."""
    grad_clip: float = 0.7468
    """Max global gradient norm (RecExplainer: 0.7468)."""
    seed: int = 436913
    """Seed of init, shuffling and negative sampling (RecExplainer: 436913)."""

    def __post_init__(self):
        check(self, ">= 1", "dim", "n_negatives", "batch_size", "epochs", "patience", "eval_k")
        check(self, "> 0", "init_std", "lr", "grad_clip")
        check(self, ">= 0", "weight_decay", "seed")


# RecExplainer's prompt modes and alignment tasks (built in whyrec.data.recexplainer_tasks, which
# imports them from here: config sits below data and must not import it).
MODES = ("behaviour", "intention", "hybrid")
TASKS = ("iid2title", "iid2sim", "uid2hist", "uid2next", "uidiid2rank", "uidiid2binary", "uid2summary", "general")


@dataclass
class RecExplainerConfig:
    """RecExplainer's alignment recipe; defaults are the paper's (`shell/train.sh`) unless noted."""

    mode: str = "hybrid"
    """behaviour (titles only, -B), intention (placeholders only, -I) or hybrid (both, -H)."""
    lora: LoraConfig = field(default_factory=lambda: LoraConfig(enabled=True, r=16, alpha=32, dropout=0.05))
    """LoRA on q,k,v,o (RecExplainer: r=16, alpha=32, dropout 0.05)."""
    connector_hidden: int = 2048
    """Hidden width of each connector MLP (RecExplainer: 2048)."""
    modules_to_save: list[str] = field(default_factory=list)
    """LLM modules trained in full beside LoRA. RecExplainer used ["lm_head", "embed_tokens"]; off by
    default because it stores two vocabulary-sized matrices per run and doubles optimizer memory."""
    lr: float = 1e-4
    """AdamW learning rate (RecExplainer: 1e-4), linear decay after warm-up."""
    epochs: float = 20.0
    """Passes over the task mixture (RecExplainer: 20)."""
    micro_batch_size: int = 4
    """Examples per forward pass and device (RecExplainer: 4)."""
    grad_accum: int = 4
    """Micro-batches per optimizer step (RecExplainer: 4, on 4 GPUs: effective batch 64)."""
    warmup_ratio: float = 0.1
    """Share of the steps with linear warm-up (RecExplainer: 0.1)."""
    weight_decay: float = 0.0
    """AdamW weight decay (RecExplainer: 0)."""
    max_length: int = 1024
    """Tokens kept per example, cut on the right (RecExplainer pads to 1024)."""
    max_hist_len: int = 9
    """History titles shown per user and SASRec's window (RecExplainer: 9)."""
    tasks: list[str] = field(default_factory=lambda: list(TASKS))
    """Tasks in the mixture; uid2summary needs a teacher client and is skipped without one."""
    topk: int = 100
    """Ranking depth the top-5 items are sampled from (RecExplainer's data4Exp: 100)."""
    data_seed: int = 2023
    """Seeds the material sampling and the question templates (RecExplainer: 2023)."""
    max_examples: int | None = None
    """Keep at most this many examples of the mixture (seeded sample); None keeps all."""
    save_steps: int | None = None
    """Checkpoint every N optimizer steps; None: every epoch (RecExplainer)."""
    save_total_limit: int = 2
    """Checkpoints kept in out/checkpoints."""
    logging_steps: int = 10
    """Log the training loss every N optimizer steps."""
    max_steps: int | None = None
    """Stop after this many optimizer steps (overrides `epochs`); for CPU budgets."""
    max_minutes: float | None = None
    """Stop this run after this much wall time, writing a checkpoint; a rerun resumes."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass: less memory for 1024-token examples, ~30% slower."""
    bf16: bool | None = None
    """bfloat16 autocast; None: on when the GPU supports it (RecExplainer trained in bf16)."""
    deepspeed: str | None = None
    """DeepSpeed JSON for the Trainer (configs/distributed/ds_zero2.json, ds_zero3.json); launch with torchrun."""
    fsdp: str | None = None
    """FSDP settings JSON (configs/distributed/fsdp.json) for the Trainer; launch with torchrun."""
    seed: int = 2024
    """Seeds LoRA/connector init and the data order (RecExplainer: 2024)."""

    def __post_init__(self):
        check_choice(self, "mode", MODES)
        check(self, "in [0, 1)", "warmup_ratio")
        check(self, "> 0", "lr", "epochs")
        check(self, ">= 1", "connector_hidden", "micro_batch_size", "grad_accum", "max_length", "max_hist_len",
              "topk", "save_total_limit", "logging_steps")
        check(self, ">= 1", "max_examples", "save_steps", "max_steps", optional=True)
        check(self, ">= 0", "max_minutes", optional=True)
        check(self, ">= 0", "weight_decay", "data_seed", "seed")
        unknown = [t for t in self.tasks if t not in TASKS]
        if unknown or not self.tasks:
            fail(self, "tasks", f"tasks must be some of: {', '.join(TASKS)} (got {self.tasks!r})")
        if isinstance(self.lora, dict):
            self.lora = LoraConfig(**self.lora)
