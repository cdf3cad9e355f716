"""Restricted unpickling for pickles users hand us: opening one never runs code it names.

Two entry points:

- `load_plain_pickle`: lists, dicts, tuples, strings, bytes, numbers, None (XRec's
  para_dict.pickle and tst_pred.pkl, PEPLER's reviews.pickle). Every opcode that names a
  global, calls or builds anything is refused.
- `safe_load_pickle`: also pandas DataFrames/Series and numpy arrays as written by pandas
  2.x/3.x with numpy 1.x/2.x (XRec's tst.pkl). A global must be one of the exact
  (module, name) pairs of `ALLOWED_GLOBALS`, and even those never resolve to the real
  object: numpy arrays come from checked handlers, pandas objects are recorded as inert
  nodes and rebuilt afterwards with pandas' public constructors
  (`whyrec.data.safe_pickle_objects`).

Why not the C `pickle.Unpickler` with `find_class` overridden: it resolves EXT1/2/4 opcodes
from `copyreg._extension_cache` without asking `find_class`, and its BUILD, APPENDS and
SETITEMS call `__setstate__`, `extend` and `__setitem__` of whatever the stack holds (a
class object included). Here every opcode runs through our own table (`pickle._Unpickler`,
the pure-Python twin, with its dispatch replaced), and anything not in it is refused. The
price is speed: about 0.8 s for XRec's 2.4 MB para_dict.pickle, six times the C unpickler.

Resources: no handler allocates more than the bytes it reads, so memory grows linearly
with the file. Re-using memoised objects is charged (one string referenced a million
times would be a tiny file that expands to gigabytes once read): past `REUSE_FACTOR` times
the file size plus `REUSE_ALLOWANCE`, the file is refused; so is data nested more than
100 levels deep, which would end in a RecursionError wherever it is printed or walked.
"""

from __future__ import annotations

import functools
import io
import pickle
import pickletools
from collections.abc import Callable
from pathlib import Path
from typing import Any

from whyrec.utils import WhyrecError

# Every global a real pickle of an XRec-style DataFrame, Series or numpy array needs, derived
# from pickles written by pandas 2.1/2.2/3.0/3.1 with numpy 1.26/2.0/2.4 at protocols 2-5
# (tests/assets/pickles/make_fixtures.py), mapped to the handler that builds it. Nothing else is
# admitted: no prefixes, no dotted names, no generic constructors (copyreg._reconstructor,
# so protocol 0/1 DataFrames are refused), no getattr/eval/exec/__import__/open/partial.
ALLOWED_GLOBALS: dict[tuple[str, str], str] = {
    ("numpy", "ndarray"): "ndarray",  # every array: the class handed to _reconstruct
    ("numpy", "dtype"): "dtype",  # every array's element type
    ("numpy.core.multiarray", "_reconstruct"): "reconstruct",  # arrays written by numpy 1.x
    ("numpy._core.multiarray", "_reconstruct"): "reconstruct",  # arrays written by numpy 2.x
    ("numpy.core.numeric", "_frombuffer"): "frombuffer",  # protocol-5 arrays (df.to_pickle), numpy 1.x
    ("numpy._core.numeric", "_frombuffer"): "frombuffer",  # protocol-5 arrays, numpy 2.x
    ("builtins", "slice"): "slice",  # the columns a pandas block holds
    ("__builtin__", "slice"): "slice",  # the same at protocol 2 (Python 2 module names)
    ("builtins", "bytearray"): "bytearray",  # Arrow buffers of pandas 3 string columns
    ("__builtin__", "bytearray"): "bytearray",  # the same at protocol 2
    ("__builtin__", "bytes"): "empty_bytes",  # protocol 2 writes b"" as bytes()
    ("_codecs", "encode"): "latin1",  # protocol 2 writes other bytes as encode(str, "latin1")
    ("pandas.core.frame", "DataFrame"): "DataFrame",  # a DataFrame, pandas 2.x
    ("pandas", "DataFrame"): "DataFrame",  # a DataFrame, pandas 3.x
    ("pandas.core.series", "Series"): "Series",  # a Series, pandas 2.x
    ("pandas", "Series"): "Series",  # a Series, pandas 3.x
    ("pandas.core.internals.managers", "BlockManager"): "BlockManager",  # a DataFrame's columns
    ("pandas.core.internals.managers", "SingleBlockManager"): "SingleBlockManager",  # a Series' values
    ("pandas._libs.internals", "_unpickle_block"): "block",  # one block of same-typed columns
    ("pandas.core.indexes.base", "_new_Index"): "new_index",  # every row/column index
    ("pandas.core.indexes.base", "Index"): "Index",  # labelled rows or column names, pandas 2.x
    ("pandas", "Index"): "Index",  # the same, pandas 3.x
    ("pandas.core.indexes.range", "RangeIndex"): "RangeIndex",  # rows 0..n-1, pandas 2.x
    ("pandas", "RangeIndex"): "RangeIndex",  # the same, pandas 3.x
    ("pandas", "StringDtype"): "StringDtype",  # pandas 3's default `str` column type
    ("pandas.arrays", "StringArray"): "StringArray",  # pandas 3 `str` column without pyarrow
    ("pandas._libs.arrays", "__pyx_unpickle_NDArrayBacked"): "ndarray_backed",  # how StringArray pickles
    ("pandas.arrays", "ArrowStringArray"): "ArrowStringArray",  # pandas 3 `str` column with pyarrow
    ("pyarrow.lib", "_restore_array"): "arrow_array",  # the Arrow array inside ArrowStringArray
    ("pyarrow.lib", "type_for_alias"): "arrow_type",  # its type, "large_string"
    ("pyarrow.lib", "py_buffer"): "arrow_buffer",  # its offset and character buffers
}

REUSE_FACTOR = 16
REUSE_ALLOWANCE = 64 * 2**20

PANDAS_POLICY = "whyrec reads only pandas DataFrames/Series, numpy arrays and builtin types"
PLAIN_POLICY = "this file may hold only builtin lists, dicts, strings and numbers"
DEFAULT_HINT = "if you trust it, convert it in a trusted Python to Parquet or JSON (pd.read_pickle(f).to_parquet(...))"

_OPCODE_NAMES = {op.code.encode("latin-1")[0]: op.name for op in pickletools.opcodes}
_DATA_OPCODES = (
    "PROTO FRAME STOP MARK POP POP_MARK NONE NEWTRUE NEWFALSE INT BININT BININT1 BININT2 LONG "
    "LONG1 LONG4 FLOAT BINFLOAT STRING BINSTRING SHORT_BINSTRING BINBYTES SHORT_BINBYTES BINBYTES8 "
    "BYTEARRAY8 UNICODE BINUNICODE SHORT_BINUNICODE BINUNICODE8 EMPTY_TUPLE TUPLE TUPLE1 TUPLE2 "
    "TUPLE3 EMPTY_LIST LIST EMPTY_DICT PUT BINPUT LONG_BINPUT MEMOIZE"
).split()
_SIZED = (str, bytes, bytearray, list, tuple, dict)


class Refused(Exception):
    """Raised inside the unpickler: `str(e)` names what was refused ("os.system")."""


def load_plain_pickle(path: str | Path, hint: str | None = None) -> Any:
    """Builtin containers, strings and numbers from `path`; any global or call is refused."""
    return _load(Path(path), plain=True, hint=hint)


def safe_load_pickle(path: str | Path, hint: str | None = None) -> Any:
    """A pickled pandas DataFrame/Series, numpy array or builtin container from `path`.

    Args:
        path: the pickle file.
        hint: how to convert a refused file, for the error message (a default one otherwise).
    """
    return _load(Path(path), plain=False, hint=hint)


def builtins_hint(path: Path) -> str:
    """How to re-save a refused pickle with builtin types only (numpy values become lists/ints)."""
    return (f"if you trust it, re-save it with builtin types: python -c \"import json,pickle; f='{path}'; pickle.dump("
            "json.loads(json.dumps(pickle.load(open(f,'rb')), default=lambda o: o.tolist())), open(f,'wb'))\"")


def _load(path: Path, plain: bool, hint: str | None) -> Any:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise WhyrecError(f"{path} not found") from None
    except OSError as e:
        raise WhyrecError(f"{path} cannot be read ({e.strerror or e}); check the path and its permissions") from None
    if not data:
        raise WhyrecError(f"{path} is empty; expected a pickle file")
    unpickler = _Unpickler(data, plain)
    try:
        obj = unpickler.load()
        from whyrec.data.safe_pickle_objects import check_plain, rebuild

        if plain:
            check_plain(obj)  # builtins only by construction; this bounds the nesting depth
            return obj
        return rebuild(obj)
    except Refused as e:
        policy = PLAIN_POLICY if plain else PANDAS_POLICY
        raise WhyrecError(f"{path}: refusing to unpickle {_one_line(e)} ({policy}); {hint or DEFAULT_HINT}") from None
    except RecursionError:
        raise WhyrecError(f"{path}: the pickled data is nested too deeply to read safely") from None
    except MemoryError:
        raise WhyrecError(f"{path}: ran out of memory unpickling this {len(data)}-byte file; "
                          "is it the file you meant?") from None
    except Exception as e:  # a damaged stream fails anywhere: struct, Unicode, stack, memo errors
        if unpickler.truncated(e):
            raise WhyrecError(f"{path}: pickle data was truncated (the file ends after {len(data)} bytes, "
                              "before the pickle does); copy or download it again") from None
        raise WhyrecError(f"{path} is not a readable pickle ({type(e).__name__}: {_one_line(e)}); "
                          "is it damaged, or not a pickle at all?") from None


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:200] if text else type(e).__name__


class _Unpickler(pickle._Unpickler):
    """The pure-Python unpickler with a dispatch table of checked opcodes only."""

    def __init__(self, data: bytes, plain: bool):
        self.source = io.BytesIO(data)
        super().__init__(self.source)
        self.size = len(data)
        self.ends_with_stop = data.endswith(pickle.STOP)
        self.budget = REUSE_FACTOR * len(data) + REUSE_ALLOWANCE
        self.fresh: dict[int, Any] = {}  # arrays/dtypes made here and not yet given their state
        self.dispatch = _table(plain)

    def truncated(self, error: Exception) -> bool:
        """Whether `error` came from running out of bytes (rather than from bad bytes)."""
        if isinstance(error, EOFError):
            return True
        return self.source.tell() >= self.size and not self.ends_with_stop

    def find_class(self, module: str, name: str) -> Any:
        kind = ALLOWED_GLOBALS.get((module, name))
        if kind is None:
            raise Refused(f"{module}.{name}")
        return Global(kind, f"{module}.{name}")

    def persistent_load(self, pid: Any) -> Any:
        raise Refused("a persistent id (PERSID): whyrec resolves no external objects")

    def charge(self) -> None:
        top = self.stack[-1]
        self.budget -= len(top) if isinstance(top, _SIZED) else getattr(top, "nbytes", 0)
        if self.budget < 0:
            raise Refused(f"a file that re-uses its objects more than {REUSE_FACTOR}x its own size "
                          "(a small file that expands enormously when read)")


class Global:
    """What a GLOBAL pushes: an allow-listed name and its handler kind, never the named object."""

    __slots__ = ("kind", "name")

    def __init__(self, kind: str, name: str):
        self.kind, self.name = kind, name

    def __repr__(self) -> str:
        return self.name


# ---------------------------------------------------------------- opcode table


_WHY_NOT = {
    "PERSID": "a persistent id, an object from outside the file",
    "BINPERSID": "a persistent id, an object from outside the file",
    "OBJ": "it calls a class from the stack",
    "NEWOBJ_EX": "it creates an object with keyword arguments",
    "NEXT_BUFFER": "an out-of-band buffer",
    "READONLY_BUFFER": "an out-of-band buffer",
    "EMPTY_SET": "sets are not needed by any format whyrec reads",
    "ADDITEMS": "sets are not needed by any format whyrec reads",
    "FROZENSET": "sets are not needed by any format whyrec reads",
    "REDUCE": "it calls a function",
    "NEWOBJ": "it creates an object",
    "BUILD": "it sets an object's state",
}


def _refuse_opcode(code: int) -> Callable[[_Unpickler], None]:
    name = _OPCODE_NAMES.get(code)

    def refuse(self: _Unpickler) -> None:
        if name is None:
            raise pickle.UnpicklingError(f"byte 0x{code:02x} is not a pickle opcode")
        raise Refused(f"opcode {name} ({_WHY_NOT[name]})" if name in _WHY_NOT else f"opcode {name}")

    return refuse


def _refuse_named_global(self: _Unpickler) -> None:  # GLOBAL and INST: "module\nname\n"
    module = self.readline()[:-1].decode("utf-8", "replace")
    name = self.readline()[:-1].decode("utf-8", "replace")
    raise Refused(f"{module}.{name}")


def _refuse_stack_global(self: _Unpickler) -> None:
    name, module = self.stack.pop(), self.stack.pop()
    raise Refused(f"{module}.{name}" if isinstance(module, str) and isinstance(name, str) else "opcode STACK_GLOBAL")


def _refuse_extension(size: int) -> Callable[[_Unpickler], None]:
    def refuse(self: _Unpickler) -> None:
        code = int.from_bytes(self.read(size), "little")
        raise Refused(f"copyreg extension code {code} (EXT{size}): an indirect global")

    return refuse


def _checked_container(kind: type) -> Callable[[Any], None]:
    def check(target: Any) -> None:
        if type(target) is not kind:
            raise Refused(f"adding items to a {describe(target)} (only a {kind.__name__} takes them)")

    return check


_is_list, _is_dict = _checked_container(list), _checked_container(dict)


def _append(self: _Unpickler) -> None:
    value = self.stack.pop()
    _is_list(self.stack[-1])
    self.stack[-1].append(value)


def _appends(self: _Unpickler) -> None:
    items = self.pop_mark()
    _is_list(self.stack[-1])
    self.stack[-1].extend(items)


def _key(key: Any) -> Any:
    """A dict key whose hash an attacker cannot make collide (str/bytes hashes are salted; ints
    below 2**61 - 1 hash to themselves): 10**5 colliding int or tuple keys take minutes to insert."""
    if type(key) in (str, bytes, bool, type(None)) or (type(key) is int and abs(key) < 2**61 - 1):
        return key
    what = "an integer of 2**61 or more" if type(key) is int else f"a {describe(key)}"
    raise Refused(f"a dict key that is {what} (keys may be strings or smaller integers)")


def _setitem(self: _Unpickler) -> None:
    value, key = self.stack.pop(), self.stack.pop()
    _is_dict(self.stack[-1])
    self.stack[-1][_key(key)] = value


def _setitems(self: _Unpickler) -> None:
    items = self.pop_mark()
    _is_dict(self.stack[-1])
    for i in range(0, len(items) - 1, 2):
        self.stack[-1][_key(items[i])] = items[i + 1]


def _dict(self: _Unpickler) -> None:  # DICT, protocol 0/1: a mark, then key/value pairs
    items = self.pop_mark()
    self.append({_key(items[i]): items[i + 1] for i in range(0, len(items) - 1, 2)})


def _charged(load: Callable[[Any], None]) -> Callable[[_Unpickler], None]:
    def op(self: _Unpickler) -> None:
        load(self)
        self.charge()

    return op


def _reduce(self: _Unpickler) -> None:
    from whyrec.data.safe_pickle_objects import CALLS

    args = self.stack.pop()
    func = self.stack[-1]
    if not isinstance(func, Global) or func.kind not in CALLS:
        raise Refused(f"a call to {describe(func)}")
    if type(args) is not tuple:
        raise Refused(f"a call to {func.name} with {describe(args)} arguments")
    self.stack[-1] = CALLS[func.kind](self, args)


def _newobj(self: _Unpickler) -> None:
    from whyrec.data.safe_pickle_objects import NEW_KINDS, Node

    args = self.stack.pop()
    cls = self.stack.pop()
    if not isinstance(cls, Global) or cls.kind not in NEW_KINDS or args != ():
        raise Refused(f"creating a {describe(cls)} with NEWOBJ")
    self.append(Node(cls.kind))


def _build(self: _Unpickler) -> None:
    from whyrec.data.safe_pickle_objects import set_state

    state = self.stack.pop()
    set_state(self, self.stack[-1], state)


def describe(obj: Any) -> str:
    """A short name for an object in an error message (never its repr, which could be huge)."""
    from whyrec.data.safe_pickle_objects import Node

    if isinstance(obj, Global):
        return obj.name
    if isinstance(obj, Node):
        return f"pandas {obj.kind}"
    return f"{type(obj).__module__}.{type(obj).__qualname__}".removeprefix("builtins.")


@functools.cache
def _table(plain: bool) -> dict[int, Callable[[_Unpickler], None]]:
    base = pickle._Unpickler.dispatch
    table = {code: _refuse_opcode(code) for code in range(256)}
    table.update({getattr(pickle, name)[0]: base[getattr(pickle, name)[0]] for name in _DATA_OPCODES})
    for name, op in (("APPEND", _append), ("APPENDS", _appends), ("SETITEM", _setitem),
                     ("SETITEMS", _setitems), ("DICT", _dict)):
        table[getattr(pickle, name)[0]] = op
    for name in ("GET", "BINGET", "LONG_BINGET", "DUP"):
        table[getattr(pickle, name)[0]] = _charged(base[getattr(pickle, name)[0]])
    table[pickle.INST[0]] = _refuse_named_global
    for size, name in ((1, "EXT1"), (2, "EXT2"), (4, "EXT4")):
        table[getattr(pickle, name)[0]] = _refuse_extension(size)
    if plain:
        table[pickle.GLOBAL[0]] = _refuse_named_global
        table[pickle.STACK_GLOBAL[0]] = _refuse_stack_global
    else:
        table[pickle.GLOBAL[0]] = base[pickle.GLOBAL[0]]
        table[pickle.STACK_GLOBAL[0]] = base[pickle.STACK_GLOBAL[0]]
        table.update({pickle.REDUCE[0]: _reduce, pickle.NEWOBJ[0]: _newobj, pickle.BUILD[0]: _build})
    return table


