"""Long loops report progress when stderr is a log file, not a terminal (whyrec.progress)."""

import io
import re
from dataclasses import replace

import pytest
import torch
from torch import nn

import whyrec.progress as P
from whyrec.config import TrainConfig
from whyrec.llm.trainer import train_loop


class Clock:
    """A fake monotonic clock: each call returns the current time, `tick` moves it."""

    def __init__(self):
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_log_lines_every_interval_and_a_last_line():
    clock, log = Clock(), io.StringIO()
    bar = P.progress(total=600, desc="train", unit="step", stream=log, interval=30, clock=clock)
    assert isinstance(bar, P.LogProgress)
    for step in range(600):
        clock.t += 0.125  # 8 steps/s
        bar.set_postfix(loss=f"{3 - step / 600:.2f}")
        bar.update(1)
    bar.close()
    lines = log.getvalue().splitlines()
    assert lines == ["train: step 240/600 (40%) loss 2.60 · 8.0 steps/s · ETA 45s",
                     "train: step 480/600 (80%) loss 2.20 · 8.0 steps/s · ETA 15s",
                     "train: step 600/600 (100%) loss 2.00 · 8.0 steps/s · done in 1m15s"]


def test_rates_read_as_english_plurals():
    assert [P.plural(u) for u in ("step", "batch", "epoch", "pass", "box")] == \
        ["steps", "batches", "epochs", "passes", "boxes"]
    clock, log = Clock(), io.StringIO()
    bar = P.progress(total=4, desc="pepler", unit="batch", stream=log, interval=0, clock=clock)
    for _ in range(4):
        clock.t += 0.5
        bar.update(1)
    bar.close()
    assert "pepler: batch 4/4 (100%) · 2.0 batches/s" in log.getvalue()


def test_slow_steps_show_seconds_per_step_and_resume_counts_only_new_steps():
    clock, log = Clock(), io.StringIO()
    bar = P.progress(range(5, 10), total=10, initial=5, desc="lightgcn", unit="epoch", stream=log, interval=10,
                     clock=clock)
    for _ in bar:
        clock.t += 20
    assert log.getvalue().splitlines() == [
        "lightgcn: epoch 6/10 (60%) · 20.0 s/epoch · ETA 1m20s",
        "lightgcn: epoch 7/10 (70%) · 20.0 s/epoch · ETA 1m00s",
        "lightgcn: epoch 8/10 (80%) · 20.0 s/epoch · ETA 40s",
        "lightgcn: epoch 9/10 (90%) · 20.0 s/epoch · ETA 20s",
        "lightgcn: epoch 10/10 (100%) · 20.0 s/epoch · done in 1m40s",
    ]  # the last step's line is the final one: close() does not repeat it


def test_inner_loops_and_disabled_bars_stay_quiet():
    log = io.StringIO()
    for _ in P.progress(range(3), desc="batches", leave=False, stream=log, interval=60, clock=Clock()):
        pass
    for _ in P.progress(range(3), desc="rank 1", enabled=False, stream=log):
        pass
    assert log.getvalue() == ""


def test_a_terminal_keeps_tqdm():
    from tqdm import tqdm

    bar = P.progress(total=3, desc="x", stream=Tty())
    assert isinstance(bar, tqdm) and not bar.disable
    bar.close()


def test_byte_counts_get_si_prefixes():
    clock, log = Clock(), io.StringIO()
    bar = P.progress(total=45_600_000, initial=1_000_000, desc="r.json.gz", unit="B", unit_scale=True, stream=log,
                     interval=5, clock=clock)
    for _ in range(9):
        clock.t += 1
        bar.update(2_000_000)  # 2 MB/s
    bar.update(bar.total - bar.n)
    bar.close()
    assert log.getvalue().splitlines() == [
        "r.json.gz: 11.0 MB/45.6 MB (24%) · 2.0 MB/s · ETA 17s",  # the resumed first MB is not in the rate
        "r.json.gz: 45.6 MB/45.6 MB (100%) · 5.0 MB/s · done in 9s",
    ]
    assert [P.scaled(v, "B") for v in (512, 1500, 2_500_000_000, 3e15)] == ["512 B", "1.5 kB", "2.5 GB", "3000.0 TB"]


@pytest.mark.parametrize("seconds,text", [(0, "0s"), (59.4, "59s"), (150, "2m30s"), (3900, "1h05m")])
def test_duration(seconds, text):
    assert P.duration(seconds) == text


def test_trainer_prints_step_loss_rate_eta_to_a_non_tty_stderr(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(P, "INTERVAL_S", 0.0)  # every step prints (the default is every 30 s)
    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    x, y = torch.randn(16, 4), torch.randn(16, 1)
    train_loop(model, [1] * 16, lambda idx: nn.functional.mse_loss(model(x[idx]), y[idx]),
               TrainConfig(lr=1e-2, batch_size=4, max_steps=3, seed=0), tmp_path / "ckpt", desc="xrec")
    lines = capsys.readouterr().err.splitlines()
    steps = [line for line in lines if line.startswith("xrec: step")]
    assert [s.split()[2] for s in steps] == ["1/3", "2/3", "3/3"], lines
    assert all(re.search(r"loss \d+\.\d{3} · [\d.]+ (steps/s|s/step)", s) for s in steps), steps
    assert "ETA" in steps[0] and "done in" in steps[-1]


def test_lightgcn_epochs_reach_the_log(tmp_path, capsys, monkeypatch):
    from test_lightgcn import TINY, community_dataset

    from whyrec.encoders.train import train_encoder

    monkeypatch.setattr(P, "INTERVAL_S", 0.0)
    train_encoder(community_dataset(tmp_path), str(tmp_path / "out"), config=replace(TINY, epochs=2), device="cpu")
    err = capsys.readouterr().err
    assert re.search(r"^lightgcn: epoch 1/2 \(50%\) loss \d\.\d{4} best_val_recall@5 \d\.\d{4}", err, re.M), err
    assert re.search(r"^lightgcn: epoch 2/2 .*done in", err, re.M), err


def test_explaining_many_pairs_reports_progress_in_a_log(tmp_path_factory, capsys, monkeypatch):
    """`Run.explain_many` turns the served model's progress on for long jobs (`recommend -k 50 --explain`);
    the decode loop then reports in a log file too, not only on a terminal."""
    import serve_tiny as T

    import whyrec
    from whyrec.config import GenerationConfig

    monkeypatch.setattr(P, "INTERVAL_S", 0.0)
    run = whyrec.load_run(T.tiny_gavamoe(tmp_path_factory), device="cpu",
                          generation=GenerationConfig(max_new_tokens=2, batch_size=3))
    capsys.readouterr()
    texts = run.explain_many(["u0"] * 9, T.ITEMS[:9])
    # GaVaMoE decodes continuously (rows refilled), so progress counts finished pairs, not batches.
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("explain: pair")]
    assert len(texts) == 9 and [line.split()[2] for line in lines] == [f"{n}/9" for n in range(1, 10)], lines
    run.explain_many(["u0"] * 2, T.ITEMS[:2])  # a short job stays quiet
    assert "explain:" not in capsys.readouterr().err


def test_pepler_epochs_reach_the_log(tmp_path_factory, tmp_path, capsys, monkeypatch):
    import test_pepler_method as T

    from whyrec.methods.pepler.train import fit

    data = T.data_dir.__wrapped__(tmp_path_factory)  # the PEPLER tests' synthetic dataset
    module, train, valid, _, _ = T.build(data, variant="continuous", epochs=2, epochs_phase2=1)
    monkeypatch.setattr(P, "INTERVAL_S", 0.0)
    capsys.readouterr()
    fit(module, train, valid, module.cfg, seed=0, ckpt=tmp_path / "ckpt")
    err = capsys.readouterr().err
    assert re.search(r"^pepler phase 1/2: epoch 1/2 \(50%\) train_loss \d+\.\d{4} valid_loss \d+\.\d{4} · ", err, re.M), err
    assert re.search(r"^pepler phase 2/2: epoch 1/1 \(100%\) .*done in", err, re.M), err
    assert re.search(r"^pepler: batch 1/\d+", err, re.M), err  # inside an epoch too


def test_reading_a_review_file_reports_bytes_in_a_log(tmp_path, capsys, monkeypatch):
    from test_amazon_json import LINES, write

    from whyrec.data.amazon import load_amazon_json

    monkeypatch.setattr(P, "INTERVAL_S", 0.0)
    path = write(tmp_path / "r.json.gz", LINES)
    load_amazon_json(path, k_core=2)
    err = capsys.readouterr().err
    size = path.stat().st_size
    assert re.search(rf"^scan r.json.gz: {size} B/{size} B \(100%\) · [\d.]+ [kMG]?B/s · done in", err, re.M), err


def test_a_download_reports_mb_rate_and_eta_in_a_log(tmp_path, capsys, monkeypatch):
    import threading

    from test_download import FileServer

    from whyrec.data import download as D

    (tmp_path / "mirror").mkdir()
    (tmp_path / "mirror" / "blob.bin").write_bytes(bytes(range(256)) * 1200)  # 307.2 kB: 5 chunks of 64 KiB
    server = FileServer(tmp_path / "mirror")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setattr(P, "INTERVAL_S", 0.0)  # a line per chunk (the default: every few seconds)
    try:
        path = D.download(f"{server.url}/blob.bin", tmp_path / "out")
    finally:
        server.shutdown()
        server.server_close()
    assert path.read_bytes() == (tmp_path / "mirror" / "blob.bin").read_bytes()
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("blob.bin: ")]
    assert re.match(r"blob.bin: 65.5 kB/307.2 kB \(21%\) · [\d.]+ [kMG]?B/s · ETA \d+s$", lines[0]), lines
    assert re.match(r"blob.bin: 307.2 kB/307.2 kB \(100%\) · [\d.]+ [kMG]?B/s · done in", lines[-1]), lines
    assert len(lines) == 5, lines
