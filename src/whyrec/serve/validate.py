"""Refuse to serve an artifact folder that is incomplete, has stray files or inconsistent id maps.

A server answers for hours from whatever it loaded, so a half-copied folder, a leftover
`checkpoint/` from an interrupted training or id maps that do not match the embeddings must
fail at start with one clear line, not as wrong recommendations later.
"""

from __future__ import annotations

from pathlib import Path

# The generic file checks live in whyrec.folders (core, for every loader); imported here for the
# per-method checks below and re-exported so `from whyrec.serve.validate import check_run` keeps working.
from whyrec.folders import (  # noqa: F401
    FIX,
    SECTIONS,
    SKIPPED_DIRS,
    check_files,
    check_run,
    check_sections,
    check_table,
    check_weights,
    existing_folder,
    explainer_dir,
    read_config,
    read_json_file,
    weights_fit,
)
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


def _count(config: dict, key: str, path: Path) -> int:
    value = config.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise WhyrecError(f"{path}: \"{key}\" should be a count of rows, got {value!r}; {FIX}")
    return value
