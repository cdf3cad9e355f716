"""The method interface: what one registered method object offers (torch-free).

Each method package defines `METHOD` in `methods/<name>/method.py`, registered in
`whyrec.registry.METHODS` ("whyrec.methods.<name>.method:METHOD"). The CLI, the API and the
workflows reach a method only through this object, never by comparing its name. A method object
is a plain class (no base class to inherit from): it has the attributes and methods of `Method`.

`method.py` imports only this module and torch-free configs; `train` (and later `load`) import
the method's heavy modules inside the call, so `import whyrec.cli` / `whyrec.registry` stay light.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields, replace
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from whyrec.config import GenerationConfig, ModelConfig, TrainConfig, given_fields, mark_given
from whyrec.folders import FIX, check_files, check_sections, read_config, read_json_file
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
    # Optional (not checked by isinstance, so a method without them still is a Method):
    #   train_fields: frozenset[str] -- the TrainConfig fields its `train` honours; `check_train`
    #       refuses a TrainConfig setting any other field (`fields_set`; absent: none honoured);
    #   train_instead: dict[str, str] -- per refused field, what to use instead (its error message);
    #   generation_fields / generation_instead: the same for GenerationConfig (`check_generation`), but
    #       absent means every field is honoured (the LLM methods decode through whyrec.llm.generate);
    #   benchmark_uses_generation: bool -- False for a method that decodes its own way (PEPLER: its
    #       own length, greedily), so the benchmark neither passes nor records --generation for it
    #       (absent: True; read it with `uses_generation`).

    def train(self, data: str, out: str, *, encoder: str | None = None, model: ModelConfig,
              train: TrainConfig, config: Any, resume: bool = True, overwrite: bool = False) -> dict:
        """Train into the folder `out` (config.json names the method); return the training log.

        data: the `--data` argument as given (a dataset folder, or the method's own kind of input);
        encoder: `--encoder` (WhyrecError if the method needs one and it is None); config: an
        instance of `config_class`; train: the shared TrainConfig. A method honours the fields it
        names in `train_fields` and refuses any other given (`check_train`, `fields_set`):
        no `--train.*` option is silently ignored.
        """
        ...

    def check(self, folder: Path) -> None:
        """Serve-strength check of a trained folder (the explainer folder itself, whose config.json
        names this method): layout, config sections, readable files, id maps; WhyrecError on any
        problem, before any model is built (`whyrec.serve.validate.check_artifact` calls it)."""
        ...

    def load(self, folder: Path, device: str = "auto", **options) -> Any:
        """The checked folder as a served model (`methods/<name>/served.py`). Options: `generation`
        (a GenerationConfig or None); an unknown option is a WhyrecError.

        Optional on the served model, for `whyrec.benchmark_ablations`: `cf_ablations` (a class
        attribute or property: the kinds of `whyrec.methods.cf_ablation.KINDS` it supports) and
        `cf_ablation(kind, seed)`, a context manager inside which explanations are generated with
        the collaborative-filtering input (or the prompt's profiles) perturbed, the model restored
        exactly when it ends; its docstring says what `no-cf` removes or zeroes. A model without
        them is reported as having no CF input to ablate."""
        ...


def uses_generation(method) -> bool:
    """Whether `whyrec benchmark explain`'s --generation settings apply to `method`'s outputs."""
    return bool(getattr(method, "benchmark_uses_generation", True))


def require_encoder(encoder: str | None, message: str) -> str:
    """`encoder`, or WhyrecError(`message`) if it is None (the CLI's "--method M needs --encoder" rule)."""
    if encoder is None:
        raise WhyrecError(message)
    return encoder


TRAIN_FIELDS = frozenset(f.name for f in fields(TrainConfig))
"""Every TrainConfig field (what a method training through `whyrec.llm.trainer.train_loop` honours)."""


def fields_set(cfg, cls) -> list[str]:
    """The fields of config `cfg` (a `cls` or None: none) the user set, in field order: those away from
    `cls()`'s defaults, and those the command line or a --config file gave at any value
    (`whyrec.config.given_fields`), so `--train.batch_size 8` reaches PEPLER although 8 is
    TrainConfig's default. A config built in code carries no such mark: there a field at its default
    counts as not set (the method then uses its own default)."""
    if cfg is None:
        return []
    default, given = cls(), given_fields(cfg)
    return [f.name for f in fields(cls) if f.name in given or getattr(cfg, f.name) != getattr(default, f.name)]


def train_set(train: TrainConfig | None) -> list[str]:
    """The TrainConfig fields `train` sets (see `fields_set`)."""
    return fields_set(train, TrainConfig)


def train_asked(train: TrainConfig, budget: TrainConfig) -> TrainConfig:
    """What a caller running methods at its own `budget` (the benchmark's) asks of them: `train`'s
    fields the user gave or set away from `budget`, the rest at TrainConfig's defaults, all of them
    marked given, so `check_train` refuses what a method does not honour but never the budget itself."""
    given = given_fields(train)
    asked = TrainConfig(**{f.name: getattr(train, f.name) for f in fields(TrainConfig)
                           if f.name in given or getattr(train, f.name) != getattr(budget, f.name)})
    mark_given(asked, given)
    return asked


def given_train_key(method, config, train: TrainConfig | None) -> dict:
    """A cache-key entry naming the `--train.*` fields given at TrainConfig's defaults, when they change
    what `method` trains with (its `with_train`); {} otherwise, so a key written before such fields
    counted as given stays valid exactly where the training it stands for is the same."""
    with_train = getattr(method, "with_train", None)
    if with_train is None or train is None or not given_fields(train):
        return {}
    if with_train(config, train) == with_train(config, replace(train)):  # replace drops the marks
        return {}
    return {"train_given": train_set(train)}


def generation_set(gen: GenerationConfig | None) -> list[str]:
    """The GenerationConfig fields `gen` sets (see `fields_set`)."""
    return fields_set(gen, GenerationConfig)


def _refuse(method, section: str, refused: list[str]) -> None:
    """One line naming the first refused `--section.*` field, what to use instead, and the others."""
    if refused:
        instead = getattr(method, f"{section}_instead", {}).get(refused[0]) or f"its own options: --{method.name}.*"
        more = "".join(f", nor --{section}.{f}" for f in refused[1:])
        raise WhyrecError(f"--method {method.name} does not use --{section}.{refused[0]} ({instead}){more}; "
                          "leave it at its default")


def check_train(method, train: TrainConfig | None) -> None:
    """WhyrecError (one line, naming the field and what to use instead) if `train` sets a field
    `method` does not honour (not in its `train_fields`); the start of every method's `train`."""
    honoured = getattr(method, "train_fields", frozenset())
    _refuse(method, "train", [f for f in train_set(train) if f not in honoured])


def check_generation(method, gen: GenerationConfig | None, honoured: frozenset[str] | None = None) -> None:
    """WhyrecError (one line, naming every refused field) if `gen` sets a field `method`'s decoder does
    not honour: `honoured` if given (a path of the method that honours fewer), else the method's
    `generation_fields` (absent: all). The `check_train` of --generation.*: none is silently ignored."""
    if honoured is None:
        honoured = getattr(method, "generation_fields", None)
    if honoured is not None:
        _refuse(method, "generation", [f for f in generation_set(gen) if f not in honoured])


def decoding_key(gen: GenerationConfig, implicit: GenerationConfig, named: tuple[str, ...]) -> dict:
    """`gen` for a cache key first written when only the `named` fields reached the decoder: those,
    plus every other field away from `implicit` (what the decoder used for it then), so rows cached
    then stay valid while any other setting now given still changes the key."""
    return {f.name: getattr(gen, f.name) for f in fields(GenerationConfig)
            if f.name in named or getattr(gen, f.name) != getattr(implicit, f.name)}


def train_values(train: TrainConfig | None, pairs: Mapping[str, str]) -> dict[str, tuple[str, Any]]:
    """`apply_train`'s values: for each TrainConfig field in `pairs` ({train field: config field})
    that `train` sets, {config field: ("--train.<field> <value>", value)}."""
    given = train_set(train)
    return {own: (f"--train.{name} {getattr(train, name)}", getattr(train, name))
            for name, own in pairs.items() if name in given}


def apply_train(method: str, config, values: Mapping[str, tuple[str, Any]]):
    """`config` with fields replaced by the TrainConfig's values: `values` maps a field of `config`
    to (the option that sets it, e.g. "--train.lr 0.0005", its value). One source of truth: if
    `config` itself sets that field (given, or away from its class default) to another value, WhyrecError
    naming both options. The result is validated again (`replace` runs `__post_init__`)."""
    default, own_given = type(config)(), given_fields(config)
    changes = {}
    for name, (option, value) in values.items():
        own = getattr(config, name)
        if (name in own_given or own != getattr(default, name)) and own != value:
            raise WhyrecError(f"{option} and --{method}.{name} {own} disagree; give only one of them")
        changes[name] = value
    return replace(config, **changes) if changes else config


def require_fsdp_settings(method: str, train: TrainConfig | None, fsdp: str | None) -> None:
    """`fsdp` means FSDP sharding under torchrun for every method; an HF-Trainer method turns it on with
    its settings file (`--<method>.fsdp`), so --train.fsdp true alone is refused, naming the file."""
    if "fsdp" in train_set(train) and not fsdp:
        raise WhyrecError(f"--method {method} shards through the HF Trainer's FSDP, which needs a settings "
                          f"file: give --{method}.fsdp configs/distributed/fsdp.json (it turns FSDP on)")


def served_options(method: str, options: dict, also: tuple[str, ...] = ()) -> GenerationConfig | None:
    """The `generation` option of `Method.load` (None if not given); WhyrecError naming any option
    other than generation and the method's own `also`."""
    unknown = sorted(set(options) - {"generation", *also})
    if unknown:
        takes = ", ".join(f"{o}=" for o in ("generation", *also))
        raise WhyrecError(f"a {method} run takes no option {unknown[0]!r} (--{unknown[0]}); it takes {takes}")
    return options.get("generation")


# ---------------------------------------------------------------- serve-strength folder checks
# Generic pieces of every method's `check` (file layout, id maps); each method's `check.py` names its
# layout, config sections and extra rules. Torch-free: safetensors/pandas are imported inside.

# Id-mapped sub-artifacts: subfolder -> (required, optional) files; their config.json gives the row counts.
ENCODER_REQUIRED = ("config.json", "model.safetensors", "user2idx.json", "item2idx.json")
# latent.png: the VAE-GMM's cluster plot, copied with the VAE into every GaVaMoE folder
ENCODER_OPTIONAL = ("README.md", "run_config.json", "metrics.json", "titles.json", "latent.png")


def check_layout(path: Path, layout: tuple[tuple, tuple, tuple], sections: Mapping[str, str | type]) -> dict:
    """The listing of `path` (layout: required files, optional files, subfolders), its config.json
    sections and every weight/JSON/table file (corrupt ones fail here, before a model is built);
    returns config.json."""
    config = read_config(path / "config.json")
    required, optional, subdirs = layout
    check_listing(path, required, optional, subdirs)
    check_sections(path / "config.json", config, sections=sections)
    check_files(path)
    return config


def check_listing(folder: Path, required: tuple, optional: tuple, subdirs: tuple = ()) -> None:
    """`folder` holds every `required` file and nothing outside required/optional/subdirs (and the output marker)."""
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


def check_id_map(path: Path, n_rows: int, kind: str) -> dict:
    """The id -> row map in `path`; WhyrecError unless it maps onto rows 0..n_rows-1 exactly."""
    mapping = read_json_file(path, "re-train the encoder or copy the whole folder again")
    if not isinstance(mapping, dict) or sorted(mapping.values()) != list(range(n_rows)):
        raise WhyrecError(f"{path} does not map {kind} ids onto rows 0..{n_rows - 1} of the embeddings "
                          f"({len(mapping) if isinstance(mapping, dict) else 0} ids); the id map and "
                          "model.safetensors come from different trainings")
    return mapping


def check_ids(folder: Path, user_rows: str | None, item_rows: str | None, subdirs: tuple = ()) -> tuple[dict, dict]:
    """Listing and id maps of an encoder/VAE/target subfolder; rows from the tensors, else config.json."""
    if not folder.is_dir():
        raise WhyrecError(f"{folder.parent} is missing {folder.name}/; re-run `whyrec train explainer` "
                          "or copy the whole folder")
    check_listing(folder, ENCODER_REQUIRED, ENCODER_OPTIONAL, subdirs)
    if user_rows is not None:
        from safetensors import safe_open

        with safe_open(str(folder / "model.safetensors"), "pt") as f:
            rows = {kind: f.get_slice(key).get_shape()[0] for kind, key in (("user", user_rows), ("item", item_rows))}
    else:
        config = read_config(folder / "config.json")
        rows = {kind: row_count(config, f"n_{kind}s", folder / "config.json") for kind in ("user", "item")}
    return tuple(check_id_map(folder / f"{kind}2idx.json", rows[kind], kind) for kind in ("user", "item"))


def row_count(config: dict, key: str, path: Path) -> int:
    """config[key] as a row count (a non-negative int); WhyrecError naming the file otherwise."""
    value = config.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise WhyrecError(f"{path}: \"{key}\" should be a count of rows, got {value!r}; {FIX}")
    return value
