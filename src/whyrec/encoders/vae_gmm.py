"""GaVaMoE stage 1: a rating-reconstruction VAE with a Gaussian-mixture prior (VaDE).

Tang et al., "GaVaMoE: Gaussian-Variational Gated Mixture of Experts for Explainable
Recommendation", arXiv 2410.11841 (METHODS §4.1); the prior and ELBO follow VaDE (Jiang et
al., IJCAI 2017). A (user, item) pair is encoded to q(z|x) = N(μ, σ²), the decoder classifies
the rating into 5 classes from z, and p(z) = Σ_c π_c N(μ_c, σ²_c). The cluster of a pair picks
the gate of the stage-2 mixture of experts. On data without ratings (`feedback="interactions"`)
the decoder instead tells an observed pair from sampled pairs of the same user (2 classes).

Deviations from the original code, on purpose (METHODS §4.8):
- The original fed a [batch, 2d] matrix to a `batch_first=False` TransformerEncoder, which
  reads it as ONE sequence whose length is the batch, so attention mixed different pairs and a
  pair's latent depended on its batch-mates. Here each pair is its own 2-token sequence
  [user, item]; the two output tokens are concatenated into μ and log σ².
- The original scored clusters with π_c + log N(z|μ_c, σ²_c) on a sampled z. Responsibilities
  and assignments here use log π_c, and `assign` decodes from μ unless asked to sample.
- π is kept as logits (log-softmax gives log π), so it stays a distribution while trained.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from whyrec.config import VaeGmmConfig  # noqa: F401 (re-exported: defined torch-free for the CLI)
from whyrec.utils import WhyrecError, atomic_path, read_json, write_json, write_text

N_RATINGS = 5  # ratings 1..5 become classes 0..4
FEEDBACK_CLASSES = {"ratings": N_RATINGS, "interactions": 2}  # interactions: 0 sampled, 1 observed


def n_classes(config: VaeGmmConfig) -> int:
    """Decoder classes of a config whose `feedback` is resolved (a dataset decides "auto")."""
    if config.feedback not in FEEDBACK_CLASSES:
        raise WhyrecError(f"VAE-GMM feedback {config.feedback!r} is not resolved; "
                          f"expected one of {', '.join(FEEDBACK_CLASSES)}")
    return FEEDBACK_CLASSES[config.feedback]


def gaussian_log_prob(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(z | mu_c, diag exp(logvar_c)) for every z and component: [B, L], [K, L] -> [B, K]."""
    z = z.unsqueeze(1)  # [B, 1, L]
    sq = (z - mu) ** 2 / logvar.exp()  # [B, K, L]
    return -0.5 * (math.log(2 * math.pi) + logvar + sq).sum(-1)


class VaeGmm(nn.Module):
    """ID embeddings -> per-pair transformer -> q(z|x); MLP decoder p(r|z); GMM prior p(z)."""

    def __init__(self, config: VaeGmmConfig, n_users: int, n_items: int):
        super().__init__()
        c = config
        self.config, self.n_users, self.n_items = c, n_users, n_items
        self.user_emb = nn.Embedding(n_users, c.embedding_dim)
        self.item_emb = nn.Embedding(n_items, c.embedding_dim)
        nn.init.uniform_(self.user_emb.weight, -c.init_range, c.init_range)
        nn.init.uniform_(self.item_emb.weight, -c.init_range, c.init_range)
        layer = nn.TransformerEncoderLayer(c.embedding_dim, c.n_heads, c.ff_dim, c.dropout, batch_first=True)
        # enable_nested_tensor only matters for padding masks; we have none (and it warns).
        self.encoder = nn.TransformerEncoder(layer, c.n_layers, enable_nested_tensor=False)
        self.mu_head = nn.Linear(2 * c.embedding_dim, c.latent_dim)
        self.logvar_head = nn.Linear(2 * c.embedding_dim, c.latent_dim)
        dims = (c.latent_dim, *c.decoder_dims)
        blocks: list[nn.Module] = []
        for d_in, d_out in zip(dims[:-1], dims[1:], strict=True):
            blocks += [nn.Linear(d_in, d_out), nn.GELU()]
        self.decoder = nn.Sequential(*blocks, nn.Linear(dims[-1], n_classes(c)))
        # GMM prior; overwritten by `init_prior` from a sklearn GaussianMixture fit.
        self.pi_logits = nn.Parameter(torch.zeros(c.n_clusters))  # log π up to a constant
        self.mu_c = nn.Parameter(torch.zeros(c.n_clusters, c.latent_dim))
        self.logvar_c = nn.Parameter(torch.zeros(c.n_clusters, c.latent_dim))

    # ------------------------------------------------------------ encoder / decoder
    def encode(self, users: torch.Tensor, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """μ, log σ² of q(z|x), each [B, L]. Every pair is its own sequence, so no pair sees another."""
        tokens = torch.stack([self.user_emb(users), self.item_emb(items)], dim=1)  # [B, 2, d]
        h = self.encoder(tokens).flatten(1)  # [B, 2d]
        return self.mu_head(h), self.logvar_head(h)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Logits [B, C]: class k is rating k + 1, or (interactions) 1 observed / 0 sampled."""
        return self.decoder(z)

    def score(self, z: torch.Tensor) -> torch.Tensor:
        """What ranking uses, [B]: the expected rating Σ_k p_k (k + 1), or P(observed) for interactions."""
        return self.score_logits(self.decode(z))

    def score_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """`score` from decoder logits [B, C] already computed."""
        probs = logits.softmax(-1)
        if self.config.feedback == "interactions":
            return probs[:, 1]
        return probs @ torch.arange(1, probs.shape[1] + 1, dtype=probs.dtype, device=probs.device)

    @staticmethod
    def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None = None,
                       eps: torch.Tensor | None = None):
        """z = μ + ε σ; ε ~ N(0, I) is drawn here unless given (data-parallel shards pass theirs)."""
        if eps is None:
            eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        return mu + eps * (0.5 * logvar).exp()

    # ------------------------------------------------------------ prior
    def log_pi(self) -> torch.Tensor:
        return F.log_softmax(self.pi_logits, dim=0)  # [K]

    def log_responsibilities(self, z: torch.Tensor) -> torch.Tensor:
        """log γ_c = log π_c + log N(z|μ_c, σ²_c) - log Σ_c' (...), [B, K]. (The original added π_c.)"""
        joint = self.log_pi() + gaussian_log_prob(z, self.mu_c, self.logvar_c)  # [B, K]
        return joint - joint.logsumexp(dim=1, keepdim=True)

    @torch.no_grad()
    def init_prior(self, weights, means, variances) -> None:
        """Set π, μ_c, σ²_c from a fitted diagonal GaussianMixture's weights_/means_/covariances_."""
        as_t = lambda a: torch.as_tensor(a, dtype=self.mu_c.dtype, device=self.mu_c.device)  # noqa: E731
        self.pi_logits.copy_(as_t(weights).log())
        self.mu_c.copy_(as_t(means))
        self.logvar_c.copy_(as_t(variances).log())

    def kl(self, z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """VaDE KL(q(z, c|x) || p(z, c)) with q(c|x) = γ(z), averaged over the batch (scalar).

        ½ Σ_c γ_c Σ_d [log σ²_cd + σ²_d/σ²_cd + (μ_d - μ_cd)²/σ²_cd] - Σ_c γ_c (log π_c - log γ_c)
        - ½ Σ_d (1 + log σ²_d); the log 2π terms cancel.
        """
        log_gamma = self.log_responsibilities(z)  # [B, K]
        gamma = log_gamma.exp()
        var_c = self.logvar_c.exp()  # [K, L]
        per_c = (self.logvar_c + logvar.exp().unsqueeze(1) / var_c
                 + (mu.unsqueeze(1) - self.mu_c) ** 2 / var_c).sum(-1)  # [B, K]
        prior = 0.5 * (gamma * per_c).sum(1) - (gamma * (self.log_pi() - log_gamma)).sum(1)
        entropy = 0.5 * (1 + logvar).sum(1)
        return (prior - entropy).mean()

    # ------------------------------------------------------------ losses and use
    def reconstruction_loss(self, users, items, targets) -> torch.Tensor:
        """Pretraining loss: CE(decoder(μ), target class), a deterministic autoencoder."""
        mu, _ = self.encode(users, items)
        return F.cross_entropy(self.decode(mu), targets)

    def elbo_terms(self, users, items, targets, generator: torch.Generator | None = None,
                   eps: torch.Tensor | None = None):
        """(mean CE of the target class from one sampled z, mean VaDE KL); the loss is a weighted sum.
        `eps` [B, L] fixes the noise of the sample (default: drawn from `generator` / torch's RNG)."""
        mu, logvar = self.encode(users, items)
        z = self.reparameterize(mu, logvar, generator, eps)
        return F.cross_entropy(self.decode(z), targets), self.kl(z, mu, logvar)

    @torch.no_grad()
    def assign(self, users: torch.Tensor, items: torch.Tensor, sample: bool = False,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """Cluster ids [B]: argmax_c log π_c + log N(x|μ_c, σ²_c), x = μ (default) or a sampled z."""
        mu, logvar = self.encode(users, items)
        z = self.reparameterize(mu, logvar, generator) if sample else mu
        return self.log_responsibilities(z).argmax(dim=1)


# ---------------------------------------------------------------- artifact folder
FILES = ("config.json", "model.safetensors", "user2idx.json", "item2idx.json")
RETRAIN = "re-run `whyrec cluster`"


def save_vae_gmm(model: VaeGmm, path, user2idx: dict[str, int], item2idx: dict[str, int],
                 card: str | None = None):
    """Write config.json + model.safetensors + id maps (+ README.md); config.json goes last."""
    from safetensors.torch import save_file

    if len(user2idx) != model.n_users or len(item2idx) != model.n_items:
        raise WhyrecError(f"id maps have {len(user2idx)} users / {len(item2idx)} items, "
                          f"the model {model.n_users} / {model.n_items}")
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(path / "model.safetensors") as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt", "encoder": "vae_gmm"})
    write_json(path / "user2idx.json", user2idx)
    write_json(path / "item2idx.json", item2idx)
    if card:
        write_text(path / "README.md", card)
    write_json(path / "config.json", {"encoder": "vae_gmm", **asdict(model.config),
                                      "n_users": model.n_users, "n_items": model.n_items})
    return path


def config_from_dict(raw: dict) -> VaeGmmConfig:
    """A VaeGmmConfig from JSON (unknown keys such as n_users are ignored; lists become tuples)."""
    names = {f.name for f in fields(VaeGmmConfig)}
    kwargs = {k: v for k, v in raw.items() if k in names}
    if "decoder_dims" in kwargs:
        kwargs["decoder_dims"] = tuple(kwargs["decoder_dims"])
    return VaeGmmConfig(**kwargs)


@dataclass
class VaeGmmArtifact:
    """A trained VAE-GMM for stage 2: cluster ids and ID embeddings of (user, item) pairs."""

    model: VaeGmm
    config: VaeGmmConfig
    user2idx: dict[str, int]
    item2idx: dict[str, int]

    @property
    def n_clusters(self) -> int:
        return self.config.n_clusters

    @property
    def dim(self) -> int:
        """Size of the user/item ID embeddings returned by `vectors`."""
        return self.config.embedding_dim

    def _index(self, users: list[str], items: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        if len(users) != len(items):
            raise WhyrecError(f"got {len(users)} users but {len(items)} items; pass one item per user")
        out = []
        for ids, table, kind in ((users, self.user2idx, "user"), (items, self.item2idx, "item")):
            missing = [i for i in ids if str(i) not in table]
            if missing:
                raise WhyrecError(f"unknown {kind} {missing[0]!r}: the VAE knows {len(table)} {kind}s "
                                  f"(e.g. {', '.join(list(table)[:3])})")
            out.append(torch.tensor([table[str(i)] for i in ids], dtype=torch.long,
                                    device=self.model.mu_c.device))
        return out[0], out[1]

    @torch.no_grad()
    def cluster(self, users: list[str], items: list[str], sample: bool = False) -> torch.Tensor:
        """Cluster id [N] of each pair; from μ (deterministic) unless `sample`."""
        self.model.eval()
        return self.model.assign(*self._index(users, items), sample=sample)

    @torch.no_grad()
    def vectors(self, users: list[str], items: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """The user and item ID embeddings [N, dim] each (what stage 2 projects into the LLM)."""
        u, i = self._index(users, items)
        return self.model.user_emb(u).clone(), self.model.item_emb(i).clone()


def load_vae_gmm(path, device: str = "cpu") -> VaeGmmArtifact:
    """Rebuild a VAE-GMM folder written by `train_vae_gmm`; WhyrecError says what is wrong."""
    path = Path(path)
    if not path.is_dir():
        raise WhyrecError(f"VAE-GMM folder {path} not found; train one with `whyrec cluster`")
    missing = [f for f in FILES if not (path / f).is_file()]
    if missing:
        raise WhyrecError(f"VAE-GMM folder {path} is missing {', '.join(missing)}; {RETRAIN}")
    raw = read_json(path / "config.json")
    if not isinstance(raw, dict) or raw.get("encoder") != "vae_gmm":
        raise WhyrecError(f"{path / 'config.json'}: expected \"encoder\": \"vae_gmm\"")
    # folders written before interactions mode reconstructed ratings and did not record it
    config = config_from_dict({"feedback": "ratings", **raw})
    model = VaeGmm(config, int(raw["n_users"]), int(raw["n_items"]))
    try:
        from safetensors.torch import load_file

        model.load_state_dict(load_file(str(path / "model.safetensors")))
    except Exception as e:  # truncated file, wrong shapes or missing tensors
        raise WhyrecError(f"{path / 'model.safetensors'} does not fit config.json "
                          f"({type(e).__name__}: {str(e).splitlines()[0]}); {RETRAIN}") from None
    user2idx, item2idx = read_json(path / "user2idx.json"), read_json(path / "item2idx.json")
    if len(user2idx) != model.n_users or len(item2idx) != model.n_items:
        raise WhyrecError(f"{path}: id maps have {len(user2idx)} users / {len(item2idx)} items, "
                          f"config.json says {model.n_users} / {model.n_items}")
    return VaeGmmArtifact(model.to(device).eval(), config, user2idx, item2idx)
