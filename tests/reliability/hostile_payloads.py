"""The hostile-pickle corpus of test_hostile_pickles.py: payloads as opcode streams.

Each entry builds, for a marker path, a pickle that runs `touch marker` (or corrupts memory,
or explodes in size) when plain `pickle.loads` opens it; `runs` says which ones the tests
prove to run code, `needle` is what whyrec's refusal must name. Built at test time, never
committed: most hold absolute paths.
"""

from __future__ import annotations

import os
import pickle
import shlex
import struct
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd


def s(text: str) -> bytes:
    data = text.encode()
    return pickle.BINUNICODE + struct.pack("<I", len(data)) + data


def g(module: str, name: str) -> bytes:
    return s(module) + s(name) + pickle.STACK_GLOBAL  # protocol 4: `name` may be dotted


def call(func: bytes, *args: bytes) -> bytes:
    return func + pickle.MARK + b"".join(args) + pickle.TUPLE + pickle.REDUCE


def program(body: bytes) -> bytes:
    return pickle.PROTO + b"\x04" + body + pickle.STOP


def eval_via_globals(function: bytes) -> bytes:
    """Pushes eval, reached as function.__globals__['__builtins__']['eval'] with getattr alone."""
    getattr_ = g("builtins", "getattr")
    builtins_dict = call(call(getattr_, call(getattr_, function, s("__globals__")), s("get")), s("__builtins__"))
    return call(call(getattr_, builtins_dict, s("get")), s("eval"))


class Reduce:
    def __init__(self, func, args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _frame_with_block_at(placement) -> bytes:
    """A DataFrame of only allow-listed names whose one block claims column `placement`."""
    from pandas._libs.internals import _unpickle_block
    from pandas.core.internals.managers import BlockManager

    block = Reduce(_unpickle_block, (np.arange(3, dtype="int64").reshape(1, 3), placement, 2))
    mgr = Reduce(BlockManager, ((block,), [pd.Index(["a"]), pd.RangeIndex(3)]))
    state = {"_mgr": mgr, "_typ": "dataframe", "_metadata": [], "attrs": {}, "_flags": {"allows_duplicate_labels": True}}
    # DataFrame.__new__ then BUILD, as pandas writes it; protocol 3 has no FRAME or MEMOIZE to renumber
    return program(g("pandas", "DataFrame") + pickle.EMPTY_TUPLE + pickle.NEWOBJ
                   + pickle.dumps(state, protocol=3)[2:-1] + pickle.BUILD)


def _lying_arrow_array() -> bytes:
    import pyarrow as pa

    offsets = pa.py_buffer(np.array([0, 1, 2], dtype=np.int64).tobytes())
    data = (pa.large_string(), 10**6, 0, 0, [None, offsets, pa.py_buffer(b"ab")], [], None)
    return pickle.dumps(Reduce(pa.lib._restore_array, (data,)), protocol=4)


def _nested(marker: Path, suffix: str) -> str:
    """A second file (.pkl or .npy) whose object array runs `touch marker` when unpickled."""
    inner = marker.parent / f"inner{suffix}"
    evil = np.array([Reduce(os.system, (_touch(marker),))], dtype=object)
    if suffix == ".npy":
        np.save(inner, evil, allow_pickle=True)
    else:
        inner.write_bytes(pickle.dumps(evil))
    return str(inner)


def _touch(marker: Path) -> str:
    return f"touch {shlex.quote(str(marker))}"


def _code(marker: Path) -> str:
    return f"__import__('os').system({_touch(marker)!r})"


def shell(module: str, name: str):
    """A payload calling module.name("touch marker") by a protocol-4 global (name may be dotted)."""
    return lambda m: program(call(g(module, name), s(_touch(m))))


def dumped(func, *args):
    """A payload as pickle.dumps writes `func(*args)`; callable args get the marker."""
    return lambda m, p=4: pickle.dumps(Reduce(func, tuple(a(m) if callable(a) else a for a in args)), protocol=p)


# type("X", (object,), {"__setstate__": os.system}): BUILD on an instance then runs os.system(state)
SETSTATE_CLASS = (g("builtins", "type") + s("X") + g("builtins", "object") + pickle.TUPLE1 + pickle.EMPTY_DICT
                  + s("__setstate__") + g("os", "system") + pickle.SETITEM + pickle.TUPLE3)
EVAL = eval_via_globals(g("copyreg", "_reconstructor"))
NEW, NEW_EX = pickle.EMPTY_TUPLE + pickle.NEWOBJ, pickle.EMPTY_TUPLE + pickle.EMPTY_DICT + pickle.NEWOBJ_EX
OOB = 5_000_000_000  # a column position far outside a one-column frame

# name -> (build(marker) -> pickle bytes, whether plain pickle.loads runs `touch marker`, what whyrec names)
PAYLOADS = {
    **{f"os.system-protocol-{p}": (lambda m, p=p: dumped(os.system, _touch)(m, p), True, "posix.system") for p in range(6)},
    "os.system-by-module-name": (lambda m: b"cos\nsystem\n(V" + _touch(m).encode() + b"\ntR.", True, "os.system"),
    "posix.system": (shell("posix", "system"), True, "posix.system"),
    "subprocess.Popen": (dumped(subprocess.Popen, lambda m: ["touch", str(m)]), True, "subprocess.Popen"),
    "subprocess.check_output": (dumped(subprocess.check_output, lambda m: ["touch", str(m)]), True, "subprocess.check_output"),
    "builtins.eval": (dumped(eval, _code), True, "builtins.eval"),
    "builtins.exec": (dumped(exec, _code), True, "builtins.exec"),
    "builtins.open": (lambda m: program(call(g("builtins", "open"), s(str(m)), s("w"))), True, "builtins.open"),
    "io.open": (dumped(open, str, "w"), True, "io.open"),
    "builtins.__import__-then-getattr": (lambda m: program(call(call(g("builtins", "getattr"), call(
        g("builtins", "__import__"), s("os")), s("system")), s(_touch(m)))), True, "builtins.getattr"),
    "getattr-chain-through-_reconstructor.__globals__": (lambda m: program(call(EVAL, s(_code(m)))), True, "builtins.getattr"),
    "functools.partial-of-the-getattr-chain": (lambda m: program(call(call(g("functools", "partial"), EVAL, s(_code(m))))),
                                               True, "functools.partial"),
    "dotted-name-under-numpy": (shell("numpy", "lib._npyio_impl.os.system"), True, "numpy.lib._npyio_impl.os.system"),
    "dotted-name-under-pandas": (shell("pandas", "io.common.os.system"), True, "pandas.io.common.os.system"),
    "dotted-name-under-pyarrow": (shell("pyarrow", "lib.os.system"), True, "pyarrow.lib.os.system"),
    "pandas.read_pickle-of-a-second-file": (lambda m: program(call(g("pandas", "read_pickle"), s(_nested(m, ".pkl")))),
                                            True, "pandas.read_pickle"),
    "numpy.load-with-allow_pickle": (lambda m: program(call(g("numpy", "load"), s(_nested(m, ".npy")), pickle.NONE,
                                                            pickle.NEWTRUE)), True, "numpy.load"),
    "INST": (lambda m: b"(V" + _touch(m).encode() + b"\nios\nsystem\n.", True, "os.system"),
    "OBJ": (lambda m: b"(cos\nsystem\nV" + _touch(m).encode() + b"\no.", True, "os.system"),
    "NEWOBJ-class-with-a-setstate-gadget": (lambda m: program(SETSTATE_CLASS + pickle.NEWOBJ + NEW + s(_touch(m))
                                                              + pickle.BUILD), True, "builtins.type"),
    "NEWOBJ_EX-class-with-a-setstate-gadget": (lambda m: program(SETSTATE_CLASS + pickle.EMPTY_DICT + pickle.NEWOBJ_EX + NEW_EX
                                                                 + s(_touch(m)) + pickle.BUILD), True, "builtins.type"),
    "BUILD-slotstate-on-an-allowed-class": (lambda m: program(g("pandas", "DataFrame") + pickle.NONE + pickle.EMPTY_DICT
                                                              + s("__len__") + g("numpy", "ndarray") + pickle.SETITEM
                                                              + pickle.TUPLE2 + pickle.BUILD),
                                            False, "setting the state of a pandas.DataFrame"),
    "numpy-object-array-holding-a-hostile-pickle": (lambda m: pickle.dumps(np.array([Reduce(os.system, (_touch(m),))],
                                                                                    dtype=object)), True, "posix.system"),
    "PERSID": (lambda m: b"\x80\x02Pos.system\n.", False, "PERSID"),
    "BINPERSID": (lambda m: program(s("os.system") + pickle.BINPERSID), False, "BINPERSID"),
    "block-placed-out-of-bounds-by-array": (lambda m: _frame_with_block_at(np.array([OOB], dtype=np.intp)), False,
                                            "placed outside its frame"),
    "block-placed-out-of-bounds-by-slice": (lambda m: _frame_with_block_at(slice(OOB, OOB + 1, 1)), False,
                                            "placed outside its frame"),
    "arrow-array-longer-than-its-buffers": (lambda m: _lying_arrow_array(), False, "buffers do not match its length"),
    "numpy-_reconstruct-of-80-GB": (lambda m: program(call(g("numpy._core.multiarray", "_reconstruct"), g("numpy", "ndarray"),
                                                           pickle.dumps(10**10, 2)[2:-1] + pickle.TUPLE1, s("O"))),
                                    False, "numpy _reconstruct"),
    "dict-with-100000-colliding-integer-keys": (lambda m: program(pickle.EMPTY_DICT + pickle.MARK + b"".join(
        pickle.dumps(i * (2**61 - 1), 2)[2:-1] + pickle.NONE for i in range(1, 100_001)) + pickle.SETITEMS),
        False, "a dict key that is an integer of 2**61 or more"),
    "one-MB-string-referenced-200000-times": (lambda m: program(s("x" * 2**20) + pickle.MEMOIZE + pickle.EMPTY_LIST + pickle.MARK
                                                                + (pickle.BINGET + b"\x00") * 200_000 + pickle.APPENDS),
                                              False, "re-uses its objects"),
}
