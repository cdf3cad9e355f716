"""Length-grouped Trainer batches: order fixed by (seed, epoch), less padding, exact resume."""

import random

import pytest
import torch
from safetensors.torch import load_file
from test_recexplainer import TINY, FakeTarget, material

from whyrec.llm.length_grouping import LengthGroupedSampler, grouped_order
from whyrec.methods.recexplainer import tasks as T

# Skewed lengths: mostly short rows, a long tail (like a task mixture of titles and ranked lists).
_RNG = random.Random(0)
SKEWED = [_RNG.choice([8] * 6 + [20, 60, 200]) + k % 5 for k in range(403)]


def padding(order: list[int], lengths: list[int], batch_size: int) -> float:
    """Padded tokens over real tokens when `order` is cut into micro-batches of `batch_size`."""
    chunks = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    return sum(len(c) * max(lengths[i] for i in c) for c in chunks) / sum(lengths)


def test_order_is_a_pure_function_of_seed_and_epoch():
    a = grouped_order(SKEWED, 4, seed=7, epoch=2)
    assert a == grouped_order(SKEWED, 4, seed=7, epoch=2)
    assert sorted(a) == list(range(len(SKEWED)))
    assert a != grouped_order(SKEWED, 4, seed=7, epoch=3) and a != grouped_order(SKEWED, 4, seed=8, epoch=2)
    torch.manual_seed(123)  # the global random state plays no part
    sampler = LengthGroupedSampler(SKEWED, 4, seed=7)
    sampler.set_epoch(2)
    assert list(sampler) == a and len(sampler) == len(SKEWED)
    # 403 = 100 x 4 + 3: the one short micro-batch comes last, so every cut of 4 is a grouped batch
    assert set(a[-3:]) == set(grouped_order(SKEWED, 4, seed=7, epoch=2)[400:])


def test_padding_is_lower_than_a_random_order():
    rand = torch.randperm(len(SKEWED), generator=torch.Generator().manual_seed(0)).tolist()
    before, after = padding(rand, SKEWED, 4), padding(grouped_order(SKEWED, 4, 0, 0), SKEWED, 4)
    assert before > 2.0 and after < 1.1, (before, after)


def _examples(target):
    return T.iid2title(target, "hybrid") + T.uidiid2binary(target, "hybrid", material(target))


def recording_trainer(cls: type, seen: list, kill_at: int | None = None) -> type:
    """`cls` (an HF Trainer) that appends each micro-batch's input_ids to `seen` and raises
    KeyboardInterrupt when it reaches optimizer step `kill_at` (a killed run)."""

    class Recording(cls):
        def training_step(self, model, inputs, *a, **kw):
            if kill_at is not None and self.state.global_step == kill_at:
                raise KeyboardInterrupt("killed")
            seen.append(inputs["input_ids"].tolist())
            return super().training_step(model, inputs, *a, **kw)

    return Recording


def killed_and_resumed(run, tmp_path, kill: int, total: int) -> tuple[dict, dict, list]:
    """`run(out, max_steps, save_steps, kill_at, seen)` trained `total` steps in one go and, in a
    second folder, killed at step `kill` then resumed from the checkpoint there; checks that the
    resumed run saw exactly the rest of the uninterrupted run's micro-batches (2 per optimizer step),
    in order. Returns (uninterrupted log, resumed log, the uninterrupted run's micro-batches)."""
    whole, seen_whole = tmp_path / "whole", []
    log_whole = run(whole, total, kill, None, seen_whole)
    cut, seen_first, seen_rest = tmp_path / "cut", [], []
    with pytest.raises(KeyboardInterrupt):
        run(cut, total, kill, kill, seen_first)
    log_cut = run(cut, total, kill, None, seen_rest)
    assert log_cut["resumed_from"] == f"checkpoint-{kill}" and log_cut["steps"] == log_whole["steps"] == total
    assert seen_first == seen_whole[:2 * kill] and seen_rest == seen_whole[2 * kill:]  # exactly the rest, in order
    assert log_cut["losses"] == log_whole["losses"]
    return log_whole, log_cut, seen_whole


def _run(tmp_path, monkeypatch, out, max_steps, save_steps, kill_at=None, seen=None):
    """Train the tiny RecExplainer; record each micro-batch's input_ids; raise after `kill_at` steps."""
    from whyrec.methods.recexplainer import model as R
    from whyrec.methods.recexplainer import train as RT

    monkeypatch.undo()  # the trainer class of a previous run is not wrapped again
    monkeypatch.setattr(RT, "_load_target", lambda path, device="cpu": FakeTarget())
    monkeypatch.setattr(R, "_load_target", lambda path, device="cpu": FakeTarget())
    factory = RT._trainer_class
    monkeypatch.setattr(RT, "_trainer_class", lambda *args: recording_trainer(factory(*args), seen, kill_at))
    (tmp_path / "target").mkdir(exist_ok=True)
    (tmp_path / "target" / "config.json").write_text("{}")
    cfg = R.RecExplainerConfig(mode="hybrid", connector_hidden=16, lr=5e-3, micro_batch_size=2, grad_accum=2,
                               max_steps=max_steps, logging_steps=1, save_steps=save_steps, warmup_ratio=0.0)
    assert cfg.group_by_length
    return RT.train_recexplainer(str(tmp_path / "target"), str(out), TINY, cfg, examples=_examples(FakeTarget()))


def test_resumed_run_equals_an_uninterrupted_one(tmp_path, monkeypatch):
    n = len(_examples(FakeTarget()))
    per_epoch = -(-n // 4)  # optimizer steps per epoch: micro-batches of 2, accumulated 2 at a time
    kill = per_epoch + 1  # the checkpoint the rerun resumes from lies inside the second epoch
    total = kill + per_epoch + 1
    assert per_epoch > 1
    _, _, seen_whole = killed_and_resumed(
        lambda out, steps, save, kill_at, seen: _run(tmp_path, monkeypatch, out, steps, save, kill_at, seen),
        tmp_path, kill, total)
    widths = [len(b[0]) for b in seen_whole]
    assert len(set(widths)) > 1  # the batches really differ in length, so order matters
    micro = -(-n // 2)
    assert seen_whole[:micro] != seen_whole[micro:2 * micro]  # set_epoch reaches the sampler: a new order
    for name in ("adapter_model.safetensors", "connectors.safetensors"):
        a, b = load_file(str(tmp_path / "whole" / name)), load_file(str(tmp_path / "cut" / name))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name


def test_a_folder_made_before_the_option_resumes_with_it_off_and_is_refused_with_it_on():
    from dataclasses import asdict

    from whyrec.config_methods import RecExplainerConfig
    from whyrec.outputs import fingerprint_of

    old = {k: v for k, v in asdict(RecExplainerConfig()).items() if k != "group_by_length"}
    assert fingerprint_of(RecExplainerConfig(group_by_length=False)) == fingerprint_of(old)
    assert fingerprint_of(RecExplainerConfig()) == {**fingerprint_of(old), "group_by_length": True}
