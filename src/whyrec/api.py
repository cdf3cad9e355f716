"""Python API for notebooks: the same operations as the CLI, for every registered method.

    import whyrec
    run = whyrec.load_run("runs/quickstart")      # any method's trained folder
    run.recommend("196", k=5, explain=True)
    run.explain("196", "242")
    run.info()

`load_run` returns a `Run` over the served model the folder's method object loads (the one
`whyrec serve` answers with); `evaluate_run` scores a run's explanations against a dataset's.
"""

from __future__ import annotations

from whyrec.runs import Run, evaluate_run, explain_pair, load_model, load_run

__all__ = ["Run", "evaluate_run", "explain_pair", "load_model", "load_run"]
