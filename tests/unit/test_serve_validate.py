"""`whyrec serve` refuses artifact folders with missing or extra files or mismatched id maps."""

import json
import shutil

import pytest
from serve_tiny import tiny_run

from whyrec.cli import main
from whyrec.serve.validate import check_artifact
from whyrec.utils import WhyrecError


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return tiny_run(tmp_path_factory)


@pytest.fixture
def copy(run, tmp_path):
    dst = tmp_path / "explainer"
    shutil.copytree(run / "explainer", dst)
    return dst


def test_complete_folder_passes(run):
    assert check_artifact(run) == run / "explainer"  # a run folder resolves to its explainer/
    assert check_artifact(run / "explainer") == run / "explainer"


def _refused(folder, *words):
    with pytest.raises(WhyrecError) as err:
        check_artifact(folder)
    msg = str(err.value)
    assert "\n" not in msg and all(w in msg for w in words), msg
    return msg


def test_missing_files(copy):
    (copy / "adapter_model.safetensors").unlink()
    _refused(copy, "missing adapter_model.safetensors")


def test_missing_encoder_file(copy):
    (copy / "encoder" / "item2idx.json").unlink()
    _refused(copy, "encoder", "missing item2idx.json")


def test_extra_files_and_leftover_checkpoint(copy):
    (copy / "checkpoint").mkdir()
    _refused(copy, "unexpected files checkpoint")
    (copy / "checkpoint").rmdir()
    (copy / "encoder" / ".model.safetensors.x1.tmp").write_text("half-written")
    _refused(copy, "unexpected files .model.safetensors.x1.tmp")


def test_id_map_not_matching_embeddings(copy):
    path = copy / "encoder" / "user2idx.json"
    users = json.loads(path.read_text())
    users.pop(next(iter(users)))
    path.write_text(json.dumps(users))
    _refused(copy, "user2idx.json", "rows 0..59", "different trainings")


def test_id_map_from_other_data(copy):
    path = copy / "encoder" / "item2idx.json"
    items = json.loads(path.read_text())
    path.write_text(json.dumps({f"other-{k}": v for k, v in items.items()}))
    _refused(copy, "item ids", "other-", "trained on other data")


def test_corrupt_id_map_and_other_methods(copy, tmp_path):
    (copy / "encoder" / "user2idx.json").write_text("{not json")
    _refused(copy, "not valid JSON")
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"method": "peter"}))
    _refused(other, "peter run", "gavamoe, pepler, recalpaca, recexplainer, xrec")  # the registry's names
    (other / "config.json").write_text(json.dumps({"method": "pepler"}))
    _refused(other, "missing prompt.safetensors")
    _refused(tmp_path / "nowhere", "no such folder")


def test_cli_prints_one_error_line_and_exits_2(copy, capsys):
    (copy / "users.parquet").unlink()
    assert main(["serve", "--run", str(copy), "--port", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("whyrec: error:") and "missing users.parquet" in err[0]
