"""One line, never a traceback, for anything a user can cause (issue 17 §4).

Every bad input goes through the real CLI: exit 2, exactly one `whyrec: error:` line naming the
option, key or file at fault (at most a `see 'whyrec ... --help'` line after it), and the folders
that existed before are byte-identical after. An unexpected exception (a bug) is one line too,
exit 1, with the traceback only under WHYREC_DEBUG=1.
"""

from __future__ import annotations

import errno
import json
import resource
import shutil
import signal
from dataclasses import dataclass
from pathlib import Path

import pytest
from cli_contract import REPO, whyrec_inprocess, whyrec_subprocess
from conftest import require_distribution

from whyrec import cli

CONFIGS = {  # --config files a careless user writes
    "lr_fast.yaml": b"train:\n  lr: fast\n",
    "malformed.yaml": b"train: [1\n  lr: : :\n",
    "unknown_key.yaml": b"train:\n  lrr: 0.1\n",
    "unknown_top.yaml": b"bogus: 1\n",
    "a_list.yaml": b"- a\n- b\n",
    "latin1.yaml": "train:\n  lr: 0.1  # r\u00e9gl\u00e9\n".encode("latin-1"),
    "root_nested.yaml": b"train:\n  explainer:\n    train:\n      lr: fast\n",
    "neg_ratio.yaml": b"recexplainer:\n  warmup_ratio: 2\n",
}
EXPLAINER = ["train", "explainer", "--data", "{tmp}/d", "--encoder", "{tmp}/e", "--out", "{tmp}/o"]
PARSE_CASES = [  # id, argv ({tmp}: a folder holding CONFIGS), words the error line must hold
    ("mistyped-option", ["recommend", "--run", "{tmp}/r", "--user", "1", "--kk", "3"], ["--kk", "did you mean --k?"]),
    ("mistyped-nested", EXPLAINER + ["--model.name_or_pth", "x"], ["--model.name_or_pth", "--model.name_or_path"]),
    ("k-not-int", ["recommend", "--run", "{tmp}/r", "--user", "1", "--k", "abc"], ["--k", "integer", "'abc'"]),
    ("k-missing-value", ["recommend", "--run", "{tmp}/r", "--user", "1", "--k"], ["--k needs a value"]),
    ("bool-not-bool", ["recommend", "--run", "{tmp}/r", "--user", "1", "--explain", "maybe"], ["--explain", "true or false"]),
    ("optional-int", ["data", "prepare", "--source", "csv", "--out", "{tmp}/o", "--max_users", "many"],
     ["--max_users", "integer or null", "'many'"]),
    ("lr-not-number", EXPLAINER + ["--train.lr", "fast"], ["--train.lr", "a number", "'fast'"]),
    ("yaml-wrong-type", EXPLAINER + ["--config", "{tmp}/lr_fast.yaml"], ["--train.lr", "lr_fast.yaml", "number", "fast"]),
    ("yaml-malformed", EXPLAINER + ["--config", "{tmp}/malformed.yaml"], ["malformed.yaml", "not valid YAML", "line 2"]),
    ("yaml-unknown-key", EXPLAINER + ["--config", "{tmp}/unknown_key.yaml"],
     ["unknown key 'train.lrr'", "unknown_key.yaml", "did you mean 'train.lr'"]),
    ("yaml-unknown-top-key", EXPLAINER + ["--config", "{tmp}/unknown_top.yaml"], ["'bogus'", "unknown_top.yaml"]),
    ("yaml-is-a-list", EXPLAINER + ["--config", "{tmp}/a_list.yaml"], ["a_list.yaml", "list", "mapping"]),
    ("yaml-not-utf8", EXPLAINER + ["--config", "{tmp}/latin1.yaml"], ["latin1.yaml", "UTF-8"]),
    ("yaml-missing", EXPLAINER + ["--config", "{tmp}/missing.yaml"], ["--config", "missing.yaml", "no such file"]),
    ("yaml-is-a-folder", EXPLAINER + ["--config", "{tmp}"], ["config file", "not a folder"]),
    ("yaml-before-command", ["--config", "{tmp}/root_nested.yaml", *EXPLAINER], ["--train.lr", "root_nested.yaml"]),
    ("yaml-post-init", EXPLAINER + ["--method", "recexplainer", "--config", "{tmp}/neg_ratio.yaml"],
     ["--recexplainer.warmup_ratio", "neg_ratio.yaml", "[0, 1)"]),
    ("optional-section-typo", ["evaluate", "--out", "{tmp}/o", "--judge.backend", "none", "--judge.nonsens", "1"],
     ["--judge.nonsens"]),
    ("optional-section-refused", ["evaluate", "--out", "{tmp}/o", "--judge.backend", "bogus"],
     ["--judge.backend", "'bogus'", "openai"]),
    ("unknown-command", ["trian", "explainer"], ["'trian'", "did you mean 'train'"]),
    ("unknown-subcommand", ["train", "explainr"], ["'explainr'", "encoder, explainer"]),
    ("no-command", [], ["needs a command", "train"]),
    ("missing-required", ["recommend", "--user", "1"], ["missing required option --run"]),
    ("stray-positional", ["recommend", "--run", "{tmp}/r", "--user", "1", "extra"], ["'extra'"]),
    ("unknown-method", EXPLAINER + ["--method", "nope"], ["unknown method 'nope'", "xrec"]),
    ("unknown-source", ["data", "prepare", "--source", "nope", "--out", "{tmp}/o"], ["unknown source 'nope'", "csv"]),
]


def _lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.strip()]


@pytest.fixture
def config_dir(tmp_path):
    for name, content in CONFIGS.items():
        (tmp_path / name).write_bytes(content)
    return tmp_path


@pytest.mark.parametrize("argv, needles", [c[1:] for c in PARSE_CASES], ids=[c[0] for c in PARSE_CASES])
def test_command_line_and_config_files(argv, needles, config_dir, capsys, unchanged):
    argv = [a.replace("{tmp}", str(config_dir)) for a in argv]
    with unchanged(config_dir):  # nothing ran: no output folder, the config files untouched
        result = whyrec_inprocess(argv, capsys)
    result.assert_one_line_error(*needles)
    rest = [line for line in _lines(result.err) if not line.startswith("whyrec: error:")]
    assert len(rest) <= 1 and all(line.startswith("see 'whyrec") for line in rest), result.err


def test_help_and_print_config_still_work(config_dir, capsys):
    assert cli.main(["recommend", "--help"]) == 0 and "--generation.max_new_tokens" in capsys.readouterr().out
    cfg = str(REPO / "configs/tiny/xrec.yaml")
    assert cli.main([*EXPLAINER, "--config", cfg, "--print_config"]) == 0
    assert "max_steps: 6" in capsys.readouterr().out


def test_real_entry_point_exit_code_and_stderr(config_dir):
    argv = [a.replace("{tmp}", str(config_dir)) for a in EXPLAINER] + ["--config", str(config_dir / "lr_fast.yaml")]
    result = whyrec_subprocess(argv, timeout=120)
    result.assert_one_line_error("--train.lr", "lr_fast.yaml")
    assert len(_lines(result.err)) == 2 and result.out == ""  # the error and the --help hint, no usage block


# ------------------------------------------------------------------ validation, OS errors and bugs


@dataclass
class TinyTrain:
    lr: float = 1e-3
    """Learning rate."""

    def __post_init__(self):
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0 (got {self.lr})")


def fit(out: str, train: TinyTrain = TinyTrain()) -> None:  # noqa: B008 - as the real commands declare sections
    """A command with a validated config section."""
    print(f"fit lr={train.lr}")


OS_ERRORS = {
    "permission": PermissionError(errno.EACCES, "Permission denied", "/srv/runs/out"),
    "exists": FileExistsError(errno.EEXIST, "File exists", "/srv/runs/out"),
    "is-a-folder": IsADirectoryError(errno.EISDIR, "Is a directory", "/srv/runs/out"),
    "not-a-folder": NotADirectoryError(errno.ENOTDIR, "Not a directory", "/srv/runs/out"),
    "disk-full": OSError(errno.ENOSPC, "No space left on device"),
    "read-only": OSError(errno.EROFS, "Read-only file system", "/srv/runs/out"),
}


def refuse(kind: str, out: str = "/srv/runs/out") -> None:
    """A command the OS refuses."""
    raise OS_ERRORS[kind]


def crash() -> None:
    """A command with a bug."""
    return 1 // 0


@pytest.fixture
def toy_commands(monkeypatch):
    monkeypatch.setattr(cli, "COMMANDS", {**cli.COMMANDS, "fit": fit, "refuse": refuse, "crash": crash})


@pytest.mark.parametrize("argv", [["fit", "--out", "o", "--train.lr", "-1"], ["fit", "--out", "o", "--config", "{cfg}"]])
def test_post_init_error_names_the_option(argv, toy_commands, tmp_path, capsys):
    (tmp_path / "neg.yaml").write_text("train:\n  lr: -1\n")
    result = whyrec_inprocess([a.replace("{cfg}", str(tmp_path / "neg.yaml")) for a in argv], capsys)
    line = result.assert_one_line_error("--train.lr", "lr must be > 0 (got -1.0)")
    assert ("neg.yaml" in line) == ("--config" in argv)
    assert whyrec_inprocess(["fit", "--out", "o", "--train.lr", "0.5"], capsys).out.strip() == "fit lr=0.5"


@pytest.mark.parametrize("kind, needles", [
    ("permission", ["/srv/runs/out", "permission denied", "check its permissions"]),
    ("exists", ["/srv/runs/out", "file exists", "remove it or choose another path"]),
    ("is-a-folder", ["/srv/runs/out", "is a directory", "pass a file"]),
    ("not-a-folder", ["/srv/runs/out", "not a directory", "check the path"]),
    ("disk-full", ["writing --out /srv/runs/out", "no space left", "free some space"]),
    ("read-only", ["/srv/runs/out", "read-only", "write somewhere else"]),
], ids=lambda v: v if isinstance(v, str) else None)
def test_os_errors_are_one_line(kind, needles, toy_commands, capsys):
    whyrec_inprocess(["refuse", "--kind", kind, "--out", "/srv/runs/out"], capsys).assert_one_line_error(*needles)


def test_unexpected_exception_is_one_line_exit_1_with_debug_hint(toy_commands, capsys, monkeypatch):
    monkeypatch.delenv("WHYREC_DEBUG", raising=False)
    result = whyrec_inprocess(["crash"], capsys)
    assert result.rc == 1 and "Traceback" not in result.err, result.err
    assert _lines(result.err) == [_lines(result.err)[0]] and "ZeroDivisionError" in result.err
    assert "WHYREC_DEBUG=1" in result.err
    monkeypatch.setenv("WHYREC_DEBUG", "1")
    result = whyrec_inprocess(["crash"], capsys)
    assert result.rc == 1 and "Traceback" in result.err and "1 // 0" in result.err
    assert result.err.strip().splitlines()[-1].startswith("whyrec: error: unexpected ZeroDivisionError")


# ------------------------------------------------------------------ trained folders, damaged


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """data (60-user MovieLens slice), a tiny LightGCN and a tiny XRec, built once."""
    require_distribution("recbole", "recbole/dataset_example/ml-100k/ml-100k.inter")
    root = tmp_path_factory.mktemp("built")
    tiny = REPO / "configs" / "tiny"
    assert cli.main(["data", "prepare", "--source", "ml-100k", "--out", str(root / "data"), "--max_users", "60"]) == 0
    assert cli.main(["train", "encoder", "--data", str(root / "data"), "--out", str(root / "encoder"),
                     "--config", str(tiny / "lightgcn.yaml")]) == 0
    assert cli.main(["train", "explainer", "--method", "xrec", "--data", str(root / "data"), "--encoder",
                     str(root / "encoder"), "--out", str(root / "explainer"), "--config", str(tiny / "xrec.yaml")]) == 0
    user = next(iter(json.loads((root / "encoder" / "user2idx.json").read_text())))
    item = next(iter(json.loads((root / "encoder" / "item2idx.json").read_text())))
    return root, user, item


def _truncate(name: str, keep: int | None = None, cut: int = 0):
    def corrupt(folder: Path) -> None:
        data = (folder / name).read_bytes()
        (folder / name).write_bytes(data[:keep] if keep is not None else data[: len(data) - cut])
    return corrupt


def _write(name: str, content: bytes):
    return lambda folder: (folder / name).write_bytes(content)


def _edit_config(change):
    def corrupt(folder: Path) -> None:
        cfg = json.loads((folder / "config.json").read_text())
        change(cfg)
        (folder / "config.json").write_text(json.dumps(cfg))
    return corrupt


def _reshape(name: str):
    def corrupt(folder: Path) -> None:
        import torch
        from safetensors.torch import load_file, save_file

        tensors = load_file(folder / name)
        first = sorted(tensors)[0]
        tensors[first] = torch.zeros(*[s + 1 for s in tensors[first].shape])
        save_file(tensors, folder / name, metadata={"format": "pt"})
    return corrupt


def _replace_with_folder(name: str):
    def corrupt(folder: Path) -> None:
        (folder / name).unlink()
        (folder / name).mkdir()
    return corrupt


def _string_rows(folder: Path) -> None:
    path = folder / "encoder" / "user2idx.json"
    path.write_text(json.dumps({k: str(v) for k, v in json.loads(path.read_text()).items()}))


ADAPTER, ENCODER_WEIGHTS = "adapter_model.safetensors", "encoder/model.safetensors"
DAMAGE = [  # id, corruption of a copied explainer folder, words the error line must hold
    ("adapter-header-cut", _truncate(ADAPTER, keep=100), [ADAPTER, "not a readable safetensors", "re-train"]),
    ("adapter-data-cut", _truncate(ADAPTER, cut=64), [ADAPTER, "truncated or corrupt"]),
    ("adapter-empty", _write(ADAPTER, b""), [ADAPTER, "safetensors"]),
    ("adapter-random-bytes", _write(ADAPTER, bytes(range(256)) * 20), [ADAPTER, "safetensors"]),
    ("adapter-wrong-shape", _reshape(ADAPTER), ["do not fit", "in the file", "in the model"]),
    ("adapter-is-a-folder", _replace_with_folder(ADAPTER), [ADAPTER, "safetensors"]),
    ("adapter-missing", lambda f: (f / ADAPTER).unlink(), [ADAPTER, "missing"]),
    ("encoder-weights-cut", _truncate(ENCODER_WEIGHTS, cut=64), [ENCODER_WEIGHTS, "truncated or corrupt"]),
    ("encoder-wrong-shape", _reshape(ENCODER_WEIGHTS), ["encoder", "shape", "config.json says"]),
    ("config-lacks-section", _edit_config(lambda c: c.pop("xrec")), ["config.json", "lacks \"xrec\""]),
    ("config-wrong-type", _edit_config(lambda c: c.update(encoder_dim="big")), ["config.json", "encoder_dim", "'big'"]),
    ("config-nested-type", _edit_config(lambda c: c["xrec"].update(n_exps="two")), ["config.json", "xrec.n_exps"]),
    ("config-invalid-value", _edit_config(lambda c: c["xrec"]["lora"].update(r=-3)), ["config.json", "xrec.lora"]),
    ("config-unknown-field", _edit_config(lambda c: c["model"].update(colour="red")), ["config.json", "colour"]),
    ("encoder-dim-mismatch", _edit_config(lambda c: c.update(encoder_dim=32)), ["do not fit", "re-train"]),
    ("id-map-not-json", _write("encoder/user2idx.json", b"{x"), ["user2idx.json", "not valid JSON"]),
    ("id-map-a-list", _write("encoder/item2idx.json", b"[1, 2, 3]"), ["item2idx.json", "does not map"]),
    ("id-map-not-utf8", _write("encoder/user2idx.json", b"\xff\xfe{}"), ["user2idx.json", "UTF-8"]),
    ("id-map-string-rows", _string_rows, ["user2idx.json", "does not map user ids"]),
    ("profiles-not-parquet", _write("items.parquet", b"PAR1 not really"), ["items.parquet", "Parquet"]),
]
CONFIG_JSON = [  # broken config.json: cli._run_method reads it before any loader (see the report)
    ("config-not-json", _write("config.json", b"{not json"), ["config.json", "not valid JSON"]),
    ("config-a-list", _write("config.json", b"[1, 2]"), ["config.json", "list"]),
    ("config-not-utf8", _write("config.json", b"\xff\xfe{}"), ["config.json", "UTF-8"]),
]
COMMANDS = ["recommend", "explain", "evaluate"]


@pytest.fixture
def damaged(built, tmp_path):
    root, user, item = built
    copy = tmp_path / "explainer"
    shutil.copytree(root / "explainer", copy)

    def argv(n: int) -> list[str]:
        command = COMMANDS[n % len(COMMANDS)]
        tail = {"recommend": ["--user", user], "explain": ["--user", user, "--item", item],
                "evaluate": ["--data", str(root / "data"), "--out", str(tmp_path / "eval"), "--max_pairs", "2"]}
        return [command, "--run", str(copy), *tail[command], "--generation.max_new_tokens", "2"]
    return root, copy, argv


def _check_damage(damaged, corrupt, needles, n, capsys, unchanged):
    root, copy, argv = damaged
    corrupt(copy)
    with unchanged(copy, root / "data", root / "encoder"):
        whyrec_inprocess(argv(n), capsys).assert_one_line_error(*needles)


@pytest.mark.parametrize("n, corrupt, needles", [(n, c[1], c[2]) for n, c in enumerate(DAMAGE)],
                         ids=[c[0] for c in DAMAGE])
def test_damaged_run_folder(n, corrupt, needles, damaged, capsys, unchanged):
    _check_damage(damaged, corrupt, needles, n, capsys, unchanged)


@pytest.mark.parametrize("n, corrupt, needles", [(n, c[1], c[2]) for n, c in enumerate(CONFIG_JSON)],
                         ids=[c[0] for c in CONFIG_JSON])
def test_broken_config_json(n, corrupt, needles, damaged, capsys, unchanged):
    _check_damage(damaged, corrupt, needles, n, capsys, unchanged)


NEEDS_A_MODEL = ("adapter-wrong-shape", "encoder-wrong-shape", "encoder-dim-mismatch")  # shapes show when loading
SERVE_CASES = [c for c in DAMAGE + CONFIG_JSON if c[0] not in NEEDS_A_MODEL]


@pytest.mark.parametrize("corrupt, needles", [c[1:] for c in SERVE_CASES], ids=[c[0] for c in SERVE_CASES])
def test_serve_folder_check_refuses_before_loading(corrupt, needles, damaged):
    """serve's check (`check_artifact`) reads headers, JSON and Parquet footers: no model is built."""
    from whyrec.serve.validate import check_artifact
    from whyrec.utils import WhyrecError

    _, copy, _ = damaged
    corrupt(copy)
    with pytest.raises(WhyrecError) as err:
        check_artifact(copy)
    assert "\n" not in str(err.value) and all(w.lower() in str(err.value).lower() for w in needles), err.value


@pytest.mark.parametrize("case", ["corrupt-weights", "run-is-a-file"])
def test_serve_refuses_through_the_entry_point(case, damaged, unchanged):
    pytest.importorskip("fastapi")
    _, copy, _ = damaged
    _truncate(ADAPTER, cut=64)(copy)
    run, needles = (copy, [ADAPTER, "truncated or corrupt"]) if case == "corrupt-weights" else \
        (copy / "config.json", ["config.json", "a file, not a folder"])
    with unchanged(copy):
        result = whyrec_subprocess(["serve", "--run", run, "--port", "0", "--cache", "none"], timeout=120)
    result.assert_one_line_error(*needles)


@pytest.mark.parametrize("case", ["run-typo", "run-is-a-file", "data-is-a-file", "encoder-is-a-file",
                                  "data-corrupt-parquet", "k-negative", "k-zero", "predictions-not-utf8",
                                  "device-unknown", "device-absent"])
def test_wrong_paths_and_values(case, built, tmp_path, capsys, unchanged):
    root, user, _ = built
    (tmp_path / "notes.txt").write_text("not a folder\n")
    (tmp_path / "preds.txt").write_bytes(b"caf\xe9 cr\xe8me\n")
    shutil.copytree(root / "data", tmp_path / "data")
    (tmp_path / "data" / "interactions.parquet").write_bytes(b"garbage")
    train = ["train", "explainer", "--out", str(tmp_path / "o"), "--config", str(REPO / "configs/tiny/xrec.yaml")]
    argv, needles = {
        "run-typo": (["recommend", "--run", str(root / "explainr"), "--user", user],
                     ["no such folder", f"did you mean {root / 'explainer'}"]),
        "run-is-a-file": (["recommend", "--run", str(tmp_path / "notes.txt"), "--user", user], ["notes.txt", "a file"]),
        "data-is-a-file": (["train", "encoder", "--data", str(tmp_path / "notes.txt"), "--out", str(tmp_path / "e")],
                           ["notes.txt"]),
        "encoder-is-a-file": ([*train, "--data", str(root / "data"), "--encoder", str(tmp_path / "notes.txt")],
                              ["notes.txt"]),
        "data-corrupt-parquet": (["train", "encoder", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "e")],
                                 ["Parquet"]),
        "k-negative": (["recommend", "--run", str(root / "explainer"), "--user", user, "--k", "-1"], ["k", "-1"]),
        "k-zero": (["recommend", "--run", str(root / "explainer"), "--user", user, "-k", "0"], ["k", "0"]),
        "predictions-not-utf8": (["evaluate", "--predictions", str(tmp_path / "preds.txt"), "--references",
                                  str(tmp_path / "notes.txt"), "--out", str(tmp_path / "ev")], ["preds.txt", "UTF-8"]),
        "device-unknown": (["recommend", "--run", str(root / "explainer"), "--user", user, "--device", "tpu"],
                           ["--device 'tpu'", "cpu"]),
        "device-absent": (["recommend", "--run", str(root / "explainer"), "--user", user, "--device", "cuda:7"],
                          ["--device cuda:7", "--device cpu"]),
    }[case]
    if case == "device-absent" and __import__("torch").cuda.device_count() > 7:
        pytest.skip("this machine has a cuda:7")
    with unchanged(root, tmp_path / "data"):
        whyrec_inprocess(argv, capsys).assert_one_line_error(*needles)


def test_disk_limit_through_the_entry_point(built, tmp_path):
    """A real OS refusal mid-write (file size limit: EFBIG, as a full disk would be ENOSPC) is one line."""
    def small_files():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails with EFBIG instead of killing us
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))

    out = tmp_path / "data"
    result = whyrec_subprocess(["data", "prepare", "--source", "ml-100k", "--out", out, "--max_users", "60"],
                               preexec_fn=small_files, timeout=300)
    result.assert_one_line_error("too large")


def test_options_typed_with_equals_and_dashes_are_understood():
    """`-k=3` and `--max-new-tokens=5` are what users type; they must not become 'unknown option' errors."""
    assert cli.normalise_argv(["recommend", "-k=3", "--max-new-tokens=5", "--run=a-b"]) == \
        ["recommend", "--k=3", "--max_new_tokens=5", "--run=a-b"]


def test_real_os_refusal_of_out(tmp_path, capsys):
    """--out where even root may not write (sysfs refuses mkdir with EPERM): one line naming the folder."""
    if not Path("/sys/kernel").is_dir():
        pytest.skip("no sysfs here to refuse a folder")
    (tmp_path / "p.txt").write_text("a b\nc d\n")
    (tmp_path / "r.txt").write_text("a b\nc e\n")
    argv = ["evaluate", "--predictions", tmp_path / "p.txt", "--references", tmp_path / "r.txt",
            "--out", "/sys/whyrec-test/out"]
    whyrec_inprocess(argv, capsys).assert_one_line_error("/sys/whyrec-test", "not permitted")
