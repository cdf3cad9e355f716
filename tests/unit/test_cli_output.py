"""What the commands print (issue 21, "The command line"): short human reports with `--json` for
machines, the explained pair named, the k cap said, group descriptions in --help, and library
deprecation warnings kept off the terminal (WHYREC_DEBUG=1 shows them)."""

from __future__ import annotations

import json
import warnings

import pytest
from toy_method import ToyMethod

from whyrec import cli
from whyrec.cli import main
from whyrec.registry import METHODS

USERS, ITEMS = 24, 8


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    """A small CSV dataset (item i liked by the first 3*(i+1) users), the toy method trained on it."""
    with METHODS.temporary("toy", ToyMethod(), "popularity with template explanations (tests only)"):
        root = tmp_path_factory.mktemp("cli-output")
        rows = ["user,item,rating,title,explanation"]
        for i in range(ITEMS):
            for u in range(min(USERS, 3 * (i + 1))):
                rows.append(f"u{u},i{i},{1 + (u + i) % 5},Film {i},the plot of film {i} suits user {u}")
        (root / "ratings.csv").write_text("\n".join(rows) + "\n")
        data, run = root / "data", root / "run"
        assert main(["data", "prepare", "--source", "csv", "--path", str(root / "ratings.csv"), "--out", str(data)]) == 0
        assert main(["train", "explainer", "--method", "toy", "--data", str(data), "--out", str(run)]) == 0
        yield root, data, run


def run(capsys, *args):
    capsys.readouterr()
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    assert rc == 0, err
    return out, err


# ---------------------------------------------------------------- evaluate
def test_evaluate_prints_the_report_not_json_and_json_on_request(tmp_path, capsys):
    preds, refs = tmp_path / "p.txt", tmp_path / "r.txt"
    preds.write_text("a good film for you\nthe plot is great\n")
    refs.write_text("a great film for you\nthe actors are great\n")
    out, _ = run(capsys, "evaluate", "--predictions", preds, "--references", refs, "--out", tmp_path / "e")
    assert out.startswith("# ") and "| BLEU-1 |" in out
    assert out.rstrip().endswith(f"full metrics: {tmp_path / 'e' / 'metrics.json'} (--json prints them)")
    assert not out.lstrip().startswith("{") and len(out.splitlines()) < 60
    assert (tmp_path / "e" / "report.md").read_text().rstrip() in out
    out, _ = run(capsys, "evaluate", "--predictions", preds, "--references", refs, "--out", tmp_path / "e", "--json")
    assert json.loads(out) == json.loads((tmp_path / "e" / "metrics.json").read_text())


def test_evaluate_run_shows_grounding_and_activity_groups(toy_run, tmp_path, capsys):
    """Grounding is reported by default (issue 20); --grounding false turns it off."""
    _, data, folder = toy_run
    out, _ = run(capsys, "evaluate", "--run", folder, "--data", data, "--out", tmp_path / "e")
    metrics = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert "## Grounding (claims checked against the data)" in out and "Hallucination rate (false claims):" in out
    assert "have no checkable claim" in out and metrics["grounding_references"]["explanations"] == metrics["n"]
    assert "## By user activity" in out
    group_rows = [line for line in out.splitlines() if line.startswith("| ") and line.split("|")[1].strip()
                  in metrics["groups"]]
    assert len(group_rows) == len(metrics["groups"]) > 0
    assert f"{metrics['grounding']['explanations_with_false_claim']} of {metrics['n']} explanations" in out


# ---------------------------------------------------------------- train encoder
def test_train_encoder_prints_a_short_table(toy_run, tmp_path, capsys):
    _, data, _ = toy_run
    enc = tmp_path / "enc"
    args = ["train", "encoder", "--data", data, "--out", enc, "--lightgcn.epochs", "2", "--lightgcn.dim", "8",
            "--lightgcn.eval_k", "5", "--device", "cpu"]
    out, _ = run(capsys, *args)
    lines = out.splitlines()
    metrics = json.loads((enc / "metrics.json").read_text())
    assert lines[0] == (f"lightgcn: {metrics['n_users']} users, {metrics['n_items']} items, "
                        f"{metrics['n_train']} training interactions")
    assert lines[1].startswith(f"best epoch {metrics['best_epoch']} of 2")
    header = next(line for line in lines if line.startswith("|  | "))
    assert "recall@10" in header and "ndcg@20" in header and "precision" not in header
    test_row = next(line for line in lines if line.startswith("| test |"))
    assert f"{metrics['test']['recall@10']:.4f}" in test_row
    assert any(line.startswith("| popularity (test) |") for line in lines)
    assert len(lines) < 15
    out, _ = run(capsys, *args, "--json")  # the finished folder is reused: the same metrics, in full
    assert json.loads(out) == metrics


# ---------------------------------------------------------------- explain, recommend
def test_explain_names_the_user_and_item(toy_run, capsys):
    _, _, folder = toy_run
    out, _ = run(capsys, "explain", "--run", folder, "--user", "u1", "--item", "i3")
    assert out.splitlines()[0] == "user u1 · Film 3 [i3]:"
    assert out.splitlines()[1].startswith("Film 3 is popular")


def test_recommend_says_when_k_is_capped(toy_run, capsys):
    _, _, folder = toy_run
    out, err = run(capsys, "recommend", "--run", folder, "--user", "u23", "-k", "5000", "--explain")
    ranked = [line for line in out.splitlines() if line[0].isdigit()]
    assert err.strip() == f"whyrec: note: k=5000 capped to {len(ranked)} (all the items user u23 has not seen)"
    assert 0 < len(ranked) < ITEMS and out.count("is popular") == len(ranked)
    out, err = run(capsys, "recommend", "--run", folder, "--user", "u23", "-k", "2")
    assert err == "" and len(out.splitlines()) == 2


# ---------------------------------------------------------------- --help
def test_help_describes_every_command_group(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    listed = {line.split()[0]: line.split(None, 1)[1] for line in out.splitlines()
              if line.startswith("    ") and len(line.split()) > 1}  # "    data   Get and prepare ..."
    groups = [name for name, node in cli.COMMANDS.items() if isinstance(node, dict)]
    assert {"data", "train", "benchmark"} <= set(groups)
    for name in groups:
        assert listed[name] == " ".join(cli.GROUP_HELP[name].split()[:len(listed[name].split())]), name


# ---------------------------------------------------------------- library warnings
def _warn(module: str, category=FutureWarning):
    warnings.warn_explicit(f"from {module}", category, "file.py", 1, module=module)


@pytest.mark.parametrize("debug", [None, "1"])
def test_library_deprecation_warnings_are_hidden_unless_debugging(monkeypatch, capsys, debug):
    def noisy():
        _warn("transformers.modeling_utils")  # as `is_gradient_checkpointing` warns on every training run
        _warn("peft.peft_model", DeprecationWarning)
        _warn("torch.nn.modules.module")
        _warn("whyrec.encoders.train")  # whyrec's own: always shown
        _warn("transformers.generation", UserWarning)  # not a deprecation: shown

    monkeypatch.setattr(cli, "COMMANDS", {**cli.COMMANDS, "noisy": noisy})
    if debug:
        monkeypatch.setenv("WHYREC_DEBUG", debug)
    else:
        monkeypatch.delenv("WHYREC_DEBUG", raising=False)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        assert main(["noisy"]) == 0
    shown = sorted(str(w.message) for w in seen)
    hidden = ["from peft.peft_model", "from torch.nn.modules.module", "from transformers.modeling_utils"]
    always = ["from transformers.generation", "from whyrec.encoders.train"]
    assert shown == sorted(always + (hidden if debug else []))
    with warnings.catch_warnings(record=True) as after:  # the filter ends with the command
        warnings.simplefilter("always")
        _warn("transformers.modeling_utils")
    assert len(after) == 1
