"""Loading an XRec + LoRA folder for inference merges the LoRA into the backbone (issue 19).

The merged model must explain exactly as the unmerged one (fp32: same logits, same greedy text),
with the q/k/v injection hooked on the live projections; training and resuming keep peft's LoRA.
"""

from __future__ import annotations

import pytest
import serve_tiny as T
import torch
from safetensors.torch import load_file, save_file

from whyrec.config import GenerationConfig, LoraConfig, ModelConfig, TrainConfig, XRecConfig
from whyrec.methods.xrec.artifact import load_explainer

TRAIN = dict(batch_size=4, max_target_tokens=8, lr=0.01)


def _xrec() -> XRecConfig:
    return XRecConfig(n_exps=2, item_noun="movie", max_prompt_words=8, lora=LoraConfig(enabled=True, r=4))


def _has_lora(llm) -> bool:
    from peft.tuners.lora import LoraLayer

    return any(isinstance(m, LoraLayer) for m in llm.modules())


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A tiny XRec + LoRA folder whose LoRA B matrices are made large: two training steps from
    B = 0 leave a delta too small for the comparisons below to mean much."""
    from whyrec.methods.xrec.train import train_explainer

    root = T.tiny_run(tmp_path_factory)
    out = tmp_path_factory.mktemp("lora") / "explainer"
    train_explainer(str(root / "data"), str(root / "encoder"), str(out),
                    model=ModelConfig("tiny-random-llama", device="cpu", dtype="float32"),
                    xrec=_xrec(), train=TrainConfig(max_steps=2, **TRAIN))
    weights = load_file(str(out / "adapter_model.safetensors"))
    gen = torch.Generator().manual_seed(0)
    lora_b = [k for k in weights if "lora_B" in k]
    assert lora_b
    for k in lora_b:
        weights[k] = torch.randn(weights[k].shape, generator=gen) * 0.3
    save_file(weights, str(out / "adapter_model.safetensors"))
    return out


def _pairs(explainer, n: int = 6) -> tuple[list[str], list[str]]:
    users, items = list(explainer.encoder.user2idx)[:n], list(explainer.encoder.item2idx)[:n]
    return users, items


def _logits(explainer, users, items) -> torch.Tensor:
    """Full-sequence logits of the prompts, the user/item vectors injected as in training."""
    module = explainer.module
    enc = module.encode(explainer.prompts(users, items), side="left")
    user_vec, item_vec = explainer.vectors(users, items)
    with torch.no_grad():
        embeds, positions, vectors = module._inputs(enc["input_ids"], user_vec, item_vec)
        with module._injecting(positions, vectors, None):
            return module.llm(inputs_embeds=embeds, attention_mask=enc["attention_mask"]).logits


def test_merged_explains_as_unmerged_in_fp32(folder):
    merged, plain = load_explainer(str(folder), device="cpu"), load_explainer(str(folder), device="cpu",
                                                                                merge_lora=False)
    assert _has_lora(plain.module.llm) and not _has_lora(merged.module.llm)
    users, items = _pairs(merged)
    a, b = _logits(merged, users, items), _logits(plain, users, items)
    assert torch.allclose(a, b, atol=1e-4, rtol=1e-4), (a - b).abs().max()
    # The LoRA matters here: without it (adapter disabled) the logits move far more than the tolerance.
    with plain.module.llm.disable_adapter():
        assert (_logits(plain, users, items) - b).abs().max() > 1e-2
    for gen in (GenerationConfig(max_new_tokens=12, batch_size=4),  # whyrec's continuous decoder
                GenerationConfig(max_new_tokens=12, batch_size=4, drop_finished=False)):  # HF generate
        assert merged.explain(users, items, gen, progress=False) == plain.explain(users, items, gen, progress=False)


def test_loaded_model_has_plain_linear_projections_with_live_hooks(folder):
    module = load_explainer(str(folder), device="cpu").module
    llm = module.llm
    assert not hasattr(llm, "get_base_model")  # the peft wrapper is gone
    assert not any("lora_" in name for name, _ in llm.named_parameters())
    projections = [m for name, m in llm.named_modules() if name.endswith(("q_proj", "k_proj", "v_proj"))]
    assert projections and all(type(m) is torch.nn.Linear for m in projections)
    # The injector's hooks sit on these live modules (merging replaced the ones it first hooked).
    assert module.injector.n_hooks == len(projections)
    assert all(len(m._forward_hooks) == 1 for m in projections)
    assert module.merge_lora() == 0  # merging twice is a no-op


def test_merge_sums_in_fp32_and_rounds_once_on_bf16():
    from peft import LoraConfig as PeftLora
    from peft import get_peft_model

    from whyrec.methods.xrec.model import _merge_lora

    torch.manual_seed(0)
    base = torch.nn.Sequential(torch.nn.Linear(64, 64)).to(torch.bfloat16)
    wrapped = get_peft_model(base, PeftLora(r=4, lora_alpha=8, target_modules=["0"]))
    layer = wrapped.base_model.model[0]
    torch.nn.init.normal_(layer.lora_B["default"].weight, std=0.1)
    before = layer.get_base_layer().weight.detach().float().clone()
    a, b = layer.lora_A["default"].weight.float(), layer.lora_B["default"].weight.float()
    want = (before + b @ a * layer.scaling["default"]).to(torch.bfloat16)
    plain, merged = _merge_lora(wrapped)
    assert merged == 1 and type(plain[0]) is torch.nn.Linear and plain[0].weight.dtype == torch.bfloat16
    assert torch.equal(plain[0].weight, want)


def test_training_and_resumed_training_keep_lora(folder, tmp_path_factory, tmp_path, monkeypatch):
    """An interrupted LoRA run resumes from its checkpoint on the unmerged peft model."""
    from whyrec.llm import trainer
    from whyrec.methods.xrec.train import train_explainer

    root, out, seen = T.tiny_run(tmp_path_factory), tmp_path / "explainer", []
    original = trainer.train_loop

    def interrupted(module, lengths, step_fn, cfg, ckpt, **kw):
        calls = []

        def step(idx):
            calls.append(idx)
            if len(calls) > 1:  # step 1 is done and checkpointed (checkpoint_every 1)
                raise KeyboardInterrupt
            return step_fn(idx)

        return original(module, lengths, step, cfg, ckpt, **kw)

    def watched(module, lengths, step_fn, cfg, ckpt, **kw):
        seen.append(((ckpt / "trainer_state.json").exists(), _has_lora(module.llm)))
        state = original(module, lengths, step_fn, cfg, ckpt, **kw)
        seen.append((None, _has_lora(module.llm)))
        return state

    def run():
        return train_explainer(str(root / "data"), str(root / "encoder"), str(out),
                               model=ModelConfig("tiny-random-llama", device="cpu", dtype="float32"),
                               xrec=_xrec(), train=TrainConfig(max_steps=2, checkpoint_every=1, **TRAIN))

    monkeypatch.setattr(trainer, "train_loop", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run()
    monkeypatch.setattr(trainer, "train_loop", watched)
    assert run()["steps"] == 2
    assert seen == [(True, True), (None, True)]  # resumed from the checkpoint, LoRA before and after
    assert any("lora_B" in k for k in load_file(str(out / "adapter_model.safetensors")))
