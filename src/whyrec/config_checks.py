"""Field checks of the config dataclasses: each `__post_init__` calls these, and a refused value
raises `ConfigError` naming the class and field (the CLI turns it into `--<option>: <message>`)."""

from __future__ import annotations

import math
import re
from typing import NoReturn

from whyrec.utils import WhyrecError


class ConfigError(WhyrecError, ValueError):
    """A config field holds a value its code cannot use. `config` (the dataclass) and `field` let
    the CLI name the option (`--train.lr`) in front of the message."""

    def __init__(self, config: type, field: str, message: str):
        super().__init__(message)
        self.config, self.field = config, field



_RULES = {"> 0": lambda v: v > 0, ">= 0": lambda v: v >= 0, ">= 1": lambda v: v >= 1,
          "in [0, 1)": lambda v: 0 <= v < 1, "in (0, 1]": lambda v: 0 < v <= 1, "finite": lambda v: True}
DTYPES = ("auto", "float32", "bfloat16", "float16")
_DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


def check(cfg, rule: str, *names: str, optional: bool = False) -> None:
    """Each named field of `cfg` must be a finite number obeying `rule` (a key of _RULES); `optional`
    also admits None (the field's documented 'no limit' / 'default')."""
    for name in names:
        value = getattr(cfg, name)
        if optional and value is None:
            continue
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not (number and math.isfinite(value) and _RULES[rule](value)):
            bound = "a finite number" if rule == "finite" else rule
            fail(cfg, name, f"{name} must be {bound}{' or null' if optional else ''} (got {value!r})")


def check_choice(cfg, name: str, choices) -> None:
    value = getattr(cfg, name)
    if value not in choices:
        fail(cfg, name, f"unknown {name} {value!r}; choose one of: {', '.join(choices)}")


def check_device(cfg, name: str = "device") -> None:
    value = getattr(cfg, name)
    if not (isinstance(value, str) and _DEVICE.fullmatch(value)):
        fail(cfg, name, f"unknown {name} {value!r}; choose auto, cpu, cuda, cuda:N or mps")


def check_text(cfg, *names: str) -> None:
    for name in names:
        value = getattr(cfg, name)
        if not (isinstance(value, str) and value.strip()):
            fail(cfg, name, f"{name} must be a non-empty string (got {value!r})")


def fail(cfg, name: str, message: str) -> NoReturn:
    raise ConfigError(type(cfg), name, message)



# A field given at its default value cannot be told from one not given by looking at the dataclass,
# yet a method with defaults of its own (PEPLER's batch of 128) must know which the user asked for.
# The CLI records the fields its command line and --config files gave on the built object.
_GIVEN = "_whyrec_given"


def mark_given(cfg, names) -> None:
    """Record that the user gave fields `names` of config `cfg` (at whatever value). The mark is not
    a field: equality, `asdict` and cache keys ignore it, and `dataclasses.replace` drops it."""
    object.__setattr__(cfg, _GIVEN, frozenset(names))


def given_fields(cfg) -> frozenset[str]:
    """The fields `mark_given` recorded on `cfg` (none for a config built in code)."""
    return getattr(cfg, _GIVEN, frozenset())
