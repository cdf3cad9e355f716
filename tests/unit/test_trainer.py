"""The shared LLM-side training loop: atomic checkpoints and exact resume after a crash."""

import math

import pytest
import torch
from torch import nn

from whyrec.config import TrainConfig
from whyrec.llm.collate import length_bucketed_order, pad_batch
from whyrec.llm.trainer import scheduled_lr, train_loop

X = torch.randn(40, 6, generator=torch.Generator().manual_seed(0))
Y = X @ torch.randn(6, 1, generator=torch.Generator().manual_seed(1))


class Crash(RuntimeError):
    pass


def make(crash_at=None):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.Dropout(0.1), nn.Linear(8, 1))
    model[0].weight.requires_grad_(False)  # a frozen part, like the LLM
    calls = {"n": 0}

    def step(idx):
        calls["n"] += 1
        if crash_at is not None and calls["n"] == crash_at:
            raise Crash()
        return nn.functional.mse_loss(model(X[idx]), Y[idx])

    return model, step


CFG = TrainConfig(lr=1e-2, batch_size=4, max_steps=12, checkpoint_every=5, seed=3)


def test_resume_after_crash_matches_uninterrupted(tmp_path):
    ref, step = make()
    state = train_loop(ref, [1] * 40, step, CFG, tmp_path / "a", desc="ref")
    assert state["step"] == 12 and len(state["losses"]) == 12

    crashed, step = make(crash_at=8)  # dies after the step-5 checkpoint
    with pytest.raises(Crash):
        train_loop(crashed, [1] * 40, step, CFG, tmp_path / "b")
    assert (tmp_path / "b" / "trainer_state.json").exists() and not (tmp_path / "b.tmp").exists()
    resumed, step = make()
    state = train_loop(resumed, [1] * 40, step, CFG, tmp_path / "b")
    assert state["step"] == 12
    for (name, p), q in zip(ref.state_dict().items(), resumed.state_dict().values()):
        assert torch.allclose(p, q, atol=1e-6), name


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_resume_with_a_decaying_schedule_matches_uninterrupted(tmp_path, schedule):
    cfg = TrainConfig(lr=1e-2, batch_size=4, max_steps=12, checkpoint_every=5, seed=3, lr_schedule=schedule,
                      warmup_steps=2)
    ref, step = make()
    train_loop(ref, [1] * 40, step, cfg, tmp_path / "a")
    crashed, step = make(crash_at=8)
    with pytest.raises(Crash):
        train_loop(crashed, [1] * 40, step, cfg, tmp_path / "b")
    resumed, step = make()
    train_loop(resumed, [1] * 40, step, cfg, tmp_path / "b")
    for (name, p), q in zip(ref.state_dict().items(), resumed.state_dict().values()):
        assert torch.allclose(p, q, atol=1e-6), name
    constant, step = make()  # and the schedule changed the run
    train_loop(constant, [1] * 40, step, CFG, tmp_path / "c")
    assert not torch.allclose(constant[2].weight, ref[2].weight, atol=1e-4)


def test_scheduled_lr_values():
    warm = TrainConfig(lr=1.0, warmup_steps=3)
    assert [scheduled_lr(warm, s, 10) for s in range(5)] == [0.25, 0.5, 0.75, 1.0, 1.0]
    linear = TrainConfig(lr=1.0, lr_schedule="linear")
    assert [scheduled_lr(linear, s, 4) for s in range(4)] == [1.0, 0.75, 0.5, 0.25]
    cosine = TrainConfig(lr=2.0, lr_schedule="cosine", warmup_steps=1)
    assert scheduled_lr(cosine, 0, 5) == 1.0 and scheduled_lr(cosine, 1, 5) == 2.0
    assert scheduled_lr(cosine, 3, 5) == pytest.approx(1.0) and scheduled_lr(cosine, 4, 5) == pytest.approx(
        2.0 * 0.5 * (1 + math.cos(math.pi * 0.75)))
    with pytest.raises(ValueError, match="lr_schedule"):
        TrainConfig(lr_schedule="step")


def test_frozen_parameters_untouched_and_loss_falls(tmp_path):
    model, step = make()
    frozen = model[0].weight.clone()
    state = train_loop(model, [1] * 40, step, TrainConfig(lr=1e-2, batch_size=8, max_steps=60, seed=0), tmp_path / "c")
    assert torch.equal(model[0].weight, frozen)
    assert sum(state["losses"][-5:]) < sum(state["losses"][:5])


def test_pad_batch_masks_prompt_and_padding():
    b = pad_batch([[1, 2, 3], [4]], [[5, 6], [7]], pad_id=0, side="left")
    assert b["input_ids"].tolist() == [[1, 2, 3, 5, 6], [0, 0, 0, 4, 7]]
    assert b["attention_mask"].tolist() == [[1, 1, 1, 1, 1], [0, 0, 0, 1, 1]]
    assert b["labels"].tolist() == [[-100, -100, -100, 5, 6], [-100, -100, -100, -100, 7]]
    r = pad_batch([[1, 2, 3], [4]], [[5, 6], [7]], pad_id=0, side="right")
    assert r["labels"].tolist() == [[-100, -100, -100, 5, 6], [-100, 7, -100, -100, -100]]


def test_bucketed_order_covers_everything_once():
    lengths = list(range(103))
    batches = length_bucketed_order(lengths, 8, torch.Generator().manual_seed(0))
    flat = sorted(i for b in batches for i in b)
    assert flat == lengths and all(len(b) <= 8 for b in batches)


def test_accumulation_equals_one_big_batch(tmp_path):
    """2 accumulated batches of 4 (example-weighted) make the update of one batch of 8 on the same rows."""
    torch.manual_seed(0)
    a = nn.Linear(6, 1)
    b = nn.Linear(6, 1)
    b.load_state_dict(a.state_dict())
    order = {}

    def step_for(model):
        def step(idx):
            order.setdefault(id(model), []).append(list(idx))
            return nn.functional.mse_loss(model(X[idx]), Y[idx])
        return step

    big = TrainConfig(lr=1e-2, batch_size=8, max_steps=3, seed=3)
    acc = TrainConfig(lr=1e-2, batch_size=4, max_steps=3, seed=3, grad_accum_steps=2, max_grad_norm=100.0)
    sa = train_loop(a, [1] * 40, step_for(a), big, tmp_path / "a")
    # feed the accumulating run the big run's batches, split in halves
    halves = [h for batch in order[id(a)] for h in (batch[:4], batch[4:])]
    it = iter(halves)
    sb = train_loop(b, [1] * 40, lambda idx: step_for(b)(next(it)), acc, tmp_path / "b")
    assert sb["step"] == 3 and sb["losses"] == pytest.approx(sa["losses"], rel=1e-5)
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.allclose(p, q, atol=1e-6)


def test_max_grad_norm_clips_the_update(tmp_path, monkeypatch):
    torch.manual_seed(0)
    model = nn.Linear(6, 1)
    before = [p.detach().clone() for p in model.parameters()]
    cfg = TrainConfig(lr=1.0, batch_size=8, max_steps=1, seed=0, max_grad_norm=1e-3)

    monkeypatch.setattr(torch.optim, "Adam", torch.optim.SGD)  # with SGD the step length is the gradient norm
    train_loop(model, [1] * 40, lambda idx: (100 * (model(X[idx]) - Y[idx])).square().mean(), cfg, tmp_path / "c")
    moved = torch.cat([(p.detach() - q).reshape(-1) for p, q in zip(model.parameters(), before)]).norm()
    assert float(moved) == pytest.approx(1e-3, rel=1e-3)


def test_fsdp_finds_decoder_layers_and_refuses_compile(tmp_path, caplog):
    from whyrec.config import ModelConfig
    from whyrec.llm.load import load_model
    from whyrec.llm.sharding import decoder_layers, shard_frozen_layers
    from whyrec.utils import WhyrecError

    llm, _ = load_model(ModelConfig(name_or_path="tiny-random-llama", device="cpu"))
    wrapper = nn.ModuleDict({"llm": llm, "adapter": nn.Linear(2, 2)})  # layers found inside any module
    assert [type(m).__name__ for m in decoder_layers(wrapper)] == ["LlamaDecoderLayer"] * 2
    assert decoder_layers(nn.Linear(2, 2)) == []
    assert shard_frozen_layers(wrapper) == 0 and "one process" in caplog.text  # nothing to shard alone

    model, step = make()
    with pytest.raises(WhyrecError, match="fsdp and train.compile"):
        train_loop(model, [1] * 40, step, TrainConfig(fsdp=True, compile=True, max_steps=1), tmp_path / "c")


def test_compile_auto_only_for_long_runs_of_a_decoder_with_a_compiler(monkeypatch):
    from whyrec.config import ModelConfig
    from whyrec.llm import compile_policy as C
    from whyrec.llm.load import load_model

    llm, _ = load_model(ModelConfig("tiny-random-llama", device="cpu"))
    monkeypatch.setattr(C, "compiler_available", lambda device: True)
    assert C.wants_compile(None, C.COMPILE_MIN_STEPS, "cpu", False, llm)
    assert not C.wants_compile(None, C.COMPILE_MIN_STEPS - 1, "cpu", False, llm)  # would not pay back
    assert not C.wants_compile(None, 10**6, "cpu", True, llm)  # fsdp and compile do not combine
    assert not C.wants_compile(None, 10**6, "cpu", False, nn.Linear(2, 2))  # no decoder layers to compile
    assert C.wants_compile(True, 1, "cpu", False, llm) and not C.wants_compile(False, 10**6, "cpu", False, llm)
    monkeypatch.setattr(C, "compiler_available", lambda device: False)
    assert not C.wants_compile(None, 10**6, "cpu", False, llm)


class _FakeCompileError(RuntimeError):
    pass


_FakeCompileError.__module__ = "torch._inductor.exc"  # what inductor's own failures look like


def test_a_failed_compilation_falls_back_to_eager_with_the_same_result(tmp_path, monkeypatch, capsys):
    from contextlib import contextmanager

    from whyrec.llm import load as L

    @contextmanager
    def failing_compile(model, dynamic=True):
        handle = model.register_forward_pre_hook(lambda m, a: (_ for _ in ()).throw(_FakeCompileError("no cl.exe")))
        try:
            yield 1
        finally:
            handle.remove()

    monkeypatch.setattr(L, "compiled_decoder_layers", failing_compile)
    eager, step = make()
    ref = train_loop(eager, [1] * 40, step, CFG, tmp_path / "e")
    model, step = make()
    object.__setattr__(model, "llm", model[0])  # the loop compiles `module.llm`: here a layer whose compile fails
    state = train_loop(model, [1] * 40, step, TrainConfig(**{**CFG.__dict__, "compile": True}), tmp_path / "c")
    assert state["compiled"] is False and state["losses"] == ref["losses"]
    assert "training on without compile" in capsys.readouterr().err


def test_schedule_fields_enter_the_fingerprint_only_when_set_and_pin_the_budget(tmp_path):
    from dataclasses import asdict

    from whyrec.config import ModelConfig
    from whyrec.methods.common import training_fingerprint
    from whyrec.outputs import fingerprint_of

    def train_fp(train):
        return training_fingerprint(str(tmp_path), None, "m", ModelConfig(), {}, train)["train"]

    old = {k: v for k, v in asdict(TrainConfig()).items() if k not in ("lr_schedule", "warmup_steps")}
    parsed = "".join(["con", "stant"])  # a CLI/YAML string: equal to the default, not the same object
    assert fingerprint_of(TrainConfig(lr_schedule=parsed)) == fingerprint_of(old)  # older folders resume
    # a constant rate: a larger step budget continues the same run, so the budget is not fingerprinted
    assert train_fp(TrainConfig(max_steps=10)) == train_fp(TrainConfig(max_steps=20))
    # a decaying rate depends on the planned steps: another budget is another run
    linear = train_fp(TrainConfig(max_steps=10, lr_schedule="linear"))
    assert linear["lr_schedule"] == "linear" and linear["max_steps"] == 10
    assert linear != train_fp(TrainConfig(max_steps=20, lr_schedule="linear"))
    assert train_fp(TrainConfig(warmup_steps=5))["warmup_steps"] == 5
