"""whyrec: LLM-based explainable recommendation.

Importing the package is cheap (no torch); heavy modules load on first use.
"""

from whyrec._version import __version__


def load_run(path, device: str = "auto", generation=None):
    """Load any method's trained folder for recommendations and explanations (see ``whyrec.api``)."""
    from whyrec.api import load_run as _load_run

    return _load_run(path, device=device, generation=generation)


__all__ = ["__version__", "load_run"]
