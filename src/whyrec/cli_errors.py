"""Turn anything that stops a `whyrec` command into one `whyrec: error:` line and an exit code.

jsonargparse prints the whole usage block (100+ lines for `train explainer`) before an error, and
for some config-file mistakes only a bare key (`error: 'train'`); `parser_class()` raises
`UsageError` instead and `usage_line` names the option or config key and what it expects.
Exit 2: anything a user can cause (options, files, OS refusals); 1: an unexpected exception.
"""

from __future__ import annotations

import dataclasses
import difflib
import errno
import inspect
import os
import re
import sys
import types
import typing
from pathlib import Path

from whyrec.utils import WhyrecError

USER_ERROR, BUG = 2, 1
DEBUG_ENV = "WHYREC_DEBUG"


class UsageError(Exception):
    """The command line or a config file does not fit the command's options (jsonargparse's complaint)."""

    def __init__(self, message: str, cause: BaseException | None = None):
        super().__init__(message)
        self.message, self.cause = message, cause


class ConfigValueError(Exception):
    """A config dataclass refused its values in `__post_init__` (e.g. "lr must be > 0 (got -1.0)")."""

    def __init__(self, cls: type, message: str, field: str | None = None):
        super().__init__(message)
        self.cls, self.message, self.field = cls, message, field


def parser_class() -> type:
    """jsonargparse's ArgumentParser, raising `UsageError` instead of printing usage and exiting."""
    from jsonargparse import ArgumentParser

    class WhyrecParser(ArgumentParser):
        def error(self, message: str, ex: Exception | None = None) -> typing.NoReturn:
            raise UsageError(message, ex)

    return WhyrecParser


def config_instantiators() -> list[tuple]:
    """Build config dataclasses through `_build`, so a validation error keeps its class (to name the option)."""
    return [(_build, object, True)]


def _build(cls: type, *args, **kwargs):
    if not dataclasses.is_dataclass(cls):
        return cls(*args, **kwargs)
    try:
        return cls(*args, **kwargs)
    except (ValueError, WhyrecError) as e:  # config.ConfigError says which class and field it means
        raise ConfigValueError(getattr(e, "config", cls), str(e), getattr(e, "field", None)) from e


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


# ------------------------------------------------------------------ the one line


def usage_line(err: UsageError, inv: Invocation) -> str:
    """One line for jsonargparse's complaint: the option or config key at fault and what it expects."""
    msg = err.message.strip()
    if m := re.match(r'Parser key "([^"]+)":\s*(.*)', msg, re.S):
        key, detail = inv.relative(m.group(1)), m.group(2)
        if key == "config":
            missing = re.search(r"File does not exist: '([^']*)'", detail)
            return f"--config {missing.group(1)}: no such file" if missing else \
                inv.config_problem() or f"--config: {_one_line(detail)}"
        return _value_line(key, detail, inv)
    if m := re.match(r"unrecognized arguments: (.*)", msg, re.S):
        return _unrecognized_line(m.group(1).split(), inv.options)
    if msg.startswith(("Problems parsing config", "Unexpected config")):
        return inv.config_problem() or f"cannot parse a config value: {_one_line(msg.partition(':')[2])}"
    if m := re.match(r"the following arguments are required: (.*)", msg):
        return "missing required option " + ", ".join(f"--{inv.relative(n.strip())}" for n in m.group(1).split(","))
    if m := re.match(r"argument (--\S+): expected one argument", msg):
        return f"{m.group(1)} needs a value"
    if isinstance(inv.node, dict) and re.search(r"invalid choice|subcommand", msg):
        choices = list(inv.node)
        where = " ".join(["whyrec", *inv.path])
        wrong = re.search(r"invalid choice: '([^']*)'", msg)
        if not wrong:
            return f"`{where}` needs a command: one of {', '.join(choices)}"
        close = difflib.get_close_matches(wrong.group(1), choices, n=1, cutoff=0.6)
        return (f"unknown command '{wrong.group(1)}' for `{where}`; choose one of {', '.join(choices)}"
                + (f"; did you mean '{close[0]}'?" if close else ""))
    if m := re.search(r"does not accept option '([^']+)'|Option '([^']+)' is not accepted", msg):
        return inv.unknown_config_key() or _unknown_option(inv.relative(m.group(1) or m.group(2)), inv.options)
    if isinstance(err.cause, KeyError) or re.fullmatch(r"'[^']*'", msg):
        # jsonargparse 4.x loses the key of an unknown config entry under nested subcommands
        return inv.unknown_config_key() or f"unknown option or config key {msg}"
    return _one_line(msg)


def _value_line(key: str, detail: str, inv: Invocation) -> str:
    if m := re.search(r"NestedArg\(key='([^']+)'", detail):  # --judge.typo where judge is `X | None`
        return _unknown_option(f"{key}.{m.group(1)}", inv.options)
    value = re.findall(r"(?:Given|Got) value: (.*)", detail)
    got = f", got {value[-1].strip()!r}" if value else ""
    if key in inv.options:
        expected = describe_type(inv.options[key])
    else:
        expected = "; ".join(re.findall(r"Expected an? ([^.\n]+)", detail)[:2]) or _one_line(detail)
    return f"--{key}{_source(key, inv)}: expected {expected}{got}"


def _source(option: str, inv: Invocation) -> str:
    """' (key ... in config file F)' when the value came from a --config file, not the command line."""
    file = None if inv.given(option) else inv.file_with_key(option)
    return f" (key '{option}' in config file {file})" if file else ""


def _unknown_option(name: str, options: dict) -> str:
    close = closest(name, options)
    return f"unknown option --{name}" + (f"; did you mean --{close}?" if close else "")


def _unrecognized_line(tokens: list[str], options: dict) -> str:
    flags = [t for t in tokens if t.startswith("-")]
    if not flags:
        return f"unexpected argument {' '.join(tokens)!r}; options are given as --name value"
    return _unknown_option(flags[0].split("=", 1)[0].lstrip("-"), options)


def config_value_line(err: ConfigValueError, inv: Invocation) -> str:
    """'--train.lr: lr must be > 0 (got -1.0)': the option of the dataclass field the message names."""
    groups = [name for name, hint in inv.options.items() if _dataclass_in(hint) is err.cls]
    if not groups:
        return _one_line(err.message)
    names = [f.name for f in dataclasses.fields(err.cls)]
    hits = sorted((m.start(), n) for n in names if (m := re.search(rf"\b{re.escape(n)}\b", err.message)))
    field = err.field if err.field in names else hits[0][1] if hits else None
    option = f"{groups[0]}.{field}" if field else groups[0]
    return f"--{option}{_source(option, inv)}: {_one_line(err.message)}"


# ------------------------------------------------------------------ everything else


_OS_FIXES = {  # what to do about it (the OS's own reason is printed before)
    **dict.fromkeys((errno.EACCES, errno.EPERM), "check its permissions or choose another location"),
    errno.EEXIST: "remove it or choose another path",
    errno.EISDIR: "pass a file, not a folder",
    errno.ENOTDIR: "a part of the path is a file, not a folder; check the path",
    errno.ENOENT: "check the path",
    **dict.fromkeys((errno.ENOSPC, errno.EDQUOT), "free some space or write somewhere else"),
    errno.EFBIG: "the file outgrew the size limit (ulimit -f) or the file system's; write somewhere else",
    errno.EROFS: "write somewhere else",
    errno.ENAMETOOLONG: "choose a shorter path",
    errno.ENOTEMPTY: "empty it or choose another path",
    errno.EMFILE: "raise the open-file limit (ulimit -n)",
    errno.EADDRINUSE: "another program holds the port; choose another --port",
    errno.EADDRNOTAVAIL: "the address is not on this machine; use --host 127.0.0.1 or one of its addresses",
}


def _errno(e: OSError) -> int | None:
    """The errno, also when a library only wrote it into the message (pyarrow: '[errno 27] File too large')."""
    found = re.search(r"\[errno (\d+)\]", str(e), re.I)
    return e.errno if e.errno is not None else int(found.group(1)) if found else None


def os_reason(e: OSError) -> str:
    """'<reason>; <fix>' of an OSError, without its path."""
    reason = (e.strerror or _one_line(str(e)) or type(e).__name__).rstrip(".")
    fix = _OS_FIXES.get(_errno(e))
    return f"{reason[:1].lower()}{reason[1:]}; {fix}" if fix else reason


def os_error_line(e: OSError, argv: list[str] = ()) -> str:
    """'<path>: <reason>; <fix>' (the path first, as the OS reports it)."""
    paths = [str(p) for p in (e.filename, e.filename2) if p is not None]
    if not paths and _errno(e) in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT) and "--out" in argv[:-1]:
        paths = [f"writing --out {argv[argv.index('--out') + 1]}"]  # a full disk reports no file name
    where = " -> ".join(paths)
    return f"{where}: {os_reason(e)}" if where else os_reason(e)


def _one_line(text: str, limit: int = 400) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def report(exc: BaseException, argv: list[str], commands: dict) -> int:
    """Print the one line for `exc` on stderr; return the exit code (2: the user can fix it, 1: a bug)."""
    try:
        exc, line, hint, code = describe(exc, argv, commands)
    except Exception:  # wording the message failed: the error itself still goes out on one line
        line, hint = _one_line(str(exc)) or type(exc).__name__, None
        code = USER_ERROR if isinstance(exc, (UsageError, ConfigValueError, OSError)) else BUG
    if os.environ.get(DEBUG_ENV, "").strip() not in ("", "0", "false"):
        __import__("traceback").print_exception(exc, file=sys.stderr)
    print(f"whyrec: error: {line}", file=sys.stderr)
    if hint:
        print(hint, file=sys.stderr)
    return code


def describe(exc: BaseException, argv: list[str], commands: dict) -> tuple[BaseException, str, str | None, int]:
    """(the error meant, its line, a hint line or None, the exit code)."""
    cause = exc
    while cause is not None and not isinstance(cause, ConfigValueError):
        cause = cause.__cause__  # jsonargparse re-raises a refused `X | None` section as its own ValueError
    exc = cause or exc
    inv = Invocation.of(argv, commands)
    help_hint = "see '" + " ".join(["whyrec", *inv.path, "--help"]) + "'"
    code = USER_ERROR
    if isinstance(exc, UsageError):
        line, hint = usage_line(exc, inv), help_hint
    elif isinstance(exc, ConfigValueError):
        line, hint = config_value_line(exc, inv), help_hint
    elif isinstance(exc, WhyrecError):
        line, hint = _one_line(str(exc)), None
    elif isinstance(exc, KeyError) and re.match(r"unknown \w+ .*choose one of", str(exc.args[0] if exc.args else "")):
        line, hint = _one_line(exc.args[0]), None  # a registry lookup: the message lists the valid names
    elif isinstance(exc, OSError):
        line, hint = os_error_line(exc, argv), None
    elif isinstance(exc, UnicodeDecodeError):
        problem = inv.config_problem()  # jsonargparse reads --config files without naming them on failure
        in_config = bool(problem and "UTF-8" in problem)
        line = problem if in_config else (f"an input file is not UTF-8 text ({exc.reason} at byte {exc.start}); "
                                          "convert it to UTF-8 (e.g. `iconv -t UTF-8`)")
        hint = help_hint if in_config else None
    else:
        code = BUG
        first = _one_line(str(exc).splitlines()[0] if str(exc) else "", 300)
        line = (f"unexpected {type(exc).__name__}" + (f": {first}" if first else "") +
                f" (a bug in whyrec? re-run with {DEBUG_ENV}=1 for the traceback and report it)")
        hint = None
    return exc, line, hint, code
