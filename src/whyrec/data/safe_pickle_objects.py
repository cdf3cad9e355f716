"""What the allow-listed globals of `safe_pickle` build, and the rebuild of pandas objects.

numpy arrays are made here, not by numpy's unpickling helpers: `_reconstruct` only with
the arguments numpy itself writes, dtypes only from simple type strings, and an array's
state only when its byte count (or item count) matches its shape. Arrow string arrays are
validated in full. pandas objects are never unpickled by pandas: while loading they are
inert `Node`s holding their arguments and state; `rebuild` then checks every column
placement and length and makes fresh objects with pandas' public constructors. (pandas'
own path trusts its input: a block placed at column 10**8 of a one-column frame writes
out of bounds the first time the frame is used.)
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np

from whyrec.data.safe_pickle import Global, Refused, describe

_TYPESTR = re.compile(r"b1|[iu][1248]|f[248]|c(8|16)|O8|[US][1-9][0-9]{0,8}")
_SCALARS = frozenset((str, bytes, bytearray, int, float, complex, bool, type(None)))
_CONTAINERS = frozenset((list, tuple, dict, np.ndarray))
_FLAT = frozenset((list, tuple))
MAX_DEPTH = 100
_STATEFUL = {"DataFrame", "Series", "SingleBlockManager", "BlockManager", "ArrowStringArray", "StringArray"}
NEW_KINDS = {"DataFrame", "Series", "SingleBlockManager", "BlockManager", "ArrowStringArray"}
_UNSET = object()


class Node:
    """A pandas object as the pickle describes it: constructor arguments and state, inert."""

    __slots__ = ("kind", "args", "state")

    def __init__(self, kind: str, args: tuple = (), state: Any = _UNSET):
        self.kind, self.args, self.state = kind, args, state


def _need(ok: bool, what: str) -> None:
    if not ok:
        raise Refused(what)


def _shape(value: Any, max_ndim: int = 2) -> tuple[int, ...]:
    _need(type(value) is tuple and len(value) <= max_ndim
          and all(type(n) is int and n >= 0 for n in value), f"an array shape {describe(value)}")
    return value


# ---------------------------------------------------------------- REDUCE handlers


def _reconstruct(u: Any, args: tuple) -> np.ndarray:
    _need(len(args) == 3 and isinstance(args[0], Global) and args[0].kind == "ndarray"
          and type(args[1]) is tuple and args[1] == (0,) and args[2] == b"b",
          "numpy _reconstruct with arguments other than the (ndarray, (0,), b'b') numpy writes")
    array = np.empty(0, dtype=np.int8)
    u.fresh[id(array)] = array
    return array


def _dtype(u: Any, args: tuple) -> np.dtype:
    _need(len(args) == 3 and type(args[0]) is str and bool(_TYPESTR.fullmatch(args[0]))
          and args[1] is False and args[2] is True, f"numpy dtype {str(args[:1])[:60]}")
    dtype = np.dtype(args[0], align=False, copy=True)  # a copy: its state may set the byte order
    u.fresh[id(dtype)] = dtype
    return dtype


def _finished_dtype(u: Any, dtype: Any) -> np.dtype:
    _need(isinstance(dtype, np.dtype) and id(dtype) not in u.fresh, f"an array whose dtype is {describe(dtype)}")
    return dtype


def _frombuffer(u: Any, args: tuple) -> np.ndarray:
    _need(len(args) == 4, "numpy _frombuffer with other than 4 arguments")
    buffer, dtype, shape, order = args
    dtype, shape = _finished_dtype(u, dtype), _shape(shape)
    _need(type(buffer) in (bytes, bytearray) and not dtype.hasobject and order in ("C", "F")
          and len(buffer) == math.prod(shape) * dtype.itemsize, "a numpy buffer that does not match its shape")
    return np.frombuffer(buffer, dtype=dtype).reshape(shape, order=order)


def _set_array_state(u: Any, array: np.ndarray, state: Any) -> None:
    _need(type(state) is tuple and len(state) == 5 and type(state[0]) is int and state[0] == 1,
          "a numpy array state numpy did not write")
    shape, dtype, fortran, raw = _shape(state[1]), _finished_dtype(u, state[2]), state[3], state[4]
    count = math.prod(shape)
    if dtype.hasobject:
        _need(type(raw) is list and len(raw) == count, "an object array whose items do not match its shape")
    else:
        _need(type(raw) in (bytes, bytearray) and len(raw) == count * dtype.itemsize,
              "a numpy array whose bytes do not match its shape")
    _need(type(fortran) is bool, "a numpy array state numpy did not write")
    array.__setstate__(state)


def _set_dtype_state(dtype: np.dtype, state: Any) -> None:
    own = dtype.__reduce__()[2]
    _need(type(state) is tuple and len(state) == len(own)
          and all(type(x) in (int, str, type(None)) for x in state)
          and state[:1] + state[2:] == own[:1] + own[2:]
          and state[1] in (("|",) if own[1] == "|" else ("<", ">", "=")),
          "a numpy dtype state other than numpy's own")
    dtype.__setstate__(state)


def _slice(u: Any, args: tuple) -> slice:
    _need(1 <= len(args) <= 3 and all(type(a) is int or a is None for a in args), "a slice of non-integers")
    return slice(*args)


def _bytearray(u: Any, args: tuple) -> bytearray:
    _need(len(args) <= 1 and all(type(a) in (bytes, bytearray) for a in args), "bytearray of a non-bytes value")
    return bytearray(*args)


def _empty_bytes(u: Any, args: tuple) -> bytes:
    _need(args == (), "bytes() with arguments")
    return b""


def _latin1(u: Any, args: tuple) -> bytes:
    _need(len(args) == 2 and type(args[0]) is str and args[1] == "latin1", "_codecs.encode other than to latin1")
    return args[0].encode("latin-1")


def _node(kind: str, arity: int) -> Any:
    def make(u: Any, args: tuple) -> Node:
        _need(len(args) == arity, f"pandas {kind} with {len(args)} arguments")
        return Node(kind, args)

    return make


def _new_index(u: Any, args: tuple) -> Node:
    _need(len(args) == 2 and isinstance(args[0], Global) and args[0].kind in ("Index", "RangeIndex")
          and type(args[1]) is dict, "pandas _new_Index of anything but an Index or RangeIndex")
    return Node(args[0].kind, (args[1],))


def _ndarray_backed(u: Any, args: tuple) -> Node:
    _need(len(args) == 3 and isinstance(args[0], Global) and args[0].kind == "StringArray",
          "an NDArrayBacked pandas array other than StringArray")
    return Node("StringArray")


def _string_dtype(u: Any, args: tuple) -> Any:
    import pandas as pd

    _need(len(args) == 2 and args[0] in ("python", "pyarrow") and type(args[1]) is float
          and math.isnan(args[1]), "a pandas StringDtype other than pandas 3's str")
    return pd.StringDtype(args[0], na_value=np.nan)


def _arrow_type(u: Any, args: tuple) -> Any:
    import pyarrow as pa

    _need(len(args) == 1 and args[0] in ("string", "large_string", "utf8", "large_utf8"), "an Arrow type other than a string")
    return pa.large_string() if args[0].startswith("large") else pa.string()


def _arrow_buffer(u: Any, args: tuple) -> Any:
    import pyarrow as pa

    _need(len(args) == 1 and type(args[0]) in (bytes, bytearray), "an Arrow buffer of a non-bytes value")
    return pa.py_buffer(args[0])


def _arrow_array(u: Any, args: tuple) -> Any:
    import pyarrow as pa

    data = args[0] if len(args) == 1 and type(args[0]) is tuple and len(args[0]) == 7 else None
    _need(data is not None, "an Arrow array in a layout pyarrow did not write")
    kind, length, nulls, offset, buffers, children, dictionary = data
    _need(kind in (pa.string(), pa.large_string()) and children == [] and dictionary is None
          and all(type(n) is int for n in (length, nulls, offset)) and type(buffers) is list and len(buffers) == 3
          and all(b is None or isinstance(b, pa.Buffer) for b in buffers), "an Arrow array other than strings")
    try:
        array = pa.Array.from_buffers(kind, length, buffers, nulls, offset)
        array.validate(full=True)
    except (pa.ArrowException, ValueError) as e:
        raise Refused(f"an Arrow string array whose buffers do not match its length ({str(e)[:80]})") from None
    return array


CALLS = {
    "reconstruct": _reconstruct, "dtype": _dtype, "frombuffer": _frombuffer, "slice": _slice,
    "bytearray": _bytearray, "empty_bytes": _empty_bytes, "latin1": _latin1,
    "block": _node("block", 3), "BlockManager": _node("BlockManager", 2), "new_index": _new_index,
    "ndarray_backed": _ndarray_backed, "StringDtype": _string_dtype,
    "arrow_type": _arrow_type, "arrow_buffer": _arrow_buffer, "arrow_array": _arrow_array,
}


def set_state(u: Any, target: Any, state: Any) -> None:
    """BUILD: a node's state once, or the state of an array/dtype made here and not yet set."""
    if isinstance(target, Node) and target.kind in _STATEFUL and target.state is _UNSET and not target.args:
        target.state = state
        return
    _need(u.fresh.get(id(target)) is target, f"setting the state of a {describe(target)}")
    del u.fresh[id(target)]
    if isinstance(target, np.dtype):
        _set_dtype_state(target, state)
    else:
        _set_array_state(u, target, state)


# ---------------------------------------------------------------- rebuild after loading


def check_plain(value: Any) -> None:
    """Refuse anything but scalars, builtin containers and numpy arrays of them, or deep nesting.

    Consumers print and walk what they read recursively; a list nested 10**5 deep (a few
    hundred bytes of pickle) would end in a RecursionError there instead of one line here.
    """
    todo, seen = [(value, 0)], set()
    while todo:
        item, depth = todo.pop()
        if type(item) in _SCALARS:
            continue
        _need(type(item) in _CONTAINERS, f"a {describe(item)} inside the data")
        if id(item) in seen:
            continue
        seen.add(id(item))
        _need(depth < MAX_DEPTH, f"data nested more than {MAX_DEPTH} levels deep")
        if type(item) is np.ndarray:
            if not item.dtype.hasobject:
                continue
            item = item.ravel().tolist()
        elif type(item) is dict:
            item = [*item.keys(), *item.values()]
        if set(map(type, item)) <= _SCALARS:  # flat lists of numbers or strings: one C-speed pass
            continue
        for child in item:
            if type(child) not in _SCALARS and not (type(child) in _FLAT and set(map(type, child)) <= _SCALARS):
                todo.append((child, depth + 1))


def rebuild(obj: Any) -> Any:
    """The loaded object with its pandas nodes turned into real, checked pandas objects."""
    if isinstance(obj, Node) and obj.kind == "DataFrame":
        return _frame(obj)
    if isinstance(obj, Node) and obj.kind == "Series":
        return _series(obj)
    check_plain(obj)
    return obj


def _state_dict(node: Node) -> dict:
    _need(type(node.state) is dict and ("_mgr" in node.state or "_data" in node.state),
          f"a pandas {node.kind} state pandas did not write")
    return node.state


def _manager(mgr: Any) -> tuple[list, list[tuple[Any, Any]]]:
    """(axes, [(values, placement)]) of a block manager in either pickled layout."""
    _need(isinstance(mgr, Node) and mgr.kind in ("BlockManager", "SingleBlockManager"), "a pandas frame without blocks")
    if mgr.args:  # BlockManager(blocks, axes), pandas >= 2
        blocks, axes = mgr.args
        _need(type(blocks) in (tuple, list) and type(axes) is list
              and all(isinstance(b, Node) and b.kind == "block" for b in blocks), "pandas blocks pandas did not write")
        return axes, [(b.args[0], b.args[1]) for b in blocks]
    state = mgr.state  # (axes, values, items, {"0.14.1": {"axes": ..., "blocks": [...]}})
    extra = state[3].get("0.14.1") if type(state) is tuple and len(state) >= 4 and type(state[3]) is dict else None
    _need(type(extra) is dict and type(extra.get("axes")) is list and type(extra.get("blocks")) is list
          and all(type(b) is dict and "values" in b and "mgr_locs" in b for b in extra["blocks"]),
          "a pandas block manager state pandas did not write")
    return extra["axes"], [(b["values"], b["mgr_locs"]) for b in extra["blocks"]]


def _label(value: Any) -> Any:
    _need(type(value) in (str, int, float, bool, type(None))
          or (type(value) is tuple and all(type(v) in (str, int, float, bool, type(None)) for v in value)),
          f"a pandas name that is a {describe(value)}")
    return value


def _index(node: Any) -> Any:
    import pandas as pd

    _need(isinstance(node, Node) and node.kind in ("Index", "RangeIndex"), f"a pandas axis that is a {describe(node)}")
    spec = node.args[0]
    name = _label(spec.get("name"))
    if node.kind == "RangeIndex":
        bounds = [spec.get(k, d) for k, d in (("start", 0), ("stop", None), ("step", 1))]
        _need(all(type(b) is int for b in bounds) and bounds[2] != 0, "a RangeIndex with non-integer bounds")
        return pd.RangeIndex(*bounds, name=name)
    data = _array(spec.get("data"))
    return pd.Index(data, name=name, dtype=data.dtype, copy=False)


def _array(value: Any) -> Any:
    """A checked 1-D or 2-D numpy array, or a pandas string array rebuilt from its parts."""
    import pandas as pd

    if type(value) is np.ndarray:
        _need(value.ndim in (1, 2), "a pandas column that is not 1- or 2-dimensional")
        check_plain(value)
        return value
    _need(isinstance(value, Node) and value.kind in ("StringArray", "ArrowStringArray"),
          f"pandas column values that are a {describe(value)}")
    state = value.state
    if value.kind == "StringArray":  # (dtype, ndarray) in either order
        _need(type(state) is tuple and len(state) >= 2, "a StringArray state pandas did not write")
        dtype, data = state[:2] if type(state[1]) is np.ndarray else state[1::-1]
        _need(type(data) is np.ndarray and data.ndim == 1 and data.dtype.hasobject, "a StringArray without strings")
    else:
        import pyarrow as pa

        _need(type(state) is dict, "an ArrowStringArray state pandas did not write")
        dtype, arrow = state.get("_dtype"), state.get("_pa_array", state.get("_data"))
        _need(isinstance(arrow, pa.Array), "an ArrowStringArray without an Arrow array")
        data = np.array(arrow.to_pylist(), dtype=object)
    _need(isinstance(dtype, pd.StringDtype), "a pandas string array without a StringDtype")
    check_plain(data)
    return pd.array(data, dtype=dtype)


def _placement(value: Any, count: int, limit: int) -> list[int]:
    """The `count` distinct column positions (< limit) a block fills."""
    if type(value) is slice:  # canonical in pandas: start >= 0, step >= 1, stop = start + count * step
        start, step = value.start or 0, 1 if value.step is None else value.step
        _need(value.stop is not None and start >= 0 and step >= 1, "a pandas block placement pandas did not write")
        positions = range(start, value.stop, step)
        _need(len(positions) == count and (count == 0 or positions[-1] < limit), "a pandas block placed outside its frame")
        return list(positions)
    _need(type(value) is np.ndarray and value.ndim == 1 and value.dtype.kind in "iu" and len(value) == count,
          "a pandas block placement that is not a column list")
    positions = value.tolist()
    _need(all(0 <= p < limit for p in positions), "a pandas block placed outside its frame")
    return positions


def _columns(values: Any, rows: int) -> list:
    """The 1-D column arrays of one block."""
    array = _array(values)
    columns = list(array) if getattr(array, "ndim", 1) == 2 else [array]
    _need(all(len(c) == rows for c in columns), "a pandas column whose length differs from its index")
    return columns


def _frame(node: Node) -> Any:
    import pandas as pd

    state = _state_dict(node)
    axes, blocks = _manager(state.get("_mgr", state.get("_data")))
    _need(len(axes) == 2, "a DataFrame whose blocks are not two-dimensional")
    names, rows = _index(axes[0]), _index(axes[1])
    by_position: dict[int, Any] = {}
    for values, placement in blocks:
        columns = _columns(values, len(rows))
        for position, column in zip(_placement(placement, len(columns), len(names)), columns):
            _need(position not in by_position, "a DataFrame column held by two blocks")
            by_position[position] = column
    _need(len(by_position) == len(names), "a DataFrame with columns no block holds")
    if not by_position:
        frame = pd.DataFrame(index=rows)
    else:
        frame = pd.DataFrame({p: pd.Series(by_position[p], dtype=by_position[p].dtype, copy=False)
                              for p in range(len(names))})
        frame.index = rows
    frame.columns = names
    return frame


def _series(node: Node) -> Any:
    import pandas as pd

    state = _state_dict(node)
    axes, blocks = _manager(state.get("_mgr", state.get("_data")))
    _need(len(axes) == 1 and len(blocks) == 1, "a Series whose values are not one block")
    index = _index(axes[0])
    (values,) = _columns(blocks[0][0], len(index))
    return pd.Series(values, index=index, name=_label(state.get("_name")), dtype=values.dtype, copy=False)
