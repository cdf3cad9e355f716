"""Resuming runs of the Hugging Face Trainer (RecAlpaca, RecExplainer) after a crash or a kill.

The Trainer checks `max_steps` only after an optimizer step, so a run killed between its last
checkpoint and its final save would, on resume, train one step past the end whenever the plan
does not end on an epoch boundary. `stops_at_planned_end` closes that gap; the run then just
writes its outputs from the restored weights.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

log = logging.getLogger(__name__)


def last_complete_checkpoint(folder: Path) -> Path | None:
    """Newest checkpoint-N with trainer_state.json, which the Trainer writes last (a kill
    during a save leaves a newest folder without it)."""
    found = [p for p in folder.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()
             and (p / "trainer_state.json").is_file()]
    return max(found, key=lambda p: int(p.name.split("-")[-1]), default=None)


def budget_change(checkpoint: Path | None, planned_steps: int, method: str) -> dict | None:
    """{"from", "to", "at_step"} when the run resumed from `checkpoint` was planned for another number
    of steps than the run now continuing it (`planned_steps`, the Trainer's `state.max_steps`), else
    None. The Trainer's learning rate decays over the planned steps, so such a run is not the one a
    fresh run with the new budget would train: it is how a run is extended, and its train log says
    so. Logged as a warning naming both budgets and how to train it afresh."""
    if checkpoint is None:
        return None
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    before, at = state.get("max_steps"), state.get("global_step")
    if not before or before == planned_steps:
        return None
    log.warning("%s: resumed at step %s of a run planned for %s steps, now planned for %s: the learning rate decays "
                "over the new budget from here, so this run differs from one trained for %s steps from the start "
                "(--overwrite trains it afresh)", method, at, before, planned_steps, planned_steps)
    return {"from": before, "to": planned_steps, "at_step": at}


def stops_at_planned_end(trainer_cls: type) -> type:
    """`trainer_cls` that runs no epoch once the restored global step has reached the plan.

    Hooks the Trainer's per-epoch method (`_run_epoch`, transformers 5); an older Trainer without it
    gets a warning that the overshoot is not guarded against.
    """
    if not hasattr(trainer_cls, "_run_epoch"):
        import logging

        logging.getLogger(__name__).warning(
            "this transformers Trainer has no _run_epoch: a run resumed from its final checkpoint may train "
            "one step past max_steps (upgrade transformers)")
        return trainer_cls

    class PlannedEnd(trainer_cls):
        def _run_epoch(self, *args, **kwargs):
            if self.state.max_steps > 0 and self.state.global_step >= self.state.max_steps:
                return None
            return super()._run_epoch(*args, **kwargs)

    PlannedEnd.__name__ = PlannedEnd.__qualname__ = trainer_cls.__name__
    return PlannedEnd


def run_train_loss(log_history: list[dict]) -> float | None:
    """Mean loss over every logged step of the run, resumed parts included.

    Each logged loss is the mean since the previous log, so weighting by the steps it covers gives
    the mean over all steps up to the last log; the Trainer's own `training_loss` covers only the
    steps of the last process (and is 0 when that process had none left to train).
    """
    total, prev = 0.0, 0
    for h in log_history:
        if "loss" in h:
            total, prev = total + h["loss"] * (h["step"] - prev), h["step"]
    return total / prev if prev else None


def time_budget_callback(max_minutes: float):
    from transformers import TrainerCallback

    class TimeBudget(TrainerCallback):
        """Stop (and checkpoint) once this run has trained for `max_minutes`."""

        def on_train_begin(self, args, state, control, **kwargs):
            self.start = time.monotonic()

        def on_step_end(self, args, state, control, **kwargs):
            if time.monotonic() - self.start > 60 * max_minutes:
                control.should_training_stop = True
                control.should_save = True

    return TimeBudget()
