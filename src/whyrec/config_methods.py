"""Configs of the explanation methods (XRec, PEPLER, GaVaMoE, RecExplainer), each the `--<name>.*`
option group of `whyrec train explainer`. Torch-free, like `whyrec.config`, which re-exports them."""

from __future__ import annotations

from dataclasses import dataclass, field

from whyrec.config import LoraConfig
from whyrec.config_checks import check, check_choice, check_text, fail


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
    item_facts: bool = True
    """Add an "{item_noun} facts:" slot after the name: genres, year, director, cast and, for review
    data, the item's most frequent training feature words (`whyrec.data.item_facts`), cut to
    `max_prompt_words` words, so the model can copy facts instead of inventing them (issue 20).
    On for new runs; a folder whose config.json predates the field loads with it off (the loader
    says so explicitly) and prompts exactly as it was trained."""
    lora: LoraConfig = field(default_factory=LoraConfig)

    def __post_init__(self):
        check(self, ">= 1", "n_exps", "max_prompt_words")
        check(self, "in [0, 1)", "dropout")
        check_text(self, "item_noun")



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
    """AdamW lr of phase 1 (continuous) or the only phase; None = paper (1e-3; 1e-4 for discrete).
    --train.lr, when given, replaces it (`METHOD.with_train`)."""
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
    """Sequences per step for training, validation and generation (PEPLER: 128); --train.batch_size,
    when given, replaces it."""
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
    item_facts: bool = True
    """Add an "{Item_noun} facts:" sentence after the title: genres, year, director, cast and, for
    review data, the item's most frequent training feature words (`whyrec.data.item_facts`; item-level,
    unlike `use_feature`'s reference word), cut to `max_prompt_words` words, so the model can copy
    facts instead of inventing them (issue 20). On for new runs; a folder whose config.json predates
    the field loads with it off and prompts exactly as it was trained."""
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



# RecExplainer's prompt modes and alignment tasks (built in whyrec.methods.recexplainer.tasks, which
# imports them from whyrec.config: config sits below methods and must not import it).
MODES = ("behaviour", "intention", "hybrid")
TASKS = ("iid2title", "iid2sim", "uid2hist", "uid2next", "uidiid2rank", "uidiid2binary", "uid2summary", "general")


@dataclass
class RecExplainerConfig:
    """RecExplainer's alignment recipe; defaults are the paper's (`shell/train.sh`) unless noted.

    Its HF Trainer settings double some `--train.*` options: a --train option set away from its
    default replaces the field it names (`METHOD.with_train`, e.g. --train.lr -> lr); giving both
    with different values is an error."""

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
    group_by_length: bool = True
    """Fill each micro-batch with examples of similar token length (less padding; whyrec, not the paper:
    RecExplainer drew micro-batches at random). The order is a pure function of seed and epoch, so a
    resumed run equals an uninterrupted one; false: the Trainer's random order."""
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
    """FSDP settings JSON (configs/distributed/fsdp.json) for the Trainer; turns FSDP on (what
    --train.fsdp true does for XRec, which here needs this file); launch with torchrun."""
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
