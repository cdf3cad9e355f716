"""Checks of run and model folders that any loader runs before building a model.

A damaged folder (missing or truncated file, config.json that is not an object, weights of
the wrong shape) must fail with one line naming the file and the fix, not with a traceback
from deep inside torch or transformers. These checks know file formats, not methods (SECTIONS
aside, until each method checks its own config sections): the serve-strength per-method
layouts stay in `whyrec.serve.validate`. Core layer: imports only other core modules.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from contextlib import contextmanager
from pathlib import Path

from whyrec.utils import WhyrecError

FIX = "re-train it (`whyrec train explainer`) or copy the whole folder again"
# Sections of each method's config.json that loading rebuilds: key -> dataclass name in whyrec.config
# (or a plain type). Names, not classes, so this core module imports no method code; the table moves
# into each method's `check` with the method packages (issue 18 phase B).
SECTIONS = {
    "xrec": {"model": "ModelConfig", "xrec": "XRecConfig", "encoder_dim": int},
    "gavamoe": {"model": "ModelConfig", "gavamoe": "GaVaMoEConfig", "vae": str},
    "pepler": {"model": "ModelConfig", "pepler": "PEPLERConfig", "n_users": int, "n_items": int},
    "recexplainer": {"base_model": "ModelConfig", "config": "RecExplainerConfig", "target": str},
    "recalpaca": {"base_model": dict, "instructions": list},
}
SKIPPED_DIRS = ("checkpoint", "checkpoints")  # resume state: loading never reads it


def existing_folder(path: str | Path, option: str = "--run") -> Path:
    """`path` if it is a folder; else WhyrecError saying it does not exist (with a close sibling) or is a file."""
    import difflib

    path = Path(path)
    if path.is_dir():
        return path
    if path.exists():
        raise WhyrecError(f"{option} {path} is a file, not a folder; pass the folder that holds it "
                          f"(e.g. {path.parent})")
    parent = path.parent if str(path.parent) else Path(".")
    near = difflib.get_close_matches(path.name, [p.name for p in parent.iterdir() if p.is_dir()], n=1) \
        if parent.is_dir() else []
    hint = f"; did you mean {parent / near[0]}?" if near else "; check the path"
    raise WhyrecError(f"{option} {path}: no such folder{hint}")


def read_json_file(path: Path, fix: str = FIX):
    """The parsed JSON of `path`; WhyrecError naming the file if it is missing, not UTF-8 or not JSON."""
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise WhyrecError(f"{path} is missing; {fix}") from None
    except IsADirectoryError:
        raise WhyrecError(f"{path} is a folder where a JSON file is expected; {fix}") from None
    except UnicodeDecodeError as e:
        raise WhyrecError(f"{path} is not UTF-8 text (byte {e.start}); {fix}") from None
    except json.JSONDecodeError as e:
        raise WhyrecError(f"{path} is not valid JSON ({e.msg} at line {e.lineno}); {fix}") from None


def read_config(path: Path, fix: str = FIX) -> dict:
    """A folder's config.json: a JSON object, or WhyrecError naming the file."""
    config = read_json_file(path, fix)
    if not isinstance(config, dict):
        raise WhyrecError(f"{path} holds a JSON {type(config).__name__}, not an object of settings; {fix}")
    return config


def explainer_dir(run: str | Path) -> Path:
    """The explainer folder of a run folder (`RUN/explainer`) or the folder itself."""
    path = existing_folder(run)
    return path / "explainer" if (path / "explainer").is_dir() else path


def check_weights(path: Path, fix: str = FIX) -> dict[str, list[int]]:
    """Tensor name -> shape from a safetensors header; WhyrecError if the file is truncated or not safetensors."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), "pt") as f:
            return {name: list(f.get_slice(name).get_shape()) for name in f.keys()}
    except Exception as e:  # SafetensorError (bad header, truncated data), OSError
        reason = " ".join(str(e).split()) or type(e).__name__
        raise WhyrecError(f"{path} is not a readable safetensors file ({reason}): truncated or corrupt; "
                          f"{fix}") from None


def check_table(path: Path, fix: str = FIX) -> None:
    """A Parquet file's footer (schema, row groups) reads; WhyrecError if the file is truncated or not Parquet."""
    import pyarrow.parquet as pq

    try:
        pq.read_metadata(path)
    except Exception as e:  # ArrowInvalid, OSError
        reason = " ".join(str(e).split())[:200] or type(e).__name__
        raise WhyrecError(f"{path} is not a readable Parquet file ({reason}); {fix}") from None


def check_files(folder: Path, fix: str = FIX) -> None:
    """Every safetensors, JSON and Parquet file under `folder` (resume checkpoints aside) opens cleanly."""
    for path in sorted(folder.rglob("*")):
        if any(part in SKIPPED_DIRS for part in path.relative_to(folder).parts[:-1]):
            continue
        if path.is_dir() and path.suffix in (".safetensors", ".json", ".parquet"):
            raise WhyrecError(f"{path} is a folder where a file is expected; {fix}")
        if path.suffix == ".safetensors":
            check_weights(path, fix)
        elif path.suffix == ".json":
            read_json_file(path, fix)
        elif path.suffix == ".parquet":
            check_table(path, fix)


def check_sections(path: Path, config: dict, fix: str = FIX,
                   sections: Mapping[str, str | type] | None = None) -> None:
    """The sections of config.json its method's loader rebuilds are present, typed and valid.

    `sections` (key -> dataclass or its name in whyrec.config, or a plain type) defaults to the
    SECTIONS entry of the folder's `method`."""
    import dataclasses

    import whyrec.config as configs

    if sections is None:
        sections = SECTIONS.get(config.get("method"), {})
    for key, kind in sections.items():
        if key not in config:
            raise WhyrecError(f"{path} lacks \"{key}\"; {fix}")
        if isinstance(kind, str):
            _build(path, key, config[key], getattr(configs, kind), fix)
        elif dataclasses.is_dataclass(kind):
            _build(path, key, config[key], kind, fix)
        elif not isinstance(config[key], kind) or isinstance(config[key], bool):
            raise WhyrecError(f"{path}: \"{key}\" should be a JSON {kind.__name__}, got {config[key]!r}; {fix}")


def _build(path: Path, key: str, value, cls: type, fix: str):
    """`cls(**value)` with nested dataclass fields built first; WhyrecError naming `key` otherwise."""
    import dataclasses
    import typing

    if not isinstance(value, dict):
        raise WhyrecError(f"{path}: \"{key}\" should be a JSON object of {cls.__name__} fields, got {value!r}; {fix}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(value) - names)
    if unknown:
        raise WhyrecError(f"{path}: \"{key}\" has unknown field \"{unknown[0]}\" (written by another whyrec "
                          f"version?); {fix}")
    kwargs = {}
    for name, v in value.items():
        hint = hints.get(name)
        if dataclasses.is_dataclass(hint) and isinstance(v, dict):
            v = _build(path, f"{key}.{name}", v, hint, fix)
        elif not _fits(v, hint):
            raise WhyrecError(f"{path}: \"{key}.{name}\" has the wrong type ({v!r}); {fix}")
        kwargs[name] = v
    try:
        return cls(**kwargs)
    except (TypeError, ValueError, WhyrecError) as e:
        raise WhyrecError(f"{path}: \"{key}\": {' '.join(str(e).split())}; {fix}") from None


def _fits(value, hint) -> bool:
    """Whether a JSON value suits a simple field type (str, int, float, bool, X | None); other types pass."""
    import types
    import typing

    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return any(_fits(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint in (int, float):
        return isinstance(value, (int, float) if hint is float else int) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if typing.get_origin(hint) in (list, tuple) or hint in (list, tuple):
        return isinstance(value, (list, tuple))
    return True


def check_run(run: str | Path, fix: str = FIX, sections: Mapping[str, str | type] | None = None) -> Path:
    """The explainer folder of `--run`, with everything its loader reads checked first (for recommend,
    explain and evaluate; `check_artifact` is serve's stricter check). `sections`: as in check_sections."""
    path = explainer_dir(run)
    config = read_config(path / "config.json", fix) if (path / "config.json").is_file() else {}
    check_sections(path / "config.json", config, fix, sections)
    check_files(path, fix)
    return path


@contextmanager
def weights_fit(folder: Path, fix: str = FIX):
    """Inside: a weight file whose tensors do not fit the model its config describes is a WhyrecError."""
    try:
        yield
    except RuntimeError as e:
        text = str(e)
        if "size mismatch" not in text and "Error(s) in loading state_dict" not in text:
            raise
        first = re.search(r"size mismatch for (\S+): copying a param with shape \S*?(\[[^\]]*\]).*? from checkpoint, "
                          r"the shape in current model is \S*?(\[[^\]]*\])", text)
        detail = (f"{first.group(1)} is {first.group(2)} in the file, {first.group(3)} in the model" if first
                  else " ".join(text.split())[:200])
        raise WhyrecError(f"the weights in {folder} do not fit the model its config.json describes ({detail}); "
                          f"{fix}") from None
