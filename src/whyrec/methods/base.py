"""The method interface: what one registered method object offers (torch-free).

Each method package defines `METHOD` in `methods/<name>/method.py`, registered in
`whyrec.registry.METHODS` ("whyrec.methods.<name>.method:METHOD"). The CLI, the API and the
workflows reach a method only through this object, never by comparing its name. A method object
is a plain class (no base class to inherit from): it has the attributes and methods of `Method`.

`method.py` imports only this module and torch-free configs; `train` (and later `load`) import
the method's heavy modules inside the call, so `import whyrec.cli` / `whyrec.registry` stay light.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from whyrec.config import ModelConfig, TrainConfig
from whyrec.utils import WhyrecError


@runtime_checkable
class Method(Protocol):
    """One registered method (XRec, GaVaMoE, PEPLER, RecExplainer, RecAlpaca, or a test's toy)."""

    name: str
    """The registered name (`--method NAME`, config.json "method")."""
    config_class: type
    """The dataclass of the method's own options (e.g. XRecConfig); its defaults must build."""
    needs_encoder: str | None
    """None, or what `--encoder` must be, in words (e.g. "a LightGCN folder from `whyrec train encoder`")."""

    def train(self, data: str, out: str, *, encoder: str | None = None, model: ModelConfig,
              train: TrainConfig, config: Any, resume: bool = True, overwrite: bool = False) -> dict:
        """Train into the folder `out` (config.json names the method); return the training log.

        data: the `--data` argument as given (a dataset folder, or the method's own kind of input);
        encoder: `--encoder` (WhyrecError if the method needs one and it is None); config: an
        instance of `config_class`; train: the shared TrainConfig (a method may ignore fields).
        """
        ...

    def check(self, folder: Path) -> None:
        """Placeholder (issue 18 phase C, not wired yet): serve-strength check of a trained folder,
        WhyrecError on any problem (today: `whyrec.serve.validate.check_artifact`)."""
        ...

    def load(self, folder: Path, device: str = "auto") -> Any:
        """Placeholder (issue 18 phase C, not wired yet): the trained folder as a served model
        (today: the adapters `serve/<name>.py`, moving to `methods/<name>/served.py`)."""
        ...


def not_wired(method: str, what: str):
    """What `check`/`load` do until phase C wires them: a WhyrecError that says so."""
    raise WhyrecError(f"{method}: Method.{what} is not wired yet (issue 18 phase C); use the existing "
                      f"{'whyrec.serve.validate.check_artifact' if what == 'check' else 'loaders'}")


def require_encoder(encoder: str | None, message: str) -> str:
    """`encoder`, or WhyrecError(`message`) if it is None (the CLI's "--method M needs --encoder" rule)."""
    if encoder is None:
        raise WhyrecError(message)
    return encoder
