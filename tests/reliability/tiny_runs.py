"""Tiny local model and PEPLER run folders for the cache-key tests: another seed at the same path
stands for a model or run retrained in place."""

from __future__ import annotations

from pathlib import Path

USERS, ITEMS = [f"u{k}" for k in range(6)], [f"i{k}" for k in range(10)]


def save_tiny_model(folder: Path, seed: int) -> None:
    """The tiny random Llama as a local HF folder; another seed is another model at the same path."""
    from whyrec.llm.load import load_tiny_random

    model, tok = load_tiny_random(seed=seed)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)


def tiny_pepler(folder: Path, seed: int, base: str = "tiny-random-llama") -> Path:
    """A PEPLER folder around the tiny random Llama; another seed stands for a retrained run."""
    from dataclasses import asdict

    import torch

    from whyrec.config import ModelConfig, PEPLERConfig
    from whyrec.llm.load import load_model
    from whyrec.methods.pepler.artifact import save_pepler
    from whyrec.methods.pepler.model import PEPLER

    torch.manual_seed(seed)
    model, cfg = ModelConfig(base, device="cpu", dtype="float32"), PEPLERConfig(words=4, epochs_phase2=0)
    module = PEPLER(*load_model(model), len(USERS), len(ITEMS), cfg)
    folder.mkdir(parents=True, exist_ok=True)
    save_pepler(module, folder, {"method": "pepler", "model": asdict(model), "pepler": asdict(cfg),
                                 "n_users": len(USERS), "n_items": len(ITEMS), "rating_range": [1.0, 5.0],
                                 "dataset": "tiny"},
                {u: k for k, u in enumerate(USERS)}, {i: k for k, i in enumerate(ITEMS)}, {"user": {}, "item": {}})
    return folder
