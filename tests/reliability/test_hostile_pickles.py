"""Hostile pickles through the real CLI: refused with one line, no code run, nothing written.

Every payload of hostile_payloads.py runs code (or corrupts memory) under a plain
`pickle.loads`; the `test_corpus_*` tests prove that for the ones that run a command. Each is handed to
`whyrec data prepare --source xrec` (as tst.pkl and as para_dict.pickle), `whyrec evaluate`
(as --predictions) and `whyrec data prepare --source pepler` (as reviews.pickle): exit 2,
one `whyrec: error:` line naming the file, no marker file, no output folder. Benign pickles
written by pandas 2.x/3.x with numpy 1.x/2.x (tests/assets/pickles, see make_fixtures.py)
and every pickle in ../shared/data must still load, giving the objects pickle.loads gives.
"""

from __future__ import annotations

import copyreg
import json
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
from hostile_payloads import PAYLOADS, call, s

from whyrec.data.safe_pickle import ALLOWED_GLOBALS, builtins_hint, load_plain_pickle
from whyrec.data.safe_pickle import safe_load_pickle as load_pandas_pickle
from whyrec.data.xrec import records_hint, xrec_records
from whyrec.utils import WhyrecError

ASSETS = Path(__file__).resolve().parents[1] / "assets" / "pickles"
WRITERS = sorted(p for p in ASSETS.iterdir() if (p / "globals.json").is_file())
PLAIN = ASSETS / "plain"
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
        load_pandas_pickle(path)


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
    "deep-nesting": (b"\x80\x04" + b"]" * 200_000 + b"a" * 199_999 + b".", "nested more than 100 levels"),
}


@pytest.mark.parametrize("name", list(DAMAGED))
def test_damaged_pickle_gives_one_line(tmp_path, name, capsys):
    data, needle = DAMAGED[name]
    (tmp_path / "x.pkl").write_bytes(data)
    args = ["evaluate", "--predictions", tmp_path / "x.pkl", "--references", PLAIN / "tst_pred.pkl", "--out", tmp_path / "out"]
    whyrec_inprocess(args, capsys).assert_one_line_error("x.pkl", needle)
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
    _same(load_pandas_pickle(path), pickle.loads(path.read_bytes()))  # our own fixtures: trusted


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


def _refused_but_trusted(kind: str, path: Path) -> tuple[bytes, object]:
    if kind == "records":  # protocol 1 needs copyreg._reconstructor: refused
        frame = pickle.loads((WRITERS[-1] / "tst.pkl").read_bytes())
        return pickle.dumps(frame, protocol=1), lambda: pd.testing.assert_frame_equal(
            xrec_records(path), frame.reset_index(drop=True), check_dtype=False)
    para = pickle.loads((PLAIN / "para_dict.pickle").read_bytes())  # numpy ints: refused on the plain path
    return pickle.dumps({**para, "user_num": np.int64(5)}), lambda: load_plain_pickle(path) == para or pytest.fail()


@pytest.mark.parametrize("kind", ["records", "builtins"])
def test_conversion_hint_turns_a_refused_file_into_one_that_loads(tmp_path, kind):
    """The command in the error message, run in a trusted Python, yields a file whyrec reads."""
    path = tmp_path / ("tst.pkl" if kind == "records" else "para_dict.pickle")
    data, check = _refused_but_trusted(kind, path)
    path.write_bytes(data)
    with pytest.raises(WhyrecError, match="refusing to unpickle") as refused:
        (xrec_records if kind == "records" else lambda p: load_plain_pickle(p, hint=builtins_hint(p)))(path)
    assert (records_hint if kind == "records" else builtins_hint)(path) in str(refused.value)
    command = str(refused.value).split("python -c ", 1)[1]
    subprocess.run([sys.executable, "-c", shlex.split(command)[0]], check=True, timeout=120)
    check()


def test_loading_never_hands_the_file_to_an_unrestricted_unpickler(tmp_path, monkeypatch):
    """No second pickle.load(s) anywhere on the way (numpy object arrays, pandas setstate, ...)."""
    import _pickle

    def forbidden(*args, **kwargs):
        raise AssertionError("an unrestricted unpickler was called")

    for module in (pickle, _pickle):
        for name in ("load", "loads", "Unpickler"):
            monkeypatch.setattr(module, name, forbidden)
    for path in [p for w in WRITERS for p in sorted(w.glob("*.pkl"))]:
        load_pandas_pickle(path)
    for i, (build, _, _) in enumerate(PAYLOADS.values()):
        (tmp_path / f"{i}.pkl").write_bytes(build(tmp_path / f"marker{i}"))
        with pytest.raises(WhyrecError):
            load_pandas_pickle(tmp_path / f"{i}.pkl")


def test_real_shared_pickles_load_unchanged(shared_data):
    paths = sorted(p for p in shared_data.rglob("*") if p.suffix in (".pkl", ".pickle"))
    if not {"tst.pkl", "para_dict.pickle"} <= {p.name for p in paths}:
        pytest.skip(f"XRec's tst.pkl / para_dict.pickle absent under {shared_data}")
    for path in paths:
        want = pickle.loads(path.read_bytes())  # the team's public data folder: trusted
        _same(load_pandas_pickle(path), want)
        if not isinstance(want, pd.DataFrame | pd.Series | np.ndarray):  # builtins only: the plain path reads it too
            _same(load_plain_pickle(path), want)
