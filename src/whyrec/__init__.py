"""whyrec: LLM-based explainable recommendation.

Importing the package is cheap (no torch); heavy modules load on first use.
"""

__version__ = "0.1.0"


def load_run(path):
    """Load a trained run folder for recommendations and explanations (see ``whyrec.api``)."""
    from whyrec.api import load_run as _load_run

    return _load_run(path)


__all__ = ["__version__", "load_run"]
