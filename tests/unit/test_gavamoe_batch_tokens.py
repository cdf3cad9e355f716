"""GaVaMoE under `--train.batch_tokens`: rows packed up to a padded-token budget, as XRec's; a budget
below the longest example is refused with one line before any step."""

import pytest
import torch
from test_gavamoe import TINY, FakeVAE, save_toy_data, small_cfg

from whyrec.cli import main
from whyrec.config import TrainConfig
from whyrec.methods.gavamoe import artifact as GA
from whyrec.methods.gavamoe import train as GT
from whyrec.methods.gavamoe.model import GaVaMoE

torch.set_num_threads(1)


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    for mod in (GA, GT):  # training reads the VAE, loading the folder reads its copy
        monkeypatch.setattr(mod, "_load_vae", lambda path, device: FakeVAE())
    # titles of 1 to 31 words: prompts of different lengths, so a budget takes more short rows than long ones
    return save_toy_data(tmp_path, title=lambda k: " ".join(["Hotel"] + ["Grand"] * (6 * k)))


def _encoded_shapes(monkeypatch) -> list[tuple[int, int]]:
    """(rows, padded length) of every batch the training step encodes."""
    shapes, encode = [], GaVaMoE.encode

    def spy(self, prompts, targets=None, *args, **kw):
        batch = encode(self, prompts, targets, *args, **kw)
        if targets is not None:
            shapes.append(tuple(batch["input_ids"].shape))
        return batch

    monkeypatch.setattr(GaVaMoE, "encode", spy)
    return shapes


def test_budget_batches_stay_within_the_budget_and_the_loss_goes_down(data_dir, monkeypatch):
    shapes = _encoded_shapes(monkeypatch)
    train = TrainConfig(max_steps=16, batch_size=4, batch_tokens=900, lr=3e-3, checkpoint_every=100, seed=1)
    log = GT.train_gavamoe(str(data_dir / "data"), str(data_dir / "vae"), str(data_dir / "run"), TINY, small_cfg(), train)
    assert log["steps"] == 16 and len(shapes) == 16
    assert all(rows * width <= 900 for rows, width in shapes)  # what each step really pads to
    # rows by the budget, not batch_size 4: three of the ~283-token rows, two of the ~390-token ones
    assert max(rows for rows, width in shapes if width < 300) == 3
    assert max(rows for rows, width in shapes if width > 380) == 2
    assert max(rows * width for rows, width in shapes) > 0.8 * 900  # and the batches are filled near it
    losses = log["losses"]
    assert sum(losses[-4:]) / 4 < sum(losses[:4]) / 4 - 0.2
    card = (data_dir / "run" / "README.md").read_text()
    assert "batch 900 tokens x 1 accumulation" in card


def test_the_token_lengths_are_the_encoded_ones(data_dir, monkeypatch):
    """The lengths the budget packs by are the tokens `GaVaMoE.encode` makes of prompt + target."""
    seen = {}
    real = GT._token_lengths

    def spy(tok, prompts, targets, train):
        seen["lengths"] = real(tok, prompts, targets, train)
        seen["rows"] = (prompts, targets, tok)
        return seen["lengths"]

    monkeypatch.setattr(GT, "_token_lengths", spy)
    train = TrainConfig(max_steps=1, batch_size=4, batch_tokens=900, max_target_tokens=3, checkpoint_every=100)
    GT.train_gavamoe(str(data_dir / "data"), str(data_dir / "vae"), str(data_dir / "run"), TINY, small_cfg(), train)
    prompts, targets, tok = seen["rows"]
    from whyrec.llm.collate import encode_batch

    for n in (0, len(prompts) - 1):
        batch = encode_batch(tok, prompts[n:n + 1], targets[n:n + 1], max_target_tokens=3)
        assert seen["lengths"][n] == batch["input_ids"].shape[1]
    assert len(seen["lengths"]) == len(prompts) > 10


def test_a_budget_below_the_longest_example_is_refused_in_one_line(data_dir, capsys):
    out = data_dir / "run"
    code = main(["train", "explainer", "--method", "gavamoe", "--data", str(data_dir / "data"),
                 "--encoder", str(data_dir / "vae"), "--out", str(out), "--model.name_or_path", "tiny-random-llama",
                 "--model.device", "cpu", "--model.dtype", "float32", "--gavamoe.n_experts", "2",
                 "--gavamoe.top_k", "1", "--train.max_steps", "2", "--train.batch_tokens", "50"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert "--train.batch_tokens 50 is below the longest training example (" in err
    assert "raise it to at least" in err and "--train.max_target_tokens" in err
    assert not (out / "checkpoint").exists() and not (out / "adapter_model.safetensors").exists()
