"""What `whyrec cluster` reports about a trained VAE-GMM: latent means, accuracy and RMSE (or AUC),
cluster sizes, the latent.png plot and the folder's README card."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from whyrec.encoders.vae_data import Pairs, _batches
from whyrec.encoders.vae_gmm import VaeGmm, VaeGmmConfig
from whyrec.utils import atomic_path


@torch.no_grad()
def latent_means(model: VaeGmm, pairs: Pairs, batch_size: int = 8192) -> torch.Tensor:
    """μ of q(z|x) for every pair, [N, latent_dim], in eval mode."""
    model.eval()
    parts = [model.encode(pairs.users[i], pairs.items[i])[0] for i in _batches(len(pairs), batch_size)]
    return torch.cat(parts) if parts else torch.empty(0, model.config.latent_dim)


@torch.no_grad()
def evaluate(model: VaeGmm, pairs: Pairs, batch_size: int = 8192) -> dict | None:
    """Accuracy of the argmax class and cluster sizes (from μ), with the RMSE of the expected rating
    Σ_k p_k k, or (interactions) the AUC of P(observed) between observed and sampled pairs."""
    if len(pairs) == 0:
        return None
    model.eval()
    mu = latent_means(model, pairs, batch_size)  # [N, L]
    logits = torch.cat([model.decode(mu[i]) for i in _batches(len(pairs), batch_size)])  # [N, C]
    scores = model.score_logits(logits)  # [N]
    clusters = torch.cat([model.log_responsibilities(mu[i]).argmax(1) for i in _batches(len(pairs), batch_size)])
    out = {"n": len(pairs), "accuracy": (logits.argmax(1) == pairs.targets).float().mean().item()}
    if model.config.feedback == "interactions":
        out["auc"] = auc(scores[pairs.targets == 1], scores[pairs.targets == 0])
    else:
        out["rmse"] = ((scores - pairs.ratings) ** 2).mean().sqrt().item()
    return {**out, "cluster_sizes": torch.bincount(clusters, minlength=model.config.n_clusters).tolist()}


def auc(pos: torch.Tensor, neg: torch.Tensor) -> float | None:
    """P(a positive scores above a negative), ties counting half (Mann-Whitney U / (n_pos n_neg))."""
    if len(pos) == 0 or len(neg) == 0:
        return None
    from scipy.stats import rankdata

    ranks = rankdata(torch.cat([pos, neg]).double().cpu().numpy())  # average ranks for ties
    u = ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2
    return float(u / (len(pos) * len(neg)))


def plot_latent(mu: torch.Tensor, clusters: torch.Tensor, path: Path, per_cluster: int, seed: int) -> Path:
    """PNG of μ projected on its first two principal components, up to `per_cluster` points per cluster.

    Uses matplotlib's Agg canvas directly, so no pyplot state or global backend is touched.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rng = np.random.default_rng(seed)
    clusters_np = clusters.cpu().numpy()
    keep = np.concatenate([rng.permutation(np.flatnonzero(clusters_np == c))[:per_cluster]
                           for c in np.unique(clusters_np)])
    x = mu[torch.from_numpy(keep).to(mu.device)].double().cpu()
    x = x - x.mean(0)
    _, _, vt = torch.linalg.svd(x, full_matrices=False)
    xy = (x @ vt[:2].T).numpy()  # [n, <=2]
    xy = np.pad(xy, ((0, 0), (0, 2 - xy.shape[1])))  # latent_dim 1 or a single point: y = 0
    fig = Figure(figsize=(5.5, 4.5), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for c in np.unique(clusters_np[keep]):
        sel = clusters_np[keep] == c
        ax.scatter(xy[sel, 0], xy[sel, 1], s=5, alpha=0.6, color=f"C{c % 10}",
                   label=f"cluster {c} ({int((clusters_np == c).sum()):,} pairs)")
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.legend(fontsize=7, markerscale=2)
    ax.set_title(f"VAE-GMM latent μ of training pairs (≤{per_cluster} per cluster, PCA)", fontsize=9)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)  # the temp name ends in .tmp: say png
    return path


def fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.4f}"


def _card(config: VaeGmmConfig, metrics: dict, data: str) -> str:
    valid = metrics["valid"] or metrics["train"]
    return "\n".join([
        "# vae_gmm", "", "GaVaMoE stage 1 (Tang et al., arXiv 2410.11841): a VAE with a Gaussian-mixture prior.", "",
        f"- data: {data}; users {metrics['n_users']:,}, items {metrics['n_items']:,}",
        f"- K = {config.n_clusters}, latent {config.latent_dim}, ID embeddings {config.embedding_dim}",
        f"- training cluster sizes: {metrics['cluster_sizes']}",
        f"- decoder reconstructs: {config.feedback}",
        f"- {'valid' if metrics['valid'] else 'train'}: accuracy {valid['accuracy']:.4f}, "
        + (f"RMSE {valid['rmse']:.4f}" if "rmse" in valid else f"AUC {fmt(valid.get('auc'))}"),
        "", "```python", "from whyrec.encoders.vae_gmm import load_vae_gmm",
        "vae = load_vae_gmm('path/to/this/folder')", "clusters = vae.cluster(['user-id'], ['item-id'])", "```", "",
    ])
