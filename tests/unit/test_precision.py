"""`model.dtype auto`: bf16 frozen weights where bf16 is native, fp32 for everything that learns."""

import pytest
import torch
from torch import nn

from whyrec.config import ModelConfig
from whyrec.llm import precision
from whyrec.llm.load import load_model, resolve_dtype
from whyrec.methods.gavamoe.model import GaVaMoE, GaVaMoEConfig

torch.set_num_threads(1)


def test_auto_means_bf16_only_where_native_and_never_for_trained_weights(monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: True)
    assert resolve_dtype("auto", "cpu") is torch.bfloat16
    assert resolve_dtype("auto", "cpu", trains_weights=True) is torch.float32
    assert resolve_dtype("float32", "cpu") is torch.float32  # the exact path stays one setting away
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: False)
    assert resolve_dtype("auto", "cpu") is torch.float32
    assert resolve_dtype("auto", "mps") is torch.float32


def test_bf16_weights_on_a_cpu_that_only_emulates_them_are_warned_about(monkeypatch, capsys):
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: False)
    load_model(ModelConfig(name_or_path="tiny-random-llama", device="cpu", dtype="bfloat16"))
    assert "model.dtype bfloat16 on a CPU without native bf16" in capsys.readouterr().err
    load_model(ModelConfig(name_or_path="tiny-random-llama", device="cpu", dtype="auto"))  # fp32 here: silent
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: True)
    load_model(ModelConfig(name_or_path="tiny-random-llama", device="cpu", dtype="bfloat16"))
    assert "warning" not in capsys.readouterr().err


def test_trainable_layer_inside_a_bf16_model_learns_in_fp32():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8), nn.GELU(), nn.Linear(8, 8), nn.Linear(8, 4)).to(torch.bfloat16)
    for p in model.parameters():
        p.requires_grad_(False)
    model[2].requires_grad_(True)
    assert precision.keep_trainables_fp32(model, output_module=model[3]) == 1
    assert model[2].weight.dtype is torch.float32 and model[0].weight.dtype is torch.bfloat16
    out = model(torch.randn(3, 8, dtype=torch.bfloat16))
    assert out.dtype is torch.bfloat16  # the next bf16 layer got what it expects
    out.float().sum().backward()
    assert model[2].weight.grad.dtype is torch.float32 and model[0].weight.grad is None


def _gavamoe(dtype: str):
    torch.manual_seed(0)
    llm, tok = load_model(ModelConfig("tiny-random-llama", dtype=dtype, device="cpu"))
    return GaVaMoE(llm, tok, 8, 3, GaVaMoEConfig(n_experts=4, top_k=2))


def _train(module, steps=5):
    prompts = [module.prompt("Hotel Roma", 5.0, "view"), module.prompt("Old Inn by the lake", 1.0, "bed")]
    enc = module.encode(prompts, ["Great view and staff.", "Noisy rooms."])
    g = torch.Generator().manual_seed(1)
    vecs = torch.randn(2, 8, generator=g), torch.randn(2, 8, generator=g)
    opt = torch.optim.Adam([p for p in module.parameters() if p.requires_grad], lr=3e-3)
    losses = []
    for _ in range(steps):
        loss = module(enc["input_ids"], enc["attention_mask"], enc["labels"], *vecs, torch.tensor([0, 1]))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses, opt


def test_gavamoe_on_a_bf16_backbone_keeps_experts_and_optimizer_state_fp32():
    module = _gavamoe("bfloat16")
    trainable = [p for p in module.parameters() if p.requires_grad]
    frozen = [p for p in module.llm.parameters() if not p.requires_grad]
    assert trainable and all(p.dtype is torch.float32 for p in trainable)
    assert frozen and all(p.dtype is torch.bfloat16 for p in frozen)
    losses, opt = _train(module)
    assert all(s["exp_avg"].dtype is torch.float32 for s in opt.state.values())
    assert losses[-1] < losses[0] - 0.1


def test_bf16_backbone_losses_stay_within_noise_of_fp32():
    fp32, _ = _train(_gavamoe("float32"))
    bf16, _ = _train(_gavamoe("bfloat16"))
    assert bf16 == pytest.approx(fp32, rel=0.02)  # bf16 keeps ~3 significant digits



def test_pepler_keeps_the_lm_it_tunes_fp32_under_auto(tmp_path_factory, monkeypatch):
    import json
    import shutil

    from serve_tiny import tiny_pepler

    from whyrec.methods.pepler.artifact import load_pepler_run

    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: True)
    folder = tmp_path_factory.mktemp("auto") / "pepler"
    shutil.copytree(tiny_pepler(tmp_path_factory, "continuous"), folder)
    config = json.loads((folder / "config.json").read_text())
    config["model"]["dtype"] = "auto"
    (folder / "config.json").write_text(json.dumps(config))
    module, _ = load_pepler_run(folder, device="cpu")
    assert {p.dtype for p in module.parameters()} == {torch.float32}
    frozen_backbone, _ = load_model(ModelConfig("tiny-random-llama", device="cpu"))  # what others get
    assert next(frozen_backbone.parameters()).dtype is torch.bfloat16
