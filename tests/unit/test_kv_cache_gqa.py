"""Decode attention on torch's grouped-query SDPA (`whyrec.llm.gqa_attention`): the same logits as
HF's `sdpa` path, taken only for one-token steps, and the model's attention setting restored."""

import torch
from transformers import DynamicCache, LlamaConfig, LlamaForCausalLM

from whyrec.llm import gqa_attention
from whyrec.llm.gqa_attention import gqa_decoding, gqa_switch
from whyrec.llm.kv_cache import SlotCache

torch.set_num_threads(1)


def _llm(attn: str = "sdpa"):
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=40, hidden_size=48, intermediate_size=64, num_hidden_layers=2, num_attention_heads=6,
                      num_key_value_heads=2, max_position_embeddings=64, attn_implementation=attn)
    return LlamaForCausalLM(cfg).eval()


@torch.no_grad()
def _steps(llm, slot: bool, n: int = 4) -> list[torch.Tensor]:
    ids = torch.tensor([[0, 0, 5, 6, 7], [8, 9, 10, 11, 12], [0, 0, 0, 13, 14]])
    mask = (ids != 0).long()
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    cache = DynamicCache(config=llm.config)
    logits = llm(input_ids=ids, attention_mask=mask, position_ids=pos, cache=cache, use_cache=True).logits[:, -1]
    cache = SlotCache.adopt(cache, 3) if slot else cache
    pos, out = pos[:, -1:] + 1, []
    for _ in range(n):
        mask = torch.cat([mask, mask.new_ones(3, 1)], 1)
        logits = llm(input_ids=logits.argmax(-1)[:, None], attention_mask=mask, position_ids=pos, cache=cache,
                     use_cache=True).logits[:, -1]
        out.append(logits)
        pos = pos + 1
    return out


def test_grouped_query_steps_give_hf_sdpa_logits_on_either_cache(monkeypatch):
    llm = _llm()
    reference = _steps(llm, slot=False)
    calls = []
    sdpa = gqa_attention.F.scaled_dot_product_attention

    def spy(*args, **kwargs):
        calls.append((args[0].shape[2], kwargs.get("enable_gqa", False)))
        return sdpa(*args, **kwargs)

    monkeypatch.setattr(gqa_attention.F, "scaled_dot_product_attention", spy)
    for slot in (False, True):
        calls.clear()
        with gqa_decoding(llm):
            assert llm.config._attn_implementation == gqa_attention.NAME
            got = _steps(llm, slot)
        assert llm.config._attn_implementation == "sdpa"
        assert calls and all(q == 1 and gqa for q, gqa in calls[-8:])  # 4 steps x 2 layers, all one-token GQA
        for a, b in zip(got, reference):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_left_alone_when_switched_off_or_not_on_sdpa():
    llm = _llm()
    with gqa_switch(False), gqa_decoding(llm):
        assert llm.config._attn_implementation == "sdpa"
    eager = _llm("eager")
    with gqa_decoding(eager):
        assert eager.config._attn_implementation == "eager"


def test_left_alone_with_more_than_one_torch_thread(monkeypatch):
    llm = _llm()
    monkeypatch.setattr(gqa_attention.torch, "get_num_threads", lambda: 2)  # slower there (benchmarks 8f)
    with gqa_decoding(llm):
        assert llm.config._attn_implementation == "sdpa"


def test_a_nested_block_does_not_switch_back_early():
    llm = _llm()
    with gqa_decoding(llm):
        with gqa_decoding(llm):
            pass
        assert llm.config._attn_implementation == gqa_attention.NAME
    assert llm.config._attn_implementation == "sdpa"
