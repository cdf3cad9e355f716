"""Turn anything that stops a `whyrec` command into one `whyrec: error:` line and an exit code.

jsonargparse prints the whole usage block (100+ lines for `train explainer`) before an error, and
for some config-file mistakes only a bare key (`error: 'train'`); `parser_class()` raises
`UsageError` instead and `usage_line` names the option or config key and what it expects.
Exit 2: anything a user can cause (options, files, OS refusals); 1: an unexpected exception.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import sys
import typing

from whyrec.cli_config import Invocation, _dataclass_in, closest, describe_type
from whyrec.cli_os import _one_line, os_error_line
from whyrec.config_checks import mark_given
from whyrec.utils import WhyrecError

USER_ERROR, BUG = 2, 1
DEBUG_ENV = "WHYREC_DEBUG"


def debugging() -> bool:
    """WHYREC_DEBUG=1: tracebacks with errors, and the library warnings the CLI otherwise hides."""
    return os.environ.get(DEBUG_ENV, "").strip() not in ("", "0", "false")


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


def config_instantiators(argv: list[str] | None = None, commands: dict | None = None) -> list[tuple]:
    """Build config dataclasses through `_build`, so a validation error keeps its class (to name the
    option) and, given the command line, each built config knows which of its fields the user gave."""
    try:
        inv = Invocation.of(argv, commands) if argv is not None and commands is not None else None
        keys = given_keys(inv) if inv is not None else set()
    except Exception:  # noqa: BLE001 - an argv the parser will refuse anyway: no marks, its error stays the parser's
        inv, keys = None, set()

    def build(cls: type, *args, **kwargs):
        obj = _build(cls, *args, **kwargs)
        prefix = _option_of(cls, inv) if inv is not None and dataclasses.is_dataclass(cls) else None
        if prefix is not None:
            names = {f.name for f in dataclasses.fields(cls)}
            mark_given(obj, {k[len(prefix) + 1:].split(".")[0] for k in keys if k.startswith(prefix + ".")} & names)
        return obj

    return [(build, object, True)]


def given_keys(inv: Invocation) -> set[str]:
    """The dotted options the command line and its --config files give ('train.lr'); an option given
    as a whole mapping (`--train '{lr: 1e-4}'`) counts with each of its keys."""
    import yaml

    keys = {key for _, problem, file_keys in inv.config_keys() if problem is None for key in file_keys}
    for pos, tok in enumerate(inv.argv):
        if not tok.startswith("--") or tok == "--":
            continue
        name, eq, value = tok[2:].partition("=")
        keys.add(name)
        if not eq and pos + 1 < len(inv.argv):
            value = inv.argv[pos + 1]
        if _dataclass_in(inv.options.get(name)) is not None and value.lstrip().startswith("{"):
            try:
                mapping = yaml.safe_load(value)
            except yaml.YAMLError:
                continue  # the parser words the error
            keys.update(f"{name}.{k}" for k in (mapping if isinstance(mapping, dict) else ()))
    return keys


def _option_of(cls: type, inv: Invocation) -> str | None:
    """The one option of the command whose type is dataclass `cls` ('train'); None if none or several."""
    names = [name for name, hint in inv.options.items() if _dataclass_in(hint) is cls]
    return names[0] if len(names) == 1 else None


def _build(cls: type, *args, **kwargs):
    if not dataclasses.is_dataclass(cls):
        return cls(*args, **kwargs)
    try:
        return cls(*args, **kwargs)
    except (ValueError, WhyrecError) as e:  # config.ConfigError says which class and field it means
        raise ConfigValueError(getattr(e, "config", cls), str(e), getattr(e, "field", None)) from e


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
    if m := re.search(r"NestedArg\(key='([^']+)', val=(.*)\)", detail):  # an option of an `X | None` section
        nested = f"{key}.{m.group(1)}"
        if nested not in inv.options:  # --judge.typo
            return _unknown_option(nested, inv.options)
        # a value its type refuses (--generation.eos_bias nan: YAML reads "nan" as a string)
        return f"--{nested}{_source(nested, inv)}: expected {describe_type(inv.options[nested])}, got {m.group(2)}"
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


def report(exc: BaseException, argv: list[str], commands: dict) -> int:
    """Print the one line for `exc` on stderr; return the exit code (2: the user can fix it, 1: a bug)."""
    try:
        exc, line, hint, code = describe(exc, argv, commands)
    except Exception:  # wording the message failed: the error itself still goes out on one line
        line, hint = _one_line(str(exc)) or type(exc).__name__, None
        code = USER_ERROR if isinstance(exc, (UsageError, ConfigValueError, OSError)) else BUG
    if debugging():
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
