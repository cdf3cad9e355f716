"""`TrainConfig.compile`: compiled decoder layers with the q/k/v injection hooks train like eager ones."""

import pytest
import torch

from whyrec.config import ModelConfig, TrainConfig, XRecConfig
from whyrec.llm.load import load_model
from whyrec.llm.trainer import train_loop
from whyrec.methods.xrec.model import XRec

pytestmark = pytest.mark.slow  # compiles forward and backward with inductor: ~1-2 min on 2 loaded cores


def run(tmp_path, compile: bool):
    torch.manual_seed(0)
    llm, tok = load_model(ModelConfig("tiny-random-llama", device="cpu"))
    model = XRec(llm, tok, 8, XRecConfig(n_exps=2, item_noun="movie", dropout=0.0))
    prompts = [model.prompt(f"Film {k}" + "!" * k, "likes animation", "a family film") for k in range(6)]
    targets = [f"You liked film {k}." for k in range(6)]
    vec = torch.randn(6, 2, 8, generator=torch.Generator().manual_seed(1))

    def step(idx):
        b = model.encode([prompts[k] for k in idx], [targets[k] for k in idx])
        return model(b["input_ids"], b["attention_mask"], b["labels"], vec[idx, 0], vec[idx, 1])

    cfg = TrainConfig(lr=1e-2, batch_size=3, max_steps=3, seed=0, compile=compile)
    state = train_loop(model, [len(p) for p in prompts], step, cfg, tmp_path / ("c" if compile else "e"))
    return model, state


def test_compiled_layers_train_like_eager(tmp_path):
    eager, s_eager = run(tmp_path, False)
    compiled, s_comp = run(tmp_path, True)
    assert s_comp["losses"] == pytest.approx(s_eager["losses"], abs=1e-4)
    a, b = eager.adapter_state(), compiled.adapter_state()
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)  # the hooks' gradients reached the adapters
    assert all(layer._compiled_call_impl is None for layer in compiled.llm.model.layers)  # eager again after
