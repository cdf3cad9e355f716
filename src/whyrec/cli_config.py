"""What one `whyrec` command line says: its command words, the options of that command (with their
types, config dataclasses expanded) and the keys of its --config files, to word error messages with."""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import types
import typing
from pathlib import Path

from whyrec.cli_os import os_reason

# ------------------------------------------------------------------ which command, which options


def command_path(argv: list[str], commands: dict) -> tuple[list[str], object]:
    """(['train', 'explainer'], the function) for the subcommand words in argv; the function may be a dict."""
    node: object = commands
    path: list[str] = []
    for tok in argv:
        if not isinstance(node, dict):
            break
        if tok in node:
            path.append(tok)
            node = node[tok]
    return path, node


def option_types(func) -> dict[str, object]:
    """Dotted option name -> type hint, for a command function (config dataclasses expanded)."""
    table: dict[str, object] = {}
    try:
        hints = typing.get_type_hints(func)
        for name in inspect.signature(func).parameters:
            _add_option(table, name, hints.get(name, object))
    except Exception:  # an unresolvable annotation: fewer names to suggest, the messages stay generic
        pass
    return table


def _add_option(table: dict, name: str, hint: object) -> None:
    table[name] = hint
    cls = _dataclass_in(hint)
    if cls is None:
        return
    fields = typing.get_type_hints(cls)  # config dataclasses import every type they name
    for f in dataclasses.fields(cls):
        _add_option(table, f"{name}.{f.name}", fields.get(f.name, object))


def _dataclass_in(hint: object) -> type | None:
    """The dataclass in `X` or `X | None`, else None."""
    return next((c for c in (hint, *typing.get_args(hint)) if isinstance(c, type) and dataclasses.is_dataclass(c)),
                None)


def describe_type(hint: object) -> str:
    """What a user has to type for an option of this type, in words."""
    if hint is type(None):
        return "null"
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(describe_type(h) for h in typing.get_args(hint))
    words = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    if hint in words:
        return words[hint]
    if _dataclass_in(hint) is not None:
        return "a mapping of its fields (or a YAML file of them)"
    return "a list" if typing.get_origin(hint) in (list, tuple) else getattr(hint, "__name__", str(hint))

# ------------------------------------------------------------------ what the command line says


@dataclasses.dataclass
class Invocation:
    """The command words, its options and the --config files of one argv (to word messages with)."""

    argv: list[str]
    path: list[str]  # ['train', 'explainer']
    node: object  # the command function, or a dict of subcommands when argv stops early
    options: dict[str, object]  # dotted option name -> type hint
    configs: list[tuple[Path, str]]  # (file, the command words its keys are nested under, as 'explainer.')

    @classmethod
    def of(cls, argv: list[str], commands: dict) -> Invocation:
        path, node = command_path(argv, commands)
        configs, seen = [], 0
        for pos, tok in enumerate(argv):
            if seen < len(path) and tok == path[seen]:
                seen += 1
            elif tok == "--config" and pos + 1 < len(argv) or tok.startswith("--config="):
                file = tok.split("=", 1)[1] if "=" in tok else argv[pos + 1]
                configs.append((Path(file), "".join(w + "." for w in path[seen:])))
        return cls(argv, path, node, option_types(node) if callable(node) else {}, configs)

    def relative(self, key: str) -> str:
        """A parser key without the command words ('train.explainer.train.lr' -> 'train.lr')."""
        prefix = "".join(w + "." for w in self.path)
        return key[len(prefix):] if key.startswith(prefix) else key

    def given(self, option: str) -> bool:
        return any(tok == f"--{option}" or tok.startswith(f"--{option}=") for tok in self.argv)

    def config_keys(self) -> list[tuple[Path, str | None, list[str]]]:
        """(file, problem, its option keys relative to the command) for each --config file."""
        out = []
        for file, prefix in self.configs:
            content, problem = load_yaml(file)
            if problem is None and content is not None and not isinstance(content, dict):
                problem = (f"config file {file} holds a {type(content).__name__}, not `option: value` lines "
                           "(a YAML mapping such as `train: {lr: 0.001}`)")
            keys = [k[len(prefix):] for k in _flat_keys(content) if k.startswith(prefix)]
            keys += [k for k in _flat_keys(content) if not k.startswith(prefix) and not prefix.startswith(k + ".")]
            out.append((file, problem, keys))
        return out

    def config_problem(self) -> str | None:
        return next((problem for _, problem, _ in self.config_keys() if problem), None)

    def unknown_config_key(self) -> str | None:
        """'unknown key ... in FILE' for the first key of a --config file that is not an option."""
        for file, problem, keys in self.config_keys():
            if problem:
                return problem
            for key in keys:
                parent = key.rpartition(".")[0]
                if key in self.options or key == "config" or (parent and _dataclass_in(self.options.get(parent)) is None):
                    continue  # known, or inside a free-form value (a dict-typed option)
                close = closest(key, self.options)
                return f"unknown key '{key}' in config file {file}" + (f"; did you mean '{close}'?" if close else "")
        return None

    def file_with_key(self, key: str) -> Path | None:
        return next((file for file, _, keys in self.config_keys() if key in keys), None)


def load_yaml(path: Path) -> tuple[object, str | None]:
    """(content, None) of a YAML config file, or (None, why it cannot be read)."""
    import yaml

    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        return None, f"config file {path} is not UTF-8 text (byte {e.start}); save it as UTF-8"
    except OSError as e:
        return None, f"config file {path}: {os_reason(e)}"
    try:
        return yaml.safe_load(text), None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        return None, f"config file {path} is not valid YAML: {problem}{where}; fix the YAML syntax"


def _flat_keys(content: object, prefix: str = "") -> list[str]:
    items = content.items() if isinstance(content, dict) else ()
    return [key for k, v in items for key in (f"{prefix}{k}", *_flat_keys(v, f"{prefix}{k}."))]


def closest(name: str, names) -> str | None:
    """The most similar of `names` among `name`'s siblings ('train.lrr' -> 'train.lr'), or None."""
    parent, _, leaf = name.rpartition(".")
    siblings = {n.rpartition(".")[2]: n for n in names if n.rpartition(".")[0] == parent}
    close = difflib.get_close_matches(leaf, list(siblings), n=1, cutoff=0.6)
    return siblings[close[0]] if close else None
