"""RecAlpaca (Allenpai1/RecAlpaca): Alpaca-LoRA instruction tuning to pick 5 of 20 candidates with reasons.

Layout: `config` (METHOD, RecAlpacaConfig; torch-free), `alpaca` (the Alpaca template and
response-only labels), `train` (load_alpaca_records, PadCollator, train_recalpaca), `model`
(RecAlpaca, pick_recommendations, load_recalpaca, evaluate_recalpaca), `instructions/` (the
`whyrec data instructions` pipeline: build, examples, lookup, outputs, prompts, testusers,
titles), `baselines` (prompt-order and encoder top-k baselines), `prompt_reduction`.
The names below are re-exported lazily (PEP 562) so importing this package stays torch-free.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "METHOD": "whyrec.methods.recalpaca.config",
    "RecAlpacaConfig": "whyrec.methods.recalpaca.config",
    "ADAPTER_FILES": "whyrec.methods.recalpaca.train",
    "CARD": "whyrec.methods.recalpaca.train",
    "PadCollator": "whyrec.methods.recalpaca.train",
    "load_alpaca_records": "whyrec.methods.recalpaca.train",
    "tokenize_records": "whyrec.methods.recalpaca.train",
    "train_recalpaca": "whyrec.methods.recalpaca.train",
    "GENERATIONS": "whyrec.methods.recalpaca.model",
    "MAX_NEW_TOKENS": "whyrec.methods.recalpaca.model",
    "RecAlpaca": "whyrec.methods.recalpaca.model",
    "evaluate_recalpaca": "whyrec.methods.recalpaca.model",
    "generation_key": "whyrec.methods.recalpaca.model",
    "load_recalpaca": "whyrec.methods.recalpaca.model",
    "pick_recommendations": "whyrec.methods.recalpaca.model",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
