"""Configs of the encoders (`whyrec train encoder`, `whyrec cluster`): LightGCN, the VAE-GMM of
GaVaMoE's stage 1, SASRec and MF. Torch-free, like `whyrec.config`, which re-exports them."""

from __future__ import annotations

from dataclasses import dataclass

from whyrec.config_checks import check, check_choice, fail


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
class VaeGmmConfig:
    """GaVaMoE's VAE-GMM; defaults are the original `train.py` / `vae_cluster.py` values."""

    n_clusters: int = 5
    """K mixture components, i.e. stage-2 gates (paper default 5; K in {2..5} was swept)."""
    feedback: str = "auto"
    """What the decoder reconstructs: "ratings" (5 classes, the paper), "interactions" (2 classes:
    an observed pair against `negatives` sampled pairs of the user, for data without ratings) or
    "auto" (ratings when the dataset has them). A trained folder records the resolved choice."""
    negatives: int = 1
    """Sampled items the user never interacted with, per observed pair, in "interactions" mode."""
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
    """Hidden widths of the GELU MLP that maps z to the rating (or interaction) logits."""
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
              "kl_weight_every", "plot_points_per_cluster", "negatives")
        check_choice(self, "feedback", ("auto", "ratings", "interactions"))
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

