"""PEPLER: Personalized Prompt Learning for Explainable Recommendation (Li, Zhang, Chen; ACM TOIS 2023).

Three variants on any HF causal LM, through `inputs_embeds` (no forked model code; METHODS §2.1):

- ``continuous``: user/item ID embeddings (U(-0.1, 0.1)) prepended as two soft-prompt vectors.
  Sequential tuning: phase 1 trains only the prompts with the LM frozen, phase 2 trains
  everything from the best phase-1 weights. The original code resized the word embeddings
  *after* freezing GPT-2, so its phase 1 also trained the word-embedding matrix by accident;
  we add no tokens (the backbone's own bos/eos/pad are used), so phase 1 here is prompt-only
  as the paper describes.
- ``discrete``: the prompt is feature words — the intersection of the user's and the item's
  TRAIN features, then ``ufea | ifea - intersection``. Python's precedence makes that the
  *union*, so the intersection appears twice; we keep this quirk by default
  (``discrete_dedup=False``) and sort each part because Python set order is arbitrary.
  Truncated to ``words`` tokens; the whole LM is fine-tuned (lr 1e-4).
- ``reg``: the continuous prompt plus a rating head (MF ``sum(u*i)`` or PEPLER's MLP) trained
  jointly with the LM: ``text_reg * CE + rating_reg * MSE``. RMSE/MAE use predictions clipped
  to the dataset's rating range.

Sequences are ``[prompt] <bos> w1..w_words <eos>`` with labels -100 on the prompt and padding;
decoding is greedy for ``words`` new tokens from ``[prompt] <bos>``, stopping at eos.
Drivers: `train_pepler` (AdamW, per-epoch validation, early stopping, best weights kept,
resumable at epoch boundaries), `load_pepler_run`, `generate_pepler`, `evaluate_pepler`.

Layout: `model` (MLPRating, discrete_prompt, PEPLER), `train` (Examples, make_examples, fit,
train_pepler), `artifact` (save_pepler, load_pepler_run), `evaluate` (generate_pepler, rating
metrics, evaluate_pepler). PEPLERConfig lives in `whyrec.config`. The names below are re-exported
lazily (PEP 562) so importing this package stays torch-free.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "PEPLERConfig": "whyrec.config",
    "MLPRating": "whyrec.methods.pepler.model",
    "discrete_prompt": "whyrec.methods.pepler.model",
    "PEPLER": "whyrec.methods.pepler.model",
    "Examples": "whyrec.methods.pepler.train",
    "train_features": "whyrec.methods.pepler.train",
    "make_examples": "whyrec.methods.pepler.train",
    "run_epoch": "whyrec.methods.pepler.train",
    "validation_loss": "whyrec.methods.pepler.train",
    "fit": "whyrec.methods.pepler.train",
    "train_pepler": "whyrec.methods.pepler.train",
    "save_pepler": "whyrec.methods.pepler.artifact",
    "load_pepler_run": "whyrec.methods.pepler.artifact",
    "generate_pepler": "whyrec.methods.pepler.evaluate",
    "rating_errors": "whyrec.methods.pepler.evaluate",
    "pepler_rating_metrics": "whyrec.methods.pepler.evaluate",
    "evaluate_pepler": "whyrec.methods.pepler.evaluate",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
