"""Load the served model of a checked folder: the method its config.json names builds it (`Method.load`)."""

from __future__ import annotations

from pathlib import Path

from whyrec.config import GenerationConfig


def load_served(folder: Path, device: str = "auto", generation: GenerationConfig | None = None):
    """The served model of a folder `validate.check_artifact` accepted (so its method is registered)."""
    from whyrec.registry import method_of

    return method_of(folder).load(folder, device=device, generation=generation)
