"""Refuse to serve an artifact folder that is incomplete, has stray files or inconsistent id maps.

A server answers for hours from whatever it loaded, so a half-copied folder, a leftover
`checkpoint/` from an interrupted training or id maps that do not match the embeddings must
fail at start with one clear line, not as wrong recommendations later.
"""

from __future__ import annotations

import json
import re
from contextlib import contextmanager
from pathlib import Path

from whyrec.utils import WhyrecError

# What each method's training writes: (required, optional, subfolders). XRec: `save_explainer` and
# `save_lightgcn`; GaVaMoE: `save_gavamoe`; PEPLER: `save_pepler` (+ `evaluate_pepler`'s outputs,
# written beside the run by default); RecExplainer/RecAlpaca: the HF Trainer keeps `checkpoints/`.
LAYOUTS = {
    "xrec": (("config.json", "adapter_model.safetensors", "items.parquet", "users.parquet"),
             ("README.md", "run_config.json", "training_log.json"), ("encoder",)),
    "gavamoe": (("config.json", "adapter_model.safetensors", "items.parquet", "pairs.parquet"),
                ("README.md", "run_config.json", "training_log.json"), ("vae",)),
    "pepler": (("config.json", "prompt.safetensors", "user2idx.json", "item2idx.json", "features.json"),
               ("README.md", "run_config.json", "training_log.json", "metrics.json", "predictions.jsonl"), ("lm",)),
    "recexplainer": (("config.json", "connectors.safetensors", "train_log.json"),
                     ("README.md", "run_config.json", "adapter_config.json", "adapter_model.safetensors"),
                     ("target", "checkpoints")),
    "recalpaca": (("config.json", "adapter_config.json", "adapter_model.safetensors"),
                  ("README.md", "run_config.json", "train_log.json"), ("checkpoints",)),
}
# Id-mapped sub-artifacts: subfolder -> (required, optional) files; their config.json gives the row counts.
ENCODER_REQUIRED = ("config.json", "model.safetensors", "user2idx.json", "item2idx.json")
ENCODER_OPTIONAL = ("README.md", "run_config.json", "metrics.json", "titles.json")


def explainer_dir(run: str | Path) -> Path:
    """The explainer folder of a run folder (`RUN/explainer`) or the folder itself."""
    path = existing_folder(run)
    return path / "explainer" if (path / "explainer").is_dir() else path


def _check_listing(folder: Path, required: tuple, optional: tuple, subdirs: tuple = ()) -> None:
    names = {p.name for p in folder.iterdir()}
    missing = [f for f in required if f not in names]
    folders = [f for f in required if (folder / f).is_dir()]
    if folders:
        raise WhyrecError(f"{folder / folders[0]} is a folder where a file is expected; re-run `whyrec train "
                          "explainer` or copy the whole folder")
    from whyrec.outputs import MARKER  # what produced the folder: every output folder carries one

    extra = sorted(names - set(required) - set(optional) - set(subdirs) - {MARKER})
    if missing:
        raise WhyrecError(f"{folder} is missing {', '.join(missing)}; re-run `whyrec train explainer` "
                          "or copy the whole folder")
    if extra:
        raise WhyrecError(f"{folder} has unexpected files {', '.join(extra)} (an interrupted training or copy?); "
                          f"a servable folder holds only {', '.join(required + optional + subdirs)}")


def _id_map(path: Path, n_rows: int, kind: str) -> dict:
    mapping = read_json_file(path, "re-train the encoder or copy the whole folder again")
    if not isinstance(mapping, dict) or sorted(mapping.values()) != list(range(n_rows)):
        raise WhyrecError(f"{path} does not map {kind} ids onto rows 0..{n_rows - 1} of the embeddings "
                          f"({len(mapping) if isinstance(mapping, dict) else 0} ids); the id map and "
                          "model.safetensors come from different trainings")
    return mapping


def check_artifact(run: str | Path) -> Path:
    """Validate the servable folder under `run` (any method in LAYOUTS); return its path or raise WhyrecError."""
    path = explainer_dir(run)
    if not (path / "config.json").is_file():
        raise WhyrecError(f"{path} has no config.json; it is not an explainer folder")
    config = read_config(path / "config.json")
    method = config.get("method")
    if method not in LAYOUTS:
        raise WhyrecError(f"{path} holds a {method or 'unknown'} run; `whyrec serve` serves folders of "
                          f"{', '.join(LAYOUTS)} (from `whyrec train explainer`)")
    required, optional, subdirs = LAYOUTS[method]
    _check_listing(path, required, optional, subdirs)
    check_sections(path / "config.json", config)
    check_files(path)  # corrupt weights, JSON or tables fail here, before a model is built
    CHECKS[method](path, config)
    return path


def _check_xrec(path: Path, config: dict) -> None:
    import pandas as pd

    users, items = _check_ids(path / "encoder", "user_emb", "item_emb")
    known_items = set(pd.read_parquet(path / "items.parquet", columns=["item"])["item"].astype(str))
    known_users = set(pd.read_parquet(path / "users.parquet", columns=["user"])["user"].astype(str))
    for kind, ids, table in (("item", items, known_items), ("user", users, known_users)):
        stray = [i for i in ids if i not in table]
        if table and stray:  # an empty table (no profiles in the data) is legal: prompts fall back to ids
            raise WhyrecError(f"{len(stray)} {kind} ids of encoder/{kind}2idx.json (e.g. {stray[0]!r}) are not in "
                              f"{path / (kind + 's.parquet')}; the encoder was trained on other data")


def _check_gavamoe(path: Path, config: dict) -> None:
    if config.get("vae") != "vae":
        raise WhyrecError(f"{path / 'config.json'} points its VAE at {config.get('vae')!r}; "
                          "serve needs the VAE folder copied into vae/ (re-train with a `whyrec cluster` folder)")
    _check_ids(path / "vae", "user_emb.weight", "item_emb.weight")


def _check_pepler(path: Path, config: dict) -> None:
    if config.get("lm_saved") and not (path / "lm").is_dir():
        raise WhyrecError(f"{path} is missing lm/ (its config.json says the LM was fine-tuned); copy the whole folder")
    for kind in ("user", "item"):
        _id_map(path / f"{kind}2idx.json", _count(config, f"n_{kind}s", path / "config.json"), kind)


def _check_recexplainer(path: Path, config: dict) -> None:
    if config.get("config", {}).get("lora", {}).get("enabled", True):
        missing = [f for f in ("adapter_config.json", "adapter_model.safetensors") if not (path / f).is_file()]
        if missing:
            raise WhyrecError(f"{path} is missing {', '.join(missing)} (the run trained a LoRA); copy the whole folder")
    if config.get("target") != "target":
        raise WhyrecError(f"{path / 'config.json'} points its target model at {config.get('target')!r}; "
                          "serve needs a target folder copied into target/")
    # The target's own resume checkpoint/ is copied along by `save_recexplainer`: legitimate there.
    _check_ids(path / "target", None, None, subdirs=("checkpoint",))


def _check_recalpaca(path: Path, config: dict) -> None:
    folders = [Path(s) for s in config.get("instructions") or [] if (Path(s) / "instructions.jsonl").is_file()]
    if not folders:
        raise WhyrecError(f"{path} was trained on {', '.join(config.get('instructions') or ['nothing'])}, which holds "
                          "no instructions.jsonl; serve builds each user's prompt from that `whyrec data "
                          "instructions` folder, so it must stay where training found it")


def _check_ids(folder: Path, user_rows: str | None, item_rows: str | None, subdirs: tuple = ()) -> tuple[dict, dict]:
    """Listing and id maps of an encoder/VAE/target subfolder; rows from the tensors, else config.json."""
    if not folder.is_dir():
        raise WhyrecError(f"{folder.parent} is missing {folder.name}/; re-run `whyrec train explainer` "
                          "or copy the whole folder")
    _check_listing(folder, ENCODER_REQUIRED, ENCODER_OPTIONAL, subdirs)
    if user_rows is not None:
        from safetensors import safe_open

        with safe_open(str(folder / "model.safetensors"), "pt") as f:
            rows = {kind: f.get_slice(key).get_shape()[0] for kind, key in (("user", user_rows), ("item", item_rows))}
    else:
        config = read_config(folder / "config.json")
        rows = {kind: _count(config, f"n_{kind}s", folder / "config.json") for kind in ("user", "item")}
    return tuple(_id_map(folder / f"{kind}2idx.json", rows[kind], kind) for kind in ("user", "item"))


CHECKS = {"xrec": _check_xrec, "gavamoe": _check_gavamoe, "pepler": _check_pepler,
          "recexplainer": _check_recexplainer, "recalpaca": _check_recalpaca}


# ------------------------------------------------------------------ files any loader reads (serve or not)

FIX = "re-train it (`whyrec train explainer`) or copy the whole folder again"
# Sections of each method's config.json that loading rebuilds: key -> dataclass (or plain type).
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


def _count(config: dict, key: str, path: Path) -> int:
    value = config.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise WhyrecError(f"{path}: \"{key}\" should be a count of rows, got {value!r}; {FIX}")
    return value


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


def check_sections(path: Path, config: dict, fix: str = FIX) -> None:
    """The sections of config.json its method's loader rebuilds are present, typed and valid."""
    import whyrec.config as configs

    for key, kind in SECTIONS.get(config.get("method"), {}).items():
        if key not in config:
            raise WhyrecError(f"{path} lacks \"{key}\"; {fix}")
        if isinstance(kind, str):
            _build(path, key, config[key], getattr(configs, kind), fix)
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


def check_run(run: str | Path, fix: str = FIX) -> Path:
    """The explainer folder of `--run`, with everything its loader reads checked first (for recommend,
    explain and evaluate; `check_artifact` is serve's stricter check)."""
    path = explainer_dir(run)
    config = read_config(path / "config.json", fix) if (path / "config.json").is_file() else {}
    check_sections(path / "config.json", config, fix)
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
