"""Load the served model of a checked folder: the method its config.json names builds it (`Method.load`)."""

from __future__ import annotations

from pathlib import Path

from whyrec.config import GenerationConfig


def load_served(folder: Path, device: str = "auto", generation: GenerationConfig | None = None):
    """The served model of a folder `validate.check_artifact` accepted (so its method is registered)."""
    from whyrec.methods.base import check_generation
    from whyrec.registry import method_of

    method = method_of(folder)
    check_generation(method, generation)  # a --generation.* field its decoder ignores: refused before loading
    return method.load(folder, device=device, generation=generation)
