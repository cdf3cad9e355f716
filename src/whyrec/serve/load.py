"""Load the served model of a checked folder: the method its config.json names builds it (`Method.load`)."""

from __future__ import annotations

from pathlib import Path

from whyrec.config import GenerationConfig


def check_servable(generation: GenerationConfig | None) -> None:
    """Grounding-aware decoding (`--generation.candidates` > 1) is chosen by `whyrec.runs.Run`, which
    the server's batcher and cache do not go through: refused, not silently decoded as one candidate."""
    from whyrec.utils import WhyrecError

    if generation is not None and generation.candidates > 1:
        raise WhyrecError(f"--generation.candidates {generation.candidates}: grounding-aware decoding is not "
                          "served yet; use whyrec explain/recommend (or leave --generation.candidates at 1)")


def load_served(folder: Path, device: str = "auto", generation: GenerationConfig | None = None):
    """The served model of a folder `validate.check_artifact` accepted (so its method is registered)."""
    from whyrec.methods.base import check_generation
    from whyrec.registry import method_of

    check_servable(generation)
    method = method_of(folder)
    check_generation(method, generation)  # a --generation.* field its decoder ignores: refused before loading
    return method.load(folder, device=device, generation=generation)
