"""Hostile pickles through the real CLI: refused with one line, no code run, nothing written.

Every payload below runs code (or corrupts memory) under a plain `pickle.loads`; the
`test_corpus_*` tests prove that for the ones that run a command. Each is then handed to
`whyrec data prepare --source xrec` (as tst.pkl and as para_dict.pickle), `whyrec evaluate`
(as --predictions) and `whyrec data prepare --source pepler` (as reviews.pickle): exit 2,
one `whyrec: error:` line naming the file, no marker file, no output folder. Benign pickles
written by pandas 2.x/3.x with numpy 1.x/2.x (tests/assets/pickles, see make_fixtures.py)
and every pickle in ../shared/data must still load, giving the objects pickle.loads gives.
"""

from __future__ import annotations

import copyreg
import json
import os
import pickle
import shlex
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from cli_contract import whyrec_inprocess, whyrec_subprocess

from whyrec.data.safe_pickle import (
    ALLOWED_GLOBALS,
    builtins_hint,
    load_plain_pickle,
    safe_load_pickle,
)
from whyrec.utils import WhyrecError

ASSETS = Path(__file__).resolve().parents[1] / "assets" / "pickles"
WRITERS = sorted(p for p in ASSETS.iterdir() if (p / "globals.json").is_file())
PLAIN = ASSETS / "plain"


# ---------------------------------------------------------------- hand-assembled opcodes


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


def num(n: int) -> bytes:
    return pickle.dumps(n, protocol=2)[2:-1]


# type("X", (object,), {"__setstate__": os.system}): an instance's BUILD then runs os.system(state)
SETSTATE_CLASS = (g("builtins", "type") + s("X") + g("builtins", "object") + pickle.TUPLE1 + pickle.EMPTY_DICT
                  + s("__setstate__") + g("os", "system") + pickle.SETITEM + pickle.TUPLE3)

# name -> (build(marker) -> pickle bytes, whether plain pickle.loads runs `touch marker`, what whyrec names)
PAYLOADS = {
    **{f"os.system-protocol-{p}": (lambda m, p=p: pickle.dumps(Reduce(os.system, (_touch(m),)), protocol=p), True,
                                   "posix.system") for p in range(6)},
    "os.system-by-module-name": (lambda m: b"cos\nsystem\n(V" + _touch(m).encode() + b"\ntR.", True, "os.system"),
    "posix.system": (lambda m: program(call(g("posix", "system"), s(_touch(m)))), True, "posix.system"),
    "subprocess.Popen": (lambda m: pickle.dumps(Reduce(subprocess.Popen, (["touch", str(m)],))), True, "subprocess.Popen"),
    "subprocess.check_output": (lambda m: pickle.dumps(Reduce(subprocess.check_output, (["touch", str(m)],))), True,
                                "subprocess.check_output"),
    "builtins.eval": (lambda m: pickle.dumps(Reduce(eval, (_code(m),))), True, "builtins.eval"),
    "builtins.exec": (lambda m: pickle.dumps(Reduce(exec, (_code(m),))), True, "builtins.exec"),
    "builtins.open": (lambda m: program(call(g("builtins", "open"), s(str(m)), s("w"))), True, "builtins.open"),
    "io.open": (lambda m: pickle.dumps(Reduce(open, (str(m), "w"))), True, "io.open"),
    "builtins.__import__-then-getattr": (lambda m: program(call(call(g("builtins", "getattr"), call(g("builtins", "__import__"),
                                                                s("os")), s("system")), s(_touch(m)))), True, "builtins.getattr"),
    "getattr-chain-through-_reconstructor.__globals__": (
        lambda m: program(call(eval_via_globals(g("copyreg", "_reconstructor")), s(_code(m)))), True, "builtins.getattr"),
    "functools.partial-of-the-getattr-chain": (
        lambda m: program(call(call(g("functools", "partial"), eval_via_globals(g("copyreg", "_reconstructor")), s(_code(m))))),
        True, "functools.partial"),
    "dotted-name-under-numpy": (lambda m: program(call(g("numpy", "lib._npyio_impl.os.system"), s(_touch(m)))), True,
                                "numpy.lib._npyio_impl.os.system"),
    "dotted-name-under-pandas": (lambda m: program(call(g("pandas", "io.common.os.system"), s(_touch(m)))), True,
                                 "pandas.io.common.os.system"),
    "dotted-name-under-pyarrow": (lambda m: program(call(g("pyarrow", "lib.os.system"), s(_touch(m)))), True,
                                  "pyarrow.lib.os.system"),
    "pandas.read_pickle-of-a-second-file": (lambda m: program(call(g("pandas", "read_pickle"), s(_nested(m, ".pkl")))), True,
                                            "pandas.read_pickle"),
    "numpy.load-with-allow_pickle": (lambda m: program(call(g("numpy", "load"), s(_nested(m, ".npy")), pickle.NONE,
                                                            pickle.NEWTRUE)), True, "numpy.load"),
    "INST": (lambda m: b"(V" + _touch(m).encode() + b"\nios\nsystem\n.", True, "os.system"),
    "OBJ": (lambda m: b"(cos\nsystem\nV" + _touch(m).encode() + b"\no.", True, "os.system"),
    "NEWOBJ-class-with-a-setstate-gadget": (lambda m: program(SETSTATE_CLASS + pickle.NEWOBJ + pickle.EMPTY_TUPLE
                                                              + pickle.NEWOBJ + s(_touch(m)) + pickle.BUILD), True, "builtins.type"),
    "NEWOBJ_EX-class-with-a-setstate-gadget": (
        lambda m: program(SETSTATE_CLASS + pickle.EMPTY_DICT + pickle.NEWOBJ_EX + pickle.EMPTY_TUPLE + pickle.EMPTY_DICT
                          + pickle.NEWOBJ_EX + s(_touch(m)) + pickle.BUILD), True, "builtins.type"),
    "BUILD-slotstate-on-an-allowed-class": (lambda m: program(g("pandas", "DataFrame") + pickle.NONE + pickle.EMPTY_DICT
                                                              + s("__len__") + g("numpy", "ndarray") + pickle.SETITEM
                                                              + pickle.TUPLE2 + pickle.BUILD), False,
                                            "setting the state of a pandas.DataFrame"),
    "numpy-object-array-holding-a-hostile-pickle": (
        lambda m: pickle.dumps(np.array([Reduce(os.system, (_touch(m),))], dtype=object), protocol=4), True, "posix.system"),
    "PERSID": (lambda m: b"\x80\x02Pos.system\n.", False, "PERSID"),
    "BINPERSID": (lambda m: program(s("os.system") + pickle.BINPERSID), False, "BINPERSID"),
    "block-placed-out-of-bounds-by-array": (lambda m: _frame_with_block_at(np.array([5_000_000_000], dtype=np.intp)), False,
                                            "placed outside its frame"),
    "block-placed-out-of-bounds-by-slice": (lambda m: _frame_with_block_at(slice(5_000_000_000, 5_000_000_001, 1)), False,
                                            "placed outside its frame"),
    "arrow-array-longer-than-its-buffers": (lambda m: _lying_arrow_array(), False, "buffers do not match its length"),
    "numpy-_reconstruct-of-80-GB": (lambda m: program(call(g("numpy._core.multiarray", "_reconstruct"), g("numpy", "ndarray"),
                                                           num(10**10) + pickle.TUPLE1, pickle.SHORT_BINBYTES + b"\x01O")),
                                    False, "numpy _reconstruct"),
    "one-MB-string-referenced-200000-times": (lambda m: program(s("x" * 2**20) + pickle.MEMOIZE + pickle.EMPTY_LIST + pickle.MARK
                                                                + (pickle.BINGET + b"\x00") * 200_000 + pickle.APPENDS),
                                              False, "re-uses its objects"),
}
NAMES = list(PAYLOADS)


# ---------------------------------------------------------------- the real CLI, four ways


def _xrec_folder(root: Path) -> Path:
    root.mkdir(parents=True)
    shutil.copy(PLAIN / "para_dict.pickle", root)
    shutil.copy(WRITERS[-1] / "tst.pkl", root)
    return root


def _pepler_folder(root: Path) -> Path:
    (root / "1").mkdir(parents=True)
    shutil.copy(PLAIN / "reviews.pickle", root)
    for name, positions in (("train", "0 1 2 3 4 5 6 7"), ("validation", "8"), ("test", "9")):
        (root / "1" / f"{name}.index").write_text(positions + "\n")
    return root


def _setups(work: Path, payload: bytes) -> dict[str, tuple[list, str]]:
    """context -> (whyrec arguments with the payload in place, the file the error must name)."""
    x_tst, x_para, pepler = _xrec_folder(work / "x_tst"), _xrec_folder(work / "x_para"), _pepler_folder(work / "pepler")
    (x_tst / "tst.pkl").write_bytes(payload)
    (x_para / "para_dict.pickle").write_bytes(payload)
    (pepler / "reviews.pickle").write_bytes(payload)
    (work / "x.pkl").write_bytes(payload)
    out = work / "out"
    return {
        "xrec tst.pkl": (["data", "prepare", "--source", "xrec", "--path", x_tst, "--out", out], "tst.pkl"),
        "xrec para_dict.pickle": (["data", "prepare", "--source", "xrec", "--path", x_para, "--out", out], "para_dict.pickle"),
        "evaluate --predictions": (["evaluate", "--predictions", work / "x.pkl", "--references", PLAIN / "tst_pred.pkl",
                                    "--out", out], "x.pkl"),
        "pepler reviews.pickle": (["data", "prepare", "--source", "pepler", "--path", pepler, "--out", out], "reviews.pickle"),
    }


def _load_directly(args: list) -> None:
    """What the command does with its input, without the ~0.6 s it takes to build the CLI parser."""
    from whyrec.data.pepler import load_pepler
    from whyrec.data.xrec import load_xrec
    from whyrec.eval.readers import read_texts

    if args[0] == "evaluate":
        read_texts(args[2])
    else:
        (load_xrec if args[3] == "xrec" else load_pepler)(args[5])


def _assert_refused(tmp_path: Path, name: str, cli_contexts: list[str], capsys, run=whyrec_inprocess) -> None:
    """Every loader refuses the payload; the real CLI does in `cli_contexts`: one line, nothing written."""
    marker = tmp_path / "marker"
    build, _, needle = PAYLOADS[name]
    setups = _setups(tmp_path / "work", build(marker))
    for context, (args, file) in setups.items():
        with pytest.raises(WhyrecError) as refused:
            _load_directly(args)
        assert file in str(refused.value) and "refusing to unpickle" in str(refused.value), f"{context}: {refused.value}"
        if "para_dict" not in file and "reviews" not in file:  # the plain path names the first global it meets
            assert needle.lower() in str(refused.value).lower(), f"{context}: {refused.value}"
    for context in cli_contexts:
        args, file = setups[context]
        before = sorted(p.name for p in (tmp_path / "work").iterdir())
        result = run(args, capsys) if run is whyrec_inprocess else run(args)
        result.assert_one_line_error(file, "refusing to unpickle")
        assert sorted(p.name for p in (tmp_path / "work").iterdir()) == before, f"{context} wrote something"
    assert not marker.exists(), f"{name} ran code"


CONTEXTS = ["xrec tst.pkl", "xrec para_dict.pickle", "evaluate --predictions", "pepler reviews.pickle"]


@pytest.mark.parametrize("name", NAMES)
def test_hostile_pickle_is_refused_by_every_command(tmp_path, name, capsys):
    """Through all four loaders directly, and one of the four commands (rotating, so os.system's
    six protocols alone cover every command) through the real CLI."""
    _assert_refused(tmp_path, name, [CONTEXTS[NAMES.index(name) % len(CONTEXTS)]], capsys)


def test_hostile_pickle_is_refused_by_the_installed_entry_point(tmp_path):
    """The same through `python -m whyrec.cli` in a fresh process (real exit code and stderr)."""
    _assert_refused(tmp_path, "dotted-name-under-numpy", CONTEXTS, None, run=whyrec_subprocess)


# extension code width -> (code, the shell-running function it is registered for)
EXTENSIONS = {1: (0xF1, ("os", "system")), 2: (0xF1F2, ("posix", "system")), 4: (0x7AF1F2F3, ("subprocess", "getoutput"))}


@pytest.fixture
def extension_codes():
    """copyreg extension codes 1, 2 and 4 bytes wide for shell-running functions, removed afterwards."""
    for code, (module, name) in EXTENSIONS.values():
        copyreg.add_extension(module, name, code)
    yield {width: code for width, (code, _) in EXTENSIONS.items()}
    for code, (module, name) in EXTENSIONS.values():
        copyreg.remove_extension(module, name, code)


def _ext_payload(width: int, code: int, cmd: str) -> bytes:
    opcode = {1: pickle.EXT1, 2: pickle.EXT2, 4: pickle.EXT4}[width]
    return pickle.PROTO + b"\x02" + opcode + code.to_bytes(width, "little") + call(b"", s(cmd)) + pickle.STOP


@pytest.mark.parametrize("width", [1, 2, 4])
def test_extension_registry_opcodes_are_refused_even_with_a_warm_cache(tmp_path, width, extension_codes, capsys):
    proof, marker = tmp_path / "proof", tmp_path / "marker"
    pickle.loads(_ext_payload(width, extension_codes[width], f"touch {proof}"))  # runs, and caches os.system
    assert proof.exists()
    for context, (args, file) in _setups(tmp_path / "work", _ext_payload(width, extension_codes[width], f"touch {marker}")).items():
        whyrec_inprocess(args, capsys).assert_one_line_error(file, f"EXT{width}")
        assert not marker.exists() and not (tmp_path / "work" / "out").exists(), context


def test_c_unpickler_with_only_find_class_overridden_is_bypassed(tmp_path, extension_codes):
    """Why safe_pickle does not use the C unpickler: a cached extension code skips find_class."""

    class FindClassOnly(pickle.Unpickler):
        def find_class(self, module, name):
            raise pickle.UnpicklingError(f"refused {module}.{name}")

    import io

    pickle.loads(_ext_payload(1, extension_codes[1], "true"))  # any earlier load warms copyreg's cache
    marker = tmp_path / "marker"
    FindClassOnly(io.BytesIO(_ext_payload(1, extension_codes[1], f"touch {marker}"))).load()
    assert marker.exists()


def test_corpus_really_runs_code_under_plain_pickle(tmp_path):
    """Each payload marked as running code does run it when plain pickle.loads opens it."""
    files = []
    for i, (name, (build, runs, _)) in enumerate(PAYLOADS.items()):
        marker = tmp_path / str(i) / "marker"
        if runs:
            marker.parent.mkdir()
            (tmp_path / f"{i}.pkl").write_bytes(build(marker))
            files.append((name, marker, tmp_path / f"{i}.pkl"))
    script = ("import pickle, sys\nfor f in sys.argv[1:]:\n    try:\n        o = pickle.loads(open(f, 'rb').read())\n"
              "        getattr(o, 'wait', lambda: 0)()\n    except Exception:\n        pass\n")
    subprocess.run([sys.executable, "-c", script, *[str(f) for _, _, f in files]], cwd=tmp_path, timeout=300,
                   capture_output=True, check=True)
    assert len(files) >= 20 and [n for n, m, _ in files if not m.exists()] == []


def test_out_of_bounds_block_crashes_plain_pandas(tmp_path):
    """The block-placement payload uses only allow-listed names, yet corrupts memory in pandas."""
    path = tmp_path / "oob.pkl"
    path.write_bytes(PAYLOADS["block-placed-out-of-bounds-by-array"][0](tmp_path / "m"))
    script = "import pickle, sys; df = pickle.loads(open(sys.argv[1], 'rb').read()); print(df['a'])"
    proc = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, timeout=120)
    assert proc.returncode < 0, proc  # killed by a signal (SIGSEGV), not an exception
    with pytest.raises(WhyrecError, match="placed outside its frame"):
        safe_load_pickle(path)


# ---------------------------------------------------------------- damaged files


DAMAGED = {
    "empty": (b"", "is empty"),
    "truncated": (pickle.dumps(list(range(500)), protocol=4)[:700], "truncated"),
    "truncated-frame": (pickle.dumps(pd.DataFrame({"uid": range(50)}), protocol=5)[:300], "truncated"),
    "random-bytes": (bytes(range(0xD0, 0x100)) * 4, "not a pickle opcode"),
    "json-text": (b'[{"uid": 1, "explanation": "x"}]\n', "not a readable pickle"),
    "stack-underflow": (b"\x80\x04a.", "not a readable pickle"),
    "unknown-memo": (b"\x80\x04h\x07.", "not a readable pickle"),
    "huge-length-claim": (b"\x80\x04\x8d" + struct.pack("<Q", 2**62) + b"ab.", "truncated"),
    "deep-nesting": (b"\x80\x04" + b"]" * 200_000 + b"a" * 199_999 + b".", "expected"),
}


@pytest.mark.parametrize("name", list(DAMAGED))
def test_damaged_pickle_gives_one_line(tmp_path, name, capsys):
    data, needle = DAMAGED[name]
    (tmp_path / "x.pkl").write_bytes(data)
    args = ["evaluate", "--predictions", tmp_path / "x.pkl", "--references", PLAIN / "tst_pred.pkl", "--out", tmp_path / "out"]
    whyrec_inprocess(args, capsys).assert_one_line_error("x.pkl", needle if name != "deep-nesting" else "")
    assert not (tmp_path / "out").exists()


def test_memory_and_recursion_errors_become_one_line(tmp_path, monkeypatch):
    from whyrec.data import safe_pickle

    (tmp_path / "x.pkl").write_bytes(pickle.dumps([1]))
    for error, needle in ((MemoryError, "ran out of memory"), (RecursionError, "nested too deeply")):
        def fail(self, error=error):
            raise error()

        monkeypatch.setattr(safe_pickle._Unpickler, "load", fail)
        with pytest.raises(WhyrecError, match=needle):
            load_plain_pickle(tmp_path / "x.pkl")


# ---------------------------------------------------------------- benign pickles still load


def _same(got, want) -> None:
    if isinstance(want, pd.DataFrame):
        pd.testing.assert_frame_equal(got, want, check_exact=True)
        assert list(got.dtypes) == list(want.dtypes) and type(got.index) is type(want.index)
    elif isinstance(want, pd.Series):
        pd.testing.assert_series_equal(got, want, check_exact=True)
    elif isinstance(want, np.ndarray):
        assert got.dtype == want.dtype and got.tolist() == want.tolist()
    else:
        assert pickle.dumps(got) == pickle.dumps(want)


@pytest.mark.filterwarnings("ignore:numpy.core:DeprecationWarning")  # plain pickle.loads of numpy 1.x files
@pytest.mark.parametrize("path", [p for w in WRITERS for p in sorted(w.glob("*.pkl"))],
                         ids=lambda p: f"{p.parent.name}/{p.name}")
def test_fixture_pickles_from_every_writer_load_unchanged(path):
    _same(safe_load_pickle(path), pickle.loads(path.read_bytes()))  # our own fixtures: trusted


def test_plain_fixtures_load_through_the_no_globals_path():
    for path in sorted(PLAIN.iterdir()):
        _same(load_plain_pickle(path), pickle.loads(path.read_bytes()))


def test_allow_list_is_exactly_what_the_fixtures_need():
    """Every admitted pair is needed by some real pickle, and every pickle's needs are admitted."""
    needed = {tuple(pair.split(" ")) for w in WRITERS for pairs in json.loads((w / "globals.json").read_text()).values()
              for pair in pairs}
    assert len(WRITERS) == 4 and needed == set(ALLOWED_GLOBALS)
    assert all("." not in name for _, name in ALLOWED_GLOBALS)


def test_benign_folders_still_work_through_the_cli(tmp_path, capsys):
    """The control for the corpus: the same four commands succeed on untouched inputs."""
    xrec, pepler = _xrec_folder(tmp_path / "xrec"), _pepler_folder(tmp_path / "pepler")
    for i, args in enumerate([["data", "prepare", "--source", "xrec", "--path", xrec],
                              ["data", "prepare", "--source", "pepler", "--path", pepler],
                              ["evaluate", "--predictions", WRITERS[0] / "tst_pred_series.pkl",
                               "--references", PLAIN / "tst_pred.pkl"]]):
        result = whyrec_inprocess([*args, "--out", tmp_path / f"out{i}"], capsys)
        assert result.rc == 0, result.err[-2000:]
        assert any((tmp_path / f"out{i}").iterdir())


def test_conversion_hint_turns_a_refused_file_into_one_that_loads(tmp_path):
    """The command in the error message, run in a trusted Python, yields a file whyrec reads."""
    para = pickle.loads((PLAIN / "para_dict.pickle").read_bytes())
    path = tmp_path / "para_dict.pickle"
    path.write_bytes(pickle.dumps({**para, "user_num": np.int64(5)}))  # numpy ints: refused on the plain path
    with pytest.raises(WhyrecError, match="refusing to unpickle numpy") as refused:
        load_plain_pickle(path, hint=builtins_hint(path))
    command = str(refused.value).split("python -c ", 1)[1]
    subprocess.run([sys.executable, "-c", shlex.split(command)[0]], check=True, timeout=60)
    assert load_plain_pickle(path) == para


def test_real_shared_pickles_load_unchanged(shared_data):
    paths = sorted(p for p in shared_data.rglob("*") if p.suffix in (".pkl", ".pickle"))
    if not {"tst.pkl", "para_dict.pickle"} <= {p.name for p in paths}:
        pytest.skip(f"XRec's tst.pkl / para_dict.pickle absent under {shared_data}")
    for path in paths:
        want = pickle.loads(path.read_bytes())  # the team's public data folder: trusted
        _same(safe_load_pickle(path), want)
        if not isinstance(want, pd.DataFrame | pd.Series | np.ndarray):  # builtins only: the plain path reads it too
            _same(load_plain_pickle(path), want)
