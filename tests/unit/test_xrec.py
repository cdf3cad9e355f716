"""XRec adapters and q/k/v injection on a tiny random Llama (METHODS §3.2-3.3)."""

from dataclasses import replace

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from whyrec.adapters.moe_tokens import MoEAdaptor, count_parameters
from whyrec.config import GenerationConfig, ModelConfig, XRecConfig
from whyrec.llm.load import load_model, tiny_tokenizer
from whyrec.methods.xrec.model import XRec

DIM = 8


def build(inject=True, n_exps=2, lr_seed=0):
    torch.manual_seed(lr_seed)
    llm, tok = load_model(ModelConfig("tiny-random-llama", dtype="float32", device="cpu"))
    return XRec(llm, tok, DIM, XRecConfig(n_exps=n_exps, inject_qkv=inject, item_noun="movie"))


def batch(model, targets=True):
    prompts = [model.prompt("Toy Story (1995)", "likes animation", "a family film"),
               model.prompt("Heat (1995)", "likes crime thrillers a lot", "a heist film")]
    tg = ["You liked Aladdin, also animated.", "Crime like Fargo."] if targets else None
    return model.encode(prompts, tg)


def test_adapter_shapes_and_dense_gate():
    ad = MoEAdaptor(64, 48, n_exps=8, dropout=0.2)
    x = torch.randn(5, 64)
    assert ad(x).shape == (5, 48)
    ad.eval()
    assert torch.allclose(ad.gates(x), torch.full((5, 8), 1 / 8))  # zero-init gate mixes all experts evenly
    ad.train()
    assert not torch.allclose(ad.gates(x), torch.full((5, 8), 1 / 8))  # noise only while training


def test_paper_sizes_on_meta_device():
    """XRec's 64 -> 4096, 8 experts: 2,098,688 per adapter, 4,197,376 for both.

    METHODS §3.2 states 4,198,400; counting the original module's tensors (8 x (64x4096 + 64)
    + 2 x 64 x 8 per adapter) gives 4,197,376, which also matches the 8,401,594-byte
    fp32 converter pickles (8 x 2,098,688 / 2 bytes + pickle overhead)."""
    assert count_parameters(MoEAdaptor(64, 4096, 8)) == 2_098_688
    with torch.device("meta"):
        llm = LlamaForCausalLM(LlamaConfig(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                                           num_attention_heads=32, num_key_value_heads=32, vocab_size=32000))
    model = XRec(llm, tiny_tokenizer(), 64, XRecConfig())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == 4_197_376
    assert model.kv_proj is None  # no GQA in Llama-2-7B: vectors go to k/v unchanged
    assert model.injector.n_hooks == 32 * 3


def test_injection_changes_qkv_only_at_special_positions():
    on, off = build(inject=True), build(inject=False)
    off.load_state_dict(on.state_dict())
    on.eval(), off.eval()
    b = batch(on)
    u, i = torch.randn(2, DIM), torch.randn(2, DIM)
    seen = {}
    for tag, model in (("on", on), ("off", off)):
        layer0 = model.llm.model.layers[0].self_attn
        hs = [getattr(layer0, f"{n}_proj").register_forward_hook(
            lambda m, a, o, n=n, tag=tag: seen.__setitem__((tag, n), o.detach())) for n in "qkv"]
        with torch.no_grad():
            embeds, positions, vectors = model._inputs(b["input_ids"], u, i)
            pos_ids = (b["attention_mask"].cumsum(-1) - 1).clamp(min=0)
            with model._injecting(positions, vectors, b["input_ids"].shape[1]):
                seen[(tag, "logits")] = model.llm(inputs_embeds=embeds, attention_mask=b["attention_mask"],
                                                  position_ids=pos_ids).logits
        for h in hs:
            h.remove()
    for n in "qkv":
        diff = (seen[("on", n)] - seen[("off", n)]).abs().sum(-1)  # (B, T)
        changed = diff > 1e-7
        expected = torch.zeros_like(changed)
        expected[torch.arange(2).unsqueeze(1), positions] = True
        assert torch.equal(changed, expected), n
    # causal: logits before <USER_EMBED> cannot see the injection
    for row in range(2):
        first = int(positions[row].min())
        assert torch.allclose(seen[("on", "logits")][row, :first], seen[("off", "logits")][row, :first])
    assert not torch.allclose(seen[("on", "logits")], seen[("off", "logits")])


def test_training_step_updates_adapters_only():
    model = build()
    frozen = {k: v.clone() for k, v in model.llm.state_dict().items()}
    b = batch(model)
    loss = model(b["input_ids"], b["attention_mask"], b["labels"], torch.randn(2, DIM), torch.randn(2, DIM))
    loss.backward()
    assert model.user_adapter.weight.grad.abs().sum() > 0
    assert model.item_adapter.weight.grad.abs().sum() > 0
    assert model.kv_proj.weight.grad.abs().sum() > 0  # GQA map learns through k/v injection
    assert all(p.grad is None for p in model.llm.parameters())
    torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2).step()
    for k, v in model.llm.state_dict().items():
        assert torch.equal(v, frozen[k]), k


def _fit(model, steps=40, lr=0.1):
    b = batch(model)
    u, i = torch.randn(2, DIM), torch.randn(2, DIM)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    losses = []
    for _ in range(steps):
        loss = model(b["input_ids"], b["attention_mask"], b["labels"], u, i)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def test_loss_decreases_on_toy_set():
    # Two injected positions steer a random 2-layer model only a little: 5.59 -> ~5.45.
    losses = _fit(build())
    assert losses[-1] < losses[0] - 0.1
    assert sum(losses[-5:]) < sum(losses[5:10])


def test_lora_option_trains_lora_and_adapters():
    torch.manual_seed(0)
    llm, tok = load_model(ModelConfig("tiny-random-llama", dtype="float32", device="cpu"))
    cfg = XRecConfig(n_exps=2, item_noun="movie")
    cfg.lora.enabled, cfg.lora.r = True, 4
    model = XRec(llm, tok, DIM, cfg)
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert any("lora_A" in n for n in names) and any("user_adapter" in n for n in names)
    losses = _fit(model, steps=30, lr=0.1)
    assert losses[-1] < losses[0] - 0.1
    assert model.llm.peft_config["default"].r == 4


def test_labels_cover_only_the_explanation():
    model = build()
    b = batch(model)
    explain_id = model.token_ids[2]
    for row in range(2):
        ids, labels, mask = b["input_ids"][row], b["labels"][row], b["attention_mask"][row]
        start = int((labels != -100).float().argmax())
        assert int((ids == explain_id).nonzero()) < start  # the reply follows <EXPLAIN_POS>
        assert (labels[:start] == -100).all()
        assert (labels[mask == 0] == -100).all()
        n_target = int((labels != -100).sum())
        assert torch.equal(labels[start:start + n_target], ids[start:start + n_target])
        assert int(labels[start + n_target - 1]) == model.tokenizer.eos_token_id


def test_batched_generation_matches_single():
    model = build()
    model.eval()
    gen = GenerationConfig(max_new_tokens=6, repetition_penalty=1.0)
    b = batch(model, targets=False)
    u, i = torch.randn(2, DIM), torch.randn(2, DIM)
    both = model.generate(b["input_ids"], b["attention_mask"], u, i, gen)
    first = model.encode([model.prompt("Toy Story (1995)", "likes animation", "a family film")], side="left")
    single = model.generate(first["input_ids"], first["attention_mask"], u[:1], i[:1], gen)
    assert both[0] == single[0]
    assert model.injector._state is None  # injection is scoped to the call


def test_loss_equals_full_logits_cross_entropy():
    """The last-K-logits shortcut gives the same loss as HF's loss over all positions."""
    model = build()
    model.eval()
    b = batch(model)
    u, i = torch.randn(2, DIM), torch.randn(2, DIM)
    fast = model(b["input_ids"], b["attention_mask"], b["labels"], u, i)
    embeds, positions, vectors = model._inputs(b["input_ids"], u, i)
    pos_ids = (b["attention_mask"].cumsum(-1) - 1).clamp(min=0)
    with model._injecting(positions, vectors, b["input_ids"].shape[1]):
        full = model.llm(inputs_embeds=embeds, attention_mask=b["attention_mask"], position_ids=pos_ids,
                         labels=b["labels"]).loss
    assert torch.allclose(fast, full, atol=1e-5)


def test_prompt_needs_one_token_each():
    model = build()
    bad = model.encode(["no special tokens here"], side="left")
    with pytest.raises(ValueError, match="exactly one"):
        model._inputs(bad["input_ids"], torch.randn(1, DIM), torch.randn(1, DIM))


def test_dropping_finished_rows_matches_hf_generate():
    """whyrec's decode loop (rows leave the batch and the KV cache at EOS) gives HF generate's greedy ids."""
    model = build()
    model.eval()
    prompts = [model.prompt(t, u, i) for t, u, i in [("Toy Story (1995)", "likes animation", "a family film"),
                                                     ("Heat (1995)", "likes crime thrillers a lot", "a heist film"),
                                                     ("Fargo (1996)", "dark comedy", "snow"),
                                                     ("Up (2009)", "likes animated films with old people", "a balloon")]]
    b = model.encode(prompts, side="left")
    u, i = torch.randn(4, DIM), torch.randn(4, DIM)
    hf = GenerationConfig(max_new_tokens=12, repetition_penalty=1.1, drop_finished=False)
    free = model.generate_ids(b["input_ids"], b["attention_mask"], u, i, hf)
    # Make a token that row 0 emits early the EOS, so rows finish at different steps.
    model.tokenizer.eos_token = model.tokenizer.convert_ids_to_tokens(free[0][2])
    ref = model.generate_ids(b["input_ids"], b["attention_mask"], u, i, hf)
    lengths = [len(r) for r in ref]
    assert min(lengths) < max(lengths) == 12  # some rows stop early, some run to the end
    dropped = model.generate_ids(b["input_ids"], b["attention_mask"], u, i, replace(hf, drop_finished=True))
    assert dropped == ref
    # continuous batching: two rows decode at once, a finished row's slot goes to the next prompt,
    # which is prefilled with its own injected vectors
    refilled = model.generate_ids(b["input_ids"], b["attention_mask"], u, i,
                                  replace(hf, drop_finished=True, batch_size=2))
    assert refilled == ref
    assert model.generate(b["input_ids"], b["attention_mask"], u, i, replace(hf, drop_finished=True)) == \
        model.generate(b["input_ids"], b["attention_mask"], u, i, hf)
