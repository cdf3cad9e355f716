"""What the training commands print (issue 21, "The command line"): `train explainer` and `cluster`
print a short summary (`--json`: the full JSON), and the long loops of `cluster`, the target models
and `data prepare` report progress in a log file, not only on a terminal (whyrec.progress)."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest
from test_cli_output import run
from toy_method import ToyMethod, toy_dataset

import whyrec.progress as P
from whyrec.registry import METHODS

LOG = {"steps": 120, "examples": 4_800, "elapsed_s": 150.0, "first_loss": 3.51234, "last_loss": 2.10456,
       "losses": [3.5, 2.1], "tokenizer_vocab": 49_152}


class LoggedToy(ToyMethod):
    """The toy method with an XRec-shaped training log, written to the folder as XRec writes it."""

    def train(self, data, out, **kwargs) -> dict:
        super().train(data, out, **kwargs)
        Path(out, "training_log.json").write_text(json.dumps(LOG))
        return dict(LOG)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return toy_dataset(tmp_path_factory.mktemp("cli-train"))


def test_train_explainer_prints_a_short_summary_and_json_on_request(data, tmp_path, capsys):
    with METHODS.temporary("loggedtoy", LoggedToy(), "the toy method with a training log (tests only)"):
        args = ["train", "explainer", "--method", "loggedtoy", "--data", data, "--out", tmp_path / "x"]
        out, _ = run(capsys, *args)
        assert out.splitlines() == [
            f"loggedtoy explainer written to {tmp_path / 'x'}",
            "120 steps · 4,800 training examples · 2m30s",
            "first loss 3.5123 · final loss 2.1046",
            f"full log: {tmp_path / 'x' / 'training_log.json'} (--json prints it)",
        ]
        out, _ = run(capsys, *args, "--json")
    assert json.loads(out) == LOG  # in full, losses included


def test_a_pepler_shaped_log_shows_epochs_and_the_last_valid_loss():
    from whyrec.cli import explainer_summary

    log = {"history": [{"train_loss": 3.0, "valid_loss": 3.2}, {"train_loss": 2.5, "valid_loss": 2.9}],
           "complete": True, "train_examples": 900, "valid_examples": 100, "epochs": 2, "elapsed_s": 42.0}
    lines = explainer_summary(log, "pepler", "/nowhere").splitlines()
    assert lines[1:] == ["2 epochs · 900 training examples · 42s", "final loss 2.5000 · valid loss 2.9000",
                         "--json prints the full training log"]


def test_cluster_prints_a_short_summary_and_its_epochs_reach_the_log(tmp_path, capsys, monkeypatch):
    from test_vae_gmm import TINY, two_group_dataset

    monkeypatch.setattr(P, "INTERVAL_S", 0.0)  # every epoch prints (the default is every 30 s)
    options = [f"--vae.{k}={v if isinstance(v, str) else json.dumps(list(v) if isinstance(v, tuple) else v)}"
               for k, v in dataclasses.asdict(TINY).items()]
    args = ["cluster", "--data", two_group_dataset(tmp_path), "--out", tmp_path / "vae", "--device", "cpu", *options]
    out, err = run(capsys, *args)
    assert re.search(r"^vae-gmm pretrain: epoch 1/4 \(25%\) ce \d\.\d{4} · [\d.]+ (epochs/s|s/epoch) · ETA", err, re.M), err
    assert re.search(r"^vae-gmm elbo: epoch 4/4 \(100%\) loss \d+\.\d{4} kl \d+\.\d{3} · .*done in", err, re.M), err
    metrics = json.loads((tmp_path / "vae" / "metrics.json").read_text())
    lines = out.splitlines()
    sizes = ", ".join(str(n) for n in metrics["cluster_sizes"])
    assert lines[0] == f"vae_gmm: 20 users, 10 items · 2 clusters of {sizes} training pairs"
    assert re.fullmatch(r"4 pretrain \+ 4 elbo epochs in \d+s · final loss \d+\.\d{4}", lines[1]), lines[1]
    assert f"| test | {metrics['test']['accuracy']:.4f} | {metrics['test']['rmse']:.4f} |" in lines
    assert lines[-1] == f"full metrics: {tmp_path / 'vae' / 'metrics.json'} (--json prints them)"
    assert len(lines) < 12
    out, _ = run(capsys, *args, "--json")  # the finished folder is reused
    assert json.loads(out) == metrics


def test_target_model_epochs_and_batches_reach_the_log(tmp_path, capsys, monkeypatch):
    from test_target_models import SAS, save_dataset, sequential_frame

    from whyrec.encoders.target_train import train_target

    monkeypatch.setattr(P, "INTERVAL_S", 0.0)
    train_target(save_dataset(tmp_path / "d", sequential_frame(n_users=20)), str(tmp_path / "out"), "sasrec",
                 dataclasses.replace(SAS, epochs=2, batch_size=16), device="cpu")
    err = capsys.readouterr().err
    assert re.search(r"^sasrec: epoch 1/2 \(50%\) loss \d+\.\d{4} best_val_ndcg@10 \d\.\d{4} · .*ETA", err, re.M), err
    assert re.search(r"^sasrec: epoch 2/2 .*done in", err, re.M), err
    assert re.search(r"^sasrec epoch 1: batch 1/\d+ \(\d+%\) loss \d+\.\d{4}", err, re.M), err


def test_prepare_steps_reach_the_log(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(P, "INTERVAL_S", 0.0)
    (tmp_path / "r.csv").write_text("user,item,rating\n" + "".join(f"u{u},i{i},4\n" for u in range(4) for i in range(5)))
    _, err = run(capsys, "data", "prepare", "--source", "csv", "--path", tmp_path / "r.csv", "--out", tmp_path / "d")
    run_lines = [line for line in err.splitlines() if line.startswith("prepare csv")]
    assert [line.split(": ")[0] for line in run_lines] == ["prepare csv (load)", "prepare csv (split)",
                                                          "prepare csv (save)"], err
    assert run_lines[0].startswith("prepare csv (load): step 1/3 (33%)") and "done in" in run_lines[-1]
