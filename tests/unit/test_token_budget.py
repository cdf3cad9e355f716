"""Token-budget batches (`--train.batch_tokens`): rows packed up to a padded-token budget."""

import pytest
import torch
from torch import nn

from whyrec.config import ConfigError, TrainConfig
from whyrec.llm.collate import token_budget_order
from whyrec.llm.trainer import epoch_batches, train_loop
from whyrec.utils import WhyrecError

LENGTHS = [int(x) for x in torch.randint(5, 60, (203,), generator=torch.Generator().manual_seed(0))]
X = torch.randn(203, 6, generator=torch.Generator().manual_seed(0))
Y = X @ torch.randn(6, 1, generator=torch.Generator().manual_seed(1))


def padded(batch, lengths=LENGTHS):
    return len(batch) * max(lengths[i] for i in batch)


def test_every_row_once_and_each_batch_within_its_budget():
    batches = token_budget_order(LENGTHS, 128, 40, torch.Generator().manual_seed(0))
    assert sorted(i for b in batches for i in b) == list(range(len(LENGTHS)))
    assert all(padded(b) <= 128 for b in batches)
    sizes = {len(b) for b in batches}
    assert len(sizes) > 3  # short rows share a batch with more of them than long rows do


def test_budget_batches_are_nearly_full_and_sorted_by_length():
    """Greedy packing of length-sorted windows: adding the next row of the window would have
    broken the budget, so no batch but a window's last is far below it."""
    batches = token_budget_order(LENGTHS, 256, 1000, torch.Generator().manual_seed(0))  # one window
    assert all(LENGTHS[b[0]] <= LENGTHS[b[-1]] for b in batches)
    runs = sorted(batches, key=lambda b: (LENGTHS[b[0]], LENGTHS[b[-1]]))
    for batch, after in zip(runs, runs[1:]):  # the row that opened the next batch did not fit
        assert (len(batch) + 1) * LENGTHS[after[0]] > 256


def test_a_row_longer_than_the_budget_is_a_batch_alone():
    batches = token_budget_order([3, 500, 4, 5], 20, 10, torch.Generator().manual_seed(0))
    assert [1] in batches and sorted(i for b in batches for i in b) == [0, 1, 2, 3]


def test_order_is_a_function_of_the_seed():
    a = token_budget_order(LENGTHS, 128, 40, torch.Generator().manual_seed(5))
    b = token_budget_order(LENGTHS, 128, 40, torch.Generator().manual_seed(5))
    c = token_budget_order(LENGTHS, 128, 40, torch.Generator().manual_seed(6))
    assert a == b and a != c


def test_batch_tokens_must_be_positive():
    with pytest.raises(ConfigError, match="batch_tokens must be >= 1 or null"):
        TrainConfig(batch_tokens=0)


def test_trainer_packs_by_token_lengths_and_counts_an_epoch_in_budget_batches(tmp_path):
    torch.manual_seed(0)
    model = nn.Linear(6, 1)
    seen = []

    def step(idx):
        seen.append(list(idx))
        return nn.functional.mse_loss(model(X[idx]), Y[idx])

    chars = [4 * n for n in LENGTHS]  # a proxy that sorts alike but counts in other units
    cfg = TrainConfig(lr=1e-2, batch_size=4, batch_tokens=128, epochs=1.0, seed=3)
    state = train_loop(model, chars, step, cfg, tmp_path / "c", token_lengths=LENGTHS)
    expected = epoch_batches(chars, cfg, 0, LENGTHS)
    assert seen == expected and state["step"] == len(expected)
    assert all(padded(b) <= 128 for b in seen) and len({len(b) for b in seen}) > 3


def test_token_budget_run_resumes_bit_for_bit(tmp_path):
    def run(folder, crash_at=None):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(6, 8), nn.Dropout(0.1), nn.Linear(8, 1))
        calls = {"n": 0}

        def step(idx):
            calls["n"] += 1
            if calls["n"] == crash_at:
                raise KeyboardInterrupt
            return nn.functional.mse_loss(model(X[idx]), Y[idx])

        cfg = TrainConfig(lr=1e-2, batch_size=4, batch_tokens=100, max_steps=12, checkpoint_every=5, seed=3)
        return model, train_loop(model, LENGTHS, step, cfg, folder, token_lengths=LENGTHS)

    ref, _ = run(tmp_path / "a")
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "b", crash_at=8)
    resumed, state = run(tmp_path / "b")
    assert state["step"] == 12
    for p, q in zip(ref.parameters(), resumed.parameters()):
        assert torch.allclose(p, q, atol=1e-6)


def test_a_method_that_gives_no_token_lengths_is_refused(tmp_path):
    model = nn.Linear(6, 1)
    with pytest.raises(WhyrecError, match="batch_tokens needs each example's length in tokens"):
        train_loop(model, LENGTHS, lambda idx: model(X[idx]).mean(), TrainConfig(batch_tokens=64, max_steps=1),
                   tmp_path / "c")


def test_without_a_budget_batches_are_the_fixed_ones_of_before():
    from whyrec.llm.collate import length_bucketed_order

    cfg = TrainConfig(batch_size=8, seed=3)
    assert epoch_batches(LENGTHS, cfg, 2) == length_bucketed_order(LENGTHS, 8, torch.Generator().manual_seed(5))
