"""When training compiles the decoder layers (`train.compile`, default auto), and how it falls back.

Compiling costs a one-off wait (inductor generates and builds C++/Triton kernels) and then makes
each step faster; it pays only when enough steps follow. Kernels are cached on disk under the
whyrec cache, so a second run of the same shapes reuses them and compiles in seconds. Where
compilation fails (no C++ compiler, an unsupported op) training goes on eagerly with one warning.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
from contextlib import contextmanager

# Planned steps from which `compile auto` compiles. Measured on 2 CPU cores (SmolLM2-135M, XRec,
# batch 4, benchmarks/xrec_train_throughput.py): a cold compile costs about as much as
# COMPILE_MIN_STEPS eager steps save; see docs/benchmarks.md.
COMPILE_MIN_STEPS = 100


def wants_compile(setting: bool | None, remaining_steps: int, device: str, fsdp: bool, llm) -> bool:
    """`setting` True/False is the user's choice; None (auto) compiles long runs of a decoder LLM
    where a compiler exists."""
    if setting is not None:
        return setting
    base = llm.get_base_model() if hasattr(llm, "get_base_model") else llm
    return (not fsdp and remaining_steps >= COMPILE_MIN_STEPS and hasattr(base, "get_decoder")
            and compiler_available(device))


def compiler_available(device: str) -> bool:
    """Inductor needs a C++ compiler for CPU kernels and Triton for CUDA ones."""
    if device.startswith("cuda"):
        import importlib.util

        return importlib.util.find_spec("triton") is not None
    if device != "cpu":
        return False
    return any(shutil.which(c) for c in (os.environ.get("CXX") or "c++", "g++", "clang++"))


def use_compile_cache() -> str:
    """Point inductor's on-disk kernel cache at the whyrec cache (kept across runs and reboots,
    unlike its default under /tmp) unless the user chose a folder."""
    from whyrec.utils import cache_dir

    folder = os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(cache_dir() / "inductor"))
    return folder


COMPILER_FILES = ("/torch/_dynamo/", "/torch/_inductor/", "/torch/fx/experimental/")


def is_compile_error(error: BaseException) -> bool:
    """An error raised by torch.compile's tracing or code generation, not by the model itself: one of
    dynamo's or inductor's exception types, or any exception raised inside their code (torch 2.13's
    dynamo fails a plain AssertionError in symbolic_shapes while guarding some graphs)."""
    if type(error).__module__.startswith(("torch._dynamo", "torch._inductor")):
        return True
    tb = error.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next  # the innermost frame: where it was raised
    where = tb.tb_frame.f_code.co_filename.replace("\\", "/") if tb is not None else ""
    return any(part in where for part in COMPILER_FILES)


def warn_fallback(error: BaseException) -> None:
    reason = " ".join(str(error).split())[:200] or type(error).__name__
    print(f"whyrec: compiling the decoder layers failed ({reason}); training on without compile",
          file=sys.stderr, flush=True)


class _DropGuardErrors(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return False


@contextmanager
def quiet_guard_errors():
    """Inside: torch's guard-building error log (~30 lines, logger `torch._guards`) is dropped.

    Dynamo logs them just before raising the error that `is_compile_error` recognises (torch 2.13,
    GaVaMoE compiled after XRec in one process: "sources must not be empty for symbol ..."); the
    training loop then falls back to eager with `warn_fallback`'s one line naming the reason, so
    the log repeats it as noise."""
    logger, quiet = logging.getLogger("torch._guards"), _DropGuardErrors()
    logger.addFilter(quiet)
    try:
        yield
    finally:
        logger.removeFilter(quiet)
